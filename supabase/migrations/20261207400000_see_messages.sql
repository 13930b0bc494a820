-- Seeing the stored messages: `ingestctl messages` / `tail` / `status`, and the console's
-- conversation page and paged conversation list. Read-only functions over the consumer's
-- tables; nothing here is on the webhook's or the consumer's path.

-- One message as every reader shows it: the customer is the other side of the
-- conversation (the sender of an inbound message, the recipient of an echo), its kind
-- what a person would call it.
create function public.ingest_message_row(m public.ig_messages)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'mid', m.mid,
        'account_id', m.account_id,
        'customer', case when m.direction = 'in' then m.sender_id else m.recipient_id end,
        'direction', m.direction,
        'sent_at', m.sent_at,
        'stored_at', m.created_at,
        'kind', case
            when m.deleted_at is not null then 'unsent'
            when m.story is not null then 'story_reply'
            when m.is_unsupported then 'unsupported'
            when jsonb_array_length(m.attachments) > 0 and m.text is null then 'attachment'
            else 'text' end,
        'text', m.text,
        'attachments', coalesce((
            select jsonb_agg(jsonb_build_object('type', a.type, 'url', a.url, 'title', a.title)
                             order by a.position)
            from public.ig_attachments a where a.mid = m.mid), '[]'::jsonb),
        'reactions', coalesce((
            select jsonb_agg(jsonb_build_object(
                       'sender_id', r.sender_id, 'reaction', r.reaction, 'emoji', r.emoji)
                             order by r.updated_at)
            from public.ig_reactions r where r.mid = m.mid and r.action = 'react'), '[]'::jsonb),
        'edit_count', m.edit_count,
        'edited_at', m.edited_at,
        'deleted_at', m.deleted_at,
        'reply_to_mid', m.reply_to_mid
    );
$$;

-- Newest first (`ingestctl messages`), or, given `p_after` (a stored_at and mid already
-- seen), oldest first from there (`ingestctl tail`). Placeholders (an edit or unsend that
-- came before its message) are not messages yet. Times come as ISO 8601 text (both backends
-- pass JSON-friendly values).
create function public.ingest_messages(
    p_customer text, p_since text, p_after text, p_after_mid text, p_limit int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(public.ingest_message_row(x.m) order by
               case when p_after is null then x.created_at end desc,
               case when p_after is null then x.mid end desc,
               x.created_at, x.mid), '[]'::jsonb)
    from (
        select m, m.created_at, m.mid from public.ig_messages m
        where not m.is_placeholder
          and (p_customer is null or p_customer in (m.sender_id, m.recipient_id))
          and (p_since is null or coalesce(m.sent_at, m.created_at) >= p_since::timestamptz)
          and (p_after is null
               or (m.created_at, m.mid) > (p_after::timestamptz, coalesce(p_after_mid, '')))
        order by
            case when p_after is null then m.created_at end desc,
            case when p_after is null then m.mid end desc,
            m.created_at, m.mid
        limit greatest(least(p_limit, 1000), 1)
    ) x;
$$;

-- What is stored, for `ingestctl status` and the console.
create function public.ingest_stored_totals()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'messages', (select count(*) from public.ig_messages where not is_placeholder),
        'customers', (select count(*) from public.ig_profiles),
        'messages_today', (
            select count(*) from public.ig_messages
            where not is_placeholder
              and created_at >= (now() at time zone 'utc')::date::timestamp at time zone 'utc'),
        'deauthorized', coalesce((
            select jsonb_agg(jsonb_build_object('account_id', account_id,
                                                'deauthorized_at', deauthorized_at)
                             order by deauthorized_at desc)
            from public.ig_accounts where deauthorized_at is not null), '[]'::jsonb)
    );
$$;

-- One customer's conversation, oldest first: their profile and up to `p_limit` messages
-- (the newest ones when there are more), each with attachments, reactions, edits, unsends.
create function public.ingest_conversation(p_igsid text, p_limit int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'profile', (
            select jsonb_build_object(
                'igsid', p.igsid, 'account_id', p.account_id, 'name', p.name,
                'username', p.username, 'first_seen_at', p.first_seen_at,
                'last_seen_at', p.last_seen_at, 'messages_in', p.messages_in,
                'messages_out', p.messages_out)
            from public.ig_profiles p where p.igsid = p_igsid),
        'total', (
            select count(*) from public.ig_messages m
            where not m.is_placeholder and p_igsid in (m.sender_id, m.recipient_id)),
        'messages', coalesce((
            select jsonb_agg(public.ingest_message_row(x.m)
                             order by x.sent_at, x.created_at, x.mid)
            from (
                select m, m.sent_at, m.created_at, m.mid from public.ig_messages m
                where not m.is_placeholder and p_igsid in (m.sender_id, m.recipient_id)
                order by m.sent_at desc nulls last, m.created_at desc, m.mid desc
                limit greatest(least(p_limit, 1000), 1)
            ) x), '[]'::jsonb)
    );
$$;

-- The console's conversation list, a page at a time, optionally narrowed by a search on
-- the customer's id, name or username (a substring, case-insensitive).
create function public.ingest_conversations_page(p_search text, p_offset int, p_limit int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with matching as (
        select * from public.ig_profiles p
        where p_search is null or p_search = ''
           or strpos(lower(p.igsid || ' ' || coalesce(p.name, '') || ' '
                           || coalesce(p.username, '')), lower(p_search)) > 0
    )
    select jsonb_build_object(
        'total', (select count(*) from matching),
        'rows', coalesce(jsonb_agg(jsonb_build_object(
            'igsid', p.igsid, 'name', p.name, 'username', p.username,
            'last_seen_at', p.last_seen_at, 'messages_in', p.messages_in,
            'messages_out', p.messages_out, 'last_text', m.text, 'last_sent_at', m.sent_at,
            'last_deleted', m.deleted_at is not null,
            'last_attachments', coalesce(jsonb_array_length(m.attachments), 0))
            order by p.last_seen_at desc, p.igsid), '[]'::jsonb))
    from (select * from matching
          order by last_seen_at desc, igsid
          offset greatest(p_offset, 0) limit greatest(least(p_limit, 200), 1)) p
    left join lateral (
        select mm.text, mm.sent_at, mm.deleted_at, mm.attachments
        from public.ig_messages mm
        where mm.account_id = p.account_id and mm.sender_id = p.igsid
          and mm.sent_at is not null
        order by mm.sent_at desc
        limit 1) m on true;
$$;

select public.ingest_secure_functions();
