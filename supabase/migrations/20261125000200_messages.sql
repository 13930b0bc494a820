-- Profiles, messages, reactions, other events and dead letters, and the one
-- function that applies a contract event to them.
--
-- `ig_apply_event` is idempotent (every event applied twice is stored once) and
-- order-tolerant: an edit, unsend or reaction that arrives before its message
-- leaves a placeholder row that the message later fills in, so every order of
-- arrival converges to the same rows.

create table if not exists public.ig_profiles (
    igsid                   text primary key,
    account_id              text,
    first_seen_at           timestamptz not null default now(),
    last_seen_at            timestamptz not null default now(),
    messages_in             integer not null default 0,
    messages_out            integer not null default 0,
    name                    text,
    username                text,
    profile_pic             text,
    profile_pic_fetched_at  timestamptz,
    follower_count          integer,
    is_user_follow_business boolean,
    is_business_follow_user boolean,
    is_verified_user        boolean,
    enrichment_claimed_at   timestamptz,
    enriched_at             timestamptz,
    enrichment_error        text
);

create table if not exists public.ig_messages (
    mid                 text primary key,
    account_id          text not null,
    sender_id           text,
    recipient_id        text,
    direction           text not null default 'in' check (direction in ('in', 'out')),
    text                text,
    attachments         jsonb not null default '[]'::jsonb,
    reply_to_mid        text,
    story               jsonb,
    quick_reply_payload text,
    is_unsupported      boolean not null default false,
    is_placeholder      boolean not null default false,  -- an edit/unsend came first
    sent_at             timestamptz,
    edit_count          integer not null default 0,
    edited_at           timestamptz,
    deleted_at          timestamptz,
    raw                 jsonb,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);
create index if not exists ig_messages_conversation_idx
    on public.ig_messages (account_id, sender_id, sent_at);

create table if not exists public.ig_reactions (
    mid         text not null,   -- the reacted message (may not be stored yet)
    sender_id   text not null,
    account_id  text,
    action      text not null check (action in ('react', 'unreact')),
    reaction    text,
    emoji       text,
    event_ts    bigint not null default 0,  -- Meta's timestamp: the newest wins
    updated_at  timestamptz not null default now(),
    primary key (mid, sender_id)
);

create table if not exists public.ig_events (
    dedup_id    text primary key,
    kind        text not null,
    account_id  text,
    sender_id   text,
    mid         text,
    field       text,
    occurred_at timestamptz,
    event       jsonb not null,
    created_at  timestamptz not null default now()
);
create index if not exists ig_events_kind_idx on public.ig_events (kind, created_at);

create table if not exists public.dead_letters (
    id                bigserial primary key,
    dlq_id            text unique,
    source_message_id text,
    dedup_id          text,
    last_status       integer,
    retried           integer,
    url               text,
    last_response     text,
    source_body       jsonb,
    callback          jsonb not null,
    created_at        timestamptz not null default now()
);

alter table public.ig_profiles enable row level security;
alter table public.ig_messages enable row level security;
alter table public.ig_reactions enable row level security;
alter table public.ig_events enable row level security;
alter table public.dead_letters enable row level security;

create or replace function public.ig_ms_to_timestamptz(p_ms text)
returns timestamptz
language sql
immutable
as $$ select case when p_ms is null then null else to_timestamp(p_ms::numeric / 1000) end $$;

-- The Instagram user an event is about: the sender, unless the business sent it.
create or replace function public.ig_touch_profile(p_event jsonb, p_new_in int, p_new_out int)
returns void
language sql
as $$
    insert into public.ig_profiles (igsid, account_id, messages_in, messages_out)
    select who, p_event->>'account_id', p_new_in, p_new_out
    from (select case
        when p_event->>'sender_id' is distinct from p_event->>'account_id'
            then p_event->>'sender_id'
        else p_event->>'recipient_id' end as who) w
    where who is not null
    on conflict (igsid) do update
    set last_seen_at = now(),
        messages_in = ig_profiles.messages_in + excluded.messages_in,
        messages_out = ig_profiles.messages_out + excluded.messages_out;
$$;

