"""The Graph API client: calls, errors, rate limits, and Meta's shapes read into events.

`client` makes the calls (one client per account and token, bounded retries,
`GraphAccountError` for what ends an account's work); `rate_limit` keeps each account
within Meta's calls per second; `usage` reads Meta's usage headers; `messages` turns a
Graph message into the contract event a webhook would have made.

May import `contracts` and `ingest.config` (the account-token type). Imported by
`ingest.reconcile`, `ingest.accounts` and `ingest.ops.reconcile`.
"""
