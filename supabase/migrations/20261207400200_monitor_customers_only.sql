-- `ingestctl monitor`'s top senders are customers: the business account's own events (its
-- replies, echoed back by Meta with the account as sender) no longer crowd the list. Only
-- the senders' filter changes.
create or replace function public.ingest_monitor(p_days int)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with recent as (
        select * from public.ingest_ledger
        where admitted_at >= date_trunc('day', now())
                             - make_interval(days => p_days - 1)
    ), daily as (
        select date_trunc('day', admitted_at)::date as day,
               count(*) filter (where state = 'published') as published,
               count(*) filter (where state = 'direct')    as direct,
               count(*) filter (where state = 'held')      as held,
               count(*) filter (where state = 'failed')    as failed,
               count(*) filter (where state = 'pending')   as pending,
               count(*) filter (where attempts > 1)        as retried
        from recent group by 1
    ), senders as (
        select sender_id, count(*) as events
        from recent where sender_id is not null and sender_id is distinct from account_id
        group by sender_id order by count(*) desc, sender_id limit 10
    ), totals as (
        select count(*) filter (where state in ('published', 'direct', 'failed')) as settled,
               count(*) filter (where state = 'failed') as failed
        from recent
    )
    select jsonb_build_object(
        'days', p_days,
        'daily', coalesce((select jsonb_agg(to_jsonb(daily) order by day)
                           from daily), '[]'::jsonb),
        'top_senders', coalesce((select jsonb_agg(to_jsonb(senders))
                                 from senders), '[]'::jsonb),
        'failure_rate', (select case when settled = 0 then 0
                                     else round(failed::numeric / settled, 4) end from totals)
    );
$$;

select public.ingest_secure_functions();
