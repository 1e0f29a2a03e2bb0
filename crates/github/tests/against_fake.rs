//! The GitHub client against the fake GitHub, over real HTTP on 127.0.0.1.

use spotrunner_core::ports::{
    GitHubApi, GitHubRunner, GitHubTarget, JitRequest, PortError, RunnerScope,
};
use spotrunner_github::{Auth, ClientConfig, ClientError, GitHubClient, OffsetClock};
use spotrunner_testkit::fake_github::{
    APP_ID, APP_PRIVATE_KEY_PEM, Failure, FakeGitHub, FakeJob, OTHER_PRIVATE_KEY_PEM, endpoint,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn org() -> RunnerScope {
    RunnerScope::Org { org: "acme".into() }
}

fn repo() -> RunnerScope {
    RunnerScope::Repo {
        owner: "acme".into(),
        repo: "app".into(),
    }
}

fn target(scope: RunnerScope, installation_id: Option<u64>) -> GitHubTarget {
    GitHubTarget {
        scope,
        installation_id,
    }
}

fn app_auth() -> Auth {
    Auth::App {
        app_id: APP_ID.into(),
        private_key_pem: APP_PRIVATE_KEY_PEM.into(),
    }
}

fn app_client(fake: &FakeGitHub) -> GitHubClient {
    GitHubClient::new(ClientConfig::new(fake.url(), app_auth())).unwrap()
}

fn app_client_with_clock(fake: &FakeGitHub) -> (GitHubClient, Arc<OffsetClock>) {
    let clock = Arc::new(OffsetClock::new());
    let c =
        GitHubClient::with_clock(ClientConfig::new(fake.url(), app_auth()), clock.clone()).unwrap();
    (c, clock)
}

fn jit(target: &GitHubTarget, name: &str, group: &str) -> JitRequest {
    JitRequest {
        target: target.clone(),
        name: name.into(),
        runner_group: group.into(),
        labels: vec!["self-hosted".into(), "linux".into(), "spot".into()],
        work_folder: "_work".into(),
    }
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn message(e: &PortError) -> String {
    e.to_string()
}

// ---- App auth and the token cache ------------------------------------------------

#[tokio::test]
async fn twenty_jit_configs_for_one_installation_mint_one_token() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    let mut ids = Vec::new();
    for i in 0..20 {
        let cfg = gh
            .create_jit_config(&jit(&t, &format!("sr_linux-{i}-1"), "Default"))
            .await
            .unwrap();
        assert!(!cfg.encoded_jit_config.is_empty());
        ids.push(cfg.runner_id);
    }
    assert_eq!(fake.tokens_minted(), 1);
    assert_eq!(fake.calls(endpoint::ACCESS_TOKENS), 1);
    assert_eq!(fake.jwts_seen(), 1);
    assert_eq!(fake.calls(endpoint::GENERATE_JITCONFIG), 20);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let runners = fake.runners();
    assert_eq!(runners.len(), 20);
    assert!(
        runners
            .iter()
            .all(|r| r.status == "offline" && r.runner_group_id == 1)
    );
    assert!(runners[0].labels.contains(&"spot".to_string()));
    // The JIT config itself never shows up in Debug output.
    let cfg = gh
        .create_jit_config(&jit(&t, "sr-linux-debug-1", "Default"))
        .await
        .unwrap();
    assert!(!format!("{cfg:?}").contains(&cfg.encoded_jit_config));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_mint_one_token() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let gh = gh.clone();
            let req = jit(&t, &format!("sr-par-{i}-1"), "Default");
            tokio::spawn(async move { gh.create_jit_config(&req).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().runner_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(fake.tokens_minted(), 1);
    assert_eq!(fake.runners().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_minting_at_once_send_distinct_jwts() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let (a, b) = (app_client(&fake), app_client(&fake));
    let t = target(org(), Some(inst));
    let (ra, rb) = tokio::join!(a.list_runners(&t), b.list_runners(&t));
    ra.unwrap();
    rb.unwrap();
    // The fake refuses a reused jti; both were accepted.
    assert_eq!(fake.jwts_seen(), 2);
    assert_eq!(fake.tokens_minted(), 2);
}

#[tokio::test]
async fn token_is_renewed_five_minutes_before_expiry() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    fake.set_token_ttl(Duration::from_secs(6 * 60));
    let (gh, clock) = app_client_with_clock(&fake);
    let t = target(org(), Some(inst));
    gh.list_runners(&t).await.unwrap();
    gh.list_runners(&t).await.unwrap();
    assert_eq!(fake.tokens_minted(), 1, "6 min left: still fresh");
    clock.advance(61);
    // (The fake's tokens live from its real clock; give the next one room.)
    fake.set_token_ttl(Duration::from_secs(3600));
    gh.list_runners(&t).await.unwrap();
    assert_eq!(fake.tokens_minted(), 2, "under 5 min left: renewed");
    gh.list_runners(&t).await.unwrap();
    assert_eq!(fake.tokens_minted(), 2, "the new token is cached");
}

#[tokio::test]
async fn refused_installation_token_is_replaced_once() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    gh.list_runners(&t).await.unwrap();
    fake.fail_next(
        endpoint::LIST_RUNNERS,
        1,
        Failure::new(401, "Bad credentials"),
    );
    gh.list_runners(&t).await.unwrap();
    assert_eq!(fake.tokens_minted(), 2);
    assert_eq!(fake.calls(endpoint::LIST_RUNNERS), 3);
}

#[tokio::test]
async fn installation_is_looked_up_once_when_the_target_has_none() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), None);
    for i in 0..3 {
        gh.create_jit_config(&jit(&t, &format!("sr-look-{i}-1"), "Default"))
            .await
            .unwrap();
    }
    assert_eq!(fake.calls(endpoint::INSTALLATION), 1);
    assert_eq!(fake.tokens_minted(), 1);
    let lookup = fake
        .requests()
        .into_iter()
        .find(|r| r.endpoint == endpoint::INSTALLATION)
        .unwrap();
    assert_eq!(lookup.path, "/orgs/acme/installation");
    let minted = fake
        .requests()
        .into_iter()
        .find(|r| r.endpoint == endpoint::ACCESS_TOKENS)
        .unwrap();
    assert_eq!(
        minted.path,
        format!("/app/installations/{inst}/access_tokens")
    );

    // Repository scope: /repos/{owner}/{repo}/installation.
    let rt = target(repo(), None);
    gh.list_runners(&rt).await.unwrap();
    assert_eq!(fake.calls(endpoint::INSTALLATION), 2);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path == "/repos/acme/app/installation")
    );
}

