-- Erasure without gaps (found by a review, each a test in tests/test_erasure_edges.py).
--
-- 1. A QStash failure callback arriving after the erasure put the message back into
--    `dead_letters` and turned the `erased` ledger row into a replayable `failed` one.
--    A dead letter of an erased person (or of an erased ledger row) is now recorded
--    without its body, and the ledger row stays erased.
-- 2. A row the ledger refused at admission keeps its event as text only (no sender, no
--    account): erasure now finds it by the sender, recipient or account its text names.
-- 3. A message being stored while an erasure ran survived it (the erasure chose its rows
--    before the store committed). Storing an event takes a shared advisory lock, one of
--    64 per account picked by the customer; erasing a customer takes theirs exclusively
--    (under each account), erasing an account all 64, in one order: an erasure waits for
--    the stores in flight, and the stores after it see its tombstone. (One lock per
--    account, shared by every store, cost the consumer about 5%: 32 sessions queueing
--    on one lock; spread over 64, the cost is lost in the noise.)
-- 4. Erasing an account left audit details that named its customers.
-- 5. `forget ''` matched every audit detail and wrote the account-wide tombstone;
--    erasing a business account's own id as a customer erased its replies to everyone.
--    Both are refused (22023), with a sentence.

-- The advisory lock key of part `p_part` (0-63) of an account's erasure locks.
create function public.ig_erasure_lock(p_account text, p_part int)
returns bigint
language sql
immutable
set search_path = ''
as $$
    select hashtextextended(format('ig_erasure:%s:%s', p_account, p_part), 0);
$$;

-- The part a customer's events take: always the same one for the same customer.
create function public.ig_erasure_part(p_customer text)
returns int
language sql
immutable
set search_path = ''
as $$
    select (hashtext(coalesce(p_customer, '')) & 63);
$$;

-- Whether a ledger row's event text (kept when the ledger refused the event) names
-- `p_value` as its `p_field`: the text is the event's jsonb output, `"field": value`.
create function public.ig_text_names(p_text text, p_field text, p_value text)
returns boolean
language sql
immutable
set search_path = ''
as $$
    select p_text is not null
       and strpos(p_text, format('"%s": %s', p_field, to_jsonb(p_value)::text)) > 0;
$$;

-- As in 20261202500000_privacy.sql, holding the event's erasure lock (shared: stores do
-- not wait on each other) before the tombstone check.
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
    return jsonb_build_object('outcome', v_outcome);
end;
$$;

