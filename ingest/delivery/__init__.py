"""Delivery: the ledger and the relay, from Meta's 200 to QStash (or direct storage).

`acceptance` is the sink protocol the edge hands events to; `admission` commits them to
the ledger (`coalesce` groups concurrent requests into one statement); `relay` claims
pending rows under a lease, applies the safety gate, and publishes them (`publisher`,
QStash's batch API) or stores them directly; `settlement` holds what a claim hands a
relay pass and how each row ends.

May import `contracts`, `storage` and `ingest.config`. Imported by the edge, reconcile,
the app factory (`ingest.app`, `ingest.components`), `ingest.metrics` and `ingest.ops`.
"""
