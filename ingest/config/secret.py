"""`Secret`: a value that never prints (tokens, keys, database URLs).

Kept apart from the settings so that modules the settings use (the Graph accounts)
can wrap values too; `ingest.config.settings.Secret` is the same class.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never be printed. Call `reveal()` at the single point of use."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)
