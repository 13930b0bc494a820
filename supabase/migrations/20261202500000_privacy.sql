-- Privacy: erasure on request, Meta's data-deletion and deauthorize callbacks, retention.
--
-- Erasing a customer (or a whole account) deletes what we hold about them and leaves a
-- tombstone: a keyed hash of account + IGSID (never the id itself), with the time of the
-- erasure. Admission and the consumer (and so reconcile, which admits like a webhook)
-- refuse to store an event of a tombstoned person that is not newer than the erasure:
-- a Meta redelivery, a QStash retry or DLQ redrive in flight, a reconcile pass. A
-- message the person sends afterwards is new data, and is stored.
--
-- The ledger keeps an erased event's dedup key (its row, with no payload) until
-- retention prunes it: the minimum that keeps erased data from coming back.

-- --- the key, the tombstones, the accounts ------------------------------------------------

-- The key of the tombstones' hash: made here, once, from the database's strong random
-- source (gen_random_uuid), so no setting has to be carried from deploy to deploy.
create table public.ig_privacy (
    id  boolean primary key default true check (id),
    key text not null default replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')
);
insert into public.ig_privacy (id) values (true) on conflict do nothing;

create table public.ig_tombstones (
    key       text primary key,
    scope     text not null check (scope in ('customer', 'account')),
    erased_at timestamptz not null default now()
);

-- The business accounts we know: their professional-account id (entry.id), the app-scoped
-- user id Meta's callbacks name, and whether the business disconnected the app.
create table public.ig_accounts (
    account_id      text primary key,
    app_user_id     text unique,
    added_at        timestamptz not null default now(),
    deauthorized_at timestamptz
);

-- Meta's data-deletion requests: what a status URL shows (nothing personal).
create table public.ig_deletion_requests (
    code         text primary key,
    request_key  text not null unique,   -- sha256 of the signed request: the same one twice is one
    status       text not null check (status in ('erased', 'no data held')),
    requested_at timestamptz not null default now(),
    completed_at timestamptz
);

alter table public.ig_privacy enable row level security;
alter table public.ig_tombstones enable row level security;
alter table public.ig_accounts enable row level security;
alter table public.ig_deletion_requests enable row level security;

-- An erased event is settled with no payload: `erased` joins the settled states.
alter table public.ingest_ledger drop constraint ingest_ledger_state_check;
alter table public.ingest_ledger add constraint ingest_ledger_state_check
    check (state in ('pending', 'published', 'direct', 'held', 'failed', 'erased'));

-- --- who an event is about, and whether they were erased ----------------------------------

create function public.ig_tombstone_key(p_account text, p_igsid text)
returns text
language sql
stable
set search_path = ''
as $$
    select encode(sha256(convert_to(
        (select key from public.ig_privacy where id) || ':' || coalesce(p_account, '') || ':'
        || coalesce(p_igsid, ''), 'UTF8')), 'hex');
$$;

