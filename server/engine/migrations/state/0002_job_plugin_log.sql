-- What plugins logged during each job (host.log, stdout, stderr), kept with the job and
-- deleted with it. Written when the job ends; while it runs the host holds the lines.
CREATE TABLE job_plugin_log (
    job_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    plugin TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
