//! When and how long to wait before asking a registry again.
//!
//! Connection errors, 5xx and 429 are retried with exponential backoff; a `Retry-After`
//! header (seconds or an HTTP date) overrides the backoff, within a cap. Not for: resuming
//! a blob body that broke off mid-way (the blob module does that with `Range`) or an
//! upload chunk (the upload module asks the upload's status).

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

#[derive(Clone, Debug)]
pub(super) struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The first wait; doubled for each further one.
    pub base: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed try number `attempt` (0-based): `base · 2^attempt`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max_backoff)
    }

    /// The wait before retrying a response with these headers: its `Retry-After`, capped,
    /// else the backoff.
    pub fn wait_for(&self, attempt: u32, headers: &HeaderMap) -> Duration {
        retry_after(headers, SystemTime::now())
            .map(|d| d.min(self.max_retry_after))
            .unwrap_or_else(|| self.backoff(attempt))
    }
}

/// Statuses worth another try: 429 and the transient 5xx (not 501 or 505, which won't change).
pub(super) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// Errors of `send()` worth another try: all but a request we built wrong.
pub(super) fn is_retryable_error(e: &reqwest::Error) -> bool {
    !e.is_builder()
}

/// `Retry-After` as a duration from `now`: delta-seconds or an HTTP date (past dates: zero).
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        h
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0), Duration::from_millis(200));
        assert_eq!(p.backoff(1), Duration::from_millis(400));
        assert_eq!(p.backoff(3), Duration::from_millis(1600));
        assert_eq!(p.backoff(10), Duration::from_secs(10));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&later), now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retry_after_is_capped_by_the_policy() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait_for(0, &headers("3600")), Duration::from_secs(60));
        assert_eq!(p.wait_for(1, &headers("2")), Duration::from_secs(2));
        assert_eq!(p.wait_for(1, &HeaderMap::new()), Duration::from_millis(400));
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 501, 505] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }
}
