-- Delivery pipeline v2: the ledger commit is Meta's 200; a relay owns every admitted row.
--
-- A row is `pending` from admission until a relay settles it as `published` (QStash took
-- it), `direct` (stored in-process), `held` (the operator chose to hold) or `failed`
-- (never storable, with its reason; replayable). Admission is one set-based insert with no
-- lock. The safety gate moved to the relay's claim, where it decides what may cost a
-- QStash message; whatever it refuses is stored directly, never dropped.
--
-- Every function here fixes its search_path (Supabase's advisor: mutable search paths let
-- a caller's schema shadow ours), so every name is schema-qualified.

-- --- the ledger ------------------------------------------------------------------------

alter table public.ingest_ledger drop constraint ingest_ledger_state_check;
update public.ingest_ledger set state = 'pending' where state = 'new';
alter table public.ingest_ledger
    add constraint ingest_ledger_state_check
        check (state in ('pending', 'published', 'direct', 'held', 'failed')),
    alter column state set default 'pending',
    alter column attempts set default 0,
    -- pending rows: claimable from this time (admission, or the end of a backoff) once no
    -- claim's lease (lease_until) holds them
    add column due_at timestamptz default now(),
    add column claim_token uuid,
    -- the customer whose per-sender limits this event counts against (inbound events only)
    add column limit_key text,
    -- when a QStash message was reserved for this row: spend is counted once per row
    add column reserved_at timestamptz,
    add column deduplicated boolean,
    add column settled_at timestamptz,
    -- the item as text, for a row the database refused to hold as jsonb (state failed)
    add column event_text text;
update public.ingest_ledger set due_at = now(), lease_until = null where state = 'pending';
update public.ingest_ledger set due_at = null where state <> 'pending';
update public.ingest_ledger
set settled_at = coalesce(published_at, updated_at)
where state in ('published', 'direct');
-- Room on each page for a row's next version: a claim then updates in place (HOT: no
-- index entry), because it touches no indexed column (the lease is not indexed).
alter table public.ingest_ledger set (fillfactor = 70);

drop index if exists public.ingest_ledger_pending_idx;
drop index if exists public.ingest_ledger_sender_idx;
create index ingest_ledger_due_idx on public.ingest_ledger (due_at) where state = 'pending';
create index ingest_ledger_problems_idx
    on public.ingest_ledger (state, admitted_at) where state in ('held', 'failed');
-- per-sender spend: a customer's events of the last day, checked for their reservations
create index ingest_ledger_sender_idx
    on public.ingest_ledger (limit_key, admitted_at) where limit_key is not null;

-- --- the safety gate's state -------------------------------------------------------------

-- `hold`: the kill switch holds events (nothing published, nothing stored) instead of
-- storing them directly. A switch left on by hand before this upgrade meant "hold".
alter table public.safety_state add column hold boolean not null default false;
update public.safety_state set hold = kill_switch and changed_by is distinct from 'breaker';

