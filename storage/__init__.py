"""Database access shared by `ingest` and `consumers`: backends, migrations, embedded server."""

from storage.backend import Backend
from storage.errors import DataRejected, StorageError, StorageUnavailable

__all__ = ["Backend", "DataRejected", "StorageError", "StorageUnavailable"]
