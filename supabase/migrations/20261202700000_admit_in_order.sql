-- Admission without deadlocks.
--
-- Two `ingest_admit` calls that hold the same new dedup IDs (two instances, or a Meta
-- retry racing its original) each wait on the other's uncommitted rows. Inserting in
-- input order let them wait in opposite orders: a deadlock, whose victim fell back to
-- `ingest_admit_each`, which recorded innocent events as `failed` or refused their
-- deliveries. Both paths now insert in dedup-ID order, so such calls only queue, and an
-- error that says the database is in trouble (a deadlock, a serialization failure, no
-- resources, a lock not available, a lost connection) is raised, never recorded against
-- an event: the delivery is answered 503 and Meta retries it.

create function public.ingest_is_shared_trouble(p_sqlstate text)
returns boolean
language sql
immutable
set search_path = ''
as $$
    select left(p_sqlstate, 2) in ('08', '40', '53', '57', '58') or p_sqlstate = '55P03';
$$;

-- As in 20261202500000_privacy.sql, inserting in dedup-ID order.
create or replace function public.ingest_admit(p_events jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_erasing boolean := exists (select 1 from public.ig_tombstones);
    v_new     jsonb;
    v_erased  jsonb;
begin
    with incoming as (
        select e, v_erasing and public.ig_is_erased(e) as erased
        from jsonb_array_elements(p_events) e
    ), inserted as (
        insert into public.ingest_ledger
            (dedup_id, kind, account_id, sender_id, limit_key, event, state, settled_at)
        select e->>'dedup_id', e->>'kind', e->>'account_id', e->>'sender_id',
               case when e->>'sender_id' is distinct from e->>'account_id'
                         and coalesce(e->>'direction', 'in') = 'in'
                         and not coalesce((e->>'is_self')::boolean, false)
                    then e->>'sender_id' end,
               case when erased then null else e end,
               case when erased then 'erased' else 'pending' end,
               case when erased then now() end
        from incoming
        order by e->>'dedup_id' collate "C"
        on conflict (dedup_id) do nothing
        returning dedup_id, state
    )
    select coalesce(jsonb_agg(dedup_id) filter (where state = 'pending'), '[]'::jsonb),
           coalesce(jsonb_agg(dedup_id) filter (where state = 'erased'), '[]'::jsonb)
    into v_new, v_erased
    from inserted;
    return jsonb_build_object('new', v_new, 'erased', v_erased);
exception when others then
    if public.ingest_is_shared_trouble(sqlstate) then
        raise;
    end if;
    return public.ingest_admit_each(p_events);
end;
$$;

-- As in 20261202000100_relay.sql, in dedup-ID order; the database's own trouble is
-- raised rather than recorded as the event's fault; and, like the fast path, an erased
-- person's event is recorded as `erased` (its key only).
create or replace function public.ingest_admit_each(p_events jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_event      jsonb;
    v_id         text;
    v_state      text;
    v_error      text;
    v_new        text[] := '{}'::text[];
    v_failed     text[] := '{}'::text[];
    v_unwritable text[] := '{}'::text[];
    v_erased     text[] := '{}'::text[];
    v_erasing    boolean := exists (select 1 from public.ig_tombstones);
begin
    for v_event in
        select e from jsonb_array_elements(p_events) e order by e->>'dedup_id' collate "C"
    loop
        v_id := v_event->>'dedup_id';
        begin
            if v_erasing and public.ig_is_erased(v_event) then
                insert into public.ingest_ledger (dedup_id, kind, state, settled_at)
                values (v_id, coalesce(v_event->>'kind', 'unknown'), 'erased', now())
                on conflict (dedup_id) do nothing;
                if found then
                    v_erased := v_erased || v_id;
                end if;
                continue;
            end if;
            insert into public.ingest_ledger (dedup_id, kind, account_id, sender_id, limit_key, event)
            values (
                v_id, v_event->>'kind', v_event->>'account_id', v_event->>'sender_id',
                case when v_event->>'sender_id' is distinct from v_event->>'account_id'
                          and coalesce(v_event->>'direction', 'in') = 'in'
                          and not coalesce((v_event->>'is_self')::boolean, false)
                     then v_event->>'sender_id' end,
                v_event)
            on conflict (dedup_id) do nothing;
            if found then
                v_new := v_new || v_id;
            end if;
        exception when others then
            get stacked diagnostics v_state = returned_sqlstate, v_error = message_text;
            if public.ingest_is_shared_trouble(v_state) then
                raise;
            end if;
            begin
                insert into public.ingest_ledger
                    (dedup_id, kind, state, reason, event_text, due_at, settled_at)
                values (
                    v_id, coalesce(v_event->>'kind', 'unknown'), 'failed',
                    format('refused at admission: %s %s', v_state, left(v_error, 300)),
                    v_event::text, null, now())
                on conflict (dedup_id) do nothing;
                if found then
                    v_failed := v_failed || v_id;
                end if;
            exception when others then
                if public.ingest_is_shared_trouble(sqlstate) then
                    raise;
                end if;
                v_unwritable := v_unwritable || v_id;
            end;
        end;
    end loop;
    return jsonb_build_object(
        'new', to_jsonb(v_new),
        'failed', to_jsonb(v_failed),
        'unwritable', to_jsonb(v_unwritable),
        'erased', to_jsonb(v_erased));
end;
$$;

select public.ingest_secure_functions();
