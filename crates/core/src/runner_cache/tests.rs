//! The syncer over in-memory releases and store (the S3 and fake-GitHub
//! version is `crates/aws-s3/tests/runner_cache_moto.rs`).

use super::*;
use crate::fakes::MemoryLedger;
use crate::ports::{
    Ledger, PortError, ReleaseAsset, RunnerCacheStore, RunnerRelease, RunnerReleases,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A release and its files by asset name.
type Published = (RunnerRelease, BTreeMap<String, Vec<u8>>);

#[derive(Default)]
struct Releases {
    releases: Mutex<Vec<Published>>,
    downloads: Mutex<u32>,
}

impl Releases {
    /// Publish `version` with a tarball per arch; `lie` gives an arch a wrong
    /// published checksum.
    fn publish(&self, version: &str, published_at: DateTime<Utc>, lie: Option<&str>) {
        let mut body = String::from("## SHA-256 Checksums\n");
        let mut assets = Vec::new();
        let mut files = BTreeMap::new();
        for arch in ARCHS {
            let name = tarball_name(arch, version);
            let bytes = format!("tarball {arch} {version}").into_bytes();
            let sum = if lie == Some(arch) {
                sha(b"something else")
            } else {
                sha(&bytes)
            };
            body.push_str(&format!(
                "- {name} <!-- BEGIN SHA linux-{arch} -->{sum}<!-- END SHA linux-{arch} -->\n"
            ));
            assets.push(ReleaseAsset {
                name: name.clone(),
                url: format!("https://example.test/{name}"),
                size: bytes.len() as u64,
                digest: None,
            });
            files.insert(name, bytes);
        }
        self.releases.lock().unwrap().push((
            RunnerRelease {
                version: version.into(),
                published_at,
                assets,
                body,
            },
            files,
        ));
    }
}

#[async_trait]
impl RunnerReleases for Releases {
    async fn latest(&self) -> Result<RunnerRelease, PortError> {
        let r = self.releases.lock().unwrap();
        r.last()
            .map(|(r, _)| r.clone())
            .ok_or_else(|| PortError::NotFound {
                service: "github",
                what: "latest".into(),
            })
    }
    async fn by_version(&self, version: &str) -> Result<RunnerRelease, PortError> {
        let r = self.releases.lock().unwrap();
        r.iter()
            .find(|(r, _)| r.version == version)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| PortError::NotFound {
                service: "github",
                what: version.into(),
            })
    }
    async fn download(&self, asset: &ReleaseAsset) -> Result<Vec<u8>, PortError> {
        *self.downloads.lock().unwrap() += 1;
        let r = self.releases.lock().unwrap();
        r.iter()
            .find_map(|(_, f)| f.get(&asset.name).cloned())
            .ok_or_else(|| PortError::NotFound {
                service: "github",
                what: asset.name.clone(),
            })
    }
}

