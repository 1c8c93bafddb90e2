"""Domain errors. Every error the pipeline raises on bad input or bad config derives from
:class:`LGSIDError`, so a job wrapper can print one clean message instead of a traceback."""


class LGSIDError(Exception):
    """Base class for all LGSID errors."""


class ConfigError(LGSIDError):
    """A configuration file or override is invalid. The message names the file and the key."""


class EnvironmentSetupError(LGSIDError):
    """The runtime is missing something it needs (Java, a checkpoint path, a Spark package)."""


class ValidationError(LGSIDError):
    """Input data failed validation. The message names the table, column and offending rows."""


class TableNotFoundError(LGSIDError):
    """A Delta table the step needs has not been written yet. The message says which step writes it."""


class ModelError(LGSIDError):
    """A model artifact is missing or disagrees with its configuration (e.g. codebook shapes)."""


class PromotionRefused(LGSIDError):
    """The promotion gate refused a model version; the message names the failing metric."""
