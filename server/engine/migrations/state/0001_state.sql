-- Backstop's own state. Never archived, never touched by a restore.
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL -- JSON
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
    trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'upload', 'pre-restore')),
    requested_by TEXT,
    archive_name TEXT,
    archive_dir TEXT, -- folder holding the archive when it was made or uploaded
    original_filename TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    include_recordings INTEGER NOT NULL DEFAULT 0,
    progress_step TEXT,
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    warnings TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    annotations TEXT NOT NULL DEFAULT '[]', -- JSON array of {plugin, step, text}
    source_job_id INTEGER, -- restore: the backup job restored
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE plugin_grants (
    plugin_id TEXT PRIMARY KEY NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 0,
    approved_version TEXT,
    grants TEXT NOT NULL DEFAULT '{}', -- JSON
    settings TEXT NOT NULL DEFAULT '{}' -- JSON
);
