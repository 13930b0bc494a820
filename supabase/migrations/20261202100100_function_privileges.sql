-- Our functions are for the server side only. PostgREST runs a function for whichever
-- role the request's key names, so without this a browser holding the public `anon` key
-- could call `ingest_set_kill_switch` or `ingest_admit`, and only row-level security
-- would stand in its way. PostgreSQL grants EXECUTE to PUBLIC on every new function and
-- Supabase's default privileges grant it to anon and authenticated as well, so all three
-- are revoked; the owner and `service_role` (the key this service uses) keep it.
--
-- Only where Supabase's roles exist (a Supabase project, or a database set up like one):
-- a plain PostgreSQL keeps its defaults. Dynamic, like the search_path migration, over
-- every ig_* / ingest_* function in public that is not part of an extension. A function
-- added by a later migration gets the defaults again and must revoke them itself:
-- tests/test_schema_guards.py fails until it does.
do $$
declare
    v_function  regprocedure;
    v_revokees  text;
    v_service   boolean := exists (
        select 1 from pg_catalog.pg_roles where rolname = 'service_role');
begin
    select string_agg(format('%I', rolname), ', ' order by rolname) into v_revokees
    from pg_catalog.pg_roles
    where rolname in ('anon', 'authenticated');
    if v_revokees is null then
        return;
    end if;
    for v_function in
        select p.oid::regprocedure
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
        execute format('revoke execute on routine %s from public, %s', v_function, v_revokees);
        if v_service then
            execute format('grant execute on routine %s to service_role', v_function);
        end if;
    end loop;
end;
$$;
