-- Accounts and their tokens (issue 25): the account registry, encrypted tokens, refresh.
--
-- `ig_accounts` (privacy, 20261202500000) already maps an account to the app-scoped user
-- id Meta's callbacks name and records a deauthorization (`deauthorized_at`). It gains:
-- - who the account is (`username`), how it was connected (`source`), its Page (Facebook
--   Login), and the app-scoped id `/me` answers (kept in `app_user_id`, as before);
-- - its token, encrypted by the service (AES-GCM; `token_key_id` names the key, so keys
--   rotate), never in clear; `env_token_digest`, a SHA-256 of an environment token, tells a
--   changed environment token (a reconnect) from the same one (which revives nothing);
-- - `expires_at`, `refreshed_at`, a refresh lease (one instance refreshes), the state
--   (`active`, `needs_reauth`; `deauthorized` is `deauthorized_at` being set), the last Graph
--   error (code and time: never its text, never the token), and `reconnected_at`, the last
--   connect, for a rule that ignores a deauthorization issued before it.
-- The OAuth `state` of a connect is single-use: `ig_oauth_states` keeps each one until used.

alter table public.ig_accounts
    add column username            text,
    add column source              text check (source in
                                       ('instagram_login', 'facebook_page', 'environment')),
    add column page_id             text,
    add column token_ciphertext    text,
    add column token_key_id        text,
    add column env_token_digest    text,
    add column expires_at          timestamptz,
    add column refreshed_at        timestamptz,
    add column state               text not null default 'active'
                                       check (state in ('active', 'needs_reauth')),
    add column last_error_code     int,
    add column last_error_at       timestamptz,
    add column if not exists reconnected_at timestamptz,
    add column refresh_holder      text,
    add column refresh_lease_until timestamptz;

create table public.ig_oauth_states (
    nonce      text primary key,
    expires_at timestamptz not null,
    used_at    timestamptz
);
alter table public.ig_oauth_states enable row level security;

-- What operators see of an account (never the ciphertext): CLI, console, metrics.
create function public.ig_accounts_overview()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'account_id', account_id, 'username', username,
        'source', coalesce(source, 'manual'),
        'state', case when deauthorized_at is not null then 'deauthorized' else state end,
        'page_id', page_id, 'app_user_id', app_user_id,
        'has_token', token_ciphertext is not null or env_token_digest is not null,
        'expires_at', expires_at, 'refreshed_at', refreshed_at,
        'last_error_code', last_error_code, 'last_error_at', last_error_at,
        'added_at', added_at, 'reconnected_at', reconnected_at,
        'deauthorized_at', deauthorized_at) order by account_id), '[]'::jsonb)
    from public.ig_accounts;
$$;

-- The tokens the service may use: connected accounts' ciphertexts and environment
-- accounts' states (their tokens stay in the environment).
create function public.ig_account_tokens()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
        'account_id', account_id, 'source', source, 'page_id', page_id,
        'usable', state = 'active' and deauthorized_at is null,
        'ciphertext', token_ciphertext, 'key_id', token_key_id,
        'env_token_digest', env_token_digest, 'expires_at', expires_at)
        order by account_id), '[]'::jsonb)
    from public.ig_accounts
    where token_ciphertext is not null or env_token_digest is not null;
$$;

-- A connect (Instagram Login, or a Facebook Page token added by an operator): the account
-- is active again, whatever it was, and this is its token from now on.
create function public.ig_account_connect(
    p_account text, p_app_user_id text, p_username text, p_source text, p_page_id text,
    p_ciphertext text, p_key_id text, p_expires_at text, p_now text)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.ig_accounts as a (
        account_id, app_user_id, username, source, page_id, token_ciphertext, token_key_id,
        expires_at, refreshed_at, state, reconnected_at)
    values (p_account, p_app_user_id, p_username, p_source, p_page_id, p_ciphertext, p_key_id,
            p_expires_at::timestamptz, p_now::timestamptz, 'active', now())
    on conflict (account_id) do update
    set app_user_id = coalesce(excluded.app_user_id, a.app_user_id),
        username = coalesce(excluded.username, a.username),
        source = excluded.source, page_id = excluded.page_id,
        token_ciphertext = excluded.token_ciphertext, token_key_id = excluded.token_key_id,
        expires_at = excluded.expires_at, refreshed_at = excluded.refreshed_at,
        state = 'active', deauthorized_at = null, last_error_code = null,
        last_error_at = null, reconnected_at = now(),
        refresh_holder = null, refresh_lease_until = null
    returning jsonb_build_object('account_id', a.account_id, 'username', a.username,
                                 'source', a.source, 'state', a.state,
                                 'expires_at', a.expires_at);
$$;