#[tokio::test]
async fn missing_installation_is_not_found() {
    let fake = FakeGitHub::start().await;
    let gh = app_client(&fake);
    let e = gh
        .list_runners(&target(
            RunnerScope::Org {
                org: "nobody".into(),
            },
            None,
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
    assert!(message(&e).contains("installation"), "{e}");
    assert_eq!(fake.calls(endpoint::LIST_RUNNERS), 0);
}

#[tokio::test]
async fn jwt_signed_with_the_wrong_key_is_bad_credentials() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::App {
            app_id: APP_ID.into(),
            private_key_pem: OTHER_PRIVATE_KEY_PEM.into(),
        },
    ))
    .unwrap();
    let e = gh
        .list_runners(&target(org(), Some(inst)))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    assert!(message(&e).contains("bad credentials"), "{e}");
    assert_eq!(fake.tokens_minted(), 0);
}

#[test]
fn bad_settings_are_refused_at_construction() {
    let e = GitHubClient::new(ClientConfig::new(
        "https://api.github.com",
        Auth::App {
            app_id: "1".into(),
            private_key_pem: "not a key".into(),
        },
    ))
    .unwrap_err();
    assert!(matches!(e, ClientError::InvalidKey(_)), "{e:?}");
    let e = GitHubClient::new(ClientConfig::new(
        "api.github.com",
        Auth::Pat { token: "x".into() },
    ))
    .unwrap_err();
    assert!(matches!(e, ClientError::InvalidUrl { .. }), "{e:?}");
    // Secrets never show in Debug.
    let dbg = format!(
        "{:?}",
        Auth::Pat {
            token: "ghp_secret".into()
        }
    );
    assert!(!dbg.contains("ghp_secret"));
    let dbg = format!("{:?}", app_auth());
    assert!(!dbg.contains("PRIVATE KEY"));
}

// ---- PAT and GHES ------------------------------------------------------------------

