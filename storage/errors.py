"""Storage errors, named after what went wrong, and the one SQLSTATE classifier.

Both backends (asyncpg and PostgREST) translate their failures into these two
kinds, so the consumer's error table only has to know two things: try again
later (`StorageUnavailable`) or never (`DataRejected`).
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class; carries the SQLSTATE when the database gave one."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class StorageUnavailable(StorageError):
    """Retryable: the database is down, busy, timed out, or lost a race (deadlock, ...)."""

    def __init__(
        self, message: str, *, sqlstate: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.retry_after = retry_after


class DataRejected(StorageError):
    """Permanent: the database refused the data itself (check, foreign key, type, our own RAISE)."""


# SQLSTATE classes (first two characters) whose errors say "the data is wrong".
# Everything else (08 connection, 40 rollback, 53 resources, 57 operator intervention,
# 58 system, 42 undefined object during a deploy, …) is worth another try.
_PERMANENT_CLASSES = frozenset({"22", "23", "P0"})
# Exceptions to the class rule: a lock timeout in P0 is not ours, but 55P03 is retryable.
_RETRYABLE_CODES = frozenset({"55P03", "57014", "40001", "40P01"})


def is_permanent_sqlstate(sqlstate: str | None) -> bool:
    """True when retrying the same call can never succeed."""
    if not sqlstate or sqlstate in _RETRYABLE_CODES:
        return False
    return sqlstate[:2] in _PERMANENT_CLASSES


def unreachable(exc: BaseException) -> str:
    """Why the database could not be reached, as a sentence an operator reads (the CLI,
    the console, the ledger's reason): the OS's own words, never an exception class name."""
    if isinstance(exc, TimeoutError):
        return "the database did not answer in time"
    if isinstance(exc, FileNotFoundError):
        return "the database's socket does not exist (is the database running?)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"the database cannot be reached: {exc.strerror.lower()}"
    detail = str(exc).strip().split("\n", 1)[0]
    return "the database cannot be reached" + (f": {detail}" if detail else "")


def from_sqlstate(message: str, sqlstate: str | None) -> StorageError:
    if is_permanent_sqlstate(sqlstate):
        return DataRejected(message, sqlstate=sqlstate)
    return StorageUnavailable(message, sqlstate=sqlstate)
