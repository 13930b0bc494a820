"""The edge: what Meta and other services talk to, and the first thing every delivery meets.

Holds the webhook (GET handshake, POST deliveries), the `X-Hub-Signature-256` check, the
bounded JSON reader (`safe_json`), the parser that turns Meta's payload into contract
events (`parser`, with `items` building one event per item), the internal route, and the
deadline every request body must meet (`body_deadline`, an ASGI middleware).
It verifies, parses and hands events to a sink; it stores nothing itself.

May import `contracts`, `ingest.config`, `ingest.metrics` and the sink protocol of
`ingest.delivery.acceptance`. Imported by the app factory and `ingest.ops.sample`.
"""
