-- Trigger `import` (DESIGN section 4): SQLite cannot change a CHECK constraint in place, so
-- the jobs table is rebuilt with the same columns, rows, ids and id sequence.
CREATE TABLE jobs_v5 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
    trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled', 'upload', 'pre-restore', 'import')),
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
    finished_at TEXT,
    file_stamp TEXT
);
INSERT INTO jobs_v5 (id, kind, status, trigger, requested_by, archive_name, archive_dir, original_filename,
    size_bytes, sha256, include_recordings, progress_step, progress_done, progress_total, error, warnings,
    annotations, source_job_id, created_at, started_at, finished_at, file_stamp)
SELECT id, kind, status, trigger, requested_by, archive_name, archive_dir, original_filename,
    size_bytes, sha256, include_recordings, progress_step, progress_done, progress_total, error, warnings,
    annotations, source_job_id, created_at, started_at, finished_at, file_stamp FROM jobs;
-- Ids are never reused, even those of deleted jobs: carry the sequence over.
DELETE FROM sqlite_sequence WHERE name = 'jobs_v5';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_v5', seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;
ALTER TABLE jobs_v5 RENAME TO jobs;
CREATE INDEX jobs_status ON jobs (status);
CREATE UNIQUE INDEX jobs_archive_owner ON jobs (archive_name) WHERE kind = 'backup' AND archive_name IS NOT NULL;

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
