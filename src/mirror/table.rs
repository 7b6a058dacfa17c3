//! The mirror's table (migrations/0005_mirror.sql): the last digest each tag resolved to,
//! served (with a `Warning`) while the upstream is unreachable. Thin typed queries only.

use sqlx::SqlitePool;

use crate::digest::Digest;
use crate::registry::Reference;

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Records that `tag` of `reference`'s repository resolved to `digest` just now.
pub async fn remember_tag(
    db: &SqlitePool,
    reference: &Reference,
    tag: &str,
    digest: &Digest,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mirror_tags (upstream, repository, tag, digest, seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (upstream, repository, tag) DO UPDATE SET digest = excluded.digest, \
         seen_at = excluded.seen_at",
    )
    .bind(&reference.registry)
    .bind(&reference.repository)
    .bind(tag)
    .bind(digest.to_string())
    .bind(now_millis())
    .execute(db)
    .await?;
    Ok(())
}

/// The digest `tag` last resolved to, if it ever did.
pub async fn recall_tag(
    db: &SqlitePool,
    reference: &Reference,
    tag: &str,
) -> Result<Option<Digest>, sqlx::Error> {
    let digest: Option<String> = sqlx::query_scalar(
        "SELECT digest FROM mirror_tags WHERE upstream = ?1 AND repository = ?2 AND tag = ?3",
    )
    .bind(&reference.registry)
    .bind(&reference.repository)
    .bind(tag)
    .fetch_optional(db)
    .await?;
    Ok(digest.and_then(|d| d.parse().ok()))
}
