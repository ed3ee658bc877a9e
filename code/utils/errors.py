"""One exception family for the toolkit.

Scripts catch :class:`P4VError` at the top and turn it into one clear line and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class P4VError(Exception):
    """Base of every error the toolkit raises on purpose."""

    exit_code = 1


class ConfigError(P4VError):
    """config.yaml or an environment override is invalid."""

    exit_code = 2


class InputError(P4VError):
    """A file the user passed in is missing, unreadable or of the wrong kind."""


class VideoError(InputError):
    """A video cannot be opened or decoded (corrupt, truncated, no video stream)."""


class ImageError(InputError):
    """A query image cannot be read (not an image, empty, truncated, too large)."""


class CatalogueError(P4VError):
    """The catalogue database (SQLite or MySQL) is unreachable or inconsistent."""

    exit_code = 3


class VectorStoreError(P4VError):
    """Milvus is unreachable, locked by another process, or holds incompatible vectors."""

    exit_code = 4


class ModelError(P4VError):
    """The embedding model is missing, has the wrong hash, or cannot run."""

    exit_code = 5
