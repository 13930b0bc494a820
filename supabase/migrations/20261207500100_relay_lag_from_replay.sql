-- The relay lag (`ingest_relay_lag_seconds`, from each claimed row's `age_seconds`) measures
-- the relay's time, not an operator's hold: for a replayed event it runs from the replay,
-- not from its admission (hours earlier, perhaps, while the kill switch held it), as the
-- console's lag does since 20261207400100. Only `age`'s start changes; the rest is
-- 20261202000100_relay.sql's function as it was.

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
create or replace function public.ingest_relay_claim(
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
                  extract(epoch from now() - coalesce(l.replayed_at, l.admitted_at))::float8
                      as age,
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

select public.ingest_secure_functions();
