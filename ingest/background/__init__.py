"""Background work: every task that runs beside the webhook, listed in one place.

`tasks` holds the list (`background_tasks`: the relay, the turn relay, retention, the
reconcile schedule, the token refresh, and whatever comes next) and `Background`, which
starts them and stops them in reverse order. The web process starts them when
`RELAY_IN_WEB` is true (the default); the worker (`ingestctl relay`, the Procfile's
`worker:`) always starts all of them, through `worker`, which builds what they need as
the app factory does.

May import `contracts`, `storage`, `consumers.processing` and every room of `ingest` but
`ops` and `console`. Imported by the app factory (`ingest.app`) and `ingest.ops`.
"""
