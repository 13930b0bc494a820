-- The console's relay lag measures the relay's time, not an operator's hold: for a
-- replayed event it runs from the replay, not from its admission (which may be hours
-- earlier, while the kill switch held it). Only the lag's start changes.
create or replace function public.ingest_console_pulse(p_sample int default 1000)
returns jsonb
language sql
stable
set search_path = ''
as $$
    with recent as (
        select l.state,
               extract(epoch from l.settled_at - coalesce(l.replayed_at, l.admitted_at))::float8
                   as lag
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

select public.ingest_secure_functions();
