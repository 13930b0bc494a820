"""The layout holds: no import cycle among our modules, no module past ~300 lines.

Every import counts, those under `TYPE_CHECKING` and inside functions included
(`tests/import_graph.py`; `python -m tests.import_graph --rooms` prints the rooms).
"""

from __future__ import annotations

from tests.import_graph import cycles, edges, modules

MAX_LINES = 300


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(edges()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_past_three_hundred_lines() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
