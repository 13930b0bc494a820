"""What `ingestctl` prints and the exit code it ends with, shared by every command.

Exit codes: 0 done; 1 the operation was refused or found trouble (replay while the
kill switch holds, a failure rate above 10%, a QStash call refused); 2 bad usage or
configuration; 3 the database is unavailable; 4 the service is unreachable
(`send-sample`); 130 stopped with Ctrl-C (`relay`, `tail`), as a shell reports it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

OK, TROUBLE, USAGE, UNAVAILABLE, UNREACHABLE = 0, 1, 2, 3, 4
INTERRUPTED = 130


class Failed(Exception):
    """The command ran but must exit non-zero; the message is what went wrong."""

    def __init__(self, message: str, code: int = TROUBLE) -> None:
        super().__init__(message)
        self.code = code


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human(data))
