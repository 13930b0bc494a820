"""Limits on what a client may cost us: console sign-in back-off and the body deadline.

`Guards` is read once by `guards(reader)` (`ingest.config.env` calls it); the console's
sign-in throttle (`ingest.console.throttle`) and the body deadline
(`ingest.body_deadline`) take their numbers from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SECURE_CONSOLE_TOKEN_LENGTH = 32  # below this, start-up warns outside development


@dataclass(frozen=True, slots=True)
class Guards:
    """Sign-in: `login_free_failures` wrong tokens per client address (and
    `login_global_failures` across all addresses) cost nothing; each one after that doubles
    the wait every client of that scope sees, from 1 s up to `login_max_wait_seconds`.
    Bodies: one that has not fully arrived `body_timeout_seconds` after its request
    started ends that request (408) and its connection."""

    login_free_failures: int = 5
    login_global_failures: int = 50
    login_max_wait_seconds: int = 60
    body_timeout_seconds: float = 30.0


class Reads(Protocol):
    """What `guards` needs of `ingest.config.reader.Reader` (which imports the settings
    this module's dataclass is part of: a protocol, so there is no import circle)."""

    def positive_int(self, name: str, default: int) -> int: ...
    def positive_float(self, name: str, default: float) -> float: ...


def guards(reader: Reads) -> Guards:
    defaults = Guards()
    return Guards(
        login_free_failures=reader.positive_int(
            "CONSOLE_LOGIN_FREE_FAILURES", defaults.login_free_failures
        ),
        login_global_failures=reader.positive_int(
            "CONSOLE_LOGIN_GLOBAL_FAILURES", defaults.login_global_failures
        ),
        login_max_wait_seconds=reader.positive_int(
            "CONSOLE_LOGIN_MAX_WAIT_SECONDS", defaults.login_max_wait_seconds
        ),
        body_timeout_seconds=reader.positive_float(
            "BODY_TIMEOUT_SECONDS", defaults.body_timeout_seconds
        ),
    )