#[tokio::test]
async fn pat_is_sent_as_bearer_with_github_headers() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("ghp_test_pat");
    let mut cfg = ClientConfig::new(
        fake.url(),
        Auth::Pat {
            token: "ghp_test_pat".into(),
        },
    );
    cfg.user_agent = "spotrunner-test/1".into();
    let gh = GitHubClient::new(cfg).unwrap();
    let t = target(repo(), None);
    let cfg = gh
        .create_jit_config(&jit(&t, "sr-pat-1-1", "Default"))
        .await
        .unwrap();
    let runners = gh.list_runners(&t).await.unwrap();
    assert_eq!(runners.len(), 1);
    assert_eq!(runners[0].id, cfg.runner_id);
    assert_eq!(fake.tokens_minted(), 0);
    assert_eq!(fake.calls(endpoint::INSTALLATION), 0);
    for r in fake.requests() {
        assert_eq!(r.headers["authorization"], "Bearer ghp_test_pat");
        assert_eq!(r.headers["accept"], "application/vnd.github+json");
        assert_eq!(r.headers["x-github-api-version"], "2022-11-28");
        assert_eq!(r.headers["user-agent"], "spotrunner-test/1");
    }
}

#[tokio::test]
async fn wrong_pat_is_bad_credentials() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("ghp_right");
    let gh = GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::Pat {
            token: "ghp_wrong".into(),
        },
    ))
    .unwrap();
    let e = gh.list_runners(&target(org(), None)).await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    assert!(message(&e).contains("bad credentials"), "{e}");
}

#[tokio::test]
async fn enterprise_server_base_url_with_api_v3_prefix() {
    let fake = FakeGitHub::start_with_prefix("/api/v3").await;
    assert!(fake.url().ends_with("/api/v3"));
    let inst = fake.add_installation(org());
    // A trailing slash in the setting must not produce `//` paths.
    let gh = GitHubClient::new(ClientConfig::new(format!("{}/", fake.url()), app_auth())).unwrap();
    let t = target(org(), None);
    let cfg = gh
        .create_jit_config(&jit(&t, "sr-ghes-1-1", "Default"))
        .await
        .unwrap();
    let r = gh.get_runner(&t, cfg.runner_id).await.unwrap().unwrap();
    assert_eq!(r.name, "sr-ghes-1-1");
    assert_eq!(fake.calls(endpoint::INSTALLATION), 1);
    assert_eq!(fake.tokens_minted(), 1);
    let _ = inst;
    assert!(fake.requests().iter().all(|r| !r.path.contains("//")));

    // The same client pointed at the host root misses the prefix: 404s.
    let root = fake.url().trim_end_matches("/api/v3").to_string();
    let gh = GitHubClient::new(ClientConfig::new(root, app_auth())).unwrap();
    let e = gh.list_runners(&t).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
}

// ---- runner groups -------------------------------------------------------------------

#[tokio::test]
async fn runner_group_is_resolved_by_name_once() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    fake.add_runner_group("acme", "gpu");
    let gid = fake.add_runner_group("acme", "Linux-Spot");
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    for i in 0..5 {
        gh.create_jit_config(&jit(&t, &format!("sr-grp-{i}-1"), "linux-spot"))
            .await
            .unwrap();
    }
    assert_eq!(fake.calls(endpoint::RUNNER_GROUPS), 1);
    assert!(fake.runners().iter().all(|r| r.runner_group_id == gid));
}

#[tokio::test]
async fn runner_group_on_a_later_page_is_found() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    for i in 0..150 {
        fake.add_runner_group("acme", &format!("group-{i}"));
    }
    let gid = fake.add_runner_group("acme", "late");
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    assert_eq!(gh.runner_group_id(&t, "LATE").await.unwrap(), gid);
    assert_eq!(fake.calls(endpoint::RUNNER_GROUPS), 2);
    assert_eq!(gh.runner_group_id(&t, "late").await.unwrap(), gid);
    assert_eq!(fake.calls(endpoint::RUNNER_GROUPS), 2);
}

