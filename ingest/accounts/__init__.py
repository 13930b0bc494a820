"""Connected accounts: the registry, encrypted tokens, connect, refresh, re-authorisation.

`cipher` encrypts tokens at rest (AES-GCM, a key id per ciphertext, so keys rotate);
`registry` is the `ig_accounts` rows through our SQL functions; `book` is what this
process knows of every account's token (connected ones decrypted, environment ones
from the settings) and marks an account `needs_reauth` on a code 190; `meta` makes the
OAuth and token calls to Meta; `connect` is the Instagram Login flow (signed,
single-use `state`, the callback route); `refresh` keeps Instagram-Login tokens alive
on a schedule, one instance at a time.

May import `contracts`, `storage`, `ingest.config` and `ingest.graph`. Imported by the
app factory (`ingest.app`), `ingest.ops` and the console.
"""