-- QStash messages reserved per UTC day (the daily limit, and the spend history) and per
-- 10-second bucket (the burst breaker's window, kept a day).
create table public.qstash_spend (
    day      date primary key,
    messages integer not null default 0
);
create table public.qstash_spend_buckets (
    bucket   timestamptz primary key,
    messages integer not null
);
alter table public.qstash_spend enable row level security;
alter table public.qstash_spend_buckets enable row level security;
drop table public.ingest_rate_buckets;

-- --- admission ---------------------------------------------------------------------------

drop function public.ingest_admit(jsonb, jsonb);
drop function public.ingest_mark(text[], text, text[]);
drop function public.ingest_release(text[]);
drop function public.ingest_claim_for_replay(text[], text, integer, integer);

-- Admit the events of one or more deliveries: one insert, linear, no lock. p_events is an
-- array of contract events, each with its dedup_id. Returns {"new": [dedup_id, …]}; every
-- other event was already in the ledger (a duplicate costs no relay work and no QStash
-- message). If the database refuses anything, the events are admitted one by one instead.
create function public.ingest_admit(p_events jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_new jsonb;
begin
    with inserted as (
        insert into public.ingest_ledger (dedup_id, kind, account_id, sender_id, limit_key, event)
        select e->>'dedup_id', e->>'kind', e->>'account_id', e->>'sender_id',
               -- only a customer's own inbound events count against per-sender limits
               case when e->>'sender_id' is distinct from e->>'account_id'
                         and coalesce(e->>'direction', 'in') = 'in'
                         and not coalesce((e->>'is_self')::boolean, false)
                    then e->>'sender_id' end,
               e
        from jsonb_array_elements(p_events) e
        on conflict (dedup_id) do nothing
        returning dedup_id
    )
    select coalesce(jsonb_agg(dedup_id), '[]'::jsonb) into v_new from inserted;
    return jsonb_build_object('new', v_new);
exception when others then
    return public.ingest_admit_each(p_events);
end;
$$;

-- The slow path of `ingest_admit`: each event in its own subtransaction. An event the
-- database refuses is recorded as `failed` with its raw as text and the reason, so the
-- others (and the other deliveries sharing the call) are unaffected; one that cannot
-- even be recorded is returned as `unwritable` (only its delivery is refused).
create function public.ingest_admit_each(p_events jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_event      jsonb;
    v_id         text;
    v_state      text;
    v_error      text;
    v_new        text[] := '{}'::text[];
    v_failed     text[] := '{}'::text[];
    v_unwritable text[] := '{}'::text[];
begin
    for v_event in select e from jsonb_array_elements(p_events) e loop
        v_id := v_event->>'dedup_id';
        begin
            insert into public.ingest_ledger (dedup_id, kind, account_id, sender_id, limit_key, event)
            values (
                v_id, v_event->>'kind', v_event->>'account_id', v_event->>'sender_id',
                case when v_event->>'sender_id' is distinct from v_event->>'account_id'
                          and coalesce(v_event->>'direction', 'in') = 'in'
                          and not coalesce((v_event->>'is_self')::boolean, false)
                     then v_event->>'sender_id' end,
                v_event)
            on conflict (dedup_id) do nothing;
            if found then
                v_new := v_new || v_id;
            end if;
        exception when others then
            get stacked diagnostics v_state = returned_sqlstate, v_error = message_text;
            begin
                insert into public.ingest_ledger
                    (dedup_id, kind, state, reason, event_text, due_at, settled_at)
                values (
                    v_id, coalesce(v_event->>'kind', 'unknown'), 'failed',
                    format('refused at admission: %s %s',
                                      v_state, left(v_error, 300)),
                    v_event::text, null, now())
                on conflict (dedup_id) do nothing;
                if found then
                    v_failed := v_failed || v_id;
                end if;
            exception when others then
                v_unwritable := v_unwritable || v_id;
            end;
        end;
    end loop;
    return jsonb_build_object(
        'new', to_jsonb(v_new),
        'failed', to_jsonb(v_failed),
        'unwritable', to_jsonb(v_unwritable));
end;
$$;

-- --- the relay ---------------------------------------------------------------------------

-- Claim up to p_limit due pending rows for one relay pass and decide, under one lock for
-- every instance, what each may cost:
--   hold     the kill switch holds (state becomes `held`: nothing published or stored);
--   direct   store in-process, zero QStash messages (reason says why: kill_switch,
--            qstash_off, sender_hourly_limit, sender_daily_limit, daily_limit, breaker,
--            already_published, dedup_window_passed);
--   publish  one QStash message, reserved now and counted once per row: a re-claim of a
--            row reserved less than 9 minutes ago re-publishes under the same dedup ID,
--            which QStash absorbs (its window is 10 minutes), and costs nothing new.
-- A claim is a lease: rows not settled within p_lease_seconds are claimable again.
--
-- p_limits: {breaker_max_events, breaker_window_seconds, sender_hourly_limit,
-- sender_daily_limit, daily_messages}. p_template: how a `/v2/batch` item is written
-- ({prefix, middle, suffix}: item = prefix || JSON(dedup_id) || middle || JSON(event as
-- text) || suffix; null when QStash is not configured): the rows to publish come back as
-- ready batch bodies of up to p_chunk items, so the relay forwards bytes.
-- Returns {token, reserved, tripped, held: [{dedup_id, age_seconds}], direct: [{dedup_id,
-- reason, event, attempts, age_seconds}], batches: [{ids, ages, body}]}.
create function public.ingest_relay_claim(
    p_limit int, p_lease_seconds int, p_limits jsonb, p_template jsonb default null,
    p_chunk int default 100)
returns jsonb
language plpgsql
set search_path = ''
-- The claim must walk the pending index in order and stop at p_limit: with a bitmap scan
-- the planner would sort every due row first (a backlog makes that quadratic).
set enable_bitmapscan = off
as $$
declare
    v_safety   public.safety_state;
    v_token    uuid := gen_random_uuid();
    v_today    date := (now() at time zone 'utc')::date;
    v_window   interval := make_interval(secs => (p_limits->>'breaker_window_seconds')::int);
    v_breaker  int := (p_limits->>'breaker_max_events')::int;
    v_daily    int := (p_limits->>'daily_messages')::int;
    v_hourly   int := (p_limits->>'sender_hourly_limit')::int;
    v_sender_d int := (p_limits->>'sender_daily_limit')::int;
    v_spent_window int;
    v_spent_today  int;
    v_ids      text[];
    v_senders  jsonb;
    v_result   jsonb;
    v_reserved int;
    v_tripped  boolean;
begin
    select * into v_safety from public.safety_state where id for update;
    select coalesce(sum(messages), 0) into v_spent_window
    from public.qstash_spend_buckets where bucket > now() - v_window - interval '10 seconds';
    select coalesce(sum(messages), 0) into v_spent_today
    from public.qstash_spend where day = v_today;

    select array_agg(dedup_id) into v_ids from (
        select l.dedup_id from public.ingest_ledger l
        where l.state = 'pending' and l.due_at <= now()
          and (l.lease_until is null or l.lease_until < now())
        order by l.due_at
        limit p_limit
        for update skip locked
    ) picked;
    if v_ids is null then
        return jsonb_build_object('token', v_token, 'reserved', 0, 'tripped', false,
                                  'held', '[]'::jsonb, 'direct', '[]'::jsonb,
                                  'batches', '[]'::jsonb);
    end if;

    -- QStash messages each sender of this pass already cost: {limit_key: [hour, day]}.
    select coalesce(jsonb_object_agg(limit_key, jsonb_build_array(hour, day)), '{}')
    into v_senders
    from (
        select l.limit_key,
               count(*) filter (where l.reserved_at > now() - interval '1 hour') as hour,
               count(*) as day
        from public.ingest_ledger l
        where l.limit_key in (select c.limit_key from public.ingest_ledger c
                              where c.dedup_id = any(v_ids) and c.limit_key is not null)
          and l.admitted_at > now() - interval '1 day'
          and l.reserved_at > now() - interval '1 day'
        group by l.limit_key
    ) used;

    with rows as (
        select l.dedup_id, l.limit_key, l.due_at, case
            when v_safety.kill_switch and v_safety.hold then 'hold:kill_switch'
            when l.qstash_message_id is not null then 'direct:already_published'
            when v_safety.kill_switch then 'direct:kill_switch'
            when p_template is null then 'direct:qstash_off'
            when l.reserved_at > now() - interval '9 minutes' then 'publish:'
            when l.reserved_at is not null then 'direct:dedup_window_passed'
        end as decided
        from public.ingest_ledger l
        where l.dedup_id = any(v_ids)
    ), per_sender as (    -- the n-th candidate of its sender, against that sender's limits
        select r.dedup_id, r.due_at, coalesce(r.decided, case
            when r.limit_key is null then null
            when coalesce((v_senders->r.limit_key->>0)::int, 0)
                 + row_number() over (partition by r.limit_key, r.decided is null
                                      order by r.due_at, r.dedup_id) > v_hourly
                then 'direct:sender_hourly_limit'
            when coalesce((v_senders->r.limit_key->>1)::int, 0)
                 + row_number() over (partition by r.limit_key, r.decided is null
                                      order by r.due_at, r.dedup_id) > v_sender_d
                then 'direct:sender_daily_limit'
        end) as decided
        from rows r
    ), overall as (       -- the n-th new message of this pass, against the global limits
        select o.dedup_id, coalesce(o.decided, case
            when v_spent_today + row_number() over (partition by o.decided is null
                                                    order by o.due_at, o.dedup_id) > v_daily
                then 'direct:daily_limit'
            when v_spent_window + row_number() over (partition by o.decided is null
                                                     order by o.due_at, o.dedup_id) > v_breaker
                then 'direct:breaker'
            else 'publish:new'
        end) as decided
        from per_sender o
    ), claimed as (
        update public.ingest_ledger l
        set state = case when d.decided like 'hold:%' then 'held' else 'pending' end,
            reason = nullif(nullif(split_part(d.decided, ':', 2), 'new'), ''),
            attempts = l.attempts + 1,
            due_at = case when d.decided like 'hold:%' then null else l.due_at end,
            lease_until = case when d.decided like 'hold:%' then null
                               else now() + make_interval(secs => p_lease_seconds) end,
            claim_token = case when d.decided like 'hold:%' then null else v_token end,
            reserved_at = case when d.decided = 'publish:new' then now() else l.reserved_at end,
            settled_at = case when d.decided like 'hold:%' then now() end,
            updated_at = now()
        from overall d
        where l.dedup_id = d.dedup_id
        returning l.dedup_id, split_part(d.decided, ':', 1) as decision, l.reason, l.event,
                  l.attempts, l.admitted_at,
                  extract(epoch from now() - l.admitted_at)::float8 as age,
                  d.decided = 'publish:new' as reserved
    ), publish as (       -- in admission order, chunks of p_chunk
        select c.*, row_number() over (order by c.admitted_at, c.dedup_id) as n
        from claimed c where c.decision = 'publish'
    ), batches as (       -- text, not jsonb: concatenation is what makes this cheap
        select jsonb_build_object(
                   'ids', jsonb_agg(p.dedup_id order by p.n),
                   'ages', jsonb_agg(p.age order by p.n),
                   'body', '[' || string_agg(
                       (p_template->>'prefix') || to_json(p.dedup_id)::text
                       || (p_template->>'middle') || to_json(p.event::text)::text
                       || (p_template->>'suffix'), ',' order by p.n) || ']') as batch
        from publish p group by (p.n - 1) / p_chunk
    )
    select jsonb_build_object(
               'held', coalesce((select jsonb_agg(jsonb_build_object(
                            'dedup_id', c.dedup_id, 'age_seconds', c.age))
                        from claimed c where c.decision = 'hold'), '[]'::jsonb),
               'direct', coalesce((select jsonb_agg(jsonb_build_object(
                            'dedup_id', c.dedup_id, 'reason', c.reason, 'event', c.event,
                            'attempts', c.attempts, 'age_seconds', c.age))
                        from claimed c where c.decision = 'direct'), '[]'::jsonb),
               'batches', coalesce((select jsonb_agg(b.batch) from batches b), '[]'::jsonb)),
           (select count(*) from claimed c where c.reserved),
           (select coalesce(bool_or(c.reason = 'breaker'), false) from claimed c)
    into v_result, v_reserved, v_tripped;

    if v_reserved > 0 then
        insert into public.qstash_spend as s (day, messages) values (v_today, v_reserved)
        on conflict (day) do update set messages = s.messages + excluded.messages;
        insert into public.qstash_spend_buckets as b (bucket, messages)
        values (date_bin('10 seconds', now(), timestamptz '2000-01-01'), v_reserved)
        on conflict (bucket) do update set messages = b.messages + excluded.messages;
        delete from public.qstash_spend_buckets where bucket < now() - interval '1 day';
    end if;
    if v_tripped then
        update public.safety_state
        set kill_switch = true, hold = false, changed_by = 'breaker', changed_at = now(),
            breaker_tripped_at = now(),
            reason = format('circuit breaker: more than %s QStash messages in %s',
                            v_breaker, v_window)
        where id;
        raise warning 'ingest circuit breaker tripped: more than % QStash messages in %',
            v_breaker, v_window;
    end if;
    return v_result || jsonb_build_object(
        'token', v_token, 'reserved', v_reserved, 'tripped', v_tripped);
end;
$$;

-- Settle rows of a claim, one element per row in parallel arrays: state is published |
-- direct | failed, or pending to try again after delay seconds (only by the claim that
-- holds the row, p_token). Settled rows drop their payload once published or stored:
-- message text lives on only in ig_messages, where an unsend can clear it. Failed rows
-- keep theirs for replay.
create function public.ingest_relay_settle(
    p_token uuid, p_dedup_ids text[], p_states text[], p_message_ids text[],
    p_deduplicated boolean[], p_reasons text[], p_delays float8[])
returns jsonb
language sql
set search_path = ''
as $$
    with o as (
        select * from unnest(p_dedup_ids, p_states, p_message_ids, p_deduplicated, p_reasons,
                             p_delays) as o(dedup_id, state, message_id, deduplicated, reason,
                                            delay_seconds)
    ), settled as (
        update public.ingest_ledger l
        set state = o.state,
            qstash_message_id = coalesce(o.message_id, l.qstash_message_id),
            deduplicated = coalesce(o.deduplicated, l.deduplicated),
            published_at = case when o.state = 'published' then now() else l.published_at end,
            settled_at = case when o.state <> 'pending' then now() end,
            reason = coalesce(o.reason, l.reason),
            event = case when o.state in ('published', 'direct') then null else l.event end,
            due_at = case when o.state = 'pending'
                          then now() + make_interval(secs => coalesce(o.delay_seconds, 0))
                     end,
            lease_until = null,
            claim_token = null,
            updated_at = now()
        from o
        where l.dedup_id = o.dedup_id
          and l.state = 'pending'
          and o.state in ('published', 'direct', 'failed', 'pending')
          and (o.state <> 'pending' or l.claim_token = p_token)
        returning 1
    )
    select jsonb_build_object('settled', count(*)) from settled;
$$;

-- The events of claimed rows QStash did not take, to store them directly instead.
create function public.ingest_relay_events(p_token uuid, p_dedup_ids text[])
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
               'dedup_id', l.dedup_id, 'event', l.event, 'attempts', l.attempts)), '[]'::jsonb)
    from public.ingest_ledger l
    where l.dedup_id = any(p_dedup_ids) and l.state = 'pending' and l.claim_token = p_token;
