"""Typed exceptions: every error knnstream raises derives from KnnStreamError."""


class KnnStreamError(Exception):
    """Base class of every error knnstream raises on purpose."""


class ConfigurationError(KnnStreamError):
    """The settings, or what they point at, cannot work; raised before anything starts."""


class BackendUnavailableError(ConfigurationError):
    """The requested compute backend (e.g. the GPU) is not usable on this host."""


class RecordError(KnnStreamError):
    """One input record cannot be scored; it goes to the dead-letter topic."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DeliveryError(KnnStreamError):
    """The broker did not acknowledge every output record of a batch."""


class KafkaSetupError(ConfigurationError):
    """The broker is unreachable or a topic is missing."""


class TrainingError(KnnStreamError):
    """The training data or parameters cannot produce a model."""
