-- The /v2/ mirror's memory of tags (src/mirror/table.rs): the last digest each upstream
-- tag resolved to, so that a tag can still be served (with a Warning) while its upstream
-- cannot be reached. One row per tag a client asked for; rewritten on every resolve.
CREATE TABLE mirror_tags (
    upstream   TEXT    NOT NULL,                       -- "docker.io", "127.0.0.1:5000"
    repository TEXT    NOT NULL,                       -- "library/debian"
    tag        TEXT    NOT NULL,
    digest     TEXT    NOT NULL,                       -- "sha256:<hex>"
    seen_at    INTEGER NOT NULL,                       -- unix milliseconds
    PRIMARY KEY (upstream, repository, tag)
) STRICT;
