-- The reference application's configuration: an IPTV channel manager.
CREATE TABLE core_settings (
    key TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL -- JSON
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    user_level INTEGER NOT NULL DEFAULT 0,
    api_key TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE channel_groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE logos (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT,
    file_path TEXT -- relative to the logos/ directory
);

CREATE TABLE epg_sources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source_type TEXT NOT NULL CHECK (source_type IN ('xmltv', 'schedules_direct')),
    url TEXT,
    api_key TEXT,
    refresh_interval_hours INTEGER NOT NULL DEFAULT 24,
    is_active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE m3u_accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    account_type TEXT NOT NULL CHECK (account_type IN ('standard', 'xtream')),
    server_url TEXT NOT NULL,
    username TEXT,
    password TEXT,
    max_streams INTEGER NOT NULL DEFAULT 0,
    refresh_interval_hours INTEGER NOT NULL DEFAULT 24,
    is_active INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT
);

CREATE TABLE streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    m3u_account_id INTEGER REFERENCES m3u_accounts (id) ON DELETE CASCADE,
    group_title TEXT,
    tvg_id TEXT,
    logo_url TEXT,
    stream_hash TEXT
);
CREATE INDEX streams_account ON streams (m3u_account_id);

CREATE TABLE channels (
    id INTEGER PRIMARY KEY,
    channel_number REAL NOT NULL,
    name TEXT NOT NULL,
    channel_group_id INTEGER REFERENCES channel_groups (id) ON DELETE SET NULL,
    logo_id INTEGER REFERENCES logos (id) ON DELETE SET NULL,
    tvg_id TEXT,
    epg_source_id INTEGER REFERENCES epg_sources (id) ON DELETE SET NULL,
    user_level INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE channel_streams (
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    stream_id INTEGER NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    sort_order INTEGER NOT NULL,
    PRIMARY KEY (channel_id, stream_id)
);

CREATE TABLE plugins (
    key TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 0,
    settings TEXT NOT NULL DEFAULT '{}' -- JSON
);

CREATE TABLE recording_rules (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    title_pattern TEXT,
    days_of_week TEXT,
    start_time TEXT,
    end_time TEXT,
    enabled INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE recordings (
    id INTEGER PRIMARY KEY,
    channel_id INTEGER REFERENCES channels (id) ON DELETE SET NULL,
    rule_id INTEGER REFERENCES recording_rules (id) ON DELETE SET NULL,
    title TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    file_path TEXT, -- relative to the recordings/ directory
    status TEXT NOT NULL
);
