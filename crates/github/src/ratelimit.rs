//! Reading GitHub's rate-limit answers (primary and secondary limits).

use crate::jwt::epoch_secs;
use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime};

/// GitHub: "If you exceed a secondary rate limit and there is no `retry-after`
/// header, wait at least one minute before retrying."
pub const SECONDARY_LIMIT_BACKOFF: Duration = Duration::from_secs(60);

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// How long to stay away from GitHub after this answer, if it is a rate-limit
/// answer (403 or 429). Pure: `now` is the caller's clock.
pub fn throttle_delay(
    status: u16,
    headers: &HeaderMap,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(ra) = header(headers, "retry-after") {
        let secs = ra
            .parse::<u64>()
            .unwrap_or(SECONDARY_LIMIT_BACKOFF.as_secs());
        return Some(Duration::from_secs(secs.max(1)));
    }
    let exhausted = header(headers, "x-ratelimit-remaining") == Some("0");
    if exhausted {
        if let Some(reset) =
            header(headers, "x-ratelimit-reset").and_then(|r| r.parse::<u64>().ok())
        {
            let now = epoch_secs(now);
            return Some(Duration::from_secs(reset.saturating_sub(now).max(1)));
        }
        return Some(SECONDARY_LIMIT_BACKOFF);
    }
    let m = message.to_ascii_lowercase();
    if m.contains("secondary rate limit") || m.contains("abuse detection") || status == 429 {
        return Some(SECONDARY_LIMIT_BACKOFF);
    }
    None
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let url = pieces.next()?.trim();
        let url = url.strip_prefix('<')?.strip_suffix('>')?;
        pieces
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then_some(url)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn hm(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const NOW: u64 = 1_700_000_000;
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn primary_limit_waits_until_reset() {
        let h = hm(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &(NOW + 120).to_string()),
        ]);
        assert_eq!(
            throttle_delay(403, &h, "API rate limit exceeded", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            throttle_delay(429, &h, "", now()),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn reset_in_the_past_still_waits_a_second() {
        let h = hm(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")]);
        assert_eq!(
            throttle_delay(403, &h, "", now()),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn retry_after_wins() {
        let h = hm(&[("retry-after", "17"), ("x-ratelimit-remaining", "0")]);
        assert_eq!(
            throttle_delay(403, &h, "", now()),
            Some(Duration::from_secs(17))
        );
    }

    #[test]
    fn secondary_limit_without_headers_backs_off_a_minute() {
        let msg = "You have exceeded a secondary rate limit. Please wait a few minutes.";
        assert_eq!(
            throttle_delay(403, &HeaderMap::new(), msg, now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            throttle_delay(429, &HeaderMap::new(), "", now()),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn plain_forbidden_and_other_statuses_are_not_throttling() {
        let h = hm(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(
            throttle_delay(403, &h, "Resource not accessible by integration", now()),
            None
        );
        assert_eq!(
            throttle_delay(500, &hm(&[("retry-after", "5")]), "", now()),
            None
        );
    }

    #[test]
    fn link_header_next() {
        let l = r#"<https://api.github.com/orgs/o/actions/runners?per_page=100&page=2>; rel="next", <https://api.github.com/orgs/o/actions/runners?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            next_link(l),
            Some("https://api.github.com/orgs/o/actions/runners?per_page=100&page=2")
        );
        let l = r#"<https://x/y?page=1>; rel="prev", <https://x/y?page=1>; rel="first""#;
        assert_eq!(next_link(l), None);
    }
}
