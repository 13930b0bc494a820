-- `ingest_console_conversations` (20261202200000_console.sql) served the console's first
-- conversation list; the console now reads `ingest_conversations_page` and
-- `ingest_conversation` (20261207400000_see_messages.sql), and nothing calls it. Dropped
-- rather than kept granted to service_role with a shape nobody maintains.
-- `tests/test_schema_guards.py` fails on any function nothing calls.
drop function if exists public.ingest_console_conversations(int);
