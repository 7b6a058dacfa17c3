//! What a `/v2/` path asks for: the upstream and repository (from the path's first
//! component, containerd's `?ns=`, or `HOIST_MIRROR_DEFAULT`), and a manifest by tag or
//! digest, or a blob by digest.
//!
//! The upstream rule is Docker's rule for references: a first component with a '.' or a
//! ':', or `localhost`, is a registry host (`/v2/ghcr.io/o/r/...`); anything else is a
//! repository on the default upstream (`/v2/library/debian/...`, what Docker's
//! `registry-mirrors` sends). Not for: deciding whether the client may read it (`access`).

use crate::digest::Digest;
use crate::registry::{Reference, is_registry};

use super::MirrorError;

/// A manifest by tag or by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

/// What a `/v2/<name>/<kind>/<ref>` request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    Manifest(ManifestRef),
    Blob(Digest),
}

/// A parsed `/v2/` request target. `reference` names the upstream and repository (and the
/// tag or digest, for a manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub reference: Reference,
    pub want: Want,
}

impl Target {
    /// The upstream registry, as references write it (`docker.io`, `127.0.0.1:5000`).
    pub fn upstream(&self) -> &str {
        &self.reference.registry
    }

    /// Parses `path` (what follows `/v2/`), with containerd's `ns` query parameter if any
    /// and the default upstream for names that carry none.
    pub fn parse(path: &str, ns: Option<&str>, default: &str) -> Result<Target, MirrorError> {
        let invalid = |why: &str| MirrorError::InvalidName(format!("{path:?}: {why}"));
        let (head, last) = path
            .rsplit_once('/')
            .ok_or_else(|| MirrorError::NotServed(path.to_string()))?;
        let (name, kind) = head
            .rsplit_once('/')
            .ok_or_else(|| MirrorError::NotServed(path.to_string()))?;
        if name.is_empty() || last.is_empty() {
            return Err(invalid("no repository name"));
        }
        let first = name.split('/').next().unwrap_or(name);
        let full = match ns.map(str::trim).filter(|n| !n.is_empty()) {
            Some(ns) if ns.contains('/') => return Err(invalid("ns is not a registry host")),
            Some(ns) => format!("{ns}/{name}"),
            None if is_registry(first) => name.to_string(),
            None => format!("{default}/{name}"),
        };
        let parse = |s: String| {
            s.parse::<Reference>()
                .map_err(|e| MirrorError::InvalidName(e.to_string()))
        };
        match kind {
            "manifests" => {
                let (reference, want) = match last.parse::<Digest>() {
                    Ok(d) => (
                        parse(format!("{full}@{d}"))?,
                        ManifestRef::Digest(d.clone()),
                    ),
                    Err(_) if last.contains(':') => {
                        return Err(MirrorError::InvalidDigest(last.to_string()));
                    }
                    Err(_) => (
                        parse(format!("{full}:{last}"))?,
                        ManifestRef::Tag(last.to_string()),
                    ),
                };
                Ok(Target {
                    reference,
                    want: Want::Manifest(want),
                })
            }
            "blobs" => {
                let digest = last
                    .parse::<Digest>()
                    .map_err(|_| MirrorError::InvalidDigest(last.to_string()))?;
                Ok(Target {
                    reference: parse(full)?,
                    want: Want::Blob(digest),
                })
            }
            _ => Err(MirrorError::NotServed(path.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(path: &str, ns: Option<&str>) -> Result<Target, MirrorError> {
        Target::parse(path, ns, "docker.io")
    }

    #[test]
    fn the_first_component_names_the_upstream_as_docker_reads_references() {
        let t = parse("ghcr.io/o/r/manifests/v1", None).unwrap();
        assert_eq!(
            (t.upstream(), t.reference.repository.as_str()),
            ("ghcr.io", "o/r")
        );
        assert_eq!(t.want, Want::Manifest(ManifestRef::Tag("v1".into())));
        let t = parse(&format!("localhost/r/blobs/{D}"), None).unwrap();
        assert_eq!(t.upstream(), "localhost");
        assert_eq!(t.want, Want::Blob(D.parse().unwrap()));
        let t = parse("docker.io/library/debian/manifests/bookworm", None).unwrap();
        assert_eq!(t.reference.repository, "library/debian");
    }

    #[test]
    fn names_without_a_host_go_to_the_default_upstream() {
        let t = parse("library/debian/manifests/bookworm", None).unwrap();
        assert_eq!(
            (t.upstream(), t.reference.repository.as_str()),
            ("docker.io", "library/debian")
        );
        // Docker Hub's one-component names are `library/` ones
        let t = parse("debian/manifests/12", None).unwrap();
        assert_eq!(t.reference.repository, "library/debian");
        let t = Target::parse("team/app/manifests/1", None, "127.0.0.1:5000").unwrap();
        assert_eq!(
            (t.upstream(), t.reference.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
    }

    #[test]
    fn containerd_ns_names_the_upstream() {
        let t = parse("team/app/manifests/1", Some("127.0.0.1:5000")).unwrap();
        assert_eq!(
            (t.upstream(), t.reference.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        assert!(matches!(
            parse("team/app/manifests/1", Some("a/b")),
            Err(MirrorError::InvalidName(_))
        ));
    }

    #[test]
    fn manifests_by_digest_and_repositories_named_like_endpoints() {
        let t = parse(&format!("a/blobs/b/manifests/{D}"), None).unwrap();
        assert_eq!(t.reference.repository, "a/blobs/b");
        assert_eq!(t.reference.digest, Some(D.parse().unwrap()));
        assert_eq!(
            t.want,
            Want::Manifest(ManifestRef::Digest(D.parse().unwrap()))
        );
    }

    #[test]
    fn bad_targets_are_refused_with_what_is_wrong() {
        for (path, want) in [
            ("a/tags/list", "not served"),
            ("manifests", "not served"),
            ("/manifests/x", "name"),
            ("a/blobs/latest", "digest"),
            ("a/manifests/sha256:zz", "digest"),
            ("A/manifests/x", "name"),
            ("a/manifests/-bad", "name"),
        ] {
            let got = parse(path, None);
            let kind = match &got {
                Err(MirrorError::NotServed(_)) => "not served",
                Err(MirrorError::InvalidName(_)) => "name",
                Err(MirrorError::InvalidDigest(_)) => "digest",
                other => panic!("{path}: {other:?}"),
            };
            assert_eq!(kind, want, "{path}");
        }
    }
}
