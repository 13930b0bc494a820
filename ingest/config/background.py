"""Where background work runs: in every web process (the default), or in a worker only.

`RELAY_IN_WEB=true` (the default, what `make run` and small deployments want): each web
process runs the relay and every other background task (`ingest.background`) beside the
webhook. `false`: the web process only acknowledges, and the Procfile's `worker:`
(`ingestctl relay`) runs all of it, so that web dynos spend their CPU on acks.

`Settings` holds this shape, so this module imports nothing of ours: the reader and its
boolean parser are handed in by `ingest.config.env` (`reader` imports `settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class TypedReader(Protocol):
    def typed(self, name: str, parse: Callable[[str], T], default: T) -> T: ...


@dataclass(frozen=True, slots=True)
class BackgroundWork:
    in_web: bool = True


def read_background(reader: TypedReader, boolean: Callable[[str], bool]) -> BackgroundWork:
    return BackgroundWork(in_web=reader.typed("RELAY_IN_WEB", boolean, True))
