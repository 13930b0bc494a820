-- Conversation turns (issue 24, design/TURNS.md): one hand-off per customer burst.
--
-- A turn is a row per conversation (account + customer) that collects the customer's
-- messages and postbacks. It is opened or extended by `ig_apply_event`, in the transaction
-- that stores the message (so a turn never names a message the database does not hold),
-- with its due time from the database clock: now() + quiet, capped at opened + max wait.
-- Closing it and handing it off is relay work (`ingest_turn_claim`, `ingest_turn_settle`):
-- FOR UPDATE SKIP LOCKED and a lease, like ledger rows, so replicas, restarts, `kill -9`
-- and Meta's duplicates still give one hand-off per turn. No timer lives in a process.
--
-- The windows and limits live in `ig_turn_settings`, written by the service at start-up
-- (`ingest_turn_configure`); with no row (TURN_WEBHOOK_URL unset) storing a message costs
-- one lookup of an empty table and nothing else.

create table public.ig_turn_settings (
    id               boolean primary key default true check (id),
    quiet_seconds    float8 not null check (quiet_seconds > 0),
    max_wait_seconds float8 not null check (max_wait_seconds > 0),
    max_messages     integer not null check (max_messages > 0),
    hourly_limit     integer not null check (hourly_limit > 0),
    daily_limit      integer not null check (daily_limit > 0),
    updated_at       timestamptz not null default now()
);
alter table public.ig_turn_settings enable row level security;

create table public.ig_turns (
    turn_id           text primary key,
    account_id        text not null,
    customer_id       text not null,
    platform          text not null default 'instagram',
    state             text not null default 'open' check (state in (
                          'open', 'pending', 'published', 'delivered', 'held', 'limited',
                          'failed')),
    seq               integer,          -- the conversation's n-th closed turn, from 1
    opened_at         timestamptz not null default now(),
    due_at            timestamptz not null,   -- quiet window end, never past deadline_at
    deadline_at       timestamptz not null,   -- opened_at + max wait
    closed_at         timestamptz,
    closed_because    text check (closed_because in ('quiet', 'max_wait', 'max_messages')),
    messages          integer not null default 0,
    last_sent_at      timestamptz,      -- the newest Instagram timestamp among its messages
    next_attempt_at   timestamptz,      -- pending: claimable from then
    lease_until       timestamptz,
    claim_token       uuid,
    attempts          integer not null default 0,
    route             text check (route in ('qstash', 'direct')),
    reserved_at       timestamptz,      -- when its one QStash message was reserved
    qstash_message_id text,
    destination       text,
    replayed          boolean not null default false,
    reason            text,
    settled_at        timestamptz,
    updated_at        timestamptz not null default now()
);
alter table public.ig_turns enable row level security;
-- at most one open turn per conversation: the store's upsert finds it in one probe
create unique index ig_turns_open_idx on public.ig_turns (account_id, customer_id)
    where state = 'open';
-- the open turns, for the relay's close scan (a few: conversations active within the max
-- wait). Indexed by the deadline, which never moves, so that extending a turn (messages,
-- due_at, last_sent_at) changes no indexed column: a HOT update, no index write.
create index ig_turns_open_deadline_idx on public.ig_turns (deadline_at) where state = 'open';
alter table public.ig_turns set (fillfactor = 70);
create index ig_turns_pending_idx on public.ig_turns (next_attempt_at) where state = 'pending';
create index ig_turns_seq_idx on public.ig_turns (account_id, customer_id, seq)
    where seq is not null;
create index ig_turns_closed_idx on public.ig_turns (account_id, customer_id, closed_at)
    where closed_at is not null;
create index ig_turns_qstash_idx on public.ig_turns (qstash_message_id)
    where qstash_message_id is not null;
-- retention's scan: only handed-off turns, so that opening a turn writes no entry here
create index ig_turns_settled_idx on public.ig_turns (closed_at)
    where state in ('delivered', 'published');