create or replace function public.ig_apply_message(e jsonb)
returns text
language plpgsql
as $$
begin
    insert into public.ig_messages as m (
        mid, account_id, sender_id, recipient_id, direction, text, attachments,
        reply_to_mid, story, quick_reply_payload, is_unsupported, sent_at, raw)
    values (
        e->>'mid', e->>'account_id', e->>'sender_id', e->>'recipient_id',
        coalesce(e->>'direction', 'in'), e->>'text', coalesce(e->'attachments', '[]'::jsonb),
        e->>'reply_to_mid', nullif(e->'story', 'null'::jsonb), e->>'quick_reply_payload',
        coalesce((e->>'is_unsupported')::boolean, false),
        public.ig_ms_to_timestamptz(e->>'timestamp'), e->'raw')
    on conflict (mid) do update
    -- Fill a placeholder left by an earlier edit/unsend; an edit's text and an
    -- unsend's clearing stay, because they are newer than the original message.
    set account_id = excluded.account_id,
        sender_id = excluded.sender_id,
        recipient_id = excluded.recipient_id,
        direction = excluded.direction,
        text = case when m.deleted_at is not null then null
                    when m.edit_count > 0 then m.text
                    else excluded.text end,
        attachments = case when m.deleted_at is not null then '[]'::jsonb
                           else excluded.attachments end,
        reply_to_mid = excluded.reply_to_mid,
        story = case when m.deleted_at is not null then null else excluded.story end,
        quick_reply_payload = excluded.quick_reply_payload,
        is_unsupported = excluded.is_unsupported,
        sent_at = excluded.sent_at,
        raw = case when m.deleted_at is not null then null else excluded.raw end,
        is_placeholder = false,
        updated_at = now()
    where m.is_placeholder
    ;
    if not found then
        return 'duplicate';
    end if;
    perform public.ig_touch_profile(
        e,
        case when e->>'direction' = 'out' then 0 else 1 end,
        case when e->>'direction' = 'out' then 1 else 0 end);
    return 'stored';
end;
$$;

create or replace function public.ig_apply_edit(e jsonb)
returns text
language plpgsql
as $$
begin
    insert into public.ig_messages as m (
        mid, account_id, sender_id, recipient_id, text, edit_count, edited_at, is_placeholder)
    values (
        e->>'mid', e->>'account_id', e->>'sender_id', e->>'recipient_id', e->>'text',
        coalesce((e->>'num_edit')::int, 0), public.ig_ms_to_timestamptz(e->>'timestamp'), true)
    on conflict (mid) do update
    set text = excluded.text,
        edit_count = excluded.edit_count,
        edited_at = excluded.edited_at,
        updated_at = now()
    where m.edit_count < excluded.edit_count and m.deleted_at is null;
    if not found then
        return 'duplicate';
    end if;
    perform public.ig_touch_profile(e, 0, 0);
    return 'stored';
end;
$$;

-- Unsend: a soft delete that clears the content, as Meta's platform terms require.
create or replace function public.ig_apply_unsend(e jsonb)
returns text
language plpgsql
as $$
begin
    insert into public.ig_messages as m (
        mid, account_id, sender_id, recipient_id, deleted_at, is_placeholder)
    values (
        e->>'mid', e->>'account_id', e->>'sender_id', e->>'recipient_id',
        coalesce(public.ig_ms_to_timestamptz(e->>'timestamp'), now()), true)
    on conflict (mid) do update
    set deleted_at = excluded.deleted_at,
        text = null,
        attachments = '[]'::jsonb,
        story = null,
        raw = null,
        updated_at = now()
    where m.deleted_at is null;
    if not found then
        return 'duplicate';
    end if;
    return 'stored';
end;
$$;

create or replace function public.ig_apply_reaction(e jsonb)
returns text
language plpgsql
as $$
begin
    insert into public.ig_reactions as r (
        mid, sender_id, account_id, action, reaction, emoji, event_ts)
    values (
        e->>'mid', coalesce(e->>'sender_id', ''), e->>'account_id',
        coalesce(e->>'action', 'react'), e->>'reaction', e->>'emoji',
        coalesce((e->>'timestamp')::bigint, 0))
    on conflict (mid, sender_id) do update
    set action = excluded.action,
        reaction = excluded.reaction,
        emoji = excluded.emoji,
        event_ts = excluded.event_ts,
        updated_at = now()
    where r.event_ts < excluded.event_ts;
    if not found then
        return 'duplicate';
    end if;
    perform public.ig_touch_profile(e, 0, 0);
    return 'stored';
end;
$$;

