//! Platforms (`linux/arm64/v8`) in OCI/GOARCH names, and how well an index entry fits one.
//!
//! Matching follows containerd's spirit: os and architecture must be equal (after
//! normalising aliases such as `aarch64`), a wanted variant must be equal (`arm64`
//! without variant is `v8`), and without a wanted variant the default one is preferred.
//! Not for: walking an index (see the manifest module), nor the image config.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the running daemon (`linux/amd64`, `linux/arm64/v8`, …) in OCI/GOARCH names.
    /// Containers on a Unix host are Linux images, whatever the host kernel is called.
    pub fn host() -> Platform {
        let os = if cfg!(windows) { "windows" } else { "linux" };
        let (architecture, variant) = host_arch(std::env::consts::ARCH);
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Index entries for attestations and other non-images say `unknown/unknown`.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }

    /// How well `candidate` (an index entry) fits this wanted platform: `None` when it does
    /// not, else a score where higher is better (2: exact or default variant, 1: another
    /// variant, accepted only when no variant was asked for).
    pub fn match_score(&self, candidate: &Platform) -> Option<u8> {
        if candidate.is_unknown()
            || !self.os.eq_ignore_ascii_case(&candidate.os)
            || normal_arch(&self.architecture) != normal_arch(&candidate.architecture)
        {
            return None;
        }
        let arch = normal_arch(&self.architecture);
        let have = normal_variant(arch, candidate.variant.as_deref());
        match &self.variant {
            Some(want) => (normal_variant(arch, Some(want)) == have).then_some(2),
            None if have == normal_variant(arch, None) => Some(2),
            None => Some(1),
        }
    }
}

/// GOARCH name (and default variant) for a Rust `target_arch`.
fn host_arch(arch: &str) -> (&str, Option<&'static str>) {
    let little = cfg!(target_endian = "little");
    match arch {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" if cfg!(target_feature = "v7") => ("arm", Some("v7")),
        "arm" => ("arm", Some("v6")),
        "powerpc64" if little => ("ppc64le", None),
        "mips64" if little => ("mips64le", None),
        "mips" if little => ("mipsle", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    }
}

/// Architecture aliases that people (and old indexes) write for GOARCH names.
fn normal_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        "armhf" | "armel" => "arm",
        other => other,
    }
}

/// The variant with the architecture's default filled in, so that `arm64` equals `arm64/v8`.
fn normal_variant(arch: &str, variant: Option<&str>) -> Option<String> {
    let v = variant.map(|v| v.to_ascii_lowercase());
    let v = match v {
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() => Some(format!("v{v}")),
        other => other,
    };
    match (arch, v) {
        ("arm64", None) => Some("v8".to_string()),
        ("arm", None) => Some("v7".to_string()),
        ("amd64", Some(v)) if v == "v1" => None,
        (_, v) => v,
    }
}

impl FromStr for Platform {
    type Err = String;
    /// `os/arch[/variant]`, lower case; `aarch64`/`x86_64` are read as `arm64`/`amd64`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| {
            format!(
                "invalid platform {s:?}: {why} (expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8)"
            )
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(err("wrong number of '/'-separated parts"));
        }
        for p in &parts {
            if p.is_empty() {
                return Err(err("empty part"));
            }
            if !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(err(
                    "parts may only contain letters, digits, '.', '_' and '-'",
                ));
            }
            // A platform names folders and files in places (layouts, caches of callers):
            // `.`, `..` or a hidden name must never be one of its parts.
            if !p.as_bytes()[0].is_ascii_alphanumeric() {
                return Err(err("each part must start with a letter or a digit"));
            }
        }
        let lower = |p: &str| p.to_ascii_lowercase();
        let arch = lower(parts[1]);
        let (architecture, variant) = match (arch.as_str(), parts.get(2).map(|v| lower(v))) {
            ("armhf", None) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", None) => ("arm".to_string(), Some("v6".to_string())),
            (a, v) => (normal_arch(a).to_string(), v),
        };
        Ok(Platform {
            os: lower(parts[0]),
            architecture,
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in [
            "linux/amd64",
            "linux/arm64/v8",
            "linux/arm/v7",
            "windows/amd64",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(p("Linux/AMD64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm64").variant, None);
    }

    #[test]
    fn parse_refuses_malformed_platforms() {
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
            "linux//v7",
            "linux/../..",
            "../amd64",
            "linux/amd64/..",
            "linux/./v8",
            "linux/.hidden",
            "linux/-arm",
        ] {
            let e = bad.parse::<Platform>().expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn host_is_a_goarch_name() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.to_string(), "linux/arm64/v8");
        assert_eq!(host_arch("aarch64"), ("arm64", Some("v8")));
        assert_eq!(host_arch("x86_64"), ("amd64", None));
        assert_eq!(host_arch("x86"), ("386", None));
        assert_eq!(host_arch("s390x"), ("s390x", None));
    }

    #[test]
    fn os_and_arch_must_be_equal() {
        assert_eq!(p("linux/amd64").match_score(&p("linux/arm64")), None);
        assert_eq!(p("linux/amd64").match_score(&p("windows/amd64")), None);
        assert_eq!(p("linux/amd64").match_score(&p("linux/amd64")), Some(2));
        let aliased = Platform {
            os: "linux".into(),
            architecture: "x86_64".into(),
            variant: None,
        };
        assert_eq!(p("linux/amd64").match_score(&aliased), Some(2));
    }

    #[test]
    fn arm64_without_variant_equals_v8() {
        assert_eq!(p("linux/arm64/v8").match_score(&p("linux/arm64")), Some(2));
        assert_eq!(p("linux/arm64").match_score(&p("linux/arm64/v8")), Some(2));
        assert_eq!(p("linux/arm64/v8").match_score(&p("linux/arm64/v9")), None);
    }

    #[test]
    fn wanted_variant_must_match() {
        assert_eq!(p("linux/arm/v7").match_score(&p("linux/arm/v6")), None);
        assert_eq!(p("linux/arm/v6").match_score(&p("linux/arm/v6")), Some(2));
        assert_eq!(p("linux/arm/v7").match_score(&p("linux/arm")), Some(2));
    }

    #[test]
    fn without_wanted_variant_the_default_is_preferred() {
        let want = p("linux/arm");
        assert_eq!(want.match_score(&p("linux/arm/v7")), Some(2));
        assert_eq!(want.match_score(&p("linux/arm/v6")), Some(1));
        let want = p("linux/amd64");
        assert_eq!(want.match_score(&p("linux/amd64/v3")), Some(1));
        assert_eq!(want.match_score(&p("linux/amd64")), Some(2));
    }

    #[test]
    fn unknown_platform_never_matches() {
        let unknown = p("unknown/unknown");
        assert!(unknown.is_unknown());
        assert_eq!(unknown.match_score(&unknown), None);
    }
}
