"""The turn drill, small (`make drill` runs it full size): two real service processes
behind a round-robin balancer, the QStash double delivering, the README's receiver
verifying signatures; duplicates and disorder; `kill -9` inside a quiet window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.turn_drill import Shape, TurnDrill
from tests.conftest import BASE_ENV
from tests.doubles.qstash import QStashDouble

SMALL = Shape(customers=30, quiet=1.5, max_wait=2.5, writing=4.0, interval=0.4)


async def test_every_burst_is_one_signed_hand_off_whatever_is_repeated_or_killed(
    database_url: str, qstash: QStashDouble, qstash_server: tuple[Any, str], tmp_path: Path
) -> None:
    drill = TurnDrill(database_url, qstash, qstash_server[1], BASE_ENV, SMALL, tmp_path)
    report = await drill.run()
    assert report.ok, (report.checks, report.figures)
    assert report.figures["burst_turns"] == 30
    assert report.figures["burst_qstash_turn_messages"] == 30
    assert report.figures["echo_new_turns"] == 0
    assert report.figures["writer_turns"] >= 2
    assert report.figures["killed_hand_offs"] == 1
