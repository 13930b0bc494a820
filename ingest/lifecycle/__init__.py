"""Lifecycle: what happens to data and to the database outside the delivery path.

`privacy` answers Meta's deauthorize and data-deletion callbacks (erasure);
`retention` prunes settled ledger rows and dead letters on a schedule; `release` is the
deploy step that applies migrations (`python -m ingest.lifecycle.release`).

May import `contracts`, `storage`, `ingest.config` and `ingest.logging`. Imported by the
app factory and `ingest.ops`.
"""
