# Set-up and checks; every target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv kafka kafka-stop prometheus lint test test-gpu demo clean

$(BIN)/knnstream: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/knnstream

kafka:
	bash deploy/kafka.sh start

kafka-stop:
	bash deploy/kafka.sh stop

lint: venv
	$(BIN)/ruff check stream model_store tests
	$(BIN)/mypy

prometheus:
	bash deploy/install-prometheus.sh

test: venv kafka prometheus lint
	$(BIN)/python -m pytest

test-gpu: venv
	$(BIN)/python -m pytest -m gpu

demo: venv
	$(BIN)/knnstream demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
