"""The error kinds lstmlab raises on bad input.

Every error carries a one-line message naming what is wrong and, where there
is one, a hint naming what to do. The CLI prints both on one line each and
exits with `exit_code` (2 for usage and configuration errors, 1 otherwise);
library code never prints.
"""

from __future__ import annotations


class LstmlabError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


def brief(exc: BaseException) -> str:
    """An exception's message cut to its first line, for use inside a one-line error."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(exc).__name__


class ConfigError(LstmlabError):
    """A recipe or override is invalid: unknown key, wrong type, impossible value."""

    exit_code = 2


class UsageError(LstmlabError):
    """A command-line argument is wrong (missing path, bad combination)."""

    exit_code = 2


class CorpusError(LstmlabError):
    """A corpus is missing, malformed, or not prepared."""


class ChecksumError(CorpusError):
    """A file's size or checksum differs from the expected one."""


class DownloadError(CorpusError):
    """A download failed or was interrupted."""


class CheckpointError(LstmlabError):
    """A checkpoint or run directory is missing, corrupt or incompatible."""


class VocabularyError(LstmlabError):
    """Text or a corpus uses symbols outside a model's vocabulary."""


class TrainingError(LstmlabError):
    """Training hit a fault it cannot continue from (e.g. a non-finite loss)."""