#[tokio::test]
async fn unknown_runner_group_is_a_clear_error_and_no_runner() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    fake.add_runner_group("acme", "gpu");
    let gh = app_client(&fake);
    let e = gh
        .create_jit_config(&jit(
            &target(org(), Some(inst)),
            "sr_x-1-1",
            "no-such-group",
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    assert!(message(&e).contains("\"no-such-group\""), "{e}");
    assert!(message(&e).contains("acme"), "{e}");
    assert_eq!(fake.calls(endpoint::GENERATE_JITCONFIG), 0);
    assert!(fake.runners().is_empty());
}

#[tokio::test]
async fn default_group_and_repo_scope_need_no_lookup() {
    let fake = FakeGitHub::start().await;
    fake.add_installation(org());
    let gh = app_client(&fake);
    gh.create_jit_config(&jit(&target(org(), None), "sr-d-1-1", "Default"))
        .await
        .unwrap();
    gh.create_jit_config(&jit(&target(repo(), None), "sr-d-2-1", "linux-spot"))
        .await
        .unwrap();
    assert_eq!(fake.calls(endpoint::RUNNER_GROUPS), 0);
    assert!(fake.runners().iter().all(|r| r.runner_group_id == 1));
}

// ---- error mapping ---------------------------------------------------------------------

#[tokio::test]
async fn duplicate_runner_name_is_a_conflict_with_githubs_message() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    gh.create_jit_config(&jit(&t, "sr-dup-1-1", "Default"))
        .await
        .unwrap();
    let e = gh
        .create_jit_config(&jit(&t, "sr-dup-1-1", "Default"))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::Conflict { .. }), "{e:?}");
    assert!(message(&e).contains("already exists"), "{e}");
    assert_eq!(fake.runners().len(), 1);
}

#[tokio::test]
async fn validation_failure_422_is_rejected_with_details() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    let mut f = Failure::new(422, "Validation Failed");
    f.body["errors"] = serde_json::json!([{ "resource": "Runner", "code": "invalid", "message": "labels are odd" }]);
    fake.fail_next(endpoint::GENERATE_JITCONFIG, 1, f);
    let e = gh
        .create_jit_config(&jit(&t, "sr-422-1-1", "Default"))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    let m = message(&e);
    assert!(
        m.contains("Validation Failed") && m.contains("labels are odd"),
        "{m}"
    );
    assert!(!e.is_transient());
}

#[tokio::test]
async fn status_codes_map_to_port_errors() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    fake.fail_next(endpoint::LIST_RUNNERS, 1, Failure::new(502, "Server Error"));
    let e = gh.list_runners(&t).await.unwrap_err();
    assert!(
        matches!(e, PortError::Unavailable { .. }) && e.is_transient(),
        "{e:?}"
    );
    fake.fail_next(endpoint::LIST_RUNNERS, 1, Failure::new(404, "Not Found"));
    let e = gh.list_runners(&t).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
    fake.fail_next(
        endpoint::GET_RUNNER,
        1,
        Failure::new(403, "Resource not accessible by integration"),
    );
    let e = gh.get_runner(&t, 1).await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    assert!(message(&e).contains("not accessible"), "{e}");
    // A plain 403 is not a rate limit: the next call goes out.
    assert!(gh.blocked_until().is_none());
    assert_eq!(gh.get_runner(&t, 1).await.unwrap(), None);
}

#[tokio::test]
async fn network_failure_is_unavailable() {
    let fake = FakeGitHub::start().await;
    let url = fake.url();
    drop(fake);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gh = GitHubClient::new(ClientConfig::new(url, Auth::Pat { token: "t".into() })).unwrap();
    let e = gh.list_runners(&target(org(), None)).await.unwrap_err();
    assert!(matches!(e, PortError::Unavailable { .. }), "{e:?}");
}

// ---- rate limits -------------------------------------------------------------------------

