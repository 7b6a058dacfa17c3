//! Docker image references: `ubuntu`, `ghcr.io/o/r:tag`, `host:5000/r@sha256:…`.
//!
//! Implements the grammar of `distribution/reference` with Docker's normalisation
//! (`ubuntu` → `docker.io/library/ubuntu:latest`, `index.docker.io` → `docker.io`).
//! Parsed once at the edge; nothing else in hoist takes an image reference as a string.
//! Not for: which host and scheme to speak to (see the client), nor credentials.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry Docker Hub references are written against.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's distribution API is served from.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// `distribution/reference`'s limit on the whole name (registry and repository).
const NAME_MAX_LEN: usize = 255;
const TAG_MAX_LEN: usize = 128;

/// A parsed image reference with Docker's defaults applied
/// (`ubuntu` → `docker.io/library/ubuntu:latest`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`: as written (lower-cased), Docker Hub as `docker.io`.
    pub registry: String,
    /// `library/ubuntu`
    pub repository: String,
    /// `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {value:?}: {reason}")]
pub struct ReferenceError {
    pub value: String,
    pub reason: String,
}

impl Reference {
    /// The host[:port] to speak HTTP to (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to put after `/manifests/`: the digest if any, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`, without tag or digest (`docker.io/library/ubuntu`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at another digest (for platform manifests of an index).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ReferenceError {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        // skopeo's transport prefix (`docker://ubuntu`): the only transport hoist speaks.
        let s = s.strip_prefix("docker://").unwrap_or(s);
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains whitespace"));
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| err(&e.to_string()))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // A ':' after the last '/' starts the tag; one before it belongs to a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(err)?;
        }
        if name.len() > NAME_MAX_LEN {
            return Err(err("name longer than 255 characters"));
        }

        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if is_registry(first) => (normalise_registry(first), path),
            _ => (DOCKER_HUB.to_string(), name),
        };
        check_registry(&registry).map_err(err)?;
        check_path(path).map_err(err)?;
        if path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(
                "a 64-character hex string is a digest, not a repository (write REPO@sha256:HEX)",
            ));
        }

        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    /// Canonical form: `docker.io/library/ubuntu:latest`, `host/repo:tag@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component names a registry when it looks like a host.
/// Docker's rule for a reference's first component: a registry host when it has a '.' or
/// a ':' or is `localhost`, else part of a Docker Hub repository path.
pub fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn normalise_registry(first: &str) -> String {
    let lower = first.to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => lower,
    }
}

/// `host[:port]` where host is dot-separated labels or a bracketed IPv6 address.
fn check_registry(registry: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or("registry has an unclosed '[' (IPv6 address)")?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("registry has an invalid IPv6 address");
        }
        match after {
            "" => (addr, None),
            _ => (
                addr,
                Some(after.strip_prefix(':').ok_or("junk after IPv6 address")?),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5)
    {
        return Err("registry port must be a number");
    }
    if !registry.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err("registry host must be dot-separated letters, digits and '-'");
        }
    }
    Ok(())
}

