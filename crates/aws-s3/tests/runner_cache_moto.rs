//! The runner-cache syncer for real: `GitHubReleases` against the fake
//! GitHub's releases endpoint, `S3RunnerCache` on moto S3, the ledger on moto
//! DynamoDB. Both tarballs are stored with sidecars holding their real
//! SHA-256; a wrong published checksum is refused and nothing is stored for
//! it; a second run downloads nothing.

use aws_sdk_s3::Client;
use sha2::{Digest, Sha256};
use spotrunner_aws::dynamodb::DynamoLedger;
use spotrunner_aws_s3::S3RunnerCache;
use spotrunner_core::ports::{Ledger, RunnerCacheStore};
use spotrunner_core::runner_cache::{
    ARCHS, ArchOutcome, LATEST, RunnerCacheSync, RunnerReleaseState, STATE_KEY, sidecar_key,
    tarball_key, tarball_name,
};
use spotrunner_github::{GitHubReleases, RUNNER_REPOSITORY};
use spotrunner_testkit::fake_github::FakeGitHub;
use spotrunner_testkit::moto;
use std::sync::Arc;

const BUCKET: &str = "sr-runner";

struct World {
    _moto: moto::SharedMoto,
    gh: FakeGitHub,
    s3: Client,
    ledger: Arc<DynamoLedger>,
    store: Arc<S3RunnerCache>,
    releases: Arc<GitHubReleases>,
}

fn tarball_bytes(arch: &str, version: &str) -> Vec<u8> {
    // Not tiny, so the transfer takes several chunks.
    let mut b = format!("runner {arch} {version}\n").into_bytes();
    b.extend((0..300_000u32).map(|i| (i % 251) as u8));
    b
}

async fn world() -> World {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let s3 = Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    let table = "sr-ledger";
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), table)
        .await
        .expect("create ledger table");
    let gh = FakeGitHub::start().await;
    World {
        _moto: moto,
        ledger: Arc::new(DynamoLedger::new(&sdk, table)),
        store: Arc::new(S3RunnerCache::new(&sdk, BUCKET)),
        releases: Arc::new(GitHubReleases::new(&gh.url()).unwrap()),
        gh,
        s3,
    }
}

impl World {
    fn publish(&self, version: &str, at: &str) {
        let files: Vec<(String, Vec<u8>)> = ARCHS
            .iter()
            .map(|a| (tarball_name(a, version), tarball_bytes(a, version)))
            .collect();
        let files: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        self.gh
            .publish_release(RUNNER_REPOSITORY, &format!("v{version}"), at, &files);
    }
    fn sync(&self, version: &str) -> RunnerCacheSync {
        RunnerCacheSync {
            runner_version: version.into(),
            archs: ARCHS.to_vec(),
            max_age_days: 30,
            releases: self.releases.clone(),
            store: self.store.clone(),
            ledger: self.ledger.clone(),
        }
    }
    async fn keys(&self) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list objects");
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }
    async fn object(&self, key: &str) -> Vec<u8> {
        self.s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"))
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec()
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    "2026-11-26T20:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn both_tarballs_are_stored_with_verified_sidecars_and_a_second_run_downloads_nothing() {
    let w = world().await;
    w.publish("2.329.0", "2026-09-01T00:00:00Z");
    w.publish("2.330.0", "2026-11-20T00:00:00Z");
    let report = w.sync(LATEST).run(now()).await.expect("sync");
    assert_eq!(report.version, "2.330.0");
    assert_eq!(report.stored(), 2, "{report:?}");
    assert_eq!(w.gh.asset_downloads(), 2);
    let mut expected_keys = Vec::new();
    for arch in ARCHS {
        let tarball = w.object(&tarball_key(arch, "2.330.0")).await;
        assert_eq!(tarball, tarball_bytes(arch, "2.330.0"));
        let sidecar = w.object(&sidecar_key(arch, "2.330.0")).await;
        assert_eq!(
            String::from_utf8(sidecar).unwrap(),
            hex::encode(Sha256::digest(&tarball)),
            "{arch} sidecar holds the tarball's real SHA-256"
        );
        expected_keys.push(tarball_key(arch, "2.330.0"));
        expected_keys.push(sidecar_key(arch, "2.330.0"));
    }
    expected_keys.sort();
    assert_eq!(w.keys().await, expected_keys);
    let state = RunnerReleaseState::from_doc(w.ledger.state_doc(STATE_KEY).await.unwrap());
    assert_eq!(state.version, "2.330.0");
    assert_eq!(
        state.sha256.get("arm64"),
        Some(&hex::encode(Sha256::digest(tarball_bytes(
            "arm64", "2.330.0"
        ))))
    );

    let again = w.sync(LATEST).run(now()).await.expect("second sync");
    assert!(
        again
            .archs
            .iter()
            .all(|o| matches!(o, ArchOutcome::Cached { .. })),
        "{again:?}"
    );
    assert_eq!(
        w.gh.asset_downloads(),
        2,
        "nothing downloaded the second time"
    );
    assert!(
        w.store
            .exists(&tarball_key("x64", "2.330.0"))
            .await
            .unwrap()
    );
    assert!(!w.store.exists(&tarball_key("x64", "2.1.0")).await.unwrap());
}

#[tokio::test]
async fn a_wrong_published_checksum_is_refused_and_nothing_is_stored() {
    let w = world().await;
    w.publish("2.329.0", "2026-09-01T00:00:00Z");
    // The body's marker lies for arm64, and the digest agrees with it (so the
    // two published values match each other but not the bytes).
    let wrong = hex::encode(Sha256::digest(b"not the tarball"));
    let arm = tarball_name("arm64", "2.329.0");
    w.gh.set_release_body_sha(RUNNER_REPOSITORY, "v2.329.0", "linux-arm64", &wrong);
    w.gh.set_asset_digest(
        RUNNER_REPOSITORY,
        "v2.329.0",
        &arm,
        Some(&format!("sha256:{wrong}")),
    );
    let report = w.sync("2.329.0").run(now()).await.expect("sync");
    assert_eq!(report.refused(), 1, "{report:?}");
    let ArchOutcome::Refused { arch, reason } = &report.archs[1] else {
        panic!("{report:?}")
    };
    assert_eq!(arch, "arm64");
    assert!(reason.contains(&wrong), "{reason}");
    let keys = w.keys().await;
    assert!(keys.iter().all(|k| !k.contains("arm64")), "{keys:?}");
    assert_eq!(keys.len(), 2, "x64 alone is stored: {keys:?}");
    let state = RunnerReleaseState::from_doc(w.ledger.state_doc(STATE_KEY).await.unwrap());
    assert_eq!(
        state.version, "",
        "no version in use before every arch is verified"
    );

    // Body and digest disagreeing is a refusal before any download.
    w.publish("2.330.0", "2026-11-20T00:00:00Z");
    w.gh.set_asset_digest(
        RUNNER_REPOSITORY,
        "v2.330.0",
        &tarball_name("x64", "2.330.0"),
        Some(&format!("sha256:{wrong}")),
    );
    let downloads = w.gh.asset_downloads();
    let report = w.sync("2.330.0").run(now()).await.expect("sync");
    assert!(
        matches!(&report.archs[0], ArchOutcome::Refused { reason, .. } if reason.contains("digest")),
        "{report:?}"
    );
    assert_eq!(
        w.gh.asset_downloads(),
        downloads + 1,
        "only arm64 downloaded"
    );
    assert!(w.keys().await.iter().all(|k| !k.contains("x64-2.330.0")));
}
