-- Trees being removed by `DELETE /trees` (src/jobs/trees.rs). A tree is first renamed
-- aside (`.hoist-removing-<id>` beside it); the row naming that path is written before
-- the rename and deleted once the tree is gone. At start every path left here is
-- removed, so a crash mid-removal leaves neither half a tree at its name nor a folder
-- nobody knows about. Only paths recorded here are removed.
CREATE TABLE tree_removals (
    path BLOB NOT NULL PRIMARY KEY   -- absolute, the file system's own bytes
) STRICT;