/// Path components: `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty repository name");
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err("repository has an empty path component");
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("repository name must be lowercase");
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err("repository path components must start and end with [a-z0-9]");
        }
        let mut i = 0;
        while i < bytes.len() {
            if alnum(bytes[i]) {
                i += 1;
                continue;
            }
            let sep_start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[sep_start..i];
            let valid = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
            if !valid {
                return Err(
                    "repository path components may only contain [a-z0-9] separated by '.', '_', '__' or '-'",
                );
            }
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if bytes.is_empty() {
        return Err("empty tag");
    }
    if bytes.len() > TAG_MAX_LEN {
        return Err("tag longer than 128 characters");
    }
    if !word(bytes[0]) {
        return Err("tag must start with a letter, digit or '_'");
    }
    if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err("tag may only contain letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bare_name_gets_docker_hub_library_and_latest() {
        let r = parse("ubuntu");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/ubuntu");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_ref(), "latest");
    }

    #[test]
    fn skopeo_docker_transport_prefix_is_accepted() {
        let r = parse("docker://ubuntu:18.04");
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:18.04");
        assert_eq!(
            parse("docker://127.0.0.1:5000/a/b:1").registry,
            "127.0.0.1:5000"
        );
        let e = "docker://".parse::<Reference>().unwrap_err();
        assert_eq!(e.value, "docker://");
    }

    #[test]
    fn canonical_forms_round_trip() {
        let digest = format!("sha256:{HEX}");
        let cases = [
            ("ubuntu:18.04", "docker.io/library/ubuntu:18.04".to_string()),
            ("user/app", "docker.io/user/app:latest".to_string()),
            (
                "docker.io/ubuntu",
                "docker.io/library/ubuntu:latest".to_string(),
            ),
            (
                "index.docker.io/library/ubuntu:22.04",
                "docker.io/library/ubuntu:22.04".to_string(),
            ),
            (
                "registry-1.docker.io/x/y",
                "docker.io/x/y:latest".to_string(),
            ),
            ("ghcr.io/o/r:v1", "ghcr.io/o/r:v1".to_string()),
            ("GHCR.IO/o/r", "ghcr.io/o/r:latest".to_string()),
            ("localhost/app", "localhost/app:latest".to_string()),
            (
                "localhost:5000/a/b/c:t",
                "localhost:5000/a/b/c:t".to_string(),
            ),
            (
                "127.0.0.1:5000/acc/x:1.0",
                "127.0.0.1:5000/acc/x:1.0".to_string(),
            ),
            ("[::1]:5000/app:t", "[::1]:5000/app:t".to_string()),
            (
                &format!("ubuntu@{digest}"),
                format!("docker.io/library/ubuntu@{digest}"),
            ),
            (&format!("h.io/r:t@{digest}"), format!("h.io/r:t@{digest}")),
            (
                "a__b/c-d--e.f_g",
                "docker.io/a__b/c-d--e.f_g:latest".to_string(),
            ),
        ];
        for (input, canonical) in cases {
            let r = parse(input);
            assert_eq!(r.to_string(), canonical, "{input}");
            assert_eq!(parse(&canonical), r, "{canonical} re-parses");
        }
    }

    #[test]
    fn registry_port_and_tag_are_told_apart() {
        let r = parse("host:5000/repo:tag");
        assert_eq!(r.registry, "host:5000");
        assert_eq!(r.repository, "repo");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.api_host(), "host:5000");
        let r = parse("host:5000/repo");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        // Without a '/', `name:5000` is a repository with a tag, as in Docker.
        let r = parse("localhost:5000");
        assert_eq!(r.repository, "library/localhost");
        assert_eq!(r.tag.as_deref(), Some("5000"));
    }

    #[test]
    fn first_component_without_dot_or_colon_is_a_namespace() {
        let r = parse("myorg/app");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "myorg/app");
    }

    #[test]
    fn digest_without_tag_keeps_tag_empty_and_is_the_manifest_ref() {
        let r = parse(&format!("repo@sha256:{HEX}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), format!("sha256:{HEX}"));
        let r = parse(&format!("repo:v1@sha256:{HEX}"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), format!("sha256:{HEX}"));
    }

    #[test]
    fn invalid_references_are_refused_with_the_value() {
        let long_tag = "t".repeat(129);
        let long_name = format!("a/{}", "b".repeat(260));
        let bad = [
            "",
            " ubuntu",
            "Ubuntu",
            "docker.io/Library/ubuntu",
            "ubuntu:",
            "ubuntu:-x",
            "ubuntu:a+b",
            "ubuntu@",
            "ubuntu@sha256:abc",
            "ubuntu@md5:abcd",
            "/ubuntu",
            "ubuntu/",
            "a//b",
            "host:port/x",
            "ho_st.io/x",
            "-h.io/x",
            "a/-b",
            "a/b-",
            "a/b..c",
            "a/b___c",
            "[::1/x",
            "[zz]:5000/x",
            HEX,
            &format!("ubuntu:{long_tag}"),
            &long_name,
        ];
        for input in bad {
            let e = input.parse::<Reference>().expect_err(input);
            assert_eq!(e.value, input);
            assert!(e.to_string().starts_with("invalid image reference"), "{e}");
        }
        let e = "Ubuntu".parse::<Reference>().unwrap_err();
        assert!(e.reason.contains("lowercase"), "{e}");
    }

    #[test]
    fn tag_allows_word_dot_dash_up_to_128() {
        let tag = format!("_{}", "a.b-c".repeat(25));
        assert!(tag.len() <= 128);
        assert_eq!(
            parse(&format!("r:{tag}")).tag.as_deref(),
            Some(tag.as_str())
        );
        assert_eq!(parse("r:V1.2_x").tag.as_deref(), Some("V1.2_x"));
    }

    #[test]
    fn with_digest_and_name() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        let r = parse("ghcr.io/o/r:v1").with_digest(d.clone());
        assert_eq!(r.digest, Some(d));
        assert_eq!(r.name(), "ghcr.io/o/r");
    }
}
