-- Console sign-in back-off, held in the database so that every instance sees it.
--
-- A wrong token counts against the client's address (a digest of it, never the address)
-- and against everyone ('global'). Up to p_free (per address) or p_global_free (all
-- addresses) wrong tokens cost nothing; each one after that doubles the wait of that
-- scope, from 1 s up to p_max_wait seconds. While a scope waits, every sign-in in it is
-- refused without being counted or written (`ingest_console_login_wait` only reads),
-- and the right token waits too. Counts are forgotten a day after the last failure;
-- a right token forgets its address's count (not the global one).

create table public.ingest_console_login_failures (
    scope           text primary key,          -- 'client:<sha256 of the address>' or 'global'
    failures        integer not null,
    last_failure_at timestamptz not null,
    blocked_until   timestamptz
);
alter table public.ingest_console_login_failures enable row level security;

-- How many seconds the client at p_client (its digest) must still wait; 0: none.
create function public.ingest_console_login_wait(p_client text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object('wait_seconds', coalesce(ceil(extract(epoch from
        max(blocked_until) - now()))::int, 0))
    from public.ingest_console_login_failures
    where scope in ('client:' || p_client, 'global') and blocked_until > now();
$$;

-- A wrong token from p_client: counted in its scope and the global one. Returns
-- {wait_seconds, client_failures, global_failures, blocked (a wait started: worth a log line)}.
create function public.ingest_console_login_failed(
    p_client text, p_free int, p_global_free int, p_max_wait int)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_row     public.ingest_console_login_failures;
    v_free    int;
    v_wait    int := 0;
    v_blocked boolean := false;
    v_counts  jsonb := '{}'::jsonb;
    v_scope   text;
begin
    delete from public.ingest_console_login_failures
    where last_failure_at < now() - interval '1 day';
    foreach v_scope in array array['client:' || p_client, 'global'] loop
        v_free := case when v_scope = 'global' then p_global_free else p_free end;
        insert into public.ingest_console_login_failures as f (scope, failures, last_failure_at)
        values (v_scope, 1, now())
        on conflict (scope) do update
        set failures = f.failures + 1, last_failure_at = now()
        returning * into v_row;
        if v_row.failures > v_free then
            update public.ingest_console_login_failures
            set blocked_until = now() + make_interval(secs => least(
                    p_max_wait, power(2, least(v_row.failures - v_free - 1, 30))::int))
            where scope = v_scope
            returning * into v_row;
            v_blocked := true;
            v_wait := greatest(v_wait, ceil(extract(epoch from v_row.blocked_until - now()))::int);
        end if;
        v_counts := v_counts || jsonb_build_object(
            case when v_scope = 'global' then 'global_failures' else 'client_failures' end,
            v_row.failures);
    end loop;
    return v_counts || jsonb_build_object('wait_seconds', v_wait, 'blocked', v_blocked);
end;
$$;

-- The right token, after any wait: the client's count is forgotten.
create function public.ingest_console_login_succeeded(p_client text)
returns jsonb
language sql
set search_path = ''
as $$
    delete from public.ingest_console_login_failures where scope = 'client:' || p_client;
    select jsonb_build_object('forgotten', true);
$$;

select public.ingest_secure_functions();
