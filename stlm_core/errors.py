"""User-facing errors.

Every problem a user can fix (bad path, wrong layout, missing weights, corrupt file) raises a subclass of
:class:`StlmError` whose message names the file and the fix. The CLI prints the message without a traceback.
"""


class StlmError(Exception):
    """An error the user can fix; the message says what is wrong and how to fix it.

    ``exit_status``: what the ``stlm`` command exits with (2 = usage error; 130 for an interrupt).
    """

    exit_status: int = 2


class DatasetError(StlmError, ValueError):
    """A dataset root, file or layout is missing or invalid."""


class WeightsError(StlmError, FileNotFoundError):
    """Required pretrained weights are missing or do not match their checksum."""


class DownloadError(StlmError, RuntimeError):
    """A download failed or its checksum did not match."""


class ConfigError(StlmError, ValueError):
    """A configuration value is invalid or unknown."""
