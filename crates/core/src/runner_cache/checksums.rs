//! The SHA-256 GitHub publishes with an actions/runner release: one per
//! platform between markers in the release notes
//! (`<!-- BEGIN SHA linux-x64 -->HEX<!-- END SHA linux-x64 -->`), and, on
//! releases since 2025, each asset's `digest` (`sha256:HEX`). The notes hold
//! other 64-hex strings too, so only the markers count.

use crate::ports::ReleaseAsset;

/// Why a release's published checksum cannot be trusted or found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error(
        "release {version}: no SHA-256 published for {platform} (neither body marker nor asset digest)"
    )]
    Missing { version: String, platform: String },
    #[error("release {version}: {platform} marker holds {value:?}, not 64 hex digits")]
    Malformed {
        version: String,
        platform: String,
        value: String,
    },
    #[error("release {version}: asset {asset} digest {digest:?} is not sha256:<64 hex digits>")]
    BadDigest {
        version: String,
        asset: String,
        digest: String,
    },
    #[error(
        "release {version}: {platform} body says {body} but asset {asset} digest says {digest}"
    )]
    Disagree {
        version: String,
        platform: String,
        asset: String,
        body: String,
        digest: String,
    },
}

/// Lower-case `s` if it is exactly 64 hex digits.
pub fn sha256_hex(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The text between `<!-- BEGIN SHA {platform} -->` and its END marker, if the
/// body has that marker (trimmed, as written).
pub fn body_marker<'a>(body: &'a str, platform: &str) -> Option<&'a str> {
    let begin = format!("<!-- BEGIN SHA {platform} -->");
    let end = format!("<!-- END SHA {platform} -->");
    let start = body.find(&begin)? + begin.len();
    let len = body[start..].find(&end)?;
    Some(body[start..start + len].trim())
}

/// The SHA-256 (lower-case hex) the release publishes for `platform`
/// (`linux-x64`) and its `asset`: the body marker and the asset's digest must
/// agree when both are there; one alone is taken; none is an error.
pub fn published_sha256(
    version: &str,
    platform: &str,
    body: &str,
    asset: &ReleaseAsset,
) -> Result<String, ChecksumError> {
    let from_body = match body_marker(body, platform) {
        None => None,
        Some(v) => Some(sha256_hex(v).ok_or_else(|| ChecksumError::Malformed {
            version: version.into(),
            platform: platform.into(),
            value: v.chars().take(80).collect(),
        })?),
    };
    let from_digest = match &asset.digest {
        None => None,
        Some(d) => Some(
            d.strip_prefix("sha256:")
                .and_then(sha256_hex)
                .ok_or_else(|| ChecksumError::BadDigest {
                    version: version.into(),
                    asset: asset.name.clone(),
                    digest: d.clone(),
                })?,
        ),
    };
    match (from_body, from_digest) {
        (Some(b), Some(d)) if b != d => Err(ChecksumError::Disagree {
            version: version.into(),
            platform: platform.into(),
            asset: asset.name.clone(),
            body: b,
            digest: d,
        }),
        (Some(b), _) => Ok(b),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(ChecksumError::Missing {
            version: version.into(),
            platform: platform.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X64: &str = "194f1e1e4bd02f80b7e9633fc546084d8d4e19f3928a324d512ea53430102e1d";
    const ARM64: &str = "56768348b3d643a6a29d4ad71e9bdae0dc0ef1eb01afe0f7a8ee097b039bfaaf";

    /// Shaped like actions/runner's `releaseNote.md` as rendered on a release:
    /// other 64-hex strings (a commit, a win checksum) around the markers.
    fn body() -> String {
        format!(
            "## What's Changed\n* Bump deps by @dependabot in https://github.com/actions/runner/pull/4000 \
             (commit 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef)\n\n\
             ## SHA-256 Checksums\n\nThe SHA-256 checksums for the packages included in this build are shown below:\n\n\
             - actions-runner-win-x64-2.329.0.zip <!-- BEGIN SHA win-x64 -->f60be5ddf373c52fd735388c3478536afd12bfd36d1d0777c6b855b758e70f25<!-- END SHA win-x64 -->\n\
             - actions-runner-osx-arm64-2.329.0.tar.gz <!-- BEGIN SHA osx-arm64 -->e1bb5b2cf4a6b4ba1a07e4b2e3b2c0c0ffee0ffee0ffee0ffee0ffee0ffee01<!-- END SHA osx-arm64 -->\n\
             - actions-runner-linux-x64-2.329.0.tar.gz <!-- BEGIN SHA linux-x64 -->{X64}<!-- END SHA linux-x64 -->\n\
             - actions-runner-linux-arm64-2.329.0.tar.gz <!-- BEGIN SHA linux-arm64 -->{}<!-- END SHA linux-arm64 -->\n\
             - actions-runner-linux-arm-2.329.0.tar.gz <!-- BEGIN SHA linux-arm -->aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999<!-- END SHA linux-arm -->\n",
            ARM64.to_ascii_uppercase()
        )
    }

    fn asset(digest: Option<&str>) -> ReleaseAsset {
        ReleaseAsset {
            name: "actions-runner-linux-x64-2.329.0.tar.gz".into(),
            url: "https://example.test/x".into(),
            size: 1,
            digest: digest.map(str::to_string),
        }
    }

    #[test]
    fn the_markers_name_each_platform_and_nothing_else() {
        let b = body();
        assert_eq!(body_marker(&b, "linux-x64"), Some(X64));
        // `linux-arm` must not match inside `linux-arm64`, nor the reverse.
        assert_eq!(
            body_marker(&b, "linux-arm").map(str::to_string),
            Some("aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999".into())
        );
        assert_eq!(
            published_sha256("2.329.0", "linux-arm64", &b, &asset(None)).unwrap(),
            ARM64,
            "upper-case hex is normalised"
        );
        assert_eq!(body_marker(&b, "linux-s390x"), None);
    }

    #[test]
    fn body_and_digest_must_agree() {
        let b = body();
        let ok = published_sha256(
            "2.329.0",
            "linux-x64",
            &b,
            &asset(Some(&format!("sha256:{X64}"))),
        );
        assert_eq!(ok.unwrap(), X64);
        let e = published_sha256(
            "2.329.0",
            "linux-x64",
            &b,
            &asset(Some(&format!("sha256:{ARM64}"))),
        )
        .unwrap_err();
        assert!(matches!(e, ChecksumError::Disagree { .. }), "{e}");
        assert!(
            e.to_string().contains(X64) && e.to_string().contains(ARM64),
            "{e}"
        );
    }

    #[test]
    fn one_source_is_enough_none_is_an_error() {
        let d = format!("sha256:{X64}");
        assert_eq!(
            published_sha256("2.329.0", "linux-x64", "no markers", &asset(Some(&d))).unwrap(),
            X64
        );
        let e = published_sha256("2.329.0", "linux-x64", "no markers", &asset(None)).unwrap_err();
        assert!(e.to_string().contains("linux-x64"), "{e}");
        let e = published_sha256("2.329.0", "linux-x64", "", &asset(Some("md5:abc"))).unwrap_err();
        assert!(matches!(e, ChecksumError::BadDigest { .. }), "{e}");
        let bad = "<!-- BEGIN SHA linux-x64 -->not-a-sum<!-- END SHA linux-x64 -->";
        let e = published_sha256("2.329.0", "linux-x64", bad, &asset(None)).unwrap_err();
        assert!(matches!(e, ChecksumError::Malformed { .. }), "{e}");
    }
}