-- Reads, postbacks, referrals, `changes` items, unsupported items: kept whole.
create or replace function public.ig_apply_other(e jsonb)
returns text
language plpgsql
as $$
begin
    insert into public.ig_events (dedup_id, kind, account_id, sender_id, mid, field, occurred_at, event)
    values (
        e->>'dedup_id', e->>'kind', e->>'account_id', e->>'sender_id', e->>'mid', e->>'field',
        public.ig_ms_to_timestamptz(e->>'timestamp'), e)
    on conflict (dedup_id) do nothing;
    if not found then
        return 'duplicate';
    end if;
    perform public.ig_touch_profile(e, 0, 0);
    return 'stored';
end;
$$;

-- Apply one contract event (v1). Returns {"outcome": "stored" | "duplicate"}.
-- Anything that is not a v1 event is refused with SQLSTATE 22023 (permanent).
create or replace function public.ig_apply_event(p_event jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_outcome text;
begin
    if coalesce(p_event->>'v', '') <> '1' then
        raise exception 'unsupported contract version: %', p_event->>'v' using errcode = '22023';
    end if;
    if coalesce(p_event->>'dedup_id', '') = '' or p_event->>'account_id' is null then
        raise exception 'event lacks dedup_id or account_id' using errcode = '22023';
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

-- A QStash failure callback: record it (once per DLQ id) and mark the ledger row failed,
-- keeping the event so that `ingestctl replay` can send it again.
create or replace function public.ig_record_dead_letter(p_letter jsonb)
returns jsonb
language plpgsql
as $$
declare
    v_dedup_id text := p_letter->'source_body'->>'dedup_id';
begin
    insert into public.dead_letters (
        dlq_id, source_message_id, dedup_id, last_status, retried, url, last_response,
        source_body, callback)
    values (
        p_letter->>'dlq_id', p_letter->>'source_message_id', v_dedup_id,
        (p_letter->>'last_status')::int, (p_letter->>'retried')::int, p_letter->>'url',
        p_letter->>'last_response', p_letter->'source_body', p_letter->'callback')
    on conflict (dlq_id) do nothing;
    if not found then
        return jsonb_build_object('outcome', 'duplicate');
    end if;
    if v_dedup_id is not null then
        update public.ingest_ledger
        set state = 'failed', reason = format('dead letter after status %s', p_letter->>'last_status'),
            event = p_letter->'source_body', updated_at = now()
        where dedup_id = v_dedup_id;
    end if;
    return jsonb_build_object('outcome', 'stored');
end;
$$;

-- Profile enrichment: claim a profile if it was not enriched (or tried) within the interval.
create or replace function public.ig_claim_profile_enrichment(p_igsid text, p_interval_seconds int)
returns jsonb
language sql
as $$
    with claimed as (
        update public.ig_profiles
        set enrichment_claimed_at = now()
        where igsid = p_igsid
          and coalesce(enrichment_claimed_at, '-infinity')
              < now() - make_interval(secs => p_interval_seconds)
        returning igsid
    )
    select jsonb_build_object('claimed', exists (select 1 from claimed));
$$;

-- Store a fetched profile, or the error. p_retry releases the claim so that a later
-- event tries again (transient failures); otherwise the next try waits the interval.
create or replace function public.ig_store_profile(
    p_igsid text, p_profile jsonb, p_error text, p_retry boolean)
returns jsonb
language sql
as $$
    update public.ig_profiles
    set enrichment_claimed_at = case when p_retry then null else enrichment_claimed_at end,
        name = coalesce(p_profile->>'name', name),
        username = coalesce(p_profile->>'username', username),
        profile_pic = coalesce(p_profile->>'profile_pic', profile_pic),
        profile_pic_fetched_at = case when p_profile ? 'profile_pic' then now()
                                      else profile_pic_fetched_at end,
        follower_count = coalesce((p_profile->>'follower_count')::int, follower_count),
        is_user_follow_business = coalesce(
            (p_profile->>'is_user_follow_business')::boolean, is_user_follow_business),
        is_business_follow_user = coalesce(
            (p_profile->>'is_business_follow_user')::boolean, is_business_follow_user),
        is_verified_user = coalesce((p_profile->>'is_verified_user')::boolean, is_verified_user),
        enriched_at = case when p_error is null then now() else enriched_at end,
        enrichment_error = p_error
    where igsid = p_igsid
    returning jsonb_build_object('updated', true);
$$;
