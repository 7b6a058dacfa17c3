//! Platforms (`linux/arm64/v8`) and picking one from an index.

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
    pub fn host() -> Platform {
        todo!()
    }
}

impl FromStr for Platform {
    type Err = String;
    /// `os/arch[/variant]`; `arm64` without variant matches `v8`, as containerd does.
    fn from_str(_s: &str) -> Result<Self, Self::Err> {
        todo!()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}
