-- Destinations (DESIGN section 10): S3-compatible stores that get a copy of every archive.
-- The secret is stored here because the server needs it to sign requests; it is never
-- returned by the API and never logged (see engine::destinations). The state DB file is
-- created 0600.
CREATE TABLE destinations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 's3',
    enabled INTEGER NOT NULL DEFAULT 1,
    retention_count INTEGER NOT NULL DEFAULT 0,
    encrypt INTEGER NOT NULL DEFAULT 1,
    endpoint TEXT NOT NULL,
    region TEXT NOT NULL,
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL DEFAULT '',
    path_style INTEGER NOT NULL DEFAULT 1,
    access_key_id TEXT NOT NULL,
    secret_access_key TEXT NOT NULL,
    last_status TEXT,
    last_error TEXT,
    last_success_at TEXT,
    created_at TEXT NOT NULL
);

-- One row per (backup job, destination): where a copy of the job's archive is. A copy row
-- outlives its destination (the name is kept for the history); it goes with its job.
CREATE TABLE job_copies (
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    destination_id INTEGER NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    size_bytes INTEGER,
    sha256 TEXT,
    encrypted INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT,
    PRIMARY KEY (job_id, destination_id)
);
