-- Signing out of the console ends the session, not only the cookie.
--
-- The session lives in a signed cookie; clearing it on sign-out left a copy valid until
-- it expired (12 hours). A signed-out session is now remembered, by a digest of its ID
-- (never the ID), until the moment the cookie would have expired anyway; the console
-- refuses it from then on. The table holds at most one row per sign-out of the last
-- 12 hours: each sign-out removes the rows that have passed.

create table public.ingest_console_signed_out (
    sid_digest text primary key,
    until      timestamptz not null
);
alter table public.ingest_console_signed_out enable row level security;

create function public.ingest_console_sign_out(p_sid_digest text, p_seconds int)
returns jsonb
language sql
set search_path = ''
as $$
    delete from public.ingest_console_signed_out where until < now();
    insert into public.ingest_console_signed_out (sid_digest, until)
    values (p_sid_digest, now() + make_interval(secs => p_seconds))
    on conflict (sid_digest) do nothing;
    select jsonb_build_object('signed_out', true);
$$;

create function public.ingest_console_is_signed_out(p_sid_digest text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object('signed_out', exists (
        select 1 from public.ingest_console_signed_out
        where sid_digest = p_sid_digest and until > now()));
$$;

select public.ingest_secure_functions();
