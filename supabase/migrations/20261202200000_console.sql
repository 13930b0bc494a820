-- The operator console (issue 18): an audit trail, a replay marker, and the reads the
-- console page makes, each one function call through either backend (asyncpg, PostgREST).
--
-- Every read is bounded by what it shows: the ledger's partial indexes (pending,
-- held/failed), its admitted_at index for the recent relay lag, its limit_key index for a
-- customer's events, and primary keys for the rest. Nothing is added to the consumer's
-- writes: whether an event was stored is read from ig_messages, ig_reactions, ig_events.

-- --- the audit trail ----------------------------------------------------------------------

-- Who did what, when, through which door (`ingestctl` or the console), and how it ended.
create table public.ingest_audit (
    id      bigint generated always as identity primary key,
    at      timestamptz not null default now(),
    actor   text not null check (length(actor) between 1 and 100),
    door    text not null check (door in ('cli', 'console')),
    action  text not null,
    detail  jsonb not null default '{}'::jsonb,
    outcome text not null
);
alter table public.ingest_audit enable row level security;

create function public.ingest_audit_record(
    p_actor text, p_door text, p_action text, p_detail jsonb, p_outcome text)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.ingest_audit (actor, door, action, detail, outcome)
    values (p_actor, p_door, p_action, coalesce(p_detail, '{}'::jsonb), p_outcome)
    returning jsonb_build_object('id', id, 'at', at);
$$;

