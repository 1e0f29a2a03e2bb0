//! Releases the way GitHub publishes actions/runner: `GET
//! /repos/{o}/{r}/releases/latest` and `/releases/tags/{tag}` (public: no
//! credentials checked), assets with `browser_download_url`, `size` and
//! `digest`, a body with `<!-- BEGIN SHA <platform> -->HEX<!-- END SHA
//! <platform> -->` markers, and downloads answered with a 302 to an object
//! URL (as github.com redirects to objects.githubusercontent.com).
//!
//! Test hooks: [`FakeGitHub::publish_release`] (real checksums),
//! [`FakeGitHub::set_release_body_sha`] and [`FakeGitHub::set_asset_digest`]
//! (make them wrong), [`FakeGitHub::asset_downloads`].

use super::{FakeGitHub, State, endpoint, err, ok_json};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

struct Asset {
    id: u64,
    name: String,
    size: u64,
    digest: Option<String>,
}

struct Release {
    repo: String,
    tag: String,
    published_at: String,
    body: String,
    assets: Vec<Asset>,
}

#[derive(Default)]
pub(crate) struct Releases {
    list: Vec<Release>,
    objects: HashMap<u64, Vec<u8>>,
    downloads: usize,
}

/// `actions-runner-linux-x64-2.329.0.tar.gz` → `linux-x64`.
fn platform(name: &str, version: &str) -> Option<String> {
    let rest = name.strip_prefix("actions-runner-")?;
    let cut = rest.find(&format!("-{version}."))?;
    Some(rest[..cut].to_string())
}

fn marker(platform: &str, sha: &str) -> String {
    format!("<!-- BEGIN SHA {platform} -->{sha}<!-- END SHA {platform} -->")
}

fn release_json(base: &str, r: &Release) -> Value {
    json!({
        "tag_name": r.tag,
        "name": r.tag,
        "draft": false,
        "prerelease": false,
        "published_at": r.published_at,
        "body": r.body,
        "assets": r.assets.iter().map(|a| json!({
            "id": a.id,
            "name": a.name,
            "size": a.size,
            "digest": a.digest,
            "content_type": "application/octet-stream",
            "browser_download_url": format!("{base}/{}/releases/download/{}/{}", r.repo, r.tag, a.name),
        })).collect::<Vec<_>>(),
    })
}

/// Serve a releases route, or `None` if `segs` is not one. Returns the
/// endpoint name (for counting) and the answer.
pub(crate) fn serve(
    s: &mut State,
    method: &str,
    segs: &[&str],
) -> Option<(&'static str, Response)> {
    if method != "GET" {
        return None;
    }
    let base = s.base_url.clone();
    let rel = &mut s.releases;
    let find = |rel: &Releases, repo: &str, tag: Option<&str>| -> Option<Value> {
        let repo = repo.to_ascii_lowercase();
        let mut of_repo = rel.list.iter().filter(|r| r.repo == repo);
        let r = match tag {
            Some(t) => of_repo.find(|r| r.tag == t),
            None => of_repo.max_by(|a, b| a.published_at.cmp(&b.published_at)),
        };
        r.map(|r| release_json(&base, r))
    };
    let answer = |v: Option<Value>| match v {
        Some(v) => ok_json(StatusCode::OK, v),
        None => err(StatusCode::NOT_FOUND, "Not Found"),
    };
    match segs {
        ["repos", o, r, "releases", "latest"] => Some((
            endpoint::GET_RELEASE,
            answer(find(rel, &format!("{o}/{r}"), None)),
        )),
        ["repos", o, r, "releases", "tags", tag] => Some((
            endpoint::GET_RELEASE,
            answer(find(rel, &format!("{o}/{r}"), Some(tag))),
        )),
        [o, r, "releases", "download", tag, name] => {
            let repo = format!("{o}/{r}").to_ascii_lowercase();
            let id = rel
                .list
                .iter()
                .filter(|x| x.repo == repo && x.tag == *tag)
                .flat_map(|x| x.assets.iter())
                .find(|a| a.name == *name)
                .map(|a| a.id);
            let resp = match id {
                Some(id) => (
                    StatusCode::FOUND,
                    [(header::LOCATION, format!("{base}/_objects/{id}"))],
                )
                    .into_response(),
                None => err(StatusCode::NOT_FOUND, "Not Found"),
            };
            Some((endpoint::DOWNLOAD_ASSET, resp))
        }
        ["_objects", id] => {
            let bytes = id.parse().ok().and_then(|id| rel.objects.get(&id).cloned());
            let resp = match bytes {
                Some(b) => {
                    rel.downloads += 1;
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        b,
                    )
                        .into_response()
                }
                None => err(StatusCode::NOT_FOUND, "Not Found"),
            };
            Some((endpoint::ASSET_OBJECT, resp))
        }
        _ => None,
    }
}

