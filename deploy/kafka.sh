#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for
# development and integration tests, assembled from Maven Central jars.
# Run `deploy/kafka.sh --help` for usage.
set -euo pipefail

KAFKA_VERSION="${KNNSTREAM_KAFKA_VERSION:-4.1.1}"
PORT="${KNNSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KNNSTREAM_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
CACHE_DIR="${KNNSTREAM_KAFKA_CACHE:-$HOME/.cache/knnstream/kafka-$KAFKA_VERSION}"
STATE_DIR="${KNNSTREAM_KAFKA_HOME:-${TMPDIR:-/tmp}/knnstream-kafka-$PORT}"
START_TIMEOUT="${KNNSTREAM_KAFKA_START_TIMEOUT:-60}"
START_LIMIT="${KNNSTREAM_KAFKA_START_LIMIT:-300}"
HEAP_OPTS="${KNNSTREAM_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

TEMPLATES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka"
LIBS="$CACHE_DIR/libs"
BOOTSTRAP="127.0.0.1:$PORT"
CONFIG="$STATE_DIR/server.properties"
LOG4J_CONFIG="$STATE_DIR/log4j2.properties"
PID_FILE="$STATE_DIR/kafka.pid"
LOG_FILE="$STATE_DIR/broker.log"
DATA_DIR="$STATE_DIR/kraft-logs"

usage() {
  cat <<EOF
Usage: $(basename "$0") {fetch|start|stop|restart|status|logs [N]|consume TOPIC [S]|--help}

  fetch    download Kafka $KAFKA_VERSION jars + runtime deps via Maven (cached)
  start    fetch if needed, format KRaft storage once, launch, wait until ready
  stop     SIGTERM the broker (SIGKILL after 30 s)
  restart  stop, then start
  status   exit 0 if the broker answers Kafka API requests on $BOOTSTRAP
  logs     print the last N (default 100) lines of the broker log
  consume TOPIC [S]  print TOPIC's records from its start (key, tab, value), until none came for S (default 10) s

Environment (current value):
  KNNSTREAM_KAFKA_VERSION=$KAFKA_VERSION
  KNNSTREAM_KAFKA_PORT=$PORT
  KNNSTREAM_KAFKA_CONTROLLER_PORT=$CONTROLLER_PORT
  KNNSTREAM_KAFKA_CACHE=$CACHE_DIR
  KNNSTREAM_KAFKA_HOME=$STATE_DIR
  KNNSTREAM_KAFKA_START_TIMEOUT=$START_TIMEOUT  (seconds the starting broker may go without logging)
  KNNSTREAM_KAFKA_START_LIMIT=$START_LIMIT  (seconds a start may take in all)
  KNNSTREAM_KAFKA_HEAP_OPTS=$HEAP_OPTS
EOF
}

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Fill in the @NAME@ placeholders of a template file from deploy/kafka/.
render() {
  sed -e "s|@KAFKA_VERSION@|$KAFKA_VERSION|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" -e "s|@DATA_DIR@|$DATA_DIR|g" "$1"
}

# Serialise concurrent invocations that share a directory (e.g. parallel CI jobs).
lock_dir() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock -w 300 9 || die "timed out waiting for lock on $1"
}

# Run a Kafka command-line class from the cached jars, quietly, with a small JVM
# and a time limit (TOOL_TIMEOUT seconds).
kafka_java() {
  timeout "${TOOL_TIMEOUT:-60}" java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -Dknnstream.log.level="${TOOL_LOG_LEVEL:-WARN}" \
    -cp "$LIBS/*" "$@"
}

# The marker holds a hash of the rendered pom, so editing the template refetches.
fetched() { [[ "$(cat "$LIBS/.complete" 2>/dev/null)" == "$(render "$TEMPLATES/pom.xml.in" | sha256sum)" ]]; }

cmd_fetch() {
  fetched && return 0
  command -v mvn >/dev/null || die "mvn not found"
  lock_dir "$CACHE_DIR"
  fetched && return 0
  log "fetching Kafka $KAFKA_VERSION from Maven Central into $LIBS"
  local work; work="$(mktemp -d "$CACHE_DIR/fetch.XXXXXX")"
  render "$TEMPLATES/pom.xml.in" >"$work/pom.xml"
  if ! mvn -B -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
    tail -n 30 "$work/mvn.log" >&2; rm -rf "$work"; die "maven download failed"
  fi
  rm -rf "$LIBS" && mv "$work/libs" "$LIBS"
  sha256sum <"$work/pom.xml" >"$LIBS/.complete" && rm -rf "$work"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars"
}

write_config() {
  mkdir -p "$STATE_DIR" "$DATA_DIR"
  render "$TEMPLATES/server.properties.in" >"$CONFIG"
  cp "$TEMPLATES/log4j2.properties" "$LOG4J_CONFIG"
}

# Format the KRaft log dir once; later starts reuse the existing storage.
format_storage() {
  [[ -f "$DATA_DIR/meta.properties" ]] && return 0
  local cluster_id
  cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid)"
  log "formatting KRaft storage (cluster id $cluster_id)"
  kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" >/dev/null
}

# Pid of the running broker for this state dir, or failure.
broker_pid() {
  local pid
  [[ -f "$PID_FILE" ]] && pid="$(<"$PID_FILE")" && [[ -n "$pid" ]] || return 1
  ps -p "$pid" -o args= 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

# Wall clock in microseconds, and seconds (one decimal) elapsed since such a stamp.
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }
elapsed() { local d=$(( $(now_us) - $1 )); printf '%d.%d' $((d / 1000000)) $((d / 100000 % 10)); }

