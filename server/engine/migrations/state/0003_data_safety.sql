-- Data safety (DESIGN section 4).
--
-- file_stamp: the archive file's (inode, size, mtime, ctime) when its sha256 was last checked.
-- A stored archive whose stamp still matches is the file that was hashed; any write to it
-- changes its ctime, and then the file is hashed again before it is downloaded, verified or
-- restored, and refused when it no longer matches the record ("changed since it was made").
ALTER TABLE jobs ADD COLUMN file_stamp TEXT;

-- Archive files whose record was deleted (by an admin or by retention) in the same
-- transaction that queued them here; the file is unlinked afterwards and the row removed.
-- A crash in between leaves the row, and the restart sweep finishes the delete. So a record
-- never outlives its file, and a file is never left behind by a delete.
CREATE TABLE pending_file_deletes (
    path TEXT PRIMARY KEY,
    job_id INTEGER NOT NULL,
    queued_at TEXT NOT NULL
);

-- Each archive file is owned by exactly one backup record, and a name is never reused while
-- a record names it: backup records claim their name here before the file is written (the
-- claim fails, and the next name is tried, when another record holds it). Restore records
-- keep the name of their source for display only, so they are not part of the index.
-- Histories written before this check could in theory hold a duplicate; the later record
-- gives up the name (it can no longer reach a file that the earlier one owns).
UPDATE jobs SET archive_name = NULL
WHERE kind = 'backup' AND archive_name IS NOT NULL
  AND id NOT IN (SELECT MIN(id) FROM jobs WHERE kind = 'backup' AND archive_name IS NOT NULL GROUP BY archive_name);
CREATE UNIQUE INDEX jobs_archive_owner ON jobs (archive_name) WHERE kind = 'backup' AND archive_name IS NOT NULL;
