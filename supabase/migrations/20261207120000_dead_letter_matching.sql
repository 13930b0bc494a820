-- Failure callbacks change only what they are about, and count once.
--
-- A signed failure callback is QStash's word that a message it delivered for us failed.
-- Before, `sourceBody.dedup_id` alone picked the ledger row to mark failed (with the
-- callback's body as its event): a callback naming a foreign URL and an unknown message
-- rewrote a published, stored row, and `replay --failed` stored what it carried. Now the
-- letter is always recorded, but a ledger row changes only when the callback matches what
-- we published (`ingest_callback_matches`, the one rule for anything this service
-- publishes through QStash): its `sourceMessageId` is the row's QStash message id, its
-- `url` is one of our destinations (the service passes them as `destinations`), and the
-- dedup ID its body names is the row's.
--
-- A callback without `dlqId` is deduplicated on (`sourceMessageId`, `createdAt`).

create function public.ingest_callback_matches(p_letter jsonb, p_message_id text, p_dedup_id text)
returns boolean
language sql
immutable
set search_path = ''
as $$
    select coalesce(
        p_letter->>'source_message_id' = p_message_id
        and p_letter->'source_body'->>'dedup_id' = p_dedup_id
        and jsonb_typeof(p_letter->'destinations') = 'array'
        and p_letter->'destinations' ? (p_letter->>'url'),
        false);
$$;

delete from public.dead_letters a
using public.dead_letters b
where a.dlq_id is null and b.dlq_id is null
  and a.source_message_id = b.source_message_id
  and a.callback->>'createdAt' = b.callback->>'createdAt'
  and a.id > b.id;
create unique index dead_letters_without_dlq_id_key
    on public.dead_letters (source_message_id, (callback->>'createdAt'))
    where dlq_id is null;

-- As in 20261202800000_erasure_gaps.sql, except: a letter is a duplicate by `dlqId`, or
-- without one by (`sourceMessageId`, `createdAt`); and the ledger row changes only when
-- the letter matches it (`ingest_callback_matches`), else the outcome is 'unmatched'.
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
    on conflict do nothing;
    if not found then
        return jsonb_build_object('outcome', 'duplicate');
    end if;
    if v_erased then
        return jsonb_build_object('outcome', 'erased');
    end if;
    if v_dedup_id is null then
        return jsonb_build_object('outcome', 'stored');
    end if;
    update public.ingest_ledger
    set state = 'failed', reason = format('dead letter after status %s', p_letter->>'last_status'),
        event = v_body, updated_at = now()
    where dedup_id = v_dedup_id
      and public.ingest_callback_matches(p_letter, qstash_message_id, dedup_id);
    return jsonb_build_object('outcome', case when found then 'stored' else 'unmatched' end);
end;
$$;

select public.ingest_secure_functions();