-- As in 20261125000200_messages.sql, except for an erased person or ledger row: the
-- letter is recorded (QStash's ids and status) without the body, and the row stays erased.
create or replace function public.ig_record_dead_letter(p_letter jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_body     jsonb := p_letter->'source_body';
    v_dedup_id text := p_letter->'source_body'->>'dedup_id';
    v_erased   boolean;
begin
    v_erased := (jsonb_typeof(v_body) = 'object'
                 and exists (select 1 from public.ig_tombstones)
                 and public.ig_is_erased(v_body))
             or exists (select 1 from public.ingest_ledger
                        where dedup_id = v_dedup_id and state = 'erased');
    insert into public.dead_letters (
        dlq_id, source_message_id, dedup_id, last_status, retried, url, last_response,
        source_body, callback)
    values (
        p_letter->>'dlq_id', p_letter->>'source_message_id', v_dedup_id,
        (p_letter->>'last_status')::int, (p_letter->>'retried')::int, p_letter->>'url',
        case when v_erased then null else p_letter->>'last_response' end,
        case when v_erased then null else v_body end,
        case when v_erased then '{}'::jsonb else p_letter->'callback' end)
    on conflict (dlq_id) do nothing;
    if not found then
        return jsonb_build_object('outcome', 'duplicate');
    end if;
    if v_erased then
        return jsonb_build_object('outcome', 'erased');
    end if;
    if v_dedup_id is not null then
        update public.ingest_ledger
        set state = 'failed', reason = format('dead letter after status %s', p_letter->>'last_status'),
            event = v_body, updated_at = now()
        where dedup_id = v_dedup_id;
    end if;
    return jsonb_build_object('outcome', 'stored');
end;
$$;

-- As in 20261202500000_privacy.sql, and: the input is checked; the erasure lock is taken
-- first; ledger rows kept as text only are found by what their text names.
create or replace function public.ig_forget(
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
    if p_igsid is null or btrim(p_igsid) = '' then
        raise exception 'an IGSID is required' using errcode = '22023';
    end if;
    if exists (select 1 from public.ig_accounts where account_id = p_igsid)
       or exists (select 1 from public.ig_messages where account_id = p_igsid) then
        raise exception '% is a business account, not a customer (Meta''s data-deletion callback erases an account)',
            p_igsid using errcode = '22023';
    end if;
    if not p_dry_run then  -- under every account they may be stored under, in one order
        perform pg_advisory_xact_lock(public.ig_erasure_lock(a, public.ig_erasure_part(p_igsid)))
        from (select p_account as a where p_account is not null
              union select account_id from public.ig_accounts where p_account is null
              union select account_id from public.ig_profiles
                    where p_account is null and igsid = p_igsid
              union select account_id from public.ig_messages
                    where p_account is null and (sender_id = p_igsid or recipient_id = p_igsid)
              union select account_id from public.ig_events
                    where p_account is null and sender_id = p_igsid) accounts
        where a is not null
        order by a;
    end if;
    select coalesce(array_agg(mid), '{}'), coalesce(array_agg(distinct account_id), '{}')
    into v_mids, v_accounts
    from public.ig_messages
    where (sender_id = p_igsid or recipient_id = p_igsid)
      and (p_account is null or account_id = p_account);
    select coalesce(array_agg(dedup_id), '{}') into v_ids
    from public.ingest_ledger
    where ((sender_id = p_igsid or event->>'recipient_id' = p_igsid)
           and (p_account is null or account_id = p_account))
       or (event_text is not null
           and (public.ig_text_names(event_text, 'sender_id', p_igsid)
                or public.ig_text_names(event_text, 'recipient_id', p_igsid))
           and (p_account is null or public.ig_text_names(event_text, 'account_id', p_account)));
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

-- As in 20261202500000_privacy.sql, and: the account's erasure lock first; ledger rows
-- kept as text only; audit details naming the account or one of its customers.
create or replace function public.ig_forget_account(p_account text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_counts jsonb;
    v_people text[];
begin
    if p_account is null or btrim(p_account) = '' then
        raise exception 'an account id is required' using errcode = '22023';
    end if;
    perform pg_advisory_xact_lock(public.ig_erasure_lock(p_account, part))
    from generate_series(0, 63) part
    order by part;
    v_counts := jsonb_build_object(
        'messages', (select count(*) from public.ig_messages where account_id = p_account),
        'profiles', (select count(*) from public.ig_profiles where account_id = p_account),
        'events', (select count(*) from public.ig_events where account_id = p_account),
        'reactions', (select count(*) from public.ig_reactions where account_id = p_account));
    v_people := array(
        select igsid from public.ig_profiles where account_id = p_account
        union select sender_id from public.ig_messages where account_id = p_account
        union select recipient_id from public.ig_messages where account_id = p_account
        union select sender_id from public.ig_events where account_id = p_account);
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
    update public.ingest_audit a
    set detail = jsonb_build_object('erased', true)
    where strpos(a.detail::text, p_account) > 0
       or exists (select 1 from unnest(v_people) p
                  where p is not null and p <> '' and strpos(a.detail::text, p) > 0);
    update public.ingest_ledger
    set event = null, event_text = null, sender_id = null, limit_key = null,
        reason = case when state in ('pending', 'held', 'failed') then 'erased' else reason end,
        state = case when state in ('pending', 'held', 'failed') then 'erased' else state end,
        settled_at = coalesce(settled_at, now()), updated_at = now()
    where account_id = p_account
       or (account_id is null and public.ig_text_names(event_text, 'account_id', p_account));
    insert into public.ig_tombstones (key, scope)
    values (public.ig_tombstone_key(p_account, null), 'account')
    on conflict (key) do update set erased_at = now();
    return v_counts;
end;
$$;

select public.ingest_secure_functions();
