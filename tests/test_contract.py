"""One versioned contract: producer output and consumer input agree with the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import EVENT_ADAPTER, EventKind, event_from_json, event_to_json
from contracts.schema import SCHEMA_PATH, event_schema
from ingest.edge.parser import parse_delivery

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "contracts" / "examples").glob("*.json"))
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "meta").glob("*.json"))
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def test_checked_in_schema_is_what_the_models_generate() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == event_schema(), (
        "run `python -m contracts.schema` and commit the result"
    )


def test_there_is_an_example_for_every_kind() -> None:
    kinds = {json.loads(path.read_text())["kind"] for path in EXAMPLES}
    assert kinds == {kind.value for kind in EventKind}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_and_round_trips(path: Path) -> None:
    example = json.loads(path.read_text())
    VALIDATOR.validate(example)
    event = event_from_json(path.read_bytes())
    assert json.loads(event_to_json(event)) == example


@pytest.mark.parametrize(
    "path", [p for p in FIXTURES if p.stem != "expected_kinds"], ids=lambda p: p.stem
)
def test_everything_the_parser_produces_validates(path: Path) -> None:
    for event in parse_delivery(json.loads(path.read_text())):
        VALIDATOR.validate(json.loads(event_to_json(event)))


def _example(kind: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        (ROOT / "contracts" / "examples" / f"{kind}.json").read_text()
    )
    return result


def test_an_event_with_fields_a_newer_producer_added_is_accepted() -> None:
    event = EVENT_ADAPTER.validate_python({**_example("message"), "added_in_v2_1": {"x": 1}})
    assert event.kind == "message"


@pytest.mark.parametrize("version", [0, 3, "2", None])
def test_unknown_version_is_rejected(version: object) -> None:
    with pytest.raises(ValueError, match="v"):
        EVENT_ADAPTER.validate_python({**_example("message"), "v": version})


def test_a_v1_event_is_read_into_the_same_models_and_keeps_its_dedup_id() -> None:
    """v1 events may sit in QStash, its DLQ or the ledger: accepted indefinitely."""
    v1 = {**_example("read"), "v": 1}
    for added in ("platform", "standby", "is_test", "origin", "dedup_id"):
        v1.pop(added, None)
    event = EVENT_ADAPTER.validate_python(v1)
    assert event.v == 1 and event.platform == "instagram"
    assert event.dedup_id == f"ig_read_{event.sender_id}_{event.mid}"  # type: ignore[union-attr]


def test_dedup_id_on_the_wire_is_recomputed_never_trusted() -> None:
    forged = {**_example("reaction"), "dedup_id": "ig_msg_forged"}
    assert EVENT_ADAPTER.validate_python(forged).dedup_id.startswith("ig_react_")
