//! Listing a repository's tags (`GET /v2/<name>/tags/list`), following the registry's
//! `Link: <…>; rel="next"` pagination, bounded.
//!
//! Bounds: one page's body is at most [`MAX_PAGE_BYTES`]; at most [`MAX_PAGES`] pages and
//! [`MAX_TAGS`] tags are gathered in one call. When a bound stops the walk, or the caller
//! asked for one page (`n`), the answer says where to go on from (`next`, the value of
//! `last=` for the next call), so nothing is silently dropped. A `Link` is followed only
//! on the registry's own origin (credentials never go elsewhere).
//! Not for: tags as copy targets (`jobs::copy`).

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::auth::Scope;
use super::error_map::{Target, error_for};
use super::transport::read_limited;
use super::{Credentials, Reference, RegistryClient, RegistryError};

/// The largest tags page read (a page of 10,000 long tags fits).
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// Pages followed in one listing.
pub const MAX_PAGES: usize = 100;
/// Tags gathered in one listing.
pub const MAX_TAGS: usize = 100_000;
/// The page size asked for when walking every page (registries that ignore `n` send
/// everything in one page, which [`MAX_PAGE_BYTES`] bounds).
pub const PAGE_SIZE: u32 = 1000;

/// One listing: the tags in the registry's order, and where to go on when there are more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagList {
    pub tags: Vec<String>,
    /// The `last` to ask with for the rest; `None` when the registry said there is no more.
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl RegistryClient {
    /// The tags of `reference`'s repository (its tag and digest are ignored). With `n`,
    /// one page of at most `n` tags after `last`; without, every page from `last` on,
    /// within the module's bounds.
    pub async fn list_tags(
        &self,
        reference: &Reference,
        n: Option<u32>,
        last: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<TagList, RegistryError> {
        let path = format!("{}/tags/list", reference.repository);
        let scopes = vec![Scope::pull(&reference.repository)];
        // The origin's list: a mirror holds only what was pulled through it.
        let host = self.inner.origin(reference).await?;
        let mut req = self.request(&host, Method::GET, reference, &path, scopes, creds)?;
        {
            let mut q = req.url.query_pairs_mut();
            q.append_pair("n", &n.unwrap_or(PAGE_SIZE).to_string());
            if let Some(last) = last {
                q.append_pair("last", last);
            }
        }
        req.headers
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let origin = req.url.origin();
        let mut tags = Vec::new();
        let mut page = 0;
        let link = loop {
            let resp = self.inner.send(&req).await?;
            if !resp.status().is_success() {
                return Err(error_for(resp, reference, &req.scopes, Target::Repository).await);
            }
            let link = next_link(resp.headers().get(header::LINK), &req.url);
            let body = read_limited(resp, MAX_PAGE_BYTES, &reference.registry, "tags page").await?;
            let parsed: Page = serde_json::from_slice(&body).map_err(|e| {
                RegistryError::Protocol(format!(
                    "tags of {} from {}: not a tags list: {e}",
                    reference.repository, reference.registry
                ))
            })?;
            tags.extend(parsed.tags.unwrap_or_default());
            page += 1;
            match link {
                // One page asked for, or a bound reached: say where to go on.
                Some(link) if n.is_some() || page >= MAX_PAGES || tags.len() >= MAX_TAGS => {
                    break Some(link);
                }
                Some(link) if link.origin() != origin => {
                    tracing::warn!(registry = %reference.registry, "tags pagination link to another origin not followed");
                    break Some(link);
                }
                Some(link) => req.url = link,
                None => break None,
            }
        };
        tags.truncate(MAX_TAGS);
        if link.is_some() {
            let next = tags.last().cloned();
            return Ok(TagList { tags, next });
        }
        Ok(page_locally(tags, n, last))
    }
}

/// The registry said it has no more: the whole rest of the list is here. A registry that
/// ignores `n` and `last` (distribution 2.x answers every tag, in no order) is paged here
/// as the distribution spec says it should have been: lexical order, tags after `last`,
/// at most `n`, and `next` when some were left out.
fn page_locally(mut tags: Vec<String>, n: Option<u32>, last: Option<&str>) -> TagList {
    tags.sort_unstable();
    tags.dedup();
    if let Some(last) = last {
        tags.retain(|t| t.as_str() > last);
    }
    match n {
        Some(n) if tags.len() > n as usize => {
            tags.truncate(n as usize);
            let next = tags.last().cloned();
            TagList { tags, next }
        }
        _ => TagList { tags, next: None },
    }
}

/// The `rel="next"` target of a `Link` header, resolved against the URL it answered.
fn next_link(value: Option<&HeaderValue>, base: &Url) -> Option<Url> {
    let v = value?.to_str().ok()?;
    v.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| base.join(target).ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake_registry::{Fake, client, reply};
    use super::*;

    #[tokio::test]
    async fn link_pages_are_followed_on_the_registry_only() {
        let fake = Fake::start(|seen, _| {
            let page = |tags: &str, link: Option<&str>| {
                let body = format!(r#"{{"name":"a/b","tags":[{tags}]}}"#);
                match link {
                    Some(l) => reply(200, &[("link", l)], body),
                    None => reply(200, &[], body),
                }
            };
            match seen.query.as_str() {
                "n=1000" => page(
                    r#""a","b""#,
                    Some(r#"</v2/a/b/tags/list?n=2&last=b>; rel="next""#),
                ),
                "n=2&last=b" => page(
                    r#""c","d""#,
                    Some(r#"</v2/a/b/tags/list?n=2&last=d>; rel="next""#),
                ),
                "n=2&last=d" => page(r#""e""#, None),
                "n=2" => page(
                    r#""a","b""#,
                    Some(r#"</v2/a/b/tags/list?n=2&last=b>; rel="next""#),
                ),
                "n=1000&last=c" => page(
                    r#""x""#,
                    Some(r#"<http://elsewhere.example/v2/a/b/tags/list?last=x>; rel="next""#),
                ),
                other => reply(400, &[], format!("unexpected query {other}")),
            }
        })
        .await;
        let client = client();
        let r = fake.reference("a/b:ignored");
        let all = client.list_tags(&r, None, None, None).await.unwrap();
        assert_eq!(
            all,
            TagList {
                tags: vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into()],
                next: None
            }
        );
        let one = client.list_tags(&r, Some(2), None, None).await.unwrap();
        assert_eq!(
            one,
            TagList {
                tags: vec!["a".into(), "b".into()],
                next: Some("b".into())
            }
        );
        // A link to another origin is not followed: the answer says where to go on.
        let off = client.list_tags(&r, None, Some("c"), None).await.unwrap();
        assert_eq!(
            off,
            TagList {
                tags: vec!["x".into()],
                next: Some("x".into())
            }
        );
        assert_eq!(fake.count("GET", "/v2/a/b/tags/list"), 5);
    }

    #[test]
    fn a_registry_that_ignores_n_and_last_is_paged_here() {
        let tags: Vec<String> = ["c", "a", "e", "b", "d"].map(String::from).into();
        let page = page_locally(tags.clone(), Some(2), Some("a"));
        assert_eq!(
            page,
            TagList {
                tags: vec!["b".into(), "c".into()],
                next: Some("c".into())
            }
        );
        let rest = page_locally(tags.clone(), Some(2), Some("c"));
        assert_eq!(
            rest,
            TagList {
                tags: vec!["d".into(), "e".into()],
                next: None
            }
        );
        assert_eq!(
            page_locally(tags, None, None).tags,
            ["a", "b", "c", "d", "e"]
        );
    }

    #[test]
    fn next_link_is_read_and_resolved_against_the_registry() {
        let base: Url = "http://127.0.0.1:5000/v2/a/tags/list?n=1".parse().unwrap();
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            next_link(
                Some(&h("</v2/a/tags/list?last=x&n=1>; rel=\"next\"")),
                &base
            )
            .unwrap()
            .as_str(),
            "http://127.0.0.1:5000/v2/a/tags/list?last=x&n=1"
        );
        assert_eq!(
            next_link(
                Some(&h(
                    "<http://e.example/p>; rel=\"prev\", </q?last=b>; rel=next"
                )),
                &base
            )
            .unwrap()
            .as_str(),
            "http://127.0.0.1:5000/q?last=b"
        );
        assert_eq!(next_link(Some(&h("garbage")), &base), None);
        assert_eq!(next_link(None, &base), None);
    }
}
