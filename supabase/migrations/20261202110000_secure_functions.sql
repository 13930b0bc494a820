-- One call for what every migration that adds a function must do afterwards: fix the
-- search_path of every ig_* / ingest_* function of ours that has none, and (where
-- Supabase's roles exist) take EXECUTE from public, anon and authenticated and give it
-- to service_role. The two earlier migrations did this once, for the functions that
-- existed then; a later migration ends with `select public.ingest_secure_functions();`
-- (tests/test_schema_guards.py fails until it does). Idempotent.
create function public.ingest_secure_functions()
returns void
language plpgsql
set search_path = ''
as $$
declare
    v_function regprocedure;
    v_config   text[];
    v_revokees text;
    v_service  boolean := exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role');
begin
    select string_agg(format('%I', rolname), ', ' order by rolname) into v_revokees
    from pg_catalog.pg_roles where rolname in ('anon', 'authenticated');
    for v_function, v_config in
        select p.oid::regprocedure, p.proconfig
        from pg_catalog.pg_proc p
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public'
          and (p.proname like 'ig\_%' or p.proname like 'ingest\_%')
          and p.prokind in ('f', 'p')
          and not exists (
              select 1 from pg_catalog.pg_depend d
              where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid
                and d.deptype = 'e')
        order by p.proname
    loop
        if not exists (select 1 from unnest(coalesce(v_config, '{}'::text[])) c
                       where c like 'search\_path=%') then
            execute format('alter routine %s set search_path = %L', v_function, '');
        end if;
        if v_revokees is not null then
            execute format('revoke execute on routine %s from public, %s', v_function, v_revokees);
            if v_service then
                execute format('grant execute on routine %s to service_role', v_function);
            end if;
        end if;
    end loop;
end;
$$;

select public.ingest_secure_functions();
