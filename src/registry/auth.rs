//! Registry authentication: Bearer token flow (challenge → token endpoint, scoped, cached
//! until expiry) and Basic. Credentials are never logged or persisted.

use std::fmt;

/// A username and password (or token) for one registry, for one job.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: <redacted> }}", self.username)
    }
}