#[tokio::test]
async fn primary_rate_limit_blocks_every_call_until_reset() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    // The token outlives the wait, so the call after the reset needs no new one.
    fake.set_token_ttl(Duration::from_secs(2 * 3600));
    let (gh, clock) = app_client_with_clock(&fake);
    let t = target(org(), Some(inst));
    gh.list_runners(&t).await.unwrap();
    let reset = epoch_now() + 3600;
    fake.fail_next(
        endpoint::GENERATE_JITCONFIG,
        1,
        Failure::rate_limited(reset),
    );
    let e = gh
        .create_jit_config(&jit(&t, "sr-rl-1-1", "Default"))
        .await
        .unwrap_err();
    let PortError::Throttled { retry_after, .. } = e else {
        panic!("{e:?}")
    };
    assert!(
        (3590..=3600).contains(&retry_after.as_secs()),
        "{retry_after:?}"
    );
    let seen = fake.total_calls();
    // Every operation, on this client and on its clones, from other tasks too.
    let clone = gh.clone();
    let other = tokio::spawn(async move { clone.list_runners(&target(org(), Some(inst))).await })
        .await
        .unwrap();
    assert!(
        matches!(other, Err(PortError::Throttled { .. })),
        "{other:?}"
    );
    assert!(matches!(
        gh.get_job(&t, "acme/app", 7).await,
        Err(PortError::Throttled { .. })
    ));
    assert!(matches!(
        gh.get_runner(&t, 1).await,
        Err(PortError::Throttled { .. })
    ));
    assert!(matches!(
        gh.delete_runner(&t, 1).await,
        Err(PortError::Throttled { .. })
    ));
    let e = gh
        .create_jit_config(&jit(&t, "sr-rl-2-1", "Default"))
        .await
        .unwrap_err();
    match e {
        PortError::Throttled { retry_after, .. } => assert!(retry_after.as_secs() >= 3500),
        e => panic!("{e:?}"),
    }
    assert_eq!(
        fake.total_calls(),
        seen,
        "no call may reach GitHub before the reset"
    );
    assert!(gh.blocked_until().is_some());

    clock.advance(3601);
    assert!(gh.blocked_until().is_none());
    gh.list_runners(&t).await.unwrap();
    assert_eq!(fake.total_calls(), seen + 1);
}

#[tokio::test]
async fn secondary_rate_limit_without_headers_backs_off_a_minute() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let (gh, clock) = app_client_with_clock(&fake);
    let t = target(org(), Some(inst));
    fake.fail_next(
        endpoint::GENERATE_JITCONFIG,
        1,
        Failure::secondary_rate_limited(),
    );
    let e = gh
        .create_jit_config(&jit(&t, "sr-sec-1-1", "Default"))
        .await
        .unwrap_err();
    match e {
        PortError::Throttled { retry_after, .. } => {
            assert!(retry_after >= Duration::from_secs(60), "{retry_after:?}")
        }
        e => panic!("{e:?}"),
    }
    let seen = fake.total_calls();
    clock.advance(30);
    assert!(matches!(
        gh.list_runners(&t).await,
        Err(PortError::Throttled { .. })
    ));
    assert_eq!(fake.total_calls(), seen);
    clock.advance(31);
    gh.create_jit_config(&jit(&t, "sr-sec-1-1", "Default"))
        .await
        .unwrap();
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("p");
    let gh = GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::Pat { token: "p".into() },
    ))
    .unwrap();
    fake.fail_next(
        endpoint::LIST_RUNNERS,
        1,
        Failure::new(429, "Too Many Requests").header("retry-after", 30),
    );
    let e = gh.list_runners(&target(org(), None)).await.unwrap_err();
    assert_eq!(
        e,
        PortError::Throttled {
            service: "github",
            retry_after: Duration::from_secs(30)
        }
    );
    assert!(matches!(
        gh.list_runners(&target(org(), None)).await,
        Err(PortError::Throttled { .. })
    ));
    assert_eq!(fake.calls(endpoint::LIST_RUNNERS), 1);
}

#[tokio::test]
async fn rate_limit_on_token_minting_blocks_too() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    fake.fail_next(
        endpoint::ACCESS_TOKENS,
        1,
        Failure::rate_limited(epoch_now() + 600),
    );
    let t = target(org(), Some(inst));
    assert!(matches!(
        gh.list_runners(&t).await,
        Err(PortError::Throttled { .. })
    ));
    assert!(matches!(
        gh.list_runners(&t).await,
        Err(PortError::Throttled { .. })
    ));
    assert_eq!(fake.total_calls(), 1);
}

// ---- runners, jobs, paging -------------------------------------------------------------------

#[tokio::test]
async fn list_runners_follows_pages_over_250_runners() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    for i in 0..250 {
        fake.add_runner(org(), &format!("r-{i}"), "online", i % 7 == 0);
    }
    // Runners of another scope are not listed.
    fake.add_runner(repo(), "elsewhere", "online", false);
    let gh = app_client(&fake);
    let runners = gh.list_runners(&target(org(), Some(inst))).await.unwrap();
    assert_eq!(runners.len(), 250);
    let mut ids: Vec<u64> = runners.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    assert_eq!(runners.iter().filter(|r| r.busy).count(), 36);
    assert!(
        runners
            .iter()
            .all(|r| r.labels == vec!["self-hosted".to_string()])
    );
    assert_eq!(fake.calls(endpoint::LIST_RUNNERS), 3);
    let queries: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == endpoint::LIST_RUNNERS)
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(
        queries,
        [
            "per_page=100&page=1",
            "per_page=100&page=2",
            "per_page=100&page=3"
        ]
    );
}