$$;

-- Return held (or failed) rows to pending for the relay: replay is one statement, so an
-- interrupted replay leaves nothing half-done, and whichever relay claims the rows
-- finishes the job. Refused while the kill switch holds. Filters: states, admitted since,
-- reasons, explicit dedup IDs. p_dry_run counts without changing anything.
create function public.ingest_replay(
    p_states text[], p_since text default '-infinity', p_reasons text[] default null,
    p_dedup_ids text[] default null, p_dry_run boolean default false)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_count int;
    v_since timestamptz := p_since::timestamptz;
begin
    if not p_dry_run and (select kill_switch and hold from public.safety_state where id) then
        raise exception 'the kill switch is holding events; deactivate it before replaying'
            using errcode = 'P0001';
    end if;
    if p_dry_run then
        select count(*) into v_count from public.ingest_ledger
        where state = any(p_states) and state in ('held', 'failed') and admitted_at >= v_since
          and event is not null
          and (p_reasons is null or reason = any(p_reasons))
          and (p_dedup_ids is null or dedup_id = any(p_dedup_ids));
        return jsonb_build_object('would_replay', v_count);
    end if;
    update public.ingest_ledger
    set state = 'pending', reason = 'replay', due_at = now(), lease_until = null,
        claim_token = null,
        settled_at = null, updated_at = now()
    where state = any(p_states) and state in ('held', 'failed') and admitted_at >= v_since
      and event is not null
      and (p_reasons is null or reason = any(p_reasons))
      and (p_dedup_ids is null or dedup_id = any(p_dedup_ids));
    get diagnostics v_count = row_count;
    return jsonb_build_object('replayed', v_count);