-- The newest entries first (the primary key's order: no sort, no scan).
create function public.ingest_audit_recent(p_limit int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(to_jsonb(a) order by a.id desc), '[]'::jsonb)
    from (select * from public.ingest_audit order by id desc limit p_limit) a;
$$;

-- --- replay, with a marker the console can follow ---------------------------------------

-- When a row was last returned to pending by `replay`: the console shows how many of one
-- replay the relay has settled since. Only replayed rows enter the index.
alter table public.ingest_ledger add column replayed_at timestamptz;
create index ingest_ledger_replayed_idx
    on public.ingest_ledger (replayed_at) where replayed_at is not null;

-- As in 20261202000100_relay.sql, and marks the rows it returns to pending with the
-- replay's time, which it answers as `replayed_at` (the key of `ingest_replay_progress`).
create or replace function public.ingest_replay(
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
        claim_token = null, settled_at = null, replayed_at = now(), updated_at = now()
    where state = any(p_states) and state in ('held', 'failed') and admitted_at >= v_since
      and event is not null
      and (p_reasons is null or reason = any(p_reasons))
      and (p_dedup_ids is null or dedup_id = any(p_dedup_ids));
    get diagnostics v_count = row_count;
    return jsonb_build_object('replayed', v_count, 'replayed_at', now());
end;
$$;

-- The rows of one replay (by its `replayed_at`): how many, how many are still pending, and
-- the others by the state the relay settled them in.
create function public.ingest_replay_progress(p_replayed_at text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with rows as (
        select l.state, count(*) as n
        from public.ingest_ledger l
        where l.replayed_at = p_replayed_at::timestamptz
        group by l.state
    )
    select jsonb_build_object(
        'replayed', coalesce(sum(n), 0),
        'pending', coalesce(sum(n) filter (where state = 'pending'), 0),
        'settled', coalesce(jsonb_object_agg(state, n) filter (where state <> 'pending'),
                            '{}'::jsonb))
    from rows;
$$;

-- --- what the console reads ---------------------------------------------------------------

-- The state strip and the flow in one round trip: `ingest_status` plus the relay's lag
-- (admission → published or stored) over the last p_sample events admitted within the hour.
create function public.ingest_console_pulse(p_sample int default 1000)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with recent as (
        select l.state, extract(epoch from l.settled_at - l.admitted_at)::float8 as lag
        from public.ingest_ledger l
        where l.admitted_at > now() - interval '1 hour'
        order by l.admitted_at desc
        limit p_sample
    ), settled as (
        select r.lag from recent r
        where r.state in ('published', 'direct') and r.lag is not null
    )
    select public.ingest_status() || jsonb_build_object('lag', (
        select jsonb_build_object(
            'events', count(*),
            'p50', percentile_cont(0.5) within group (order by s.lag),
            'p95', percentile_cont(0.95) within group (order by s.lag),
            'max', max(s.lag))
        from settled s));
$$;

-- Held and failed events: every (state, reason) group with its counts, and the newest
-- p_limit rows matching the filter (the same filter `ingest_replay` takes).
create function public.ingest_console_problems(
    p_states text[], p_reasons text[] default null, p_since text default '-infinity',
    p_limit int default 50)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with groups as (
        select l.state, l.reason, count(*) as events,
               count(*) filter (where l.event is not null) as replayable,
               min(l.admitted_at) as oldest, max(l.admitted_at) as newest
        from public.ingest_ledger l
        where l.state in ('held', 'failed')
        group by l.state, l.reason
    ), picked as (
        select l.dedup_id, l.kind, l.sender_id, l.state, l.reason, l.admitted_at,
               l.settled_at, l.attempts, l.event is not null as replayable
        from public.ingest_ledger l
        where l.state in ('held', 'failed') and l.state = any(p_states)
          and l.admitted_at >= p_since::timestamptz
          and (p_reasons is null or l.reason = any(p_reasons))
        order by l.admitted_at desc
        limit p_limit
    )
    select jsonb_build_object(
        'groups', coalesce((select jsonb_agg(to_jsonb(g) order by g.state, g.events desc, g.reason)
                            from groups g), '[]'::jsonb),
        'rows', coalesce((select jsonb_agg(to_jsonb(p) order by p.admitted_at desc, p.dedup_id)
                          from picked p), '[]'::jsonb));
$$;

-- dead_letters by event: the lookup marks events QStash gave up on.
create index dead_letters_dedup_idx on public.dead_letters (dedup_id);

-- The ledger rows about p_query, newest first: the rows named in p_dedup_ids (the IDs a
-- mid or an event ID gives, computed by the caller), every event of the customer p_query
-- names, and the events of the customer a stored or admitted mid belongs to whose ID
-- contains p_needle (the mid as dedup IDs write it: edits, reactions, reads).
create function public.ingest_console_lookup(
    p_query text, p_dedup_ids text[], p_needle text, p_limit int default 50)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with customers as (
        select p_query as igsid
        union
        select case when m.direction = 'out' then m.recipient_id else m.sender_id end
        from public.ig_messages m where m.mid = p_query
        union
        select r.sender_id from public.ig_reactions r where r.mid = p_query
        union
        select l.limit_key from public.ingest_ledger l where l.dedup_id = any(p_dedup_ids)
    ), ids as (
        select l.dedup_id from public.ingest_ledger l where l.dedup_id = any(p_dedup_ids)
        union
        select l.dedup_id
        from public.ingest_ledger l join customers c on l.limit_key = c.igsid
        where c.igsid = p_query or strpos(l.dedup_id, p_needle) > 0
    ), found as (
        select l.* from public.ingest_ledger l join ids i on i.dedup_id = l.dedup_id
        order by l.admitted_at desc, l.dedup_id
        limit p_limit
    )
    select coalesce(jsonb_agg(jsonb_build_object(
        'dedup_id', f.dedup_id, 'kind', f.kind, 'sender_id', f.sender_id, 'state', f.state,
        'reason', f.reason, 'attempts', f.attempts, 'admitted_at', f.admitted_at,
        'published_at', f.published_at, 'settled_at', f.settled_at,
        'replayed_at', f.replayed_at, 'qstash_message_id', f.qstash_message_id,
        'dead_letter', exists (select 1 from public.dead_letters d
                               where d.dedup_id = f.dedup_id))
        order by f.admitted_at desc, f.dedup_id), '[]'::jsonb)
    from found f;
$$;

-- What the consumer's tables hold about some events, for the lookup's "stored": the
-- messages named in p_mids, the reactions named by [mid, sender] pairs, the other events
-- by dedup ID. Primary keys only.
create function public.ingest_console_stored(
    p_mids text[], p_reactions jsonb, p_event_ids text[])
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'messages', coalesce((
            select jsonb_object_agg(m.mid, jsonb_build_object(
                'placeholder', m.is_placeholder, 'edit_count', m.edit_count,
                'deleted', m.deleted_at is not null))
            from public.ig_messages m where m.mid = any(p_mids)), '{}'::jsonb),
        'reactions', coalesce((
            select jsonb_agg(jsonb_build_array(r.mid, r.sender_id))
            from jsonb_array_elements(coalesce(p_reactions, '[]'::jsonb)) k
            join public.ig_reactions r on r.mid = k->>0 and r.sender_id = k->>1), '[]'::jsonb),
        'events', coalesce((
            select jsonb_agg(e.dedup_id)
            from public.ig_events e where e.dedup_id = any(p_event_ids)), '[]'::jsonb));
$$;

-- QStash messages reserved per UTC day, the last p_days days, zeros included.
create function public.ingest_console_spend(p_days int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with days as (
        select (d.today - n)::date as day
        from (select (now() at time zone 'utc')::date as today) d,
             generate_series(0, p_days - 1) n
    )
    select coalesce(jsonb_agg(jsonb_build_object('day', days.day,
                                                 'messages', coalesce(s.messages, 0))
                              order by days.day), '[]'::jsonb)
    from days left join public.qstash_spend s on s.day = days.day;
$$;

-- The customers heard from last, each with their newest inbound message (the
-- conversation index: account, sender, sent_at).
create function public.ingest_console_conversations(p_limit int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'igsid', p.igsid, 'name', p.name, 'username', p.username,
        'last_seen_at', p.last_seen_at, 'messages_in', p.messages_in,
        'messages_out', p.messages_out, 'last_text', m.text, 'last_sent_at', m.sent_at,
        'last_deleted', m.deleted_at is not null,
        'last_attachments', coalesce(jsonb_array_length(m.attachments), 0))
        order by p.last_seen_at desc, p.igsid), '[]'::jsonb)
    from (select * from public.ig_profiles
          order by last_seen_at desc, igsid limit p_limit) p
    left join lateral (
        select mm.text, mm.sent_at, mm.deleted_at, mm.attachments
        from public.ig_messages mm
        where mm.account_id = p.account_id and mm.sender_id = p.igsid
          and mm.sent_at is not null
        order by mm.sent_at desc
        limit 1) m on true;
$$;

select public.ingest_secure_functions();