#[tokio::test]
async fn list_runners_counts_pages_without_link_headers() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("p");
    fake.set_link_headers(false);
    for i in 0..250 {
        fake.add_runner(org(), &format!("r-{i}"), "offline", false);
    }
    let gh = GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::Pat { token: "p".into() },
    ))
    .unwrap();
    let runners = gh.list_runners(&target(org(), None)).await.unwrap();
    assert_eq!(runners.len(), 250);
    assert_eq!(runners.last().unwrap().name, "r-249");
    assert_eq!(fake.calls(endpoint::LIST_RUNNERS), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_bounded() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("p");
    fake.set_latency(Duration::from_millis(20));
    let mut cfg = ClientConfig::new(fake.url(), Auth::Pat { token: "p".into() });
    cfg.max_concurrent_calls = 2;
    let gh = GitHubClient::new(cfg).unwrap();
    let t = target(org(), None);
    let calls = (0..8).map(|i| {
        let gh = gh.clone();
        let t = t.clone();
        async move { gh.get_runner(&t, i).await }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap(), None);
    }
    assert_eq!(fake.calls(endpoint::GET_RUNNER), 8);
    assert_eq!(fake.max_in_flight(), 2);
}

#[tokio::test]
async fn list_runners_of_exactly_one_full_page() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("p");
    for i in 0..100 {
        fake.add_runner(repo(), &format!("r-{i}"), "offline", false);
    }
    let gh = GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::Pat { token: "p".into() },
    ))
    .unwrap();
    assert_eq!(
        gh.list_runners(&target(repo(), None)).await.unwrap().len(),
        100
    );
    // The Link header (none: one page) ends the walk, no empty extra page.
    assert_eq!(fake.calls(endpoint::LIST_RUNNERS), 1);
}

#[tokio::test]
async fn get_and_delete_runners() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    let idle = fake.add_runner(org(), "sr-idle", "online", false);
    let busy = fake.add_runner(org(), "sr-busy", "online", true);
    assert_eq!(
        gh.get_runner(&t, idle).await.unwrap(),
        Some(GitHubRunner {
            id: idle,
            name: "sr-idle".into(),
            status: "online".into(),
            busy: false,
            labels: vec!["self-hosted".into()],
        })
    );
    assert_eq!(gh.get_runner(&t, 999).await.unwrap(), None);
    gh.delete_runner(&t, idle).await.unwrap();
    assert!(fake.runners().iter().all(|r| r.id != idle));
    // Already gone: success, and GitHub was asked.
    gh.delete_runner(&t, idle).await.unwrap();
    assert_eq!(fake.calls(endpoint::DELETE_RUNNER), 2);
    let e = gh.delete_runner(&t, busy).await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    assert!(message(&e).contains("still running a job"), "{e}");
    assert_eq!(fake.runners().len(), 1);
}

#[tokio::test]
async fn get_job_reads_status_and_404_is_none() {
    let fake = FakeGitHub::start().await;
    fake.add_installation(org());
    fake.add_job("acme/app", 42, "queued");
    fake.set_job(
        "acme/app",
        FakeJob {
            id: 43,
            status: "completed".into(),
            conclusion: Some("success".into()),
            runner_name: Some("sr_x-43-1".into()),
        },
    );
    let gh = app_client(&fake);
    let t = target(org(), None);
    let j = gh.get_job(&t, "acme/app", 42).await.unwrap().unwrap();
    assert_eq!(
        (j.id, j.status.as_str(), j.conclusion),
        (42, "queued", None)
    );
    let j = gh.get_job(&t, "acme/app", 43).await.unwrap().unwrap();
    assert_eq!(j.conclusion.as_deref(), Some("success"));
    assert_eq!(j.runner_name.as_deref(), Some("sr_x-43-1"));
    // A bare repository name is taken relative to the target's owner.
    assert_eq!(gh.get_job(&t, "app", 42).await.unwrap().unwrap().id, 42);
    assert_eq!(gh.get_job(&t, "acme/app", 44).await.unwrap(), None);
    let e = gh.get_job(&t, "acme/../x", 1).await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
}

