-- Reconcile fixes: a dry run counts what admission would count.
--
-- A dry run asked only which dedup IDs the ledger holds, so an erased customer's message
-- not yet in the ledger was reported as "would recover", though admission records it as
-- `erased` (a duplicate: nothing recovered). `ig_reconcile_dry_check` answers both with
-- the same erasure test admission uses (`ig_is_erased`), and writes nothing.

-- Of these events (each as admission receives it, with its `dedup_id`): which the ledger
-- already holds, and which admission would record as erased. {"known": [...], "erased": [...]}
create function public.ig_reconcile_dry_check(p_events jsonb)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with incoming as (
        select e, e->>'dedup_id' as dedup_id from jsonb_array_elements(p_events) e
    )
    select jsonb_build_object(
        'known', coalesce((select jsonb_agg(distinct l.dedup_id)
                           from public.ingest_ledger l
                           where l.dedup_id in (select i.dedup_id from incoming i)), '[]'::jsonb),
        'erased', coalesce((select jsonb_agg(distinct i.dedup_id)
                            from incoming i
                            where exists (select 1 from public.ig_tombstones)
                              and public.ig_is_erased(i.e)), '[]'::jsonb));
$$;

select public.ingest_secure_functions();
