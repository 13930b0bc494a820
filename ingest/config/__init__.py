"""Configuration: every setting read once, at start-up, and handed down.

`settings` holds the shapes (`Settings` and its parts, `SettingsError`); `env` builds
them from the environment and `.env` (`settings_from_env`, `load_or_exit`) with `reader`,
which reads one variable and refuses placeholders outside development; `secret` wraps
values that must never print; `accounts` parses the Graph accounts and their tokens;
`connect` holds the connected accounts' settings (OAuth app, encryption keys), which
`connect_env` reads;
`base_url` decides the public URL QStash calls back.

Imports nothing of ours but its own modules (imports run `env` → `settings`, never back).
Imported by nearly every room.
"""