// ---- validation before any call --------------------------------------------------------------

#[tokio::test]
async fn bad_names_and_labels_are_refused_without_a_call() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org());
    let gh = app_client(&fake);
    let t = target(org(), Some(inst));
    let long = "a".repeat(65);
    let e = gh
        .create_jit_config(&jit(&t, &long, "Default"))
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
    assert!(message(&e).contains("64"), "{e}");
    assert!(
        gh.create_jit_config(&jit(&t, &"a".repeat(64), "gpu-missing"))
            .await
            .is_err_and(|e| !message(&e).contains("64")),
        "64 characters pass validation (and fail later on the group)"
    );
    let before = fake.total_calls();
    for c in ['"', '/', ':', '<', '>', '\\', '|', '*', '?'] {
        let e = gh
            .create_jit_config(&jit(&t, &format!("sr{c}x"), "Default"))
            .await
            .unwrap_err();
        assert!(matches!(e, PortError::Rejected { .. }), "{c}: {e:?}");
        assert!(message(&e).contains("runner name"), "{e}");
    }
    let mut no_labels = jit(&t, "sr-ok-1-1", "Default");
    no_labels.labels.clear();
    let e = gh.create_jit_config(&no_labels).await.unwrap_err();
    assert!(message(&e).contains("0 labels"), "{e}");
    let mut many = jit(&t, "sr-ok-1-1", "Default");
    many.labels = (0..101).map(|i| format!("l{i}")).collect();
    let e = gh.create_jit_config(&many).await.unwrap_err();
    assert!(message(&e).contains("101 labels"), "{e}");
    assert_eq!(
        fake.total_calls(),
        before,
        "validation failures make no HTTP call"
    );
    assert!(fake.runners().is_empty());
    // 100 labels are fine.
    many.labels.truncate(100);
    gh.create_jit_config(&many).await.unwrap();
}

// ---- the fake itself enforces GitHub's rules (raw HTTP, no client-side checks) -------

