"""The contract's JSON Schema, generated from the models and checked in.

`python -m contracts.schema` rewrites `contracts/schema/event.v2.json` and the
contract's component schemas in `openapi.yaml`; tests fail when either differs
from what the models generate, so the three cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contracts.events import EVENT_ADAPTER

SCHEMA_PATH = Path(__file__).parent / "schema" / "event.v2.json"
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
OPENAPI_REF = "#/components/schemas/{model}"


def event_schema() -> dict[str, Any]:
    """The standalone schema of one event, as published (`dedup_id` included, read-only)."""
    schema = EVENT_ADAPTER.json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://instagram-ingest.example/schemas/event.v2.json",
        "title": "Event",
        **schema,
    }


def openapi_schemas() -> dict[str, Any]:
    """The same schema split into OpenAPI components (`Event` plus one per model)."""
    schema = EVENT_ADAPTER.json_schema(mode="serialization", ref_template=OPENAPI_REF)
    components: dict[str, Any] = schema.pop("$defs")
    components["Event"] = {"title": "Event", **schema}
    return components


def write_openapi_components(path: Path = OPENAPI_PATH) -> None:
    import yaml  # a development dependency (schemathesis brings it)

    spec = yaml.safe_load(path.read_text())
    spec["components"]["schemas"].update(openapi_schemas())
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100))


def main() -> None:
    SCHEMA_PATH.write_text(json.dumps(event_schema(), indent=2, sort_keys=True) + "\n")
    write_openapi_components()
    print(f"wrote {SCHEMA_PATH} and the contract components of {OPENAPI_PATH}")


if __name__ == "__main__":
    main()