-- An environment token at start-up: a new account joins as `environment`; a changed token
-- is a reconnect (active again); the same token never revives a `needs_reauth` or
-- `deauthorized` account. An account connected through the service keeps its own source.
create function public.ig_account_environment(p_account text, p_page_id text, p_digest text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_row public.ig_accounts;
begin
    insert into public.ig_accounts (account_id, source, page_id, env_token_digest)
    values (p_account, 'environment', p_page_id, p_digest)
    on conflict (account_id) do nothing;
    -- first sight of a token (a row from before, say): recorded, the state left as it is
    update public.ig_accounts
    set env_token_digest = p_digest, source = coalesce(source, 'environment'),
        page_id = coalesce(page_id, p_page_id)
    where account_id = p_account and env_token_digest is null;
    update public.ig_accounts
    set env_token_digest = p_digest,
        state = 'active', deauthorized_at = null, last_error_code = null,
        last_error_at = null, reconnected_at = now()
    where account_id = p_account and env_token_digest <> p_digest;
    select * into v_row from public.ig_accounts where account_id = p_account;
    return jsonb_build_object(
        'account_id', v_row.account_id,
        'state', case when v_row.deauthorized_at is not null then 'deauthorized'
                      else v_row.state end);
end;
$$;

-- A Graph error worth remembering (its code and time only); p_reauth (code 190): the
-- account needs re-authorisation, and its Graph work stops.
create function public.ig_account_graph_error(p_account text, p_code int, p_reauth boolean)
returns jsonb
language sql
set search_path = ''
as $$
    update public.ig_accounts
    set last_error_code = p_code, last_error_at = now(),
        state = case when p_reauth then 'needs_reauth' else state end
    where account_id = p_account
    returning jsonb_build_object('account_id', account_id, 'state', state);
$$;

-- Meta's deauthorize callback: the account is disconnected and its token deleted.
create function public.ig_account_forget_token(p_app_user_id text)
returns jsonb
language sql
set search_path = ''
as $$
    with forgotten as (
        update public.ig_accounts
        set deauthorized_at = coalesce(deauthorized_at, now()),
            token_ciphertext = null, token_key_id = null, expires_at = null,
            refresh_holder = null, refresh_lease_until = null
        where app_user_id = p_app_user_id
        returning account_id
    )
    select jsonb_build_object('accounts', count(*)) from forgotten;
$$;

-- The Instagram-Login tokens due for a refresh (at least p_min_age_seconds old, expiring
-- within p_within_seconds, as of p_now), each leased to p_holder for p_lease_seconds: two
-- instances asking together get disjoint sets, and a token refreshed meanwhile is no
-- longer due. p_force: whatever its age; p_account: only that one.
create function public.ig_account_refresh_claim(
    p_holder text, p_lease_seconds int, p_now text, p_min_age_seconds int,
    p_within_seconds int, p_force boolean, p_account text)
returns jsonb
language sql
set search_path = ''
as $$
    with due as (
        select account_id from public.ig_accounts
        where source = 'instagram_login' and token_ciphertext is not null
          and state = 'active' and deauthorized_at is null
          and (p_account is null or account_id = p_account)
          and (refresh_lease_until is null or refresh_lease_until < now())
          and (p_force or (
                refreshed_at <= p_now::timestamptz - make_interval(secs => p_min_age_seconds)
                and expires_at <= p_now::timestamptz + make_interval(secs => p_within_seconds)))
        for update skip locked
    ), leased as (
        update public.ig_accounts a
        set refresh_holder = p_holder,
            refresh_lease_until = now() + make_interval(secs => p_lease_seconds)
        from due where a.account_id = due.account_id
        returning a.account_id, a.token_ciphertext, a.token_key_id
    )
    select coalesce(jsonb_agg(jsonb_build_object(
        'account_id', account_id, 'ciphertext', token_ciphertext, 'key_id', token_key_id)
        order by account_id), '[]'::jsonb)
    from leased;
$$;

-- A refresh ended: with p_ciphertext, the new token and its expiry; without, the lease
-- is only given back (a temporary error: the next run tries again).
create function public.ig_account_refresh_done(
    p_account text, p_holder text, p_ciphertext text, p_key_id text,
    p_expires_at text, p_now text)
returns boolean
language sql
set search_path = ''
as $$
    with done as (
        update public.ig_accounts
        set token_ciphertext = coalesce(p_ciphertext, token_ciphertext),
            token_key_id = coalesce(p_key_id, token_key_id),
            expires_at = case when p_ciphertext is null then expires_at
                              else p_expires_at::timestamptz end,
            refreshed_at = case when p_ciphertext is null then refreshed_at
                                else p_now::timestamptz end,
            refresh_holder = null, refresh_lease_until = null
        where account_id = p_account and refresh_holder = p_holder
        returning 1
    )
    select exists (select 1 from done);
$$;

-- `ingestctl accounts rotate-key`: one token re-encrypted, if it is still the one read.
create function public.ig_account_rekey(
    p_account text, p_old_ciphertext text, p_ciphertext text, p_key_id text)
returns boolean
language sql
set search_path = ''
as $$
    with changed as (
        update public.ig_accounts
        set token_ciphertext = p_ciphertext, token_key_id = p_key_id
        where account_id = p_account and token_ciphertext = p_old_ciphertext
        returning 1
    )
    select exists (select 1 from changed);
$$;

-- A connect's `state`: issued (kept p_ttl_seconds), then used at most once.
create function public.ig_oauth_state_issue(p_nonce text, p_ttl_seconds int)
returns void
language sql
set search_path = ''
as $$
    delete from public.ig_oauth_states where expires_at < now() - interval '1 day';
    insert into public.ig_oauth_states (nonce, expires_at)
    values (p_nonce, now() + make_interval(secs => p_ttl_seconds));
$$;

create function public.ig_oauth_state_use(p_nonce text)
returns boolean
language sql
set search_path = ''
as $$
    with used as (
        update public.ig_oauth_states set used_at = now()
        where nonce = p_nonce and used_at is null and expires_at >= now()
        returning 1
    )
    select exists (select 1 from used);
$$;

select public.ingest_secure_functions();
