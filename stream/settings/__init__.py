"""One frozen settings object per command, read from flags and ``KNNSTREAM_*`` variables.

Settings are built once in :mod:`stream.cli` and passed down; nothing deeper in the
package reads the environment.
"""

from stream.settings.base import BackendChoice, ComputeSettings, InputFormat, KafkaSettings, Task
from stream.settings.serve import ServeSettings
from stream.settings.tools import BenchSettings, DemoSettings, ProduceSettings, StoreSettings, TopicsSettings
from stream.settings.train import TrainSettings

__all__ = [
    "BackendChoice",
    "BenchSettings",
    "ComputeSettings",
    "DemoSettings",
    "InputFormat",
    "KafkaSettings",
    "ProduceSettings",
    "ServeSettings",
    "StoreSettings",
    "Task",
    "TopicsSettings",
    "TrainSettings",
]