log_tail() { tail -n 30 "$LOG_FILE" | cut -c1-300 >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when the broker accepts TCP connections and answers an ApiVersions request.
broker_answers() {
  port_open "$PORT" || return 1
  TOOL_TIMEOUT=15 kafka_java org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$BOOTSTRAP" >/dev/null 2>&1
}

cmd_start() {
  local t0; t0="$(now_us)"
  cmd_fetch
  lock_dir "$STATE_DIR"
  if broker_pid >/dev/null && broker_answers; then
    log "already running (pid $(broker_pid)) at $BOOTSTRAP"
    echo "$BOOTSTRAP"; return 0
  fi
  broker_pid >/dev/null && die "broker process $(broker_pid) is up but not answering; run stop first"
  rm -f "$PID_FILE"
  port_open "$PORT" && die "port $PORT is already in use by another process"
  port_open "$CONTROLLER_PORT" && die "controller port $CONTROLLER_PORT is already in use"

  write_config
  format_storage
  # A JVM that dies before writing a line (killed from outside while starting, say) is started
  # once more; one that logged why it stopped is not, since it would stop again.
  local attempt launched=$SECONDS
  for attempt in 1 2; do
    launch_broker
    if wait_until_ready "$launched"; then
      log "ready at $BOOTSTRAP in $(elapsed "$t0")s (pid $(<"$PID_FILE"))"
      echo "$BOOTSTRAP"; return 0
    fi
    (( attempt == 1 && $(lines_since_start) == 0 )) || break
    log "the broker exited before writing a line of its log; starting it once more"
  done
  log_tail; rm -f "$PID_FILE"; die "broker exited during startup (log: $LOG_FILE)"
}

launch_broker() {
  log "starting Kafka $KAFKA_VERSION (state in $STATE_DIR)"
  echo "=== start $(date -Is) ===" >>"$LOG_FILE"
  # setsid+nohup detach the broker from the calling shell; both exec, so $! is the JVM.
  # shellcheck disable=SC2086
  setsid nohup java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J_CONFIG" -cp "$LIBS/*" kafka.Kafka "$CONFIG" \
    </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  echo $! >"$PID_FILE"
}

# Lines the broker log gained since the last start marker.
lines_since_start() {
  tac "$LOG_FILE" | awk '/^=== start /{ print n + 0; exit } { n++ }'
}

# Wait until the launched broker answers: 0 when it does, 1 when it exits first. A broker that
# reloads many partitions (or recovers them after a kill) logs each one, so it gets time while
# its log grows, and is stopped once it has been silent for START_TIMEOUT, or START_LIMIT
# seconds after $1 (when the first launch began).
wait_until_ready() {
  # The pid is checked for being alive, not for running kafka.Kafka: until the forked shell
  # has exec'd java, its command line is still this script's.
  local pid; pid="$(<"$PID_FILE")"
  local launched=$1 logged=-1 size last_progress=$SECONDS
  until broker_answers; do
    if ! alive "$pid"; then
      local status=0; wait "$pid" 2>/dev/null || status=$?
      log "the broker process exited with status $status"
      return 1
    fi
    size="$(stat -c %s "$LOG_FILE")"
    if (( size != logged )); then logged=$size; last_progress=$SECONDS; fi
    if (( SECONDS - last_progress >= START_TIMEOUT || SECONDS - launched >= START_LIMIT )); then
      log_tail; stop_broker "$pid"
      die "broker not ready after $((SECONDS - launched))s, $((SECONDS - last_progress))s of them without logging; stopped it (log: $LOG_FILE)"
    fi
    sleep 0.5
  done
}

# True while a process exists and is not a zombie.
alive() { local st; st="$(ps -p "$1" -o stat= 2>/dev/null)" && [[ "$st" != Z* ]]; }

# Wait up to $2 seconds for pid $1 to exit; fail if it is still alive.
wait_exit() {
  local i
  for (( i = 0; i < $2 * 10; i++ )); do
    alive "$1" || return 0
    sleep 0.1
  done
  ! alive "$1"
}

# SIGTERM, wait up to 30 s for a clean shutdown, then SIGKILL.
stop_broker() {
  local pid="$1"
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_exit "$pid" 30; then
    log "still alive after 30s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_stop() {
  [[ -d "$STATE_DIR" ]] || { log "not running"; return 0; }
  lock_dir "$STATE_DIR"
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"; log "not running"; return 0
  fi
  stop_broker "$pid"
}

cmd_status() {
  local pid owner="not started by this script"
  pid="$(broker_pid)" && owner="pid $pid"
  if broker_answers; then
    log "answering at $BOOTSTRAP ($owner)"; return 0
  fi
  log "not answering at $BOOTSTRAP${pid:+ (pid $pid is alive)}"; return 1
}

# Every record of a topic from its start, "key<TAB>value" a line, until none came for IDLE seconds.
cmd_consume() {
  local topic="$1" idle="$2"
  [[ -f "$LOG4J_CONFIG" ]] || die "no broker configuration in $STATE_DIR: run start first"
  # its timeout ends it with an ERROR line of its own: kept to FATAL
  TOOL_TIMEOUT=$((idle + 600)) TOOL_LOG_LEVEL=FATAL kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "$BOOTSTRAP" --topic "$topic" --from-beginning --timeout-ms "$((idle * 1000))" \
    --property print.key=true --property key.separator=$'\t'
}

cmd_logs() {
  [[ -f "$LOG_FILE" ]] || die "no log file at $LOG_FILE"
  tail -n "${1:-100}" "$LOG_FILE"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) fetched || die "not fetched; run fetch first"; cmd_status ;;
  logs) cmd_logs "${2:-}" ;;
  consume) [[ -n "${2:-}" ]] || die "usage: consume TOPIC [IDLE_SECONDS]"; cmd_consume "$2" "${3:-10}" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
