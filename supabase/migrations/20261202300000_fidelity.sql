-- Contract v2: what real deliveries carry, stored the way a business reads it.
--
-- Every stored row says which platform it came from (a Messenger DM is never mistaken
-- for an Instagram one), whether it came through standby[] (another app owns the
-- thread), from a webhook or from reconcile. Messages say whether the account wrote
-- to itself, and which ad, link or product started the conversation; each shared
-- thing is one row of ig_attachments with its ids in columns. The App Dashboard's
-- test deliveries are kept in ig_events as test events, never as customer data, and
-- the account itself never becomes a customer profile. v1 events are still applied.

-- --- columns ------------------------------------------------------------------------------

alter table public.ig_messages
    add column platform text not null default 'instagram'
        check (platform in ('instagram', 'messenger')),
    add column via_standby boolean not null default false,
    add column origin text not null default 'webhook' check (origin in ('webhook', 'reconcile')),
    add column is_self boolean not null default false,
    add column referral_source text,
    add column referral_type text,
    add column referral_ref text,
    add column referral_ad_id text,
    add column referral_product_id text,
    add column referral_context jsonb;
create index ig_messages_referral_ad_idx
    on public.ig_messages (referral_ad_id) where referral_ad_id is not null;

alter table public.ig_events
    add column platform text not null default 'instagram'
        check (platform in ('instagram', 'messenger')),
    add column via_standby boolean not null default false,
    add column origin text not null default 'webhook' check (origin in ('webhook', 'reconcile')),
    add column is_test boolean not null default false;

alter table public.ig_reactions
    add column platform text not null default 'instagram'
        check (platform in ('instagram', 'messenger'));

-- One row per shared thing, in the order Meta sent them (a post share that arrived as
-- both `share` and `ig_post` is one row). `url` is the one to open; a story share's is
-- its story media URL. Media is referenced, never downloaded.
create table public.ig_attachments (
    mid        text not null,
    position   integer not null,
    account_id text,
    type       text not null,
    url        text,
    media_id   text,
    reel_id    text,
    story_id   text,
    title      text,
    payload    jsonb not null default '{}'::jsonb,
    platform   text not null default 'instagram',
    primary key (mid, position)
);
create index ig_attachments_media_idx on public.ig_attachments (media_id) where media_id is not null;
create index ig_attachments_reel_idx on public.ig_attachments (reel_id) where reel_id is not null;
alter table public.ig_attachments enable row level security;

-- The attachments stored before, as rows (the same attachment list every message has kept).
insert into public.ig_attachments (mid, position, account_id, type, url, payload)
select m.mid, a.n::int - 1, m.account_id, coalesce(a.value->>'type', 'unknown'),
       a.value->>'url', coalesce(a.value->'payload', '{}'::jsonb)
from public.ig_messages m
cross join lateral jsonb_array_elements(m.attachments) with ordinality a(value, n)
where jsonb_typeof(m.attachments) = 'array'
on conflict do nothing;

-- --- applying events -------------------------------------------------------------------------