-- Which stored item belongs to which turn: one row per message or postback, keyed by its
-- deduplication ID, so an item belongs to exactly one turn however often it is stored.
create table public.ig_turn_messages (
    dedup_id   text primary key,
    turn_id    text not null references public.ig_turns (turn_id) on delete cascade,
    kind       text not null check (kind in ('message', 'postback')),
    mid        text,
    sent_at    timestamptz,
    arrived_at timestamptz not null default clock_timestamp(),
    late       boolean not null default false
);
alter table public.ig_turn_messages enable row level security;
create index ig_turn_messages_turn_idx on public.ig_turn_messages (turn_id);

-- --- configuration ---------------------------------------------------------------------------

-- The windows and limits every instance's stores use; null turns the feature off.
create function public.ingest_turn_configure(p_settings jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    if p_settings is null then
        delete from public.ig_turn_settings where id;
        return jsonb_build_object('turns', false);
    end if;
    insert into public.ig_turn_settings as s (
        id, quiet_seconds, max_wait_seconds, max_messages, hourly_limit, daily_limit)
    values (true, (p_settings->>'quiet_seconds')::float8,
            (p_settings->>'max_wait_seconds')::float8, (p_settings->>'max_messages')::int,
            (p_settings->>'hourly_limit')::int, (p_settings->>'daily_limit')::int)
    on conflict (id) do update
    set quiet_seconds = excluded.quiet_seconds, max_wait_seconds = excluded.max_wait_seconds,
        max_messages = excluded.max_messages, hourly_limit = excluded.hourly_limit,
        daily_limit = excluded.daily_limit, updated_at = now()
    where (s.quiet_seconds, s.max_wait_seconds, s.max_messages, s.hourly_limit, s.daily_limit)
          is distinct from (excluded.quiet_seconds, excluded.max_wait_seconds,
                            excluded.max_messages, excluded.hourly_limit, excluded.daily_limit);
    return jsonb_build_object('turns', true);
end;
$$;

-- --- closing ---------------------------------------------------------------------------------

-- Close one open turn: it takes the conversation's next seq, and becomes `pending` (to hand
-- off) or `limited` (the customer is past TURN_HOURLY_LIMIT / TURN_DAILY_LIMIT turns).
-- The caller holds the row (store or claim); returns whether it closed it.
create function public.ig_turn_close(p_turn_id text, p_settings public.ig_turn_settings)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
    v_turn  public.ig_turns;
    v_hour  int;
    v_day   int;
    v_limit text;
begin
    select * into v_turn from public.ig_turns where turn_id = p_turn_id and state = 'open';
    if not found then
        return false;
    end if;
    select count(*) filter (where closed_at > now() - interval '1 hour'), count(*)
    into v_hour, v_day
    from public.ig_turns
    where account_id = v_turn.account_id and customer_id = v_turn.customer_id
      and closed_at > now() - interval '1 day' and state <> 'limited';
    v_limit := case when v_hour >= p_settings.hourly_limit then 'turn_hourly_limit'
                    when v_day >= p_settings.daily_limit then 'turn_daily_limit' end;
    update public.ig_turns t
    set state = case when v_limit is null then 'pending' else 'limited' end,
        reason = v_limit,
        seq = coalesce((select max(p.seq) from public.ig_turns p
                        where p.account_id = t.account_id and p.customer_id = t.customer_id
                          and p.seq is not null), 0) + 1,
        closed_at = now(),
        closed_because = case when t.messages >= p_settings.max_messages then 'max_messages'
                              when t.due_at >= t.deadline_at then 'max_wait'
                              else 'quiet' end,
        next_attempt_at = case when v_limit is null then now() end,
        settled_at = case when v_limit is null then null else now() end,
        updated_at = now()
    where t.turn_id = p_turn_id;
    return true;
end;
$$;

-- --- upkeep, inside the store ------------------------------------------------------------------

