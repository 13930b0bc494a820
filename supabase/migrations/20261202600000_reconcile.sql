-- Reconcile (issue 17): recover from the Graph API the messages webhooks never delivered.
--
-- Recovered messages enter through admission like any webhook's (the ledger, the relay);
-- nothing here holds Graph data. This migration adds what a run needs around that:
-- - one row per Instagram account: a lease, so that one run at a time reads an account,
--   across every instance (a row, not an advisory lock: the Supabase backend gives each
--   call its own transaction, and a lock would end with it); a pause, when Meta asked us
--   to wait; and the last run's outcome and counts, for `ingestctl reconcile --status`;
-- - which dedup IDs the ledger already holds, for `--dry-run`, which admits nothing.

create table public.ig_reconcile_accounts (
    account_id       text primary key,
    lease_token      uuid,
    lease_holder     text,
    lease_until      timestamptz,
    paused_until     timestamptz,
    last_started_at  timestamptz,
    last_finished_at timestamptz,
    last_outcome     text,
    last_summary     jsonb,
    updated_at       timestamptz not null default now()
);
alter table public.ig_reconcile_accounts enable row level security;

-- Start a run for one account: {"claimed": true, "token"} when no other run holds the
-- account's lease and Meta's pause is over; else {"claimed": false, "reason": "running" |
-- "paused", "until"}. A run that died leaves its lease to expire, then anyone claims it.
create function public.ig_reconcile_claim(p_account_id text, p_holder text, p_lease_seconds int)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_token  uuid := gen_random_uuid();
    v_paused timestamptz;
    v_lease  timestamptz;
begin
    insert into public.ig_reconcile_accounts (account_id) values (p_account_id)
    on conflict (account_id) do nothing;
    update public.ig_reconcile_accounts
    set lease_token = v_token,
        lease_holder = p_holder,
        lease_until = now() + make_interval(secs => p_lease_seconds),
        last_started_at = now(),
        updated_at = now()
    where account_id = p_account_id
      and (lease_until is null or lease_until < now())
      and (paused_until is null or paused_until <= now());
    if found then
        return jsonb_build_object('claimed', true, 'token', v_token);
    end if;
    select paused_until, lease_until into v_paused, v_lease
    from public.ig_reconcile_accounts where account_id = p_account_id;
    if v_lease is not null and v_lease >= now() then
        return jsonb_build_object('claimed', false, 'reason', 'running', 'until', v_lease);
    end if;
    return jsonb_build_object('claimed', false, 'reason', 'paused', 'until', v_paused);
end;
$$;

-- Keep a long run's lease: {"renewed": false} when it was lost (expired and claimed again).
create function public.ig_reconcile_renew(p_account_id text, p_token uuid, p_lease_seconds int)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    update public.ig_reconcile_accounts
    set lease_until = now() + make_interval(secs => p_lease_seconds), updated_at = now()
    where account_id = p_account_id and lease_token = p_token;
    return jsonb_build_object('renewed', found);
end;
$$;

-- End a run: release the lease, record its outcome and counts; p_pause_seconds > 0 keeps
-- every run off the account that long (Meta's estimate of when its rate limit lifts).
create function public.ig_reconcile_finish(
    p_account_id text, p_token uuid, p_outcome text, p_summary jsonb, p_pause_seconds int)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    update public.ig_reconcile_accounts
    set lease_token = null,
        lease_holder = null,
        lease_until = null,
        last_finished_at = now(),
        last_outcome = p_outcome,
        last_summary = p_summary,
        paused_until = case when p_pause_seconds > 0
                            then now() + make_interval(secs => p_pause_seconds)
                            else paused_until end,
        updated_at = now()
    where account_id = p_account_id and lease_token = p_token;
    return jsonb_build_object('finished', found);
end;
$$;

create function public.ig_reconcile_status()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'account_id', a.account_id,
        'running', coalesce(a.lease_until >= now(), false),
        'lease_holder', a.lease_holder,
        'paused_until', case when a.paused_until > now() then a.paused_until end,
        'last_started_at', a.last_started_at,
        'last_finished_at', a.last_finished_at,
        'last_outcome', a.last_outcome,
        'last_summary', a.last_summary) order by a.account_id), '[]'::jsonb)
    from public.ig_reconcile_accounts a;
$$;

-- Which of these dedup IDs the ledger holds (a dry run's "already stored").
create function public.ingest_known_dedup_ids(p_dedup_ids text[])
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(l.dedup_id), '[]'::jsonb)
    from public.ingest_ledger l
    where l.dedup_id = any(p_dedup_ids);
$$;

select public.ingest_secure_functions();
