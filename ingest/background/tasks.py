"""The background tasks of an instance, listed once, and how they start and stop.

To add a task, add it to `background_tasks`: the web process runs it when `RELAY_IN_WEB`
is true, and the worker (`ingestctl relay`) always does, so the two shapes cannot
drift. A task's `run` runs until cancelled (or until its `stop` asks it to end); it
never raises for a passing failure (it logs, and tries again later).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from ingest.accounts.service import AccountsService
from ingest.config.settings import Settings
from ingest.delivery.relay import Relay
from ingest.lifecycle import retention
from ingest.reconcile.service import ReconcileService
from ingest.turns.relay import TurnRelay
from storage import Backend, StorageError

log = structlog.get_logger(__name__)

RELAY_GRACE_SECONDS = 10.0
TURN_GRACE_SECONDS = 5.0


async def cancel(task: asyncio.Task[None]) -> None:
    """The default stop: cancel, and wait until the task has gone."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass(frozen=True, slots=True)
class BackgroundTask:
    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    stop: Callable[[asyncio.Task[None]], Awaitable[None]] = cancel


@dataclass(frozen=True, slots=True)
class Parts:
    """What the tasks are built from (the app factory and the worker build the same)."""

    settings: Settings
    backend: Backend
    http: httpx.AsyncClient
    relay: Relay
    reconcile: ReconcileService | None = None
    accounts: AccountsService | None = None
    turns: TurnRelay | None = None


def background_tasks(parts: Parts) -> list[BackgroundTask]:
    """Every background task, in start order (they stop in reverse)."""
    settings = parts.settings
    listed = [BackgroundTask("relay", parts.relay.run, stop=_stopping_relay(parts.relay))]
    if parts.turns is not None:
        listed.append(BackgroundTask("turns", parts.turns.run, stop=_stopping_turns(parts.turns)))
    if settings.retention.interval_seconds:
        listed.append(
            BackgroundTask("prune", lambda: retention.run(parts.backend, settings.retention))
        )
    if parts.reconcile is not None and parts.reconcile.schedule is not None:
        listed.append(BackgroundTask("reconcile", parts.reconcile.schedule.run))
    if parts.accounts is not None and (refresh := parts.accounts.refresh_schedule()):
        listed.append(BackgroundTask("token-refresh", refresh.run))
    return listed


def _stopping_relay(relay: Relay) -> Callable[[asyncio.Task[None]], Awaitable[None]]:
    async def stop(task: asyncio.Task[None]) -> None:
        """Finish the pass under way, settle what this instance admitted last, then stop.
        Whatever is still pending is claimed by another instance (or this one's
        successor) once its lease ends."""
        relay.stop()
        try:
            await asyncio.wait_for(task, RELAY_GRACE_SECONDS)
            await relay.drain(deadline_seconds=RELAY_GRACE_SECONDS / 2)
        except (TimeoutError, StorageError) as exc:
            log.warning("relay_stopped_with_work_left", error=type(exc).__name__)
        finally:
            task.cancel()

    return stop


def _stopping_turns(turns: TurnRelay) -> Callable[[asyncio.Task[None]], Awaitable[None]]:
    async def stop(task: asyncio.Task[None]) -> None:
        """Let the hand-offs under way finish (a turn claimed and not settled is claimed
        again by another instance once its lease ends), then stop."""
        turns.stop()
        await asyncio.wait({task}, timeout=TURN_GRACE_SECONDS)
        await cancel(task)

    return stop


class Background:
    """Starts a list of tasks on the running loop; stops them in reverse order."""

    def __init__(self, tasks: Sequence[BackgroundTask]) -> None:
        self.tasks = tuple(tasks)
        self._running: list[tuple[BackgroundTask, asyncio.Task[None]]] = []

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def start(self) -> None:
        for task in self.tasks:
            self._running.append((task, asyncio.create_task(task.run(), name=task.name)))

    async def wait(self) -> None:
        """Until every task has ended (a worker's lifetime: until it is cancelled).
        Cancelling the wait leaves the tasks running, for `stop` to end them in order."""
        if self._running:
            await asyncio.wait([running for _, running in self._running])

    async def stop(self) -> None:
        while self._running:
            task, running = self._running.pop()
            await task.stop(running)
