//! `GitHubReleases` against the fake GitHub's releases endpoints, over real
//! HTTP: metadata, the published checksums, downloads through a redirect,
//! and the size cap.

use spotrunner_core::ports::{PortError, RunnerReleases};
use spotrunner_core::runner_cache::published_sha256;
use spotrunner_github::{DOWNLOAD_MARGIN, GitHubReleases, RUNNER_REPOSITORY};
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};

fn tarball(arch: &str, version: &str) -> String {
    format!("actions-runner-linux-{arch}-{version}.tar.gz")
}

async fn fake_with_two_releases() -> FakeGitHub {
    let gh = FakeGitHub::start_with_prefix("/api/v3").await;
    for (tag, at) in [
        ("v2.329.0", "2026-09-01T10:00:00Z"),
        ("v2.330.0", "2026-11-01T10:00:00Z"),
    ] {
        let v = tag.trim_start_matches('v');
        gh.publish_release(
            RUNNER_REPOSITORY,
            tag,
            at,
            &[
                (&tarball("x64", v), format!("x64 {v}").into_bytes()),
                (&tarball("arm64", v), format!("arm64 {v}").into_bytes()),
                (&format!("actions-runner-win-x64-{v}.zip"), b"win".to_vec()),
            ],
        );
    }
    gh
}

#[tokio::test]
async fn latest_and_by_tag_carry_version_date_assets_and_checksums() {
    let gh = fake_with_two_releases().await;
    let rel = GitHubReleases::new(&gh.url()).unwrap();
    let latest = rel.latest().await.unwrap();
    assert_eq!(latest.version, "2.330.0");
    assert_eq!(
        latest.published_at.to_rfc3339(),
        "2026-11-01T10:00:00+00:00"
    );
    assert_eq!(latest.assets.len(), 3);
    let old = rel.by_version("2.329.0").await.unwrap();
    assert_eq!(old.version, "2.329.0");
    let asset = old
        .asset(&tarball("arm64", "2.329.0"))
        .expect("arm64 asset");
    assert_eq!(asset.size, "arm64 2.329.0".len() as u64);
    let sha = published_sha256("2.329.0", "linux-arm64", &old.body, asset).unwrap();
    let bytes = rel.download(asset).await.unwrap();
    assert_eq!(bytes, b"arm64 2.329.0");
    use sha2::Digest;
    assert_eq!(sha, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(
        gh.calls(endpoint::DOWNLOAD_ASSET),
        1,
        "the download URL redirects"
    );
    assert_eq!(gh.calls(endpoint::ASSET_OBJECT), 1);
    assert!(matches!(
        rel.by_version("2.1.0").await,
        Err(PortError::NotFound { .. })
    ));
    assert!(matches!(
        rel.by_version("latest").await,
        Err(PortError::Rejected { .. })
    ));
}

#[tokio::test]
async fn a_download_past_the_declared_size_is_cut_off() {
    let gh = FakeGitHub::start().await;
    let big = vec![7u8; (DOWNLOAD_MARGIN as usize) + 10];
    gh.publish_release(
        RUNNER_REPOSITORY,
        "v2.331.0",
        "2026-11-20T00:00:00Z",
        &[(&tarball("x64", "2.331.0"), big)],
    );
    let rel = GitHubReleases::new(&gh.url()).unwrap();
    let mut asset = rel.latest().await.unwrap().assets.remove(0);
    asset.size = 5;
    let e = rel.download(&asset).await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e}");
    assert!(e.to_string().contains("declares 5"), "{e}");
}
