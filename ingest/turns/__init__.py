"""Conversation turns: one signed hand-off per customer burst, to the bot or app downstream.

The turn itself is SQL (`supabase/migrations/20261207200000_turns.sql`): opened and
extended where the message is stored, closed and claimed by `ingest_turn_claim`. This
package is the relay's half: `relay` claims due turns and settles each; `transport` hands
one off (QStash, one message per turn, or a direct POST); `signing` writes the Standard
Webhooks headers; `callback` takes QStash's failure callbacks for turns; `metrics` counts.

May import `contracts`, `storage`, `ingest.config` and `ingest.delivery`. Imported by the
app factory (`ingest.app`, `ingest.components`), `ingest.background`, `ingest.ops` and
`ingest.console`.
"""