-- The Instagram user an event is about: the sender, unless the business sent it. Never
-- the account itself (a self-message names the account's own IGSID), never a test.
create or replace function public.ig_touch_profile(p_event jsonb, p_new_in int, p_new_out int)
returns void
language sql
set search_path = ''
as $$
    insert into public.ig_profiles (igsid, account_id, messages_in, messages_out)
    select who, p_event->>'account_id', p_new_in, p_new_out
    from (select case
        when p_event->>'sender_id' is distinct from p_event->>'account_id'
            then p_event->>'sender_id'
        else p_event->>'recipient_id' end as who) w
    where who is not null
      and who is distinct from p_event->>'account_id'
      and not coalesce((p_event->>'is_self')::boolean, false)
      and not coalesce((p_event->>'is_test')::boolean, false)
    on conflict (igsid) do update
    set last_seen_at = now(),
        messages_in = ig_profiles.messages_in + excluded.messages_in,
        messages_out = ig_profiles.messages_out + excluded.messages_out;
$$;

create or replace function public.ig_apply_message(e jsonb)
returns text
language plpgsql
set search_path = ''
as $$
declare
    v_referral jsonb := nullif(e->'referral', 'null'::jsonb);
    v_deleted  boolean;
begin
    insert into public.ig_messages as m (
        mid, account_id, sender_id, recipient_id, direction, text, attachments,
        reply_to_mid, story, quick_reply_payload, is_unsupported, sent_at, raw,
        platform, via_standby, origin, is_self, referral_source, referral_type, referral_ref,
        referral_ad_id, referral_product_id, referral_context)
    values (
        e->>'mid', e->>'account_id', e->>'sender_id', e->>'recipient_id',
        coalesce(e->>'direction', 'in'), e->>'text', coalesce(e->'attachments', '[]'::jsonb),
        e->>'reply_to_mid', nullif(e->'story', 'null'::jsonb), e->>'quick_reply_payload',
        coalesce((e->>'is_unsupported')::boolean, false),
        public.ig_ms_to_timestamptz(e->>'timestamp'), e->'raw',
        coalesce(e->>'platform', 'instagram'), coalesce((e->>'standby')::boolean, false),
        coalesce(e->>'origin', 'webhook'), coalesce((e->>'is_self')::boolean, false),
        v_referral->>'source', v_referral->>'type', v_referral->>'ref', v_referral->>'ad_id',
        v_referral->>'product_id', nullif(v_referral->'ads_context_data', 'null'::jsonb))
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
        platform = excluded.platform,
        via_standby = excluded.via_standby,
        origin = excluded.origin,
        is_self = excluded.is_self,
        referral_source = excluded.referral_source,
        referral_type = excluded.referral_type,
        referral_ref = excluded.referral_ref,
        referral_ad_id = excluded.referral_ad_id,
        referral_product_id = excluded.referral_product_id,
        referral_context = excluded.referral_context,
        is_placeholder = false,
        updated_at = now()
    where m.is_placeholder
    returning m.deleted_at is not null into v_deleted;
    if not found then
        return 'duplicate';
    end if;
    if not v_deleted then
        insert into public.ig_attachments (
            mid, position, account_id, type, url, media_id, reel_id, story_id, title, payload,
            platform)
        select e->>'mid', a.n::int - 1, e->>'account_id', coalesce(a.value->>'type', 'unknown'),
               a.value->>'url', a.value->>'media_id', a.value->>'reel_id', a.value->>'story_id',
               a.value->>'title', coalesce(a.value->'payload', '{}'::jsonb),
               coalesce(e->>'platform', 'instagram')
        from jsonb_array_elements(coalesce(e->'attachments', '[]'::jsonb))
             with ordinality a(value, n)
        on conflict (mid, position) do nothing;
    end if;
    perform public.ig_touch_profile(
        e,
        case when e->>'direction' = 'out' then 0 else 1 end,
        case when e->>'direction' = 'out' then 1 else 0 end);
    return 'stored';
end;
$$;

-- An edit. `num_edit` 0 with no text says nothing about the message (real traffic sends
-- it, sometimes before the message): it is kept as an event and marks nothing edited.
create or replace function public.ig_apply_edit(e jsonb)
returns text
language plpgsql
set search_path = ''
as $$
begin
    if coalesce((e->>'num_edit')::int, 0) = 0 and e->>'text' is null then
        return public.ig_apply_other(e);
    end if;
    insert into public.ig_messages as m (
        mid, account_id, sender_id, recipient_id, text, edit_count, edited_at, is_placeholder,
        platform, via_standby, origin)
    values (
        e->>'mid', e->>'account_id', e->>'sender_id', e->>'recipient_id', e->>'text',
        coalesce((e->>'num_edit')::int, 0), public.ig_ms_to_timestamptz(e->>'timestamp'), true,
        coalesce(e->>'platform', 'instagram'), coalesce((e->>'standby')::boolean, false),
        coalesce(e->>'origin', 'webhook'))
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

-- Unsend: a soft delete that clears the content (attachments included), as Meta's
-- platform terms require.
create or replace function public.ig_apply_unsend(e jsonb)
returns text
language plpgsql
set search_path = ''
as $$
begin
    insert into public.ig_messages as m (
        mid, account_id, sender_id, recipient_id, deleted_at, is_placeholder, platform)
    values (
        e->>'mid', e->>'account_id', e->>'sender_id', e->>'recipient_id',
        coalesce(public.ig_ms_to_timestamptz(e->>'timestamp'), now()), true,
        coalesce(e->>'platform', 'instagram'))
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
    delete from public.ig_attachments where mid = e->>'mid';
    return 'stored';
end;
$$;

create or replace function public.ig_apply_reaction(e jsonb)
returns text
language plpgsql
set search_path = ''
as $$
begin
    insert into public.ig_reactions as r (
        mid, sender_id, account_id, action, reaction, emoji, event_ts, platform)
    values (
        e->>'mid', coalesce(e->>'sender_id', ''), e->>'account_id',
        coalesce(e->>'action', 'react'), e->>'reaction', e->>'emoji',
        coalesce((e->>'timestamp')::bigint, 0), coalesce(e->>'platform', 'instagram'))
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

-- Reads, postbacks, referrals, `changes` items, unsupported and test items: kept whole.
create or replace function public.ig_apply_other(e jsonb)
returns text
language plpgsql
set search_path = ''
as $$
begin
    insert into public.ig_events (
        dedup_id, kind, account_id, sender_id, mid, field, occurred_at, event,
        platform, via_standby, origin, is_test)
    values (
        e->>'dedup_id', e->>'kind', e->>'account_id', e->>'sender_id', e->>'mid', e->>'field',
        public.ig_ms_to_timestamptz(e->>'timestamp'), e,
        coalesce(e->>'platform', 'instagram'), coalesce((e->>'standby')::boolean, false),
        coalesce(e->>'origin', 'webhook'), coalesce((e->>'is_test')::boolean, false))
    on conflict (dedup_id) do nothing;
    if not found then
        return 'duplicate';
    end if;
    perform public.ig_touch_profile(e, 0, 0);
    return 'stored';
end;
$$;

-- Apply one contract event (v1 or v2). Returns {"outcome": "stored" | "duplicate"}.
-- Anything else is refused with SQLSTATE 22023 (permanent). A test event never touches
-- messages, reactions or profiles.
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

select public.ingest_secure_functions();
