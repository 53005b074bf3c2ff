"""One error root for everything the user can get wrong, with typed subclasses.

The CLI catches `SegmentArchiveError` and prints its message; anything else is a
bug and keeps its traceback.  Messages name the file, field or block at fault and
say what was expected.
"""

from __future__ import annotations


class SegmentArchiveError(Exception):
    """Root of all errors caused by input, configuration or environment."""


class ConfigError(SegmentArchiveError, ValueError):
    """A model config or job spec field is missing, unknown or out of range."""


class GeometryError(SegmentArchiveError, ValueError):
    """A tile or image size does not fit the network's geometry."""


class CheckpointError(SegmentArchiveError):
    """A checkpoint cannot be loaded safely or does not match its config."""


class InputError(SegmentArchiveError):
    """An input image, file or block cannot be read or is not what it claims."""


class StorageError(SegmentArchiveError):
    """A read or write failed in a way that may pass on a second try (an I/O error, a network or store hiccup).

    The one failure of a unit that is retried: bad input stays bad, a bug stays a bug.
    """


class OutputError(SegmentArchiveError):
    """The mask store cannot be created or written."""


class JobLockedError(SegmentArchiveError):
    """Another submit of the same job holds its lock."""


class ExitCode:
    """Exit statuses of the CLI, stable for schedulers and alerting."""

    OK = 0  # everything asked for is done
    FAILED = 1  # an unexpected error (a bug, or the environment): see the traceback
    INVALID = 2  # the job, config, checkpoint or command line is invalid: nothing ran
    PARTIAL = 3  # the job ran, but some units are quarantined, or a warning says the output needs a look
    LOCKED = 4  # another run of the same job holds the lock
    INTERRUPTED = 130  # stopped by Ctrl-C; submit again to resume
