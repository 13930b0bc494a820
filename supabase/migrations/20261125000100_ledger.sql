-- The producer's durable ledger and the safety gate.
--
-- One row per deduplication ID, forever: QStash's own dedup window is 10 minutes
-- but Meta redelivers for hours, so this table is what makes one inbound event
-- cost at most one QStash message. `ingest_admit` is the only way in: one call
-- per delivery, one transaction, gate included.

create table if not exists public.ingest_ledger (
    dedup_id          text primary key,
    kind              text not null,
    account_id        text,
    sender_id         text,
    state             text not null check (state in ('new', 'published', 'direct', 'held', 'failed')),
    reason            text,
    event             jsonb,           -- kept while it may still be needed (new, held, failed)
    qstash_message_id text,
    attempts          integer not null default 1,
    admitted_at       timestamptz not null default now(),
    lease_until       timestamptz,
    published_at      timestamptz,
    updated_at        timestamptz not null default now()
);

create index if not exists ingest_ledger_pending_idx
    on public.ingest_ledger (state, admitted_at) where state in ('new', 'held', 'failed');
create index if not exists ingest_ledger_admitted_idx on public.ingest_ledger (admitted_at);
create index if not exists ingest_ledger_sender_idx on public.ingest_ledger (sender_id, admitted_at);

create table if not exists public.safety_state (
    id                  boolean primary key default true check (id),
    kill_switch         boolean not null default false,
    reason              text,
    changed_by          text,
    changed_at          timestamptz,
    breaker_tripped_at  timestamptz
);
insert into public.safety_state (id) values (true) on conflict do nothing;

-- Admissions per 10-second bucket: the breaker sums at most ~61 rows instead of
-- counting every ledger row of the window (which grows with traffic), under the lock.
create table if not exists public.ingest_rate_buckets (
    bucket   timestamptz primary key,
    admitted integer not null
);

alter table public.ingest_rate_buckets enable row level security;
alter table public.ingest_ledger enable row level security;
alter table public.safety_state enable row level security;

