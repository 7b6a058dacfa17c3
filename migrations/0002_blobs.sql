-- The content-addressed blob cache (src/store): one row per verified file under
-- <cache>/blobs/<algorithm>/<hex>. A row exists only for a file whose digest was checked;
-- Store::open deletes rows without files and files without rows.
CREATE TABLE blobs (
    digest     TEXT    NOT NULL PRIMARY KEY,           -- "sha256:<hex>"
    size       INTEGER NOT NULL CHECK (size >= 0),     -- bytes
    created_at INTEGER NOT NULL,                       -- unix milliseconds
    last_used  INTEGER NOT NULL                        -- unix milliseconds, for LRU eviction
) STRICT;

CREATE INDEX blobs_by_last_used ON blobs (last_used);
