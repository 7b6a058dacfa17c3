-- Jobs: the source of truth for every pull and build. Requests are stored without
-- credentials; `had_credentials` remembers that some were given so that a job
-- re-queued after a restart can fail clearly instead of running anonymously.
CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    request         TEXT    NOT NULL,
    had_credentials INTEGER NOT NULL DEFAULT 0,
    progress        TEXT,
    result          TEXT,
    error_code      TEXT,
    error_message   TEXT
);

CREATE INDEX jobs_status ON jobs (status, seq);
