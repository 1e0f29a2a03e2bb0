//! GitHub App JSON Web Tokens (RS256).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// How far back `iat` is set, against clock drift between us and GitHub.
pub const JWT_BACKDATE_SECS: u64 = 30;
/// Lifetime from `now` (GitHub allows at most 10 minutes from `iat`).
pub const JWT_LIFETIME_SECS: u64 = 9 * 60;

/// The claims of an App JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppClaims {
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    /// Unique per token, so that two Lambdas minting in the same second never send
    /// identical JWTs.
    pub jti: String,
}

pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The claims for a JWT made at `now` (pure; `jti` is a fresh UUID v4).
pub fn app_claims(app_id: &str, now: SystemTime) -> AppClaims {
    let now = epoch_secs(now);
    AppClaims {
        iat: now.saturating_sub(JWT_BACKDATE_SECS),
        exp: now + JWT_LIFETIME_SECS,
        iss: app_id.to_string(),
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

/// Sign an App JWT made at `now`.
pub fn app_jwt(
    app_id: &str,
    key: &EncodingKey,
    now: SystemTime,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &app_claims(app_id, now),
        key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn claims_are_backdated_short_lived_and_unique() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = app_claims("42", now);
        let b = app_claims("42", now);
        assert_eq!(a.iat, 1_700_000_000 - 30);
        assert_eq!(a.exp, 1_700_000_000 + 540);
        assert!(a.exp - a.iat <= 600, "GitHub refuses JWTs living > 10 min");
        assert_eq!(a.iss, "42");
        assert_ne!(a.jti, b.jti);
        assert_eq!(uuid::Uuid::parse_str(&a.jti).unwrap().get_version_num(), 4);
    }
}