end;
$$;

-- --- operating it -------------------------------------------------------------------------

drop function public.ingest_set_kill_switch(boolean, text, text);

-- Kill switch by hand: on = nothing is published, everything is stored directly; with
-- p_hold, nothing is published nor stored (rows wait as `held` for `replay`). Turning it
-- off releases nothing by itself, and restarts the breaker's window, so the burst that
-- tripped it does not trip it again at once.
create function public.ingest_set_kill_switch(
    p_active boolean, p_reason text, p_by text, p_hold boolean default false)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_state jsonb;
begin
    update public.safety_state s
    set kill_switch = p_active,
        hold = p_active and p_hold,
        reason = p_reason,
        changed_by = p_by,
        changed_at = now(),
        breaker_tripped_at = case when p_active then s.breaker_tripped_at end
    where id
    returning to_jsonb(s.*) into v_state;
    if not p_active then
        delete from public.qstash_spend_buckets where true;
    end if;
    return v_state;
end;
$$;

-- Everything `ingestctl status` and the metrics gauges show, in one round trip; every
-- count reads a partial index, so a scrape costs the same with a billion settled rows.
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
            where day = (now() at time zone 'utc')::date), 0)
    )
    from public.safety_state s
    where s.id;
$$;

-- `ingestctl monitor`, from the ledger alone (pending replaces new).
create or replace function public.ingest_monitor(p_days int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with recent as (
        select * from public.ingest_ledger
        where admitted_at >= date_trunc('day', now())
                             - make_interval(days => p_days - 1)
    ), daily as (
        select date_trunc('day', admitted_at)::date as day,
               count(*) filter (where state = 'published') as published,
               count(*) filter (where state = 'direct')    as direct,
               count(*) filter (where state = 'held')      as held,
               count(*) filter (where state = 'failed')    as failed,
               count(*) filter (where state = 'pending')   as pending,
               count(*) filter (where attempts > 1)        as retried
        from recent group by 1
    ), senders as (
        select sender_id, count(*) as events
        from recent where sender_id is not null
        group by sender_id order by count(*) desc, sender_id limit 10
    ), totals as (
        select count(*) filter (where state in ('published', 'direct', 'failed')) as settled,
               count(*) filter (where state = 'failed') as failed
        from recent
    )
    select jsonb_build_object(
        'days', p_days,
        'daily', coalesce((select jsonb_agg(to_jsonb(daily) order by day)
                           from daily), '[]'::jsonb),
        'top_senders', coalesce((select jsonb_agg(to_jsonb(senders))
                                 from senders), '[]'::jsonb),
        'failure_rate', (select case when settled = 0 then 0
                                     else round(failed::numeric / settled, 4) end from totals)
    );
$$;
