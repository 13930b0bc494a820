"""`API_DOCS`: whether the service describes its own API (`/openapi.yaml`, `/docs`, `/`).

On by default: the description is no secret (it is in the repository), and a newcomer
finds the routes at `/docs`. `API_DOCS=false` takes all three away (404).

Imports nothing of ours: `settings` holds an `ApiDocs`, and `env` reads it with its
`Reader` (passed in, so this module never imports `reader`, which imports `settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class TypedReader(Protocol):
    def typed(self, name: str, parse: Callable[[str], T], default: T) -> T: ...


@dataclass(frozen=True, slots=True)
class ApiDocs:
    enabled: bool = True


def read_api_docs(reader: TypedReader, boolean: Callable[[str], bool]) -> ApiDocs:
    """`API_DOCS` as true or false (`boolean`: the reader's parser, naming what it takes)."""
    return ApiDocs(enabled=reader.typed("API_DOCS", boolean, True))
