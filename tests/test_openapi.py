"""openapi.yaml describes exactly the routes the app serves, with the generated contract."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from starlette.routing import Route

from contracts.schema import openapi_schemas
from ingest.app import create_app
from ingest.config.settings import Settings
from tests.console import CONSOLE_ENV

SPEC: dict[str, Any] = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())


def _app_operations(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                operations.add((route.path, method.lower()))
    return operations


def test_spec_and_app_have_the_same_operations(make_settings: Callable[..., Settings]) -> None:
    """With the console on: without it its paths answer 404 to every method."""
    spec = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert spec == _app_operations(make_settings(**CONSOLE_ENV))


def test_spec_contract_components_equal_the_generated_schema() -> None:
    for name, schema in openapi_schemas().items():
        assert SPEC["components"]["schemas"][name] == schema, (
            f"{name} drifted: run `python -m contracts.schema`"
        )


def test_every_operation_documents_its_responses_as_json_answers() -> None:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