-- The customer an event is about: the sender, unless the business sent it.
create function public.ig_customer_of(e jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
    select case when e->>'sender_id' is distinct from e->>'account_id'
                then e->>'sender_id' else e->>'recipient_id' end;
$$;

-- Whether `e` is about a person (or an account) erased after `e` happened (an event
-- without a time counts as before).
create function public.ig_is_erased(e jsonb)
returns boolean
language sql
stable
set search_path = ''
as $$
    select exists (
        select 1 from public.ig_tombstones t
        where t.key in (public.ig_tombstone_key(e->>'account_id', public.ig_customer_of(e)),
                        public.ig_tombstone_key(e->>'account_id', null))
          and (e->>'timestamp' is null
               or public.ig_ms_to_timestamptz(e->>'timestamp') <= t.erased_at));
$$;

-- --- admission and the consumer respect the tombstones -------------------------------------

-- As before (20261202000100_relay.sql), and: an event of an erased person is recorded as
-- `erased` (its dedup key, no payload) and never relayed. Returns {"new": [...],
-- "erased": [...]}. The check costs nothing while no one was ever erased.
create or replace function public.ingest_admit(p_events jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_erasing boolean := exists (select 1 from public.ig_tombstones);
    v_new     jsonb;
    v_erased  jsonb;
begin
    with incoming as (
        select e, v_erasing and public.ig_is_erased(e) as erased
        from jsonb_array_elements(p_events) e
    ), inserted as (
        insert into public.ingest_ledger
            (dedup_id, kind, account_id, sender_id, limit_key, event, state, settled_at)
        select e->>'dedup_id', e->>'kind', e->>'account_id', e->>'sender_id',
               case when e->>'sender_id' is distinct from e->>'account_id'
                         and coalesce(e->>'direction', 'in') = 'in'
                         and not coalesce((e->>'is_self')::boolean, false)
                    then e->>'sender_id' end,
               case when erased then null else e end,
               case when erased then 'erased' else 'pending' end,
               case when erased then now() end
        from incoming
        on conflict (dedup_id) do nothing
        returning dedup_id, state
    )
    select coalesce(jsonb_agg(dedup_id) filter (where state = 'pending'), '[]'::jsonb),
           coalesce(jsonb_agg(dedup_id) filter (where state = 'erased'), '[]'::jsonb)
    into v_new, v_erased
    from inserted;
    return jsonb_build_object('new', v_new, 'erased', v_erased);
exception when others then
    return public.ingest_admit_each(p_events);
end;
$$;

-- The consumer's door: an erased person's event is answered, not stored.
create or replace function public.ig_apply_event(p_event jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_outcome text;
begin
    if coalesce(p_event->>'v', '') not in ('1', '2') then
        raise exception 'unsupported contract version: %', p_event->>'v' using errcode = '22023';
    end if;
    if coalesce(p_event->>'dedup_id', '') = '' or p_event->>'account_id' is null then
        raise exception 'event lacks dedup_id or account_id' using errcode = '22023';
    end if;
    if exists (select 1 from public.ig_tombstones) and public.ig_is_erased(p_event) then
        return jsonb_build_object('outcome', 'erased');
    end if;
    if coalesce((p_event->>'is_test')::boolean, false) then
        return jsonb_build_object('outcome', public.ig_apply_other(p_event));
    end if;
    v_outcome := case p_event->>'kind'
        when 'message' then public.ig_apply_message(p_event)
        when 'message_edit' then public.ig_apply_edit(p_event)
        when 'message_unsend' then public.ig_apply_unsend(p_event)
        when 'reaction' then public.ig_apply_reaction(p_event)
        when 'read' then public.ig_apply_other(p_event)
        when 'postback' then public.ig_apply_other(p_event)
        when 'referral' then public.ig_apply_other(p_event)
        when 'change' then public.ig_apply_other(p_event)
        when 'unsupported' then public.ig_apply_other(p_event)
    end;
    if v_outcome is null then
        raise exception 'unknown event kind: %', p_event->>'kind' using errcode = '22023';
    end if;
    return jsonb_build_object('outcome', v_outcome);
end;
$$;

-- --- erasure --------------------------------------------------------------------------------

-- Erase one customer (`p_igsid`; of one account, or of every account with `p_account`
-- null): their profile; every message to or from them (rows deleted, attachments too);
-- their reactions and other events, and every event about their messages; the payloads
-- of their ledger rows (rows not yet settled become `erased`); the bodies of their dead
-- letters; audit details that quote them. Then the tombstone. `p_dry_run` counts without changing anything. Returns
-- what it removed, by table.
create function public.ig_forget(
    p_igsid text, p_account text default null, p_dry_run boolean default false)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_mids     text[];
    v_accounts text[];
    v_ids      text[];
    v_counts   jsonb;
begin
    select coalesce(array_agg(mid), '{}'), coalesce(array_agg(distinct account_id), '{}')
    into v_mids, v_accounts
    from public.ig_messages
    where (sender_id = p_igsid or recipient_id = p_igsid)
      and (p_account is null or account_id = p_account);
    select coalesce(array_agg(dedup_id), '{}') into v_ids
    from public.ingest_ledger
    where (sender_id = p_igsid or event->>'recipient_id' = p_igsid)
      and (p_account is null or account_id = p_account);
    -- the accounts to tombstone under: the one named, else every account they appear in,
    -- and every account we know (to refuse what is still in flight)
    v_accounts := case when p_account is not null then array[p_account] else array(
        select v_accounts[i] from generate_subscripts(v_accounts, 1) i
        union select account_id from public.ig_profiles where igsid = p_igsid
        union select account_id from public.ig_events where sender_id = p_igsid
        union select account_id from public.ingest_ledger where dedup_id = any(v_ids)
        union select account_id from public.ig_accounts) end;
    v_counts := jsonb_build_object(
        'profiles', (select count(*) from public.ig_profiles
                     where igsid = p_igsid and (p_account is null or account_id = p_account)),
        'messages', coalesce(array_length(v_mids, 1), 0),
        'attachments', (select count(*) from public.ig_attachments where mid = any(v_mids)),
        'reactions', (select count(*) from public.ig_reactions
                      where (sender_id = p_igsid or mid = any(v_mids))
                        and (p_account is null or account_id = p_account)),
        'events', (select count(*) from public.ig_events
                   where (sender_id = p_igsid or mid = any(v_mids)
                          or event->>'recipient_id' = p_igsid)
                     and (p_account is null or account_id = p_account)),
        'ledger_payloads', coalesce(array_length(v_ids, 1), 0),
        'dead_letters', (select count(*) from public.dead_letters d
                         where d.dedup_id = any(v_ids)
                            or d.source_body->>'sender_id' = p_igsid
                            or d.source_body->>'recipient_id' = p_igsid),
        'audit_details', (select count(*) from public.ingest_audit a
                          where strpos(a.detail::text, p_igsid) > 0
                             or exists (select 1 from unnest(v_mids) m
                                        where strpos(a.detail::text, m) > 0)));
    if p_dry_run then
        return v_counts;
    end if;
    delete from public.ig_attachments where mid = any(v_mids);
    delete from public.ig_reactions
    where (sender_id = p_igsid or mid = any(v_mids)) and (p_account is null or account_id = p_account);
    delete from public.ig_events
    where (sender_id = p_igsid or mid = any(v_mids) or event->>'recipient_id' = p_igsid)
      and (p_account is null or account_id = p_account);
    delete from public.ig_messages where mid = any(v_mids);
    delete from public.ig_profiles
    where igsid = p_igsid and (p_account is null or account_id = p_account);
    update public.dead_letters d
    set source_body = null, last_response = null, callback = '{}'::jsonb
    where d.dedup_id = any(v_ids)
       or d.source_body->>'sender_id' = p_igsid or d.source_body->>'recipient_id' = p_igsid;
    -- console and CLI audit details that quote them (an operator's note, a looked-up id)
    update public.ingest_audit a
    set detail = jsonb_build_object('erased', true)
    where strpos(a.detail::text, p_igsid) > 0
       or exists (select 1 from unnest(v_mids) m where strpos(a.detail::text, m) > 0);
    update public.ingest_ledger
    set event = null, event_text = null, sender_id = null, limit_key = null,
        reason = case when state in ('pending', 'held', 'failed') then 'erased' else reason end,
        state = case when state in ('pending', 'held', 'failed') then 'erased' else state end,
        settled_at = coalesce(settled_at, now()), updated_at = now()
    where dedup_id = any(v_ids);
    insert into public.ig_tombstones (key, scope)
    select public.ig_tombstone_key(a, p_igsid), 'customer'
    from unnest(v_accounts) a
    where a is not null
    on conflict (key) do update set erased_at = now();
    return v_counts;
end;
$$;

-- Erase a whole account (Meta's data-deletion callback): every conversation stored under
-- it, its customers' profiles, its events, its ledger payloads and dead-letter bodies;
-- then an account tombstone. The account row stays (without its app user id).
create function public.ig_forget_account(p_account text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_counts jsonb;
begin
    v_counts := jsonb_build_object(
        'messages', (select count(*) from public.ig_messages where account_id = p_account),
        'profiles', (select count(*) from public.ig_profiles where account_id = p_account),
        'events', (select count(*) from public.ig_events where account_id = p_account),
        'reactions', (select count(*) from public.ig_reactions where account_id = p_account));
    delete from public.ig_attachments where account_id = p_account
        or mid in (select mid from public.ig_messages where account_id = p_account);
    delete from public.ig_reactions where account_id = p_account;
    delete from public.ig_events where account_id = p_account;
    delete from public.ig_messages where account_id = p_account;
    delete from public.ig_profiles where account_id = p_account;
    update public.dead_letters
    set source_body = null, last_response = null, callback = '{}'::jsonb
    where source_body->>'account_id' = p_account
       or dedup_id in (select dedup_id from public.ingest_ledger where account_id = p_account);
    update public.ingest_ledger
    set event = null, event_text = null, sender_id = null, limit_key = null,
        reason = case when state in ('pending', 'held', 'failed') then 'erased' else reason end,
        state = case when state in ('pending', 'held', 'failed') then 'erased' else state end,
        settled_at = coalesce(settled_at, now()), updated_at = now()
    where account_id = p_account;
    insert into public.ig_tombstones (key, scope)
    values (public.ig_tombstone_key(p_account, null), 'account')
    on conflict (key) do update set erased_at = now();
    return v_counts;
end;
$$;

-- --- Meta's callbacks ---------------------------------------------------------------------

-- A data-deletion request, once: the same signed request again returns the same code.
-- p_code is the code to use if the request is new. Returns {code, status, new}.
create function public.ig_data_deletion(p_request_key text, p_app_user_id text, p_code text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_request public.ig_deletion_requests;
    v_account text;
begin
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

create function public.ig_data_deletion_status(p_code text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object('confirmation_code', code, 'status', status,
                              'requested_at', requested_at, 'completed_at', completed_at)
    from public.ig_deletion_requests where code = p_code;
$$;

-- The business disconnected the app: recorded (status, metrics, console); nothing erased.
create function public.ig_deauthorize(p_app_user_id text)
returns jsonb
language sql
set search_path = ''
as $$
    with marked as (
        update public.ig_accounts set deauthorized_at = now()
        where app_user_id = p_app_user_id
        returning account_id
    )
    select jsonb_build_object('accounts', count(*)) from marked;
$$;

-- `ingestctl accounts add` (p_reconnect: the business is connected again) and the service's
-- start (an account whose token is configured; a disconnection it recorded stays): map an
-- account to the app-scoped user id Meta's callbacks name.
create function public.ig_add_account(
    p_account text, p_app_user_id text default null, p_reconnect boolean default true)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.ig_accounts as a (account_id, app_user_id)
    values (p_account, p_app_user_id)
    on conflict (account_id) do update
    set app_user_id = coalesce(excluded.app_user_id, a.app_user_id),
        deauthorized_at = case when p_reconnect then null else a.deauthorized_at end
    returning jsonb_build_object('account_id', a.account_id, 'app_user_id', a.app_user_id);
$$;

create function public.ig_list_accounts()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'account_id', account_id, 'app_user_id', app_user_id, 'added_at', added_at,
        'deauthorized_at', deauthorized_at) order by account_id), '[]'::jsonb)
    from public.ig_accounts;
$$;

-- --- retention ------------------------------------------------------------------------------

-- One batch of pruning: settled ledger rows (published, direct, erased) admitted more
-- than p_ledger_days ago, and dead-letter bodies older than p_dead_letter_days. Held and
-- failed rows are never pruned; tombstones are kept. Small batches, each its own
-- transaction, so admissions never wait on it. Returns what it removed this batch.
create function public.ingest_prune(p_ledger_days int, p_dead_letter_days int, p_batch int)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_ledger int;
    v_letters int;
begin
    with old as (
        select dedup_id from public.ingest_ledger
        where state in ('published', 'direct', 'erased')
          and admitted_at < now() - make_interval(days => p_ledger_days)
        limit p_batch
        for update skip locked
    )
    delete from public.ingest_ledger l using old where l.dedup_id = old.dedup_id;
    get diagnostics v_ledger = row_count;
    with old as (
        select id from public.dead_letters
        where created_at < now() - make_interval(days => p_dead_letter_days)
          and (source_body is not null or last_response is not null or callback <> '{}'::jsonb)
        limit p_batch
        for update skip locked
    )
    update public.dead_letters d
    set source_body = null, last_response = null, callback = '{}'::jsonb
    from old where d.id = old.id;
    get diagnostics v_letters = row_count;
    return jsonb_build_object('ledger_rows', v_ledger, 'dead_letter_bodies', v_letters);
end;
$$;

-- The status gains who disconnected and how many tombstones are kept.
create or replace function public.ingest_status()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'kill_switch', s.kill_switch,
        'hold', s.kill_switch and s.hold,
        'reason', s.reason,
        'changed_by', s.changed_by,
        'changed_at', s.changed_at,
        'breaker_tripped', s.breaker_tripped_at is not null and s.kill_switch,
        'breaker_tripped_at', s.breaker_tripped_at,
        'pending', (select count(*) from public.ingest_ledger where state = 'pending'),
        'held', (select count(*) from public.ingest_ledger where state = 'held'),
        'failed', (select count(*) from public.ingest_ledger where state = 'failed'),
        'oldest_pending_seconds', (
            select extract(epoch from now() - min(admitted_at))::float8
            from public.ingest_ledger where state = 'pending'),
        'qstash_messages_today', coalesce((
            select messages from public.qstash_spend
            where day = (now() at time zone 'utc')::date), 0),
        'deauthorized_accounts', (
            select count(*) from public.ig_accounts where deauthorized_at is not null),
        'tombstones', (select count(*) from public.ig_tombstones)
    )
    from public.safety_state s
    where s.id;
$$;

select public.ingest_secure_functions();
