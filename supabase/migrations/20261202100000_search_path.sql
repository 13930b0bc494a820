-- A fixed, empty search_path on every function of ours (Supabase advisor lint 0011,
-- function_search_path_mutable). With a mutable search_path, whoever calls a function
-- decides which `ingest_ledger` or `jsonb_build_object` it resolves to; with '' only
-- pg_catalog is searched, and every name of ours is already written `public.…`.
--
-- Dynamic on purpose: it covers every function the earlier migrations made, whatever
-- their signatures, and leaves alone any function that already fixed its own
-- search_path (later migrations write `set search_path = ''` themselves). "Ours" means
-- named ig_* or ingest_* in schema public and not part of an extension, so a
-- Supabase project's other functions are not touched. tests/test_schema_guards.py
-- fails for any function in public that a future migration leaves without one.
do $$
declare
    v_function regprocedure;
begin
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
          and not exists (
              select 1 from unnest(coalesce(p.proconfig, '{}')) c
              where c like 'search\_path=%')
        order by p.proname
    loop
        execute format('alter routine %s set search_path = %L', v_function, '');
    end loop;
end;
$$;
