"""One exception type per failure class, so the CLI can print one line without a traceback.

Every message names the file or key at fault and says how to fix it.
"""


class QuadpipeError(Exception):
    """A user-facing error: bad input, a missing or corrupt file. Printed as one line by the CLI."""


class ConfigError(QuadpipeError):
    """A configuration key is unknown, mistyped or out of range."""


class DatasetError(QuadpipeError):
    """An HDF5 file is missing, truncated, or does not follow the format in data.dataset."""


class ResumeError(QuadpipeError):
    """A shard's side files (the resume journal) are corrupt or belong to other settings."""
