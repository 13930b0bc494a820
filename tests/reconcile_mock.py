"""Reconcile against a Graph API answering through `httpx.MockTransport`: raw bodies a
double would not produce (`1e400`, control characters, foreign paging links)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from ingest.delivery.admission import Admission
from ingest.graph.client import GraphClients
from ingest.reconcile.lease import LeaseStore
from ingest.reconcile.run import Reconciler
from storage.postgres import PostgresBackend
from tests.doubles.clock import FakeClock
from tests.reconcile_kit import ACCOUNT, CUSTOMER, OTHER_ACCOUNT, TOKEN_A, TOKEN_B

HOUR = 3600.0
HOUR_INT = 3600
GRAPH = "https://graph.instagram.com/v21.0"
Handler = Callable[[httpx.Request], httpx.Response]


def raw(body: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body.encode(),
                          headers={"content-type": "application/json"})  # fmt: skip


def clients_for(handler: Handler, clock: FakeClock, *accounts: GraphAccount) -> GraphClients:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return GraphClients(accounts, http, GRAPH, clock)


def mocked(
    handler: Handler, backend: PostgresBackend, clock: FakeClock, *accounts: GraphAccount,
    sink: Admission | None = None,
) -> Reconciler:  # fmt: skip
    lease = LeaseStore(backend, holder="edges")
    clients = clients_for(handler, clock, *accounts)
    return Reconciler(backend, clients, sink or Admission(backend), lease)


def both_accounts() -> tuple[GraphAccount, GraphAccount]:
    return GraphAccount(ACCOUNT, Secret(TOKEN_A)), GraphAccount(OTHER_ACCOUNT, Secret(TOKEN_B))


def a_message(mid: str, created: object) -> dict[str, object]:
    return {"id": mid, "created_time": created, "from": {"id": CUSTOMER},
            "to": {"data": [{"id": ACCOUNT}]}, "message": "hi"}  # fmt: skip


def one_conversation(token: str) -> str:
    return json.dumps({"data": [{"id": f"c_{token}", "updated_time": int(time.time())}]})


def the_account() -> GraphAccount:
    return GraphAccount(ACCOUNT, Secret(TOKEN_A))


def recording(sent: list[httpx.URL]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url)
        return raw('{"error": {"code": 100, "message": "no"}}', 400)

    return handler