-- What storing `e` (outcome `p_outcome`) does to turns. Only a customer's own messages and
-- postbacks open or extend one: echoes, self-messages, tests, reads, reactions, edits and
-- anything the account sent never do (the bot's reply must not call the bot). An unsend
-- takes its message out of a turn still open; a message older than Meta's 24-hour window
-- opens none; one sent before what the conversation already handed off joins the next
-- turn as `late`.
create function public.ig_turn_note(e jsonb, p_outcome text)
returns void
language plpgsql
set search_path = ''
as $$
declare
    v_settings public.ig_turn_settings;
    v_kind     text := e->>'kind';
    v_sent     timestamptz;
    v_handed   timestamptz;
    v_closed   timestamptz;
    v_turn     text;
    v_count    int;
begin
    if p_outcome <> 'stored' or v_kind not in ('message', 'postback', 'message_unsend') then
        return;
    end if;
    select * into v_settings from public.ig_turn_settings where id;
    if not found then
        return;
    end if;
    if v_kind = 'message_unsend' then  -- out of the customer's open turn, if it is there
        select t.turn_id into v_turn
        from public.ig_turns t
        where t.account_id = e->>'account_id' and t.customer_id = e->>'sender_id'
          and t.state = 'open'
        for update;
        delete from public.ig_turn_messages where turn_id = v_turn and mid = e->>'mid';
        if found then
            update public.ig_turns set messages = messages - 1, updated_at = now()
            where turn_id = v_turn
            returning messages into v_count;
            if v_count = 0 then
                delete from public.ig_turns where turn_id = v_turn;
            end if;
        end if;
        return;
    end if;
    if coalesce(e->>'direction', 'in') <> 'in'
       or coalesce((e->>'is_self')::boolean, false)
       or coalesce((e->>'is_test')::boolean, false)
       or e->>'sender_id' is null
       or e->>'sender_id' = e->>'account_id' then
        return;
    end if;
    v_sent := coalesce(public.ig_ms_to_timestamptz(e->>'timestamp'), now());
    if v_sent < now() - interval '24 hours' then
        return;
    end if;
    select t.last_sent_at into v_handed    -- what this conversation already handed off
    from public.ig_turns t
    where t.account_id = e->>'account_id' and t.customer_id = e->>'sender_id'
      and t.seq is not null
    order by t.seq desc
    limit 1;
    loop
        insert into public.ig_turns as t (
            turn_id, account_id, customer_id, platform, due_at, deadline_at, messages,
            last_sent_at)
        values (
            'ig_turn_' || substr(e->>'dedup_id', 4), e->>'account_id', e->>'sender_id',
            coalesce(e->>'platform', 'instagram'),
            now() + make_interval(secs => least(v_settings.quiet_seconds,
                                                v_settings.max_wait_seconds)),
            now() + make_interval(secs => v_settings.max_wait_seconds), 1, v_sent)
        on conflict (account_id, customer_id) where state = 'open' do update
        set messages = t.messages + 1,
            due_at = least(now() + make_interval(secs => v_settings.quiet_seconds),
                           t.deadline_at),
            last_sent_at = greatest(t.last_sent_at, excluded.last_sent_at),
            updated_at = now()
        where t.due_at > now()
        returning t.turn_id, t.messages into v_turn, v_count;
        exit when found;
        -- the open turn's window ended before the relay came round: the customer was quiet
        -- long enough (or it is out of time), so it closes here and this message starts anew
        select t.turn_id, t.last_sent_at into v_turn, v_closed
        from public.ig_turns t
        where t.account_id = e->>'account_id' and t.customer_id = e->>'sender_id'
          and t.state = 'open'
        for update;
        perform public.ig_turn_close(v_turn, v_settings);
        v_handed := greatest(v_handed, v_closed);
    end loop;
    insert into public.ig_turn_messages (dedup_id, turn_id, kind, mid, sent_at, late)
    values (e->>'dedup_id', v_turn, v_kind, e->>'mid', v_sent,
            v_handed is not null and v_sent < v_handed)
    on conflict (dedup_id) do nothing;
    if not found then    -- already in a turn: count it once
        update public.ig_turns set messages = messages - 1 where turn_id = v_turn;
        return;
    end if;
    if v_count >= v_settings.max_messages then
        perform public.ig_turn_close(v_turn, v_settings);
    end if;
end;
$$;

-- As in 20261202800000_erasure_gaps.sql, and: the turn upkeep (`ig_turn_note`) in the same
-- transaction, after the event is stored.
create or replace function public.ig_apply_event(p_event jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_outcome  text;
    v_customer text := public.ig_customer_of(p_event);
begin
    if coalesce(p_event->>'v', '') not in ('1', '2') then
        raise exception 'unsupported contract version: %', p_event->>'v' using errcode = '22023';
    end if;
    if coalesce(p_event->>'dedup_id', '') = '' or p_event->>'account_id' is null then
        raise exception 'event lacks dedup_id or account_id' using errcode = '22023';
    end if;
    perform pg_advisory_xact_lock_shared(public.ig_erasure_lock(
        p_event->>'account_id', public.ig_erasure_part(v_customer)));
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
    perform public.ig_turn_note(p_event, v_outcome);
    return jsonb_build_object('outcome', v_outcome);
end;
$$;

-- --- the hand-off body ---------------------------------------------------------------------------

-- A turn as contract turn.v1 (contracts/schema/turn.v1.json), from what is stored now:
-- an edit's text, no unsent message, messages in Instagram-timestamp order (arrival breaks
-- ties). `replayed` is added by the caller.
create function public.ig_turn_body(p_turn_id text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'type', 'instagram.conversation.turn',
        'version', 1,
        'turn_id', t.turn_id,
        'seq', t.seq,
        'account_id', t.account_id,
        'customer_id', t.customer_id,
        'platform', t.platform,
        'opened_at', t.opened_at,
        'closed_at', t.closed_at,
        'closed_because', t.closed_because,
        'messages', coalesce((
            select jsonb_agg(jsonb_build_object(
                'mid', tm.mid,
                'kind', tm.kind,
                'sent_at', coalesce(m.sent_at, tm.sent_at),
                'text', m.text,
                'attachments', coalesce(m.attachments, '[]'::jsonb),
                'reply_to', case when m.reply_to_mid is not null or m.story is not null
                                 then jsonb_build_object('mid', m.reply_to_mid, 'story', m.story)
                            end,
                'quick_reply', case when m.quick_reply_payload is not null
                                    then jsonb_build_object('payload', m.quick_reply_payload)
                               end,
                'referral', case when m.referral_source is not null or m.referral_ref is not null
                                      or m.referral_ad_id is not null
                                      or m.referral_product_id is not null
                                 then jsonb_strip_nulls(jsonb_build_object(
                                     'source', m.referral_source, 'type', m.referral_type,
                                     'ref', m.referral_ref, 'ad_id', m.referral_ad_id,
                                     'product_id', m.referral_product_id))
                            end,
                'postback', case when tm.kind = 'postback'
                                 then jsonb_build_object('title', ev.event->>'title',
                                                         'payload', ev.event->>'payload')
                            end,
                'late', tm.late)
                order by coalesce(m.sent_at, tm.sent_at), tm.arrived_at, tm.dedup_id)
            from public.ig_turn_messages tm
            left join public.ig_messages m on tm.kind = 'message' and m.mid = tm.mid
            left join public.ig_events ev on tm.kind = 'postback' and ev.dedup_id = tm.dedup_id
            where tm.turn_id = t.turn_id and m.deleted_at is null), '[]'::jsonb),
        'business_replied_after', (
            select min(coalesce(b.sent_at, b.created_at))
            from public.ig_messages b
            where b.account_id = t.account_id and b.sender_id = t.account_id
              and b.recipient_id = t.customer_id and b.direction = 'out'
              and b.sent_at >= t.opened_at),
        'replayed', t.replayed)
    from public.ig_turns t
    where t.turn_id = p_turn_id;
$$;

-- --- the relay's work -------------------------------------------------------------------------

-- Close the due open turns, then claim up to p_limit pending turns for one pass under a
-- lease, deciding each one's route under the safety gate's lock:
--   held     the kill switch holds (state `held`, settled here);
--   direct   POST it ourselves (reason: kill_switch, qstash_off, replayed, daily_limit,
--            breaker, dedup_window_passed);
--   qstash   one QStash message, reserved now and counted in the daily budget and the
--            breaker's window by the turn's messages; a re-claim within 9 minutes re-publishes
--            under the same deduplication ID (QStash absorbs it) and costs nothing new.
-- Returns {token, closed, turns: [{turn_id, route, reason, attempts, age_seconds, body}]}.
create function public.ingest_turn_claim(
    p_limit int, p_lease_seconds int, p_limits jsonb, p_qstash boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_settings public.ig_turn_settings;
    v_safety   public.safety_state;
    v_token    uuid := gen_random_uuid();
    v_today    date := (now() at time zone 'utc')::date;
    v_window   interval := make_interval(secs => (p_limits->>'breaker_window_seconds')::int);
    v_spent_window int;
    v_spent_today  int;
    v_closed   int := 0;
    v_turn     record;
    v_route    text;
    v_reason   text;
    v_reserved int := 0;
    v_turns    jsonb := '[]'::jsonb;
begin
    select * into v_settings from public.ig_turn_settings where id;
    if found then
        for v_turn in
            select turn_id from public.ig_turns
            where state = 'open' and due_at <= now()
            order by due_at limit p_limit
            for update skip locked
        loop
            if public.ig_turn_close(v_turn.turn_id, v_settings) then
                v_closed := v_closed + 1;
            end if;
        end loop;
    end if;
    if not exists (select 1 from public.ig_turns where state = 'pending'
                   and next_attempt_at <= now()
                   and (lease_until is null or lease_until < now())) then
        return jsonb_build_object('token', v_token, 'closed', v_closed, 'turns', v_turns);
    end if;
    select * into v_safety from public.safety_state where id for update;
    select coalesce(sum(messages), 0) into v_spent_window
    from public.qstash_spend_buckets where bucket > now() - v_window - interval '10 seconds';
    select coalesce(sum(messages), 0) into v_spent_today
    from public.qstash_spend where day = v_today;
    for v_turn in
        select t.turn_id, t.replayed, t.reserved_at, t.messages, t.closed_at
        from public.ig_turns t
        where t.state = 'pending' and t.next_attempt_at <= now()
          and (t.lease_until is null or t.lease_until < now())
        order by t.next_attempt_at
        limit p_limit
        for update skip locked
    loop
        v_reason := case
            when v_safety.kill_switch and v_safety.hold then 'kill_switch'
            when v_turn.replayed then 'replayed'
            when v_safety.kill_switch then 'kill_switch'
            when not p_qstash then 'qstash_off'
            when v_turn.reserved_at > now() - interval '9 minutes' then null
            when v_turn.reserved_at is not null then 'dedup_window_passed'
            when v_spent_today + v_turn.messages > (p_limits->>'daily_messages')::int
                then 'daily_limit'
            when v_spent_window + v_turn.messages > (p_limits->>'breaker_max_events')::int
                then 'breaker'
        end;
        v_route := case when v_safety.kill_switch and v_safety.hold then 'held'
                        when v_reason is null then 'qstash' else 'direct' end;
        if v_route = 'held' then
            update public.ig_turns
            set state = 'held', reason = 'kill_switch', next_attempt_at = null,
                settled_at = now(), updated_at = now()
            where turn_id = v_turn.turn_id;
            v_turns := v_turns || jsonb_build_object('turn_id', v_turn.turn_id, 'route', 'held',
                'reason', 'kill_switch', 'attempts', 0, 'messages', v_turn.messages,
                'age_seconds', extract(epoch from now() - v_turn.closed_at)::float8,
                'body', null);
            continue;
        end if;
        if v_route = 'qstash' and v_turn.reserved_at is null then
            v_spent_today := v_spent_today + v_turn.messages;
            v_spent_window := v_spent_window + v_turn.messages;
            v_reserved := v_reserved + v_turn.messages;
        end if;
        update public.ig_turns
        set route = v_route, reason = v_reason, attempts = attempts + 1,
            lease_until = now() + make_interval(secs => p_lease_seconds),
            claim_token = v_token,
            reserved_at = case when v_route = 'qstash' then coalesce(reserved_at, now())
                               else reserved_at end,
            updated_at = now()
        where turn_id = v_turn.turn_id;
        v_turns := v_turns || (select jsonb_build_object(
            'turn_id', t.turn_id, 'route', v_route, 'reason', v_reason,
            'attempts', t.attempts, 'messages', t.messages,
            'age_seconds', extract(epoch from now() - t.closed_at)::float8,
            'body', public.ig_turn_body(t.turn_id))
            from public.ig_turns t where t.turn_id = v_turn.turn_id);
    end loop;
    if v_reserved > 0 then
        insert into public.qstash_spend as s (day, messages) values (v_today, v_reserved)
        on conflict (day) do update set messages = s.messages + excluded.messages;
        insert into public.qstash_spend_buckets as b (bucket, messages)
        values (date_bin('10 seconds', now(), timestamptz '2000-01-01'), v_reserved)
        on conflict (bucket) do update set messages = b.messages + excluded.messages;
    end if;
    return jsonb_build_object('token', v_token, 'closed', v_closed, 'turns', v_turns);
end;
$$;

-- Settle claimed turns, one element per turn in parallel arrays: `published` (QStash took
-- it: its message id and destination, for the failure callback), `delivered` (the
-- downstream answered 2xx), `failed`, or `pending` to try again after delay seconds.
-- Only the claim that holds a turn (p_token) settles it.
create function public.ingest_turn_settle(
    p_token uuid, p_turn_ids text[], p_states text[], p_message_ids text[],
    p_destinations text[], p_reasons text[], p_delays float8[])
returns jsonb
language sql
set search_path = ''
as $$
    with o as (
        select * from unnest(p_turn_ids, p_states, p_message_ids, p_destinations, p_reasons,
                             p_delays) as o(turn_id, state, message_id, destination, reason,
                                            delay_seconds)
    ), settled as (
        update public.ig_turns t
        set state = o.state,
            qstash_message_id = coalesce(o.message_id, t.qstash_message_id),
            destination = coalesce(o.destination, t.destination),
            reason = coalesce(o.reason, t.reason),
            next_attempt_at = case when o.state = 'pending'
                                   then now() + make_interval(secs => coalesce(o.delay_seconds, 0))
                              end,
            settled_at = case when o.state <> 'pending' then now() end,
            lease_until = null,
            claim_token = null,
            updated_at = now()
        from o
        where t.turn_id = o.turn_id and t.state = 'pending' and t.claim_token = p_token
          and o.state in ('published', 'delivered', 'failed', 'pending')
        returning 1
    )
    select jsonb_build_object('settled', count(*)) from settled;
$$;

-- QStash gave up on a turn: matched by its message id and destination (both, as event
-- callbacks are), a `published` turn becomes `failed` (replayable). Anything else is ignored.
create function public.ingest_turn_failed(p_message_id text, p_url text, p_status int)
returns jsonb
language sql
set search_path = ''
as $$
    with failed as (
        update public.ig_turns
        set state = 'failed', reason = format('qstash gave up after status %s', p_status),
            settled_at = now(), updated_at = now()
        where qstash_message_id = p_message_id and destination = p_url and state = 'published'
        returning turn_id
    )
    select jsonb_build_object('turn_id', (select turn_id from failed),
                              'outcome', case when exists (select 1 from failed)
                                              then 'failed' else 'ignored' end);
$$;

-- --- operating turns ----------------------------------------------------------------------------

-- Held, failed or limited turns back to pending, replayed: the relay POSTs them directly
-- (never under a deduplication ID QStash may still hold), signed afresh. Refused while the
-- kill switch holds. p_dry_run counts.
create function public.ingest_turn_replay(
    p_states text[], p_turn_ids text[] default null, p_dry_run boolean default false)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_count int;
begin
    if not p_dry_run and (select kill_switch and hold from public.safety_state where id) then
        raise exception 'the kill switch is holding events; deactivate it before replaying'
            using errcode = 'P0001';
    end if;
    if p_dry_run then
        select count(*) into v_count from public.ig_turns
        where state = any(p_states) and state in ('held', 'failed', 'limited')
          and (p_turn_ids is null or turn_id = any(p_turn_ids));
        return jsonb_build_object('would_replay', v_count);
    end if;
    update public.ig_turns
    set state = 'pending', replayed = true, reason = 'replay', next_attempt_at = now(),
        lease_until = null, claim_token = null, settled_at = null, updated_at = now()
    where state = any(p_states) and state in ('held', 'failed', 'limited')
      and (p_turn_ids is null or turn_id = any(p_turn_ids));
    get diagnostics v_count = row_count;
    return jsonb_build_object('replayed', v_count);
end;
$$;

-- Turns for `ingestctl turns`, the console and the metrics: counts by state, and the latest
-- turns (of one state, one conversation, or all), newest first, without message text.
create function public.ingest_turns(
    p_state text default null, p_account text default null, p_customer text default null,
    p_limit int default 50)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'counts', coalesce((select jsonb_object_agg(state, n) from (
            select state, count(*) as n from public.ig_turns group by state) c), '{}'::jsonb),
        'turns', coalesce((select jsonb_agg(to_jsonb(r) order by r.opened_at desc) from (
            select t.turn_id, t.account_id, t.customer_id, t.state, t.seq, t.messages,
                   t.opened_at, t.closed_at, t.closed_because, t.attempts, t.route, t.reason,
                   t.replayed, t.settled_at,
                   (select array_agg(m.mid order by m.sent_at, m.arrived_at)
                    from public.ig_turn_messages m where m.turn_id = t.turn_id) as mids
            from public.ig_turns t
            where (p_state is null or t.state = p_state)
              and (p_account is null or t.account_id = p_account)
              and (p_customer is null or t.customer_id = p_customer)
            order by t.opened_at desc
            limit p_limit) r), '[]'::jsonb));
$$;

-- Retention: delivered and published turns closed more than p_days ago, in batches.
create function public.ig_turn_prune(p_days int, p_batch int)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_count int;
begin
    with old as (
        select turn_id from public.ig_turns
        where state in ('delivered', 'published')
          and closed_at < now() - make_interval(days => p_days)
        limit p_batch
        for update skip locked
    )
    delete from public.ig_turns t using old where t.turn_id = old.turn_id;
    get diagnostics v_count = row_count;
    return jsonb_build_object('turns', v_count);
end;
$$;

-- Erasure: whoever deletes a conversation's messages or events (`ig_forget`,
-- `ig_forget_account`, Meta's callbacks) deletes its turns in the same statement.
create function public.ig_turn_forget_messages()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.ig_turns t
    using (select distinct account_id, sender_id, recipient_id from gone) g
    where t.account_id = g.account_id
      and t.customer_id in (g.sender_id, g.recipient_id);
    return null;
end;
$$;

create trigger ig_messages_forget_turns
    after delete on public.ig_messages
    referencing old table as gone
    for each statement execute function public.ig_turn_forget_messages();

create function public.ig_turn_forget_events()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    delete from public.ig_turns t
    using (select distinct account_id, sender_id from gone) g
    where t.account_id = g.account_id and t.customer_id = g.sender_id;
    return null;
end;
$$;

create trigger ig_events_forget_turns
    after delete on public.ig_events
    referencing old table as gone
    for each statement execute function public.ig_turn_forget_events();

select public.ingest_secure_functions();
