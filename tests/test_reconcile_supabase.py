"""Reconcile over the Supabase backend (real PostgREST): the lease, the dry run's known
IDs and admission all go through `rpc`, one transaction per call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from ingest.delivery.admission import Admission
from ingest.graph.client import GraphClients
from ingest.reconcile.lease import LeaseStore
from ingest.reconcile.run import Reconciler
from storage.supabase import SupabaseBackend
from tests.doubles.clock import FakeClock
from tests.doubles.graph_api import BASE_URL, GraphApiDouble
from tests.reconcile_kit import ACCOUNT, TOKEN_A, thread
from tests.supabase_stack import SERVICE_ROLE_KEY, SupabaseStack


@pytest.fixture
async def rpc(supabase: SupabaseStack) -> AsyncIterator[SupabaseBackend]:
    backend = SupabaseBackend(supabase.url, SERVICE_ROLE_KEY)
    await backend.open()
    yield backend
    await backend.close()


async def test_a_run_dry_and_real_with_its_lease_through_postgrest(
    rpc: SupabaseBackend, supabase: SupabaseStack
) -> None:
    clock = FakeClock()
    graph = GraphApiDouble(clock=clock.now)
    graph.add_account(ACCOUNT, TOKEN_A)
    graph.add_conversation(ACCOUNT, thread(3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as http:
        clients = GraphClients((GraphAccount(ACCOUNT, Secret(TOKEN_A)),), http, BASE_URL, clock)
        lease = LeaseStore(rpc, holder="supabase-test")
        reconciler = Reconciler(rpc, clients, Admission(rpc), lease)
        (dry,) = await reconciler.run(3600, dry_run=True)
        (real,) = await reconciler.run(3600)
        held = await LeaseStore(rpc, holder="other").claim(ACCOUNT)
        (busy,) = await reconciler.run(3600)
    assert (dry.outcome, dry.recovered, dry.already_stored) == ("done", 3, 0)
    assert (real.outcome, real.recovered) == ("done", 3)
    assert held.claimed and busy.outcome == "running"
    assert await supabase.fetchval("select count(*) from ingest_ledger") == 3
    (row,) = await lease.status()
    assert (row["account_id"], row["running"], row["lease_holder"]) == (ACCOUNT, True, "other")
    assert row["last_summary"]["recovered"] == 3