-- Admit every event of one delivery. p_events: array of contract events (each with
-- dedup_id, kind, sender_id, account_id). p_limits: {breaker_max_events,
-- breaker_window_seconds, sender_hourly_limit, sender_daily_limit, lease_seconds}.
-- Returns an array, in input order, of {dedup_id, outcome: new|duplicate|held, reason}.
create or replace function public.ingest_admit(p_events jsonb, p_limits jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_lease    interval := make_interval(secs => (p_limits->>'lease_seconds')::int);
    v_window   interval := make_interval(secs => (p_limits->>'breaker_window_seconds')::int);
    v_max      int := (p_limits->>'breaker_max_events')::int;
    v_hourly   int := (p_limits->>'sender_hourly_limit')::int;
    v_daily    int := (p_limits->>'sender_daily_limit')::int;
    v_safety   public.safety_state;
    v_admitted int;
    v_new      int;
    v_event    jsonb;
    v_row      public.ingest_ledger;
    v_sender   text;
    v_hour     int;
    v_day      int;
    v_reason   text;
    v_out      jsonb := '[]'::jsonb;
begin
    -- Fast path, no lock: every event already settled (the duplicate storm case).
    if not exists (
        select 1
        from jsonb_array_elements(p_events) e
        left join public.ingest_ledger l on l.dedup_id = e->>'dedup_id'
        where l.dedup_id is null or (l.state = 'new' and l.lease_until < now())
    ) then
        return (
            select coalesce(jsonb_agg(jsonb_build_object(
                'dedup_id', e->>'dedup_id', 'outcome', 'duplicate', 'reason', null) order by n), '[]')
            from jsonb_array_elements(p_events) with ordinality t(e, n)
        );
    end if;

    -- Serialise admissions (all instances): dedup and the gate's counts are then exact.
    select * into v_safety from public.safety_state where id for update;
    select coalesce(sum(admitted), 0) into v_admitted
    from public.ingest_rate_buckets
    where bucket > now() - v_window - interval '10 seconds';
    v_new := 0;

    for v_event in select e from jsonb_array_elements(p_events) e loop
        select * into v_row from public.ingest_ledger
        where dedup_id = v_event->>'dedup_id' for update;

        if found and not (v_row.state = 'new' and v_row.lease_until < now()) then
            v_out := v_out || jsonb_build_object(
                'dedup_id', v_row.dedup_id, 'outcome', 'duplicate', 'reason', null);
            continue;
        end if;

        if found then
            -- Admitted before by a process that died before publishing: the lease expired.
            update public.ingest_ledger
            set lease_until = now() + v_lease, attempts = attempts + 1,
                event = v_event, updated_at = now()
            where dedup_id = v_row.dedup_id;
            v_out := v_out || jsonb_build_object(
                'dedup_id', v_row.dedup_id, 'outcome', 'new', 'reason', 'lease_expired');
            continue;
        end if;

        v_sender := v_event->>'sender_id';
        v_reason := null;
        if v_safety.kill_switch then
            v_reason := 'kill_switch';
        elsif v_sender is not null then
            select count(*) filter (where admitted_at > now() - interval '1 hour'), count(*)
            into v_hour, v_day
            from public.ingest_ledger
            where sender_id = v_sender and admitted_at > now() - interval '1 day'
              and state <> 'held';
            if v_hour >= v_hourly then
                v_reason := 'sender_hourly_limit';
            elsif v_day >= v_daily then
                v_reason := 'sender_daily_limit';
            end if;
        end if;
        if v_reason is null and v_admitted >= v_max then
            v_reason := 'breaker';
            update public.safety_state
            set kill_switch = true, changed_by = 'breaker', changed_at = now(),
                breaker_tripped_at = now(),
                reason = format('circuit breaker: more than %s events in %s', v_max, v_window)
            where id
            returning * into v_safety;
            raise warning 'ingest circuit breaker tripped: more than % events in %', v_max, v_window;
        end if;

        insert into public.ingest_ledger
            (dedup_id, kind, account_id, sender_id, state, reason, event, lease_until)
        values (
            v_event->>'dedup_id', v_event->>'kind', v_event->>'account_id', v_sender,
            case when v_reason is null then 'new' else 'held' end, v_reason, v_event,
            case when v_reason is null then now() + v_lease end);
        if v_reason is null then
            v_admitted := v_admitted + 1;
            v_new := v_new + 1;
        end if;
        v_out := v_out || jsonb_build_object(
            'dedup_id', v_event->>'dedup_id',
            'outcome', case when v_reason is null then 'new' else 'held' end,
            'reason', v_reason);
    end loop;
    if v_new > 0 then
        insert into public.ingest_rate_buckets (bucket, admitted)
        values (date_bin('10 seconds', now(), timestamptz '2000-01-01'), v_new)
        on conflict (bucket) do update set admitted = ingest_rate_buckets.admitted + excluded.admitted;
        delete from public.ingest_rate_buckets where bucket < now() - interval '1 day';
    end if;
    return v_out;
end;
$$;

-- Settle admitted rows: published to QStash (with its message IDs, parallel array)
-- or processed directly. The event payload is dropped once settled: it holds
-- message text, which lives on only in ig_messages (where an unsend can clear it).
create or replace function public.ingest_mark(
    p_dedup_ids text[], p_state text, p_message_ids text[] default null)
returns jsonb
language sql
as $$
    with marked as (
        update public.ingest_ledger l
        set state = p_state,
            qstash_message_id = m.message_id,
            published_at = now(),
            lease_until = null,
            event = null,
            reason = null,
            updated_at = now()
        from unnest(p_dedup_ids, coalesce(p_message_ids, array[]::text[]))
            as m(dedup_id, message_id)
        where l.dedup_id = m.dedup_id
          and p_state in ('published', 'direct')
          and l.state = 'new'
        returning 1
    )
    select jsonb_build_object('marked', count(*)) from marked;
$$;

-- Give up admissions that could not be published nor processed: a redelivery is new again.
create or replace function public.ingest_release(p_dedup_ids text[])
returns jsonb
language sql
as $$
    with released as (
        delete from public.ingest_ledger
        where dedup_id = any(p_dedup_ids) and state = 'new'
        returning 1
    )
    select jsonb_build_object('released', count(*)) from released;
$$;

-- Kill switch by hand. Turning it off also restarts the breaker's window, so the
-- burst that tripped it does not trip it again on the next event.
create or replace function public.ingest_set_kill_switch(
    p_active boolean, p_reason text, p_by text)
returns jsonb
language plpgsql
as $$
declare
    v_state jsonb;
begin
    update public.safety_state
    set kill_switch = p_active,
        reason = p_reason,
        changed_by = p_by,
        changed_at = now(),
        breaker_tripped_at = case when p_active then breaker_tripped_at end
    where id
    returning to_jsonb(safety_state.*) into v_state;
    if not p_active then
        delete from public.ingest_rate_buckets;
    end if;
    return v_state;
end;
$$;

-- Claim held (or failed) events for replay: they become `new` with a lease, so the
-- replayer publishes and marks them like any admission. Refused while the switch is on.
create or replace function public.ingest_claim_for_replay(
    p_states text[], p_since text, p_limit int, p_lease_seconds int)
returns jsonb
language plpgsql
as $$
declare
    v_claimed jsonb;
begin
    if (select kill_switch from public.safety_state where id) then
        raise exception 'kill switch is active; deactivate it before replaying'
            using errcode = 'P0001';
    end if;
    with picked as (
        select dedup_id from public.ingest_ledger
        where state = any(p_states) and admitted_at >= p_since::timestamptz and event is not null
        order by admitted_at
        limit p_limit
        for update skip locked
    ), claimed as (
        update public.ingest_ledger l
        set state = 'new', reason = 'replay', attempts = attempts + 1,
            lease_until = now() + make_interval(secs => p_lease_seconds), updated_at = now()
        from picked
        where l.dedup_id = picked.dedup_id
        returning l.event
    )
    select coalesce(jsonb_agg(event), '[]'::jsonb) into v_claimed from claimed;
    return v_claimed;
end;
$$;

-- Everything `ingestctl status` and the metrics gauges show, in one round trip.
create or replace function public.ingest_status()
returns jsonb
language sql
stable
as $$
    select jsonb_build_object(
        'kill_switch', s.kill_switch,
        'reason', s.reason,
        'changed_by', s.changed_by,
        'changed_at', s.changed_at,
        'breaker_tripped', s.breaker_tripped_at is not null and s.kill_switch,
        'breaker_tripped_at', s.breaker_tripped_at,
        'held', (select count(*) from public.ingest_ledger where state = 'held'),
        'failed', (select count(*) from public.ingest_ledger where state = 'failed'),
        'pending', (select count(*) from public.ingest_ledger where state = 'new'),
        'states', (select coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
                   from (select state, count(*) n from public.ingest_ledger group by state) c)
    )
    from public.safety_state s
    where s.id;
$$;
