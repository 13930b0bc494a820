"""Reconcile: recovering, from the Graph API, the messages Meta never delivered.

`run` walks every configured account once (`ingestctl reconcile`, or on a schedule in
`service`) under a database `lease` so two instances never walk one account; `walk`
pages an account's conversations and messages; `fetch` asks for and reads one message;
`missing` fetches a message a webhook named but did not carry (a reply's original);
`metrics` counts what runs saw. Recovered messages are admitted like webhook events.

May import `contracts`, `storage`, `ingest.config`, `ingest.graph` and the sink of
`ingest.delivery`. Imported by the app factory and `ingest.ops.reconcile`.
"""
