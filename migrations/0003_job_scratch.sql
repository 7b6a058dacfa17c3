-- Scratch folders of jobs (src/jobs/scratch.rs): a pull's staging tree beside its dest and
-- the `git` layout's repository beside that. A row is written before its folder is
-- created and deleted once the folder is gone: when the job ends, whichever way, or at
-- the next start for a job the previous daemon left unfinished (killed). Only folders
-- recorded here are ever removed, so a user's own folder of a similar name is safe.
CREATE TABLE job_scratch (
    job_id TEXT NOT NULL REFERENCES jobs (id),   -- no cascade: remove the folders first
    path   BLOB NOT NULL,                        -- absolute, the file system's own bytes
    PRIMARY KEY (job_id, path)
) STRICT;