async fn raw_jit(fake: &FakeGitHub, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/orgs/acme/actions/runners/generate-jitconfig",
            fake.url()
        ))
        .bearer_auth("p")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn fake_validates_jit_bodies_like_github() {
    let fake = FakeGitHub::start().await;
    fake.set_pat("p");
    let ok = serde_json::json!({"name": "sr-1", "runner_group_id": 1, "labels": ["x"], "work_folder": "_work"});
    let mut cases = Vec::new();
    let mut b = ok.clone();
    b["name"] = "n".repeat(65).into();
    cases.push(b);
    let mut b = ok.clone();
    b["name"] = "a:b".into();
    cases.push(b);
    let mut b = ok.clone();
    b["labels"] = serde_json::json!([]);
    cases.push(b);
    let mut b = ok.clone();
    b["labels"] = (0..101).map(|i| format!("l{i}")).collect();
    cases.push(b);
    let mut b = ok.clone();
    b["runner_group_id"] = "1".into();
    cases.push(b);
    for body in cases {
        let (status, answer) = raw_jit(&fake, body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
    }
    assert!(fake.runners().is_empty());
    let (status, answer) = raw_jit(&fake, ok.clone()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["runner"]["name"], "sr-1");
    assert!(
        answer["encoded_jit_config"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(raw_jit(&fake, ok).await.0, 409);
}

#[tokio::test]
async fn fake_checks_app_jwts() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fake = FakeGitHub::start().await;
    fake.add_installation(org());
    let key = EncodingKey::from_rsa_pem(APP_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    let now = epoch_now();
    let sign =
        |claims: serde_json::Value| encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    let status = |jwt: String| {
        let url = format!("{}/orgs/acme/installation", fake.url());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(jwt)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let good = serde_json::json!({"iat": now - 30, "exp": now + 540, "iss": APP_ID, "jti": "j-1"});
    assert_eq!(status(sign(good.clone())).await, 200);
    assert_eq!(status(sign(good)).await, 401, "jti reused");
    let long = serde_json::json!({"iat": now - 30, "exp": now + 700, "iss": APP_ID, "jti": "j-2"});
    assert_eq!(status(sign(long)).await, 401, "lives > 10 min");
    let no_jti = serde_json::json!({"iat": now - 30, "exp": now + 500, "iss": APP_ID});
    assert_eq!(status(sign(no_jti)).await, 401);
    let wrong_iss =
        serde_json::json!({"iat": now - 30, "exp": now + 500, "iss": "999", "jti": "j-3"});
    assert_eq!(status(sign(wrong_iss)).await, 401);
    let expired =
        serde_json::json!({"iat": now - 700, "exp": now - 100, "iss": APP_ID, "jti": "j-4"});
    assert_eq!(status(sign(expired)).await, 401);
    // An installation token is not an App JWT.
    assert_eq!(status("ghs_whatever".into()).await, 401);
}

#[tokio::test]
async fn fake_pages_with_link_headers() {
    let fake = FakeGitHub::start_with_prefix("/api/v3").await;
    fake.set_pat("p");
    for i in 0..5 {
        fake.add_runner(org(), &format!("r-{i}"), "online", false);
    }
    let r = reqwest::Client::new()
        .get(format!(
            "{}/orgs/acme/actions/runners?per_page=2&page=2",
            fake.url()
        ))
        .bearer_auth("p")
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["total_count"], 5);
    assert_eq!(body["runners"][0]["name"], "r-2");
    assert_eq!(body["runners"].as_array().unwrap().len(), 2);
    let base = fake.url();
    assert!(
        link.contains(&format!(
            "<{base}/orgs/acme/actions/runners?per_page=2&page=3>; rel=\"next\""
        )),
        "{link}"
    );
    assert!(link.contains("page=1>; rel=\"prev\""), "{link}");
    assert_eq!(
        spotrunner_github::ratelimit::next_link(&link).map(|u| u.ends_with("page=3")),
        Some(true)
    );
}

// ---- re-running a job ---------------------------------------------------------------------

#[tokio::test]
async fn a_job_is_re_run_only_once_its_run_completed_and_the_re_run_is_a_new_queued_job() {
    use spotrunner_core::ports::RerunAnswer;
    use spotrunner_testkit::fake_github::FakeWorkflowJob;
    let fake = FakeGitHub::start().await;
    fake.add_installation(org());
    let t0 = chrono::Utc::now();
    fake.add_workflow_job(
        "acme/app",
        FakeWorkflowJob::new(900, 50, "completed", &["self-hosted", "linux"], t0).named("build"),
    );
    fake.add_workflow_job(
        "acme/app",
        FakeWorkflowJob::new(900, 51, "in_progress", &["ubuntu-latest"], t0).named("lint"),
    );
    let gh = app_client(&fake);
    let t = target(org(), None);
    let run = gh.get_run(&t, "acme/app", 900).await.unwrap().unwrap();
    assert_eq!((run.status.as_str(), run.run_attempt), ("in_progress", 1));
    // GitHub refuses while another job of the run still runs.
    let answer = gh.rerun_job(&t, "acme/app", 50).await.unwrap();
    assert_eq!(
        answer,
        RerunAnswer::Refused("The workflow run containing this job is already running".into())
    );
    assert!(fake.reruns().is_empty());
    fake.set_job(
        "acme/app",
        FakeJob {
            id: 51,
            status: "completed".into(),
            conclusion: Some("success".into()),
            runner_name: None,
        },
    );
    assert_eq!(
        gh.rerun_job(&t, "acme/app", 50).await.unwrap(),
        RerunAnswer::Accepted
    );
    let (new_id, attempt) = fake.rerun_of("acme/app", 50).unwrap();
    assert_ne!(new_id, 50);
    assert_eq!(attempt, 2);
    let j = gh.get_job(&t, "acme/app", new_id).await.unwrap().unwrap();
    assert_eq!(j.status, "queued");
    assert_eq!(j.name.as_deref(), Some("build"));
    assert_eq!((j.run_id, j.run_attempt), (Some(900), Some(2)));
    let run = gh.get_run(&t, "acme/app", 900).await.unwrap().unwrap();
    assert_eq!((run.status.as_str(), run.run_attempt), ("queued", 2));
    // Unknown runs and jobs.
    assert_eq!(gh.get_run(&t, "acme/app", 901).await.unwrap(), None);
    assert!(matches!(
        gh.rerun_job(&t, "acme/app", 999).await.unwrap(),
        RerunAnswer::Refused(_)
    ));
    assert_eq!(fake.calls(endpoint::RERUN_JOB), 3);
}