#[derive(Default)]
struct Store(Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait]
impl RunnerCacheStore for Store {
    async fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn exists(&self, key: &str) -> Result<bool, PortError> {
        Ok(self.0.lock().unwrap().contains_key(key))
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PortError> {
        self.0.lock().unwrap().insert(key.into(), bytes);
        Ok(())
    }
}

struct World {
    releases: Arc<Releases>,
    store: Arc<Store>,
    ledger: Arc<MemoryLedger>,
}

impl World {
    fn new() -> Self {
        Self {
            releases: Arc::default(),
            store: Arc::default(),
            ledger: Arc::new(MemoryLedger::new()),
        }
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
    async fn state(&self) -> RunnerReleaseState {
        RunnerReleaseState::from_doc(self.ledger.state_doc(STATE_KEY).await.unwrap())
    }
    fn downloads(&self) -> u32 {
        *self.releases.downloads.lock().unwrap()
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn latest_is_verified_stored_with_sidecars_and_recorded_then_not_downloaded_again() {
    let w = World::new();
    w.releases
        .publish("2.329.0", t("2026-09-01T00:00:00Z"), None);
    w.releases
        .publish("2.330.0", t("2026-11-01T00:00:00Z"), None);
    let now = t("2026-11-26T20:00:00Z");
    let r = w.sync(LATEST).run(now).await.unwrap();
    assert_eq!(r.version, "2.330.0");
    assert_eq!(r.stored(), 2, "{r:?}");
    assert_eq!(r.behind_days, 0);
    for arch in ARCHS {
        let store = w.store.0.lock().unwrap();
        let tarball = store.get(&tarball_key(arch, "2.330.0")).expect("tarball");
        let sidecar = store.get(&sidecar_key(arch, "2.330.0")).expect("sidecar");
        assert_eq!(String::from_utf8_lossy(sidecar), sha(tarball));
    }
    let s = w.state().await;
    assert_eq!(s.version, "2.330.0");
    assert_eq!(s.sha256.len(), 2);
    assert_eq!(s.sha256["x64"], sha(b"tarball x64 2.330.0"));
    assert_eq!(s.synced_at, Some(now));
    assert_eq!(w.downloads(), 2);

    let again = w.sync(LATEST).run(now).await.unwrap();
    assert_eq!(again.stored(), 0, "{again:?}");
    assert!(
        matches!(again.archs[0], ArchOutcome::Cached { .. }),
        "{again:?}"
    );
    assert_eq!(w.downloads(), 2, "a second run downloads nothing");
}

#[tokio::test]
async fn a_wrong_published_checksum_is_refused_and_nothing_is_stored_for_it() {
    let w = World::new();
    w.releases
        .publish("2.329.0", t("2026-09-01T00:00:00Z"), Some("arm64"));
    let r = w
        .sync("2.329.0")
        .run(t("2026-09-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.refused(), 1, "{r:?}");
    let store = w.store.0.lock().unwrap().clone();
    assert!(store.keys().all(|k| !k.contains("arm64")), "{store:?}");
    assert!(store.contains_key(&sidecar_key("x64", "2.329.0")));
    let s = w.state().await;
    assert_eq!(s.version, "", "an incomplete cache is not a version in use");
    assert_eq!(s.refused.len(), 1);
    assert!(s.refused[0].starts_with("arm64: "), "{:?}", s.refused);
}

#[tokio::test]
async fn a_sidecar_that_does_not_match_is_downloaded_and_verified_again() {
    let w = World::new();
    w.releases
        .publish("2.329.0", t("2026-09-01T00:00:00Z"), None);
    let key = tarball_key("x64", "2.329.0");
    w.store
        .0
        .lock()
        .unwrap()
        .insert(key.clone(), b"tampered".to_vec());
    w.store
        .0
        .lock()
        .unwrap()
        .insert(sidecar_key("x64", "2.329.0"), sha(b"tampered").into_bytes());
    let r = w
        .sync("2.329.0")
        .run(t("2026-09-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.stored(), 2, "{r:?}");
    assert_eq!(
        w.store.0.lock().unwrap()[&key],
        b"tarball x64 2.329.0".to_vec()
    );
}

#[tokio::test]
async fn a_pinned_version_behind_a_release_older_than_max_age_is_counted() {
    let w = World::new();
    w.releases
        .publish("2.329.0", t("2026-08-01T00:00:00Z"), None);
    w.releases
        .publish("2.330.0", t("2026-10-01T00:00:00Z"), None);
    let now = t("2026-11-26T12:00:00Z");
    let r = w.sync("2.329.0").run(now).await.unwrap();
    assert_eq!(r.version, "2.329.0");
    assert_eq!(r.latest_version, "2.330.0");
    assert_eq!(r.behind_days, 56);
    let s = w.state().await;
    assert_eq!(s.latest_published_at, Some(t("2026-10-01T00:00:00Z")));
    assert_eq!(
        behind_days("2.330.0", "2.330.0", s.latest_published_at, now),
        0
    );
    assert_eq!(
        behind_days("2.331.0", "2.330.0", s.latest_published_at, now),
        0
    );
}

#[test]
fn versions() {
    assert!(is_valid_runner_version("latest"));
    assert!(is_valid_runner_version("2.329.0"));
    for bad in [
        "",
        "v2.329.0",
        "2.329",
        "2.329.0.1",
        "2.x.0",
        "2..0",
        "Latest",
    ] {
        assert!(!is_valid_runner_version(bad), "{bad}");
    }
    assert!(is_newer("2.330.0", "2.329.9"));
    assert!(is_newer("10.0.0", "9.99.99"));
    assert!(!is_newer("2.329.0", "2.329.0"));
    assert!(!is_newer("latest", "2.329.0"));
}

#[tokio::test]
async fn the_pin_follows_the_synced_release_for_latest_and_checksums_a_pinned_one_only_when_synced()
{
    let w = World::new();
    let latest = LedgerRunnerPin::new(LATEST, "2.329.0", w.ledger.clone())
        .with_ttl(std::time::Duration::ZERO);
    let before = latest.runner_pin().await;
    assert_eq!(before.version, "2.329.0", "fallback before the first sync");
    assert_eq!(
        Some(before.sha256_for("x64").as_str()),
        default_runner_sha256("2.329.0", "x64"),
        "before the first sync: the default version's compiled-in checksum"
    );

    w.releases
        .publish("2.330.0", t("2026-11-01T00:00:00Z"), None);
    w.sync(LATEST).run(t("2026-11-02T00:00:00Z")).await.unwrap();
    let after = latest.runner_pin().await;
    assert_eq!(after.version, "2.330.0");
    assert_eq!(after.sha256_for("arm64"), sha(b"tarball arm64 2.330.0"));

    let pinned_other = LedgerRunnerPin::new("2.328.0", "2.329.0", w.ledger.clone());
    assert_eq!(
        pinned_other.runner_pin().await,
        RunnerPin {
            version: "2.328.0".into(),
            sha256: BTreeMap::new()
        },
        "a pinned version the cache did not verify gets no checksum"
    );
    let pinned_same = LedgerRunnerPin::new("2.330.0", "2.329.0", w.ledger.clone());
    assert_eq!(
        pinned_same.runner_pin().await.sha256_for("x64"),
        sha(b"tarball x64 2.330.0")
    );
}

#[tokio::test]
async fn the_pin_is_read_once_per_ttl() {
    let w = World::new();
    w.releases
        .publish("2.330.0", t("2026-11-01T00:00:00Z"), None);
    let pin = LedgerRunnerPin::new(LATEST, "2.329.0", w.ledger.clone());
    assert_eq!(pin.runner_pin().await.version, "2.329.0");
    w.sync(LATEST).run(t("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!(
        pin.runner_pin().await.version,
        "2.329.0",
        "cached for PIN_TTL: the synced version shows up on the next read"
    );
}

#[tokio::test]
async fn a_release_without_an_architectures_asset_refuses_that_one_only() {
    let w = World::new();
    w.releases
        .publish("2.330.0", t("2026-11-01T00:00:00Z"), None);
    w.releases.releases.lock().unwrap()[0]
        .0
        .assets
        .retain(|a| !a.name.contains("arm64"));
    let r = w.sync(LATEST).run(t("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!((r.stored(), r.refused()), (1, 1), "{r:?}");
    assert!(
        matches!(&r.archs[1], ArchOutcome::Refused { reason, .. } if reason.contains("no asset")),
        "{r:?}"
    );
}

#[tokio::test]
async fn behind_is_about_the_pinned_version_even_when_it_was_refused() {
    let w = World::new();
    w.releases
        .publish("2.329.0", t("2026-08-01T00:00:00Z"), Some("x64"));
    w.releases
        .publish("2.330.0", t("2026-10-01T00:00:00Z"), None);
    let r = w
        .sync("2.329.0")
        .run(t("2026-11-26T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.refused(), 1, "{r:?}");
    assert_eq!(w.state().await.version, "", "nothing verified completely");
    assert_eq!(r.behind_days, 56, "{r:?}");
}