impl FakeGitHub {
    /// Publish release `tag` (e.g. `v2.330.0`) of `repo` (`actions/runner`)
    /// with `files` (name, bytes): each asset gets its real SHA-256 as
    /// `digest`, and each `actions-runner-<platform>-<version>.*` a marker
    /// in the body, as the runner's release notes have them. The newest
    /// `published_at` (RFC 3339) is `latest`.
    pub fn publish_release(
        &self,
        repo: &str,
        tag: &str,
        published_at: &str,
        files: &[(&str, Vec<u8>)],
    ) {
        let mut s = self.st();
        let version = tag.trim_start_matches('v');
        let mut body = format!(
            "## What's Changed\n* Runner {version}\n\n## SHA-256 Checksums\n\n\
             The SHA-256 checksums for the packages included in this build are shown below:\n\n"
        );
        let mut assets = Vec::new();
        for (name, bytes) in files {
            let sha = hex::encode(Sha256::digest(bytes));
            if let Some(p) = platform(name, version) {
                body.push_str(&format!("- {name} {}\n", marker(&p, &sha)));
            }
            let id = 5000 + s.releases.objects.len() as u64;
            s.releases.objects.insert(id, bytes.clone());
            assets.push(Asset {
                id,
                name: name.to_string(),
                size: bytes.len() as u64,
                digest: Some(format!("sha256:{sha}")),
            });
        }
        s.releases.list.push(Release {
            repo: repo.to_ascii_lowercase(),
            tag: tag.into(),
            published_at: published_at.into(),
            body,
            assets,
        });
    }

    fn with_release(&self, repo: &str, tag: &str, f: impl FnOnce(&mut Release)) {
        let mut s = self.st();
        let repo = repo.to_ascii_lowercase();
        let r = s
            .releases
            .list
            .iter_mut()
            .find(|r| r.repo == repo && r.tag == tag)
            .unwrap_or_else(|| panic!("no release {tag} of {repo}"));
        f(r);
    }

    /// Make the body's marker for `platform` (`linux-arm64`) say `sha`.
    pub fn set_release_body_sha(&self, repo: &str, tag: &str, platform: &str, sha: &str) {
        self.with_release(repo, tag, |r| {
            let begin = format!("<!-- BEGIN SHA {platform} -->");
            let end = format!("<!-- END SHA {platform} -->");
            let (Some(a), Some(b)) = (r.body.find(&begin), r.body.find(&end)) else {
                panic!("release {tag} has no {platform} marker");
            };
            r.body
                .replace_range(a..b + end.len(), &marker(platform, sha));
        });
    }

    /// Set (or, with `None`, remove as on pre-2025 releases) an asset's `digest`.
    pub fn set_asset_digest(&self, repo: &str, tag: &str, asset: &str, digest: Option<&str>) {
        self.with_release(repo, tag, |r| {
            let a = r
                .assets
                .iter_mut()
                .find(|a| a.name == asset)
                .unwrap_or_else(|| panic!("release {tag} has no asset {asset}"));
            a.digest = digest.map(str::to_string);
        });
    }

    /// Asset bodies served (after the redirect), all releases together.
    pub fn asset_downloads(&self) -> usize {
        self.st().releases.downloads
    }
}
