-- Meta's callbacks, replayed: one signed request is one request, and a disconnection
-- issued before the business reconnected changes nothing.
--
-- The service now keys a signed request on its signature's bytes (sha256), decoded from
-- canonical base64url only, so no spelling of one request reads as a second one. Here:
-- - a data-deletion request takes a lock on its key first, so concurrent copies of one
--   request erase once (before, each ran the account erasure and only the insert raced);
-- - a deauthorize request is remembered by its key for two days (a request is refused
--   after one), and counts once;
-- - `ig_accounts.reconnected_at` says when a disconnected (or erased) account was added
--   again; a deauthorize issued before that moment is a replay and is ignored.

alter table public.ig_accounts add column reconnected_at timestamptz;

create table public.ig_meta_requests (
    request_key text primary key,     -- sha256 of the signed request's signature
    kind        text not null check (kind in ('deauthorize')),
    received_at timestamptz not null default now()
);
alter table public.ig_meta_requests enable row level security;

-- As in 20261202500000_privacy.sql, and: one request at a time per key.
create or replace function public.ig_data_deletion(p_request_key text, p_app_user_id text, p_code text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_request public.ig_deletion_requests;
    v_account text;
begin
    perform pg_advisory_xact_lock(hashtextextended('ig_data_deletion/' || p_request_key, 0));
    select * into v_request from public.ig_deletion_requests where request_key = p_request_key;
    if found then
        return jsonb_build_object('code', v_request.code, 'status', v_request.status, 'new', false);
    end if;
    select account_id into v_account from public.ig_accounts where app_user_id = p_app_user_id;
    if v_account is not null then
        perform public.ig_forget_account(v_account);
        update public.ig_accounts set app_user_id = null where account_id = v_account;
    end if;
    insert into public.ig_deletion_requests (code, request_key, status, completed_at)
    values (p_code, p_request_key,
            case when v_account is null then 'no data held' else 'erased' end, now())
    on conflict (request_key) do nothing;
    select * into v_request from public.ig_deletion_requests where request_key = p_request_key;
    return jsonb_build_object('code', v_request.code, 'status', v_request.status, 'new', true);
end;
$$;

-- As in 20261202500000_privacy.sql, and: a reconnection (a disconnected account added
-- again, or an erased one given its app user id back) is dated.
create or replace function public.ig_add_account(
    p_account text, p_app_user_id text default null, p_reconnect boolean default true)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.ig_accounts as a (account_id, app_user_id)
    values (p_account, p_app_user_id)
    on conflict (account_id) do update
    set app_user_id = coalesce(excluded.app_user_id, a.app_user_id),
        deauthorized_at = case when p_reconnect then null else a.deauthorized_at end,
        reconnected_at = case
            when p_reconnect and (a.deauthorized_at is not null
                                  or (a.app_user_id is null and excluded.app_user_id is not null))
            then now() else a.reconnected_at end
    returning jsonb_build_object('account_id', a.account_id, 'app_user_id', a.app_user_id);
$$;

-- The business disconnected the app: recorded once per signed request (p_request_key),
-- and not at all when issued (p_issued_at, epoch seconds) before the account's latest
-- reconnection. Without a key (an operator's SQL) it is recorded as before.
drop function public.ig_deauthorize(text);
create function public.ig_deauthorize(
    p_app_user_id text, p_request_key text default null, p_issued_at bigint default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_count int := 0;
begin
    if p_request_key is not null then
        delete from public.ig_meta_requests where received_at < now() - interval '2 days';
        insert into public.ig_meta_requests (request_key, kind)
        values (p_request_key, 'deauthorize')
        on conflict (request_key) do nothing;
        if not found then
            return jsonb_build_object('accounts', 0, 'new', false);
        end if;
    end if;
    update public.ig_accounts set deauthorized_at = now()
    where app_user_id = p_app_user_id
      and (p_issued_at is null or reconnected_at is null
           -- issued_at has whole seconds: one issued in the second of a reconnect counts
           or to_timestamp(p_issued_at) >= date_trunc('second', reconnected_at));
    get diagnostics v_count = row_count;
    return jsonb_build_object('accounts', v_count, 'new', true);
end;
$$;

select public.ingest_secure_functions();
