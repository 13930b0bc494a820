"""What a Graph API error answer means: the code in the body decides, not the status."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.graph import GraphApiError, graph_error


def body(code: Any, message: str = "programmed", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


@pytest.mark.parametrize(
    ("status", "answer", "meaning"),
    [
        (400, body(190, error_subcode=463), "token_invalid"),
        (400, body(102), "token_invalid"),
        (400, body(4), "rate_limited"),
        (400, body(17), "rate_limited"),
        (400, body(32), "rate_limited"),
        (400, body(613), "rate_limited"),
        (400, body(80002), "rate_limited"),
        (400, body(80006), "rate_limited"),
        (400, body(80009), "rate_limited"),
        (429, {}, "rate_limited"),
        (400, body(1), "temporary"),
        (400, body(2), "temporary"),
        (400, body(36000, is_transient=True), "temporary"),
        (500, "not json", "temporary"),
        (400, body(9000001), "message_unavailable"),
        (400, body(None, "The message has been deleted"), "message_unavailable"),
        (400, body(100, "(#100) Tried accessing nonexisting field (reply_to)"), "unknown_field"),
        (400, body(100, "(#100) Object does not exist"), "permanent"),
        (400, body(10), "permanent"),
    ],
)
def test_each_answer_means_one_thing(status: int, answer: Any, meaning: str) -> None:
    error = graph_error(status, answer)
    kinds = ("token_invalid", "rate_limited", "temporary", "message_unavailable", "unknown_field")
    found = [kind for kind in kinds if getattr(error, kind)]
    assert found == ([] if meaning == "permanent" else [meaning])


def test_fields_are_read_defensively() -> None:
    error = graph_error(400, {"error": {"code": "190", "is_transient": "yes", "message": 7}})
    assert (error.code, error.transient, error.message) == (None, False, "")
    assert graph_error(400, {"error": {"code": True}}).code is None
    assert graph_error(400, None).label == "http_400"


def test_the_message_is_bounded_and_never_the_string_form() -> None:
    error = graph_error(400, body(100, "x" * 1000))
    assert len(error.message) == 200
    assert str(error) == "graph error 400/100"
    assert GraphApiError(400, 10**9).label == "other"
    assert GraphApiError(400, 9000001).label == "9000001"


def test_no_readable_answer_is_labelled_by_what_happened() -> None:
    assert GraphApiError(0, transient=True).label == "network"
    assert GraphApiError(0).label == "invalid_answer"
