//! `X-Hub-Signature-256`: `sha256=` + hex HMAC-SHA256 of the raw body, compared in
//! constant time against every accepted secret (current and previous, for rotation).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused (all are a 401; the reason is only logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error("signature does not match any configured secret")]
    Mismatch,
}

/// The shortest webhook secret a deployment accepts: anyone who guesses the
/// secret can queue jobs, so it must be long and random (`openssl rand -hex 32`;
/// `spotrunner github-app create` makes one).
pub const MIN_SECRET_CHARS: usize = 32;

/// What is wrong with a webhook secret's value (never quoted), if anything.
pub fn weak_secret(value: &str) -> Option<String> {
    let n = value.trim().chars().count();
    (n < MIN_SECRET_CHARS).then(|| {
        if n == 0 {
            "is empty".to_string()
        } else {
            format!(
                "is {n} characters long; at least {MIN_SECRET_CHARS} are needed (e.g. `openssl rand -hex 32`)"
            )
        }
    })
}

/// The webhook secrets accepted now: current first, then previous. Never logged.
#[derive(Clone)]
pub struct WebhookSecrets(Vec<Vec<u8>>);

impl WebhookSecrets {
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        Self(secrets.iter().map(|s| s.as_ref().to_vec()).collect())
    }

    /// How many secrets are accepted (one, or two during a rotation).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Check `header` against `body`. Every secret is tried, so the time taken does
    /// not reveal which one matched.
    pub fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let expected = parse_header(header)?;
        let mut matched = Choice::from(0);
        for secret in &self.0 {
            matched |= sign_raw(secret, body).ct_eq(&expected);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} redacted)", self.0.len())
    }
}

fn parse_header(header: &str) -> Result<[u8; 32], SignatureError> {
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).map_err(|_| SignatureError::Malformed)?;
    Ok(out)
}

fn sign_raw(secret: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The header value GitHub would send for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(sign_raw(secret, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_SIG: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_documented_vector() {
        assert_eq!(sign(GITHUB_SECRET.as_bytes(), b"Hello, World!"), GITHUB_SIG);
        let s = WebhookSecrets::new(&[GITHUB_SECRET]);
        assert_eq!(s.verify(Some(GITHUB_SIG), b"Hello, World!"), Ok(()));
    }

    #[test]
    fn refusals() {
        let s = WebhookSecrets::new(&[GITHUB_SECRET]);
        let body = b"Hello, World!";
        assert_eq!(s.verify(None, body), Err(SignatureError::Missing));
        assert_eq!(
            s.verify(Some(GITHUB_SIG), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(Some("sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify(Some(&GITHUB_SIG[..40]), body),
            Err(SignatureError::Malformed)
        );
        let non_hex = GITHUB_SIG.replace('7', "z");
        assert_eq!(
            s.verify(Some(&non_hex), body),
            Err(SignatureError::Malformed)
        );
        let upper = GITHUB_SIG.to_uppercase().replace("SHA256=", "sha256=");
        assert_eq!(
            s.verify(Some(&upper), body),
            Ok(()),
            "hex case does not matter"
        );
    }

    #[test]
    fn rotation_accepts_two_secrets_not_a_third() {
        let body = b"{}";
        let current = "new";
        let previous = "old";
        let s = WebhookSecrets::new(&[current, previous]);
        assert_eq!(s.verify(Some(&sign(b"new", body)), body), Ok(()));
        assert_eq!(s.verify(Some(&sign(b"old", body)), body), Ok(()));
        assert_eq!(
            s.verify(Some(&sign(b"older", body)), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(format!("{s:?}"), "WebhookSecrets(2 redacted)");
    }
}
