//! The recovery ports of the GitHub client (`HookDeliveries`, `QueuedJobSource`)
//! against the fake GitHub over real HTTP on 127.0.0.1, with a small webhook
//! receiver that records what GitHub (the fake) POSTed to it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{TimeZone, Utc};
use spotrunner_core::ports::{
    GitHubApi, GitHubTarget, HookDeliveries, HookRef, PortError, QueuedJobSource, RateLimitState,
    RepoRef, RunnerScope,
};
use spotrunner_core::webhook::WebhookSecrets;
use spotrunner_github::{Auth, ClientConfig, GitHubClient};
use spotrunner_testkit::fake_github::{
    APP_ID, APP_PRIVATE_KEY_PEM, FakeGitHub, FakeJob, FakeWorkflowJob, endpoint,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "It's a Secret to Everybody";

fn app_client(fake: &FakeGitHub) -> GitHubClient {
    GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::App {
            app_id: APP_ID.into(),
            private_key_pem: APP_PRIVATE_KEY_PEM.into(),
        },
    ))
    .unwrap()
}

fn pat_client(fake: &FakeGitHub) -> GitHubClient {
    fake.set_pat("pat-1");
    GitHubClient::new(ClientConfig::new(
        fake.url(),
        Auth::Pat {
            token: "pat-1".into(),
        },
    ))
    .unwrap()
}

fn org(name: &str) -> RunnerScope {
    RunnerScope::Org { org: name.into() }
}

fn payload(job_id: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": "queued",
        "workflow_job": { "id": job_id, "labels": ["self-hosted", "linux"] },
        "repository": { "id": 4242, "full_name": "acme/app" },
        "installation": { "id": 1001 },
    }))
    .unwrap()
}

// ---- a webhook receiver ------------------------------------------------------------

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay: Arc<Mutex<Duration>>,
}

impl Receiver {
    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    let delay = *r.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

/// A receiver on 127.0.0.1 answering 200; returns its URL.
async fn receiver() -> (String, Receiver) {
    let r = Receiver {
        got: Arc::default(),
        status: Arc::new(AtomicU16::new(200)),
        delay: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), r)
}

/// A URL nothing listens on.
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

fn verifies(secret: &str, r: &Received) -> bool {
    WebhookSecrets::new(&[secret])
        .verify(Some(r.header("x-hub-signature-256")), &r.body)
        .is_ok()
}

// ---- the delivery log --------------------------------------------------------------

#[tokio::test]
async fn app_deliveries_page_by_cursor_newest_first() {
    let fake = FakeGitHub::start().await;
    let (url, rx) = receiver().await;
    fake.set_webhook(&url, SECRET);
    for i in 0..250 {
        assert_eq!(fake.deliver("workflow_job", &payload(i)).await, 200);
    }
    assert_eq!(rx.got().len(), 250);
    let gh = app_client(&fake);
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    let mut below: Option<u64> = None;
    loop {
        let page = gh
            .list_deliveries(&HookRef::App, cursor.as_deref())
            .await
            .unwrap();
        pages.push(page.deliveries.len());
        let ids: Vec<u64> = page.deliveries.iter().map(|d| d.id).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        for d in &page.deliveries {
            assert_eq!(d.event, "workflow_job");
            assert_eq!(d.action.as_deref(), Some("queued"));
            assert!(d.succeeded() && !d.redelivery, "{d:?}");
        }
        // Each page continues below the previous one.
        if let (Some(prev), Some(first)) = (below, ids.first()) {
            assert!(*first < prev, "{first} after {prev}");
        }
        below = ids.last().copied();
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
        assert!(pages.len() < 10, "cursor never ends");
    }
    assert_eq!(pages, vec![100, 100, 50]);
    assert_eq!(fake.calls(endpoint::LIST_DELIVERIES), 3);

    // Every attempt exactly once, in order.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = gh
            .list_deliveries(&HookRef::App, cursor.as_deref())
            .await
            .unwrap();
        all.extend(page.deliveries);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let ids: Vec<u64> = all.iter().map(|d| d.id).collect();
    let mut expected: Vec<u64> = fake.deliveries().iter().map(|d| d.id).collect();
    expected.reverse();
    assert_eq!(ids, expected);
    let guids: HashSet<&str> = all.iter().map(|d| d.guid.as_str()).collect();
    assert_eq!(guids.len(), 250, "every delivery has its own GUID");
}

#[tokio::test]
async fn redelivery_reposts_the_same_payload_and_guid_signed_with_the_current_secret() {
    let fake = FakeGitHub::start().await;
    let (url, rx) = receiver().await;
    fake.set_webhook(&url, SECRET);
    rx.answer(503);
    let body = payload(77);
    assert_eq!(fake.deliver("workflow_job", &body).await, 503);

    let gh = app_client(&fake);
    let page = gh.list_deliveries(&HookRef::App, None).await.unwrap();
    assert_eq!(page.deliveries.len(), 1);
    assert_eq!(page.next_cursor, None);
    let failed = page.deliveries[0].clone();
    assert_eq!(failed.status_code, 503);
    assert!(!failed.succeeded() && !failed.redelivery);
    assert_eq!(fake.deliveries()[0].status, "Invalid HTTP Response: 503");

    // The secret was rotated in between: GitHub signs redeliveries with the current one.
    fake.set_webhook(&url, "the new secret");
    rx.answer(200);
    gh.redeliver(&HookRef::App, failed.id).await.unwrap();
    assert_eq!(fake.redelivery_requests(), 1);
    assert_eq!(fake.calls(endpoint::REDELIVER), 1);

    let got = rx.got();
    assert_eq!(got.len(), 2, "the redelivery was POSTed before the 202");
    let (first, again) = (&got[0], &got[1]);
    assert_eq!(again.body, body, "the exact payload again");
    assert_eq!(again.header("x-github-delivery"), failed.guid);
    assert_eq!(first.header("x-github-delivery"), failed.guid);
    assert_eq!(again.header("x-github-event"), "workflow_job");
    assert_eq!(again.header("content-type"), "application/json");
    assert!(again.header("user-agent").starts_with("GitHub-Hookshot/"));
    assert!(verifies(SECRET, first) && !verifies("the new secret", first));
    assert!(verifies("the new secret", again) && !verifies(SECRET, again));

    let page = gh.list_deliveries(&HookRef::App, None).await.unwrap();
    assert_eq!(page.deliveries.len(), 2);
    let newest = &page.deliveries[0];
    assert!(newest.redelivery && newest.succeeded(), "{newest:?}");
    assert_eq!(newest.guid, failed.guid);
    assert!(newest.id > failed.id, "a redelivery is a new attempt");
    assert_eq!(newest.action.as_deref(), Some("queued"));
    let recorded = fake.deliveries();
    assert_eq!(recorded[1].installation_id, Some(1001));
    assert_eq!(recorded[1].repository_id, Some(4242));
}

#[tokio::test]
async fn redeliver_of_an_unknown_delivery_is_not_found_and_posts_nothing() {
    let fake = FakeGitHub::start().await;
    let (url, rx) = receiver().await;
    fake.set_webhook(&url, SECRET);
    fake.deliver("ping", b"{\"zen\":\"Keep it logically awesome.\"}")
        .await;
    let gh = app_client(&fake);
    let e = gh.redeliver(&HookRef::App, 999_999).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
    assert_eq!(fake.redelivery_requests(), 0);
    assert_eq!(rx.got().len(), 1);
}

#[tokio::test]
async fn a_failed_post_is_recorded_with_status_code_zero() {
    let fake = FakeGitHub::start().await;
    fake.set_webhook(&closed_url().await, SECRET);
    assert_eq!(fake.deliver("workflow_job", &payload(1)).await, 0);

    // A receiver that answers after the timeout: no answer either.
    let (url, rx) = receiver().await;
    *rx.delay.lock().unwrap() = Duration::from_secs(5);
    fake.set_webhook(&url, SECRET);
    fake.set_delivery_timeout(Duration::from_millis(300));
    assert_eq!(fake.deliver("workflow_job", &payload(2)).await, 0);

    let recorded = fake.deliveries();
    assert_eq!(recorded[0].status, "failed to connect to host");
    assert_eq!(recorded[1].status, "timed out");
    let gh = app_client(&fake);
    let page = gh.list_deliveries(&HookRef::App, None).await.unwrap();
    assert_eq!(page.deliveries.len(), 2);
    assert!(
        page.deliveries
            .iter()
            .all(|d| d.status_code == 0 && !d.succeeded()),
        "{page:?}"
    );
}

#[tokio::test]
async fn org_and_repo_hooks_with_a_pat() {
    let fake = FakeGitHub::start().await;
    let (url, rx) = receiver().await;
    fake.set_webhook(&url, SECRET);
    let org_hook = HookRef::Org {
        org: "acme".into(),
        id: 7,
    };
    let repo_hook = HookRef::Repo {
        owner: "acme".into(),
        repo: "app".into(),
        id: 9,
    };
    fake.add_hook(org_hook.clone());
    fake.add_hook(repo_hook.clone());
    for i in 0..3 {
        fake.deliver_via(&org_hook, "workflow_job", &payload(i))
            .await;
    }
    let (code, _) = fake
        .deliver_via(&repo_hook, "workflow_job", &payload(10))
        .await;
    assert_eq!(code, 200);
    fake.deliver("workflow_job", &payload(20)).await;

    let gh = pat_client(&fake);
    let orgs = gh.list_deliveries(&org_hook, None).await.unwrap();
    assert_eq!(orgs.deliveries.len(), 3, "only the org hook's");
    let repos = gh.list_deliveries(&repo_hook, None).await.unwrap();
    assert_eq!(repos.deliveries.len(), 1);
    let paths: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == endpoint::LIST_DELIVERIES)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/orgs/acme/hooks/7/deliveries",
            "/repos/acme/app/hooks/9/deliveries"
        ]
    );

    gh.redeliver(&repo_hook, repos.deliveries[0].id)
        .await
        .unwrap();
    let got = rx.got();
    assert_eq!(got.len(), 6);
    assert_eq!(got[5].body, payload(10));
    assert_eq!(got[5].header("x-github-hook-id"), "9");
    let repos = gh.list_deliveries(&repo_hook, None).await.unwrap();
    assert!(repos.deliveries[0].redelivery);
    // A delivery of another hook is unknown here.
    let e = gh
        .redeliver(&repo_hook, orgs.deliveries[0].id)
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
    // An unregistered hook.
    let e = gh
        .list_deliveries(
            &HookRef::Org {
                org: "acme".into(),
                id: 8,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
    // The App's hook needs the App.
    let calls = fake.total_calls();
    let e = gh.list_deliveries(&HookRef::App, None).await.unwrap_err();
    match e {
        PortError::Rejected { message, .. } => assert!(message.contains("App"), "{message}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(fake.total_calls(), calls, "refused without a call");
}

#[tokio::test]
async fn org_hook_with_an_installation_token() {
    let fake = FakeGitHub::start().await;
    let (url, _rx) = receiver().await;
    fake.set_webhook(&url, SECRET);
    fake.add_installation(org("acme"));
    let hook = HookRef::Org {
        org: "acme".into(),
        id: 7,
    };
    fake.add_hook(hook.clone());
    fake.deliver_via(&hook, "workflow_job", &payload(1)).await;
    let gh = app_client(&fake);
    let page = gh.list_deliveries(&hook, None).await.unwrap();
    assert_eq!(page.deliveries.len(), 1);
    assert_eq!(fake.tokens_minted(), 1);
    let auth = &fake
        .requests()
        .into_iter()
        .find(|r| r.endpoint == endpoint::LIST_DELIVERIES)
        .unwrap()
        .headers["authorization"];
    assert!(auth.starts_with("Bearer ghs_"), "{auth}");
}

#[tokio::test]
async fn fake_delivery_answers_have_githubs_shapes() {
    let fake = FakeGitHub::start().await;
    let (url, _rx) = receiver().await;
    fake.set_webhook(&url, SECRET);
    for i in 0..35 {
        fake.deliver("workflow_job", &payload(i)).await;
    }
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(APP_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    let get = |path: String| {
        let jwt =
            spotrunner_github::jwt::app_jwt(APP_ID, &key, std::time::SystemTime::now()).unwrap();
        let url = format!("{}{path}", fake.url());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(jwt)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (
                status,
                headers,
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    // per_page defaults to 30.
    let (status, headers, list) = get("/app/hook/deliveries".into()).await;
    assert_eq!(status, 200);
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 30);
    let link = headers["link"].to_str().unwrap();
    assert!(
        link.contains("/app/hook/deliveries?per_page=30&cursor="),
        "{link}"
    );
    for field in [
        "id",
        "guid",
        "delivered_at",
        "redelivery",
        "duration",
        "status",
        "status_code",
        "event",
        "action",
        "installation_id",
        "repository_id",
    ] {
        assert!(items[0].get(field).is_some(), "hook-delivery-item.{field}");
    }
    let at = items[0]["delivered_at"].as_str().unwrap();
    assert!(
        at.ends_with('Z') && !at.contains('.'),
        "second precision: {at}"
    );
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
    ] {
        assert!(headers.contains_key(h), "{h}");
    }
    // One delivery in full.
    let id = items[0]["id"].as_u64().unwrap();
    let (status, _, one) = get(format!("/app/hook/deliveries/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["url"], url);
    assert_eq!(one["request"]["payload"]["workflow_job"]["id"], 34);
    assert_eq!(one["request"]["headers"]["X-GitHub-Event"], "workflow_job");
    assert!(
        one["request"]["headers"]["X-Hub-Signature-256"]
            .as_str()
            .unwrap()
            .starts_with("sha256=")
    );
    assert!(one["response"]["headers"].is_object());
    let (status, _, _) = get("/app/hook/deliveries/424242".into()).await;
    assert_eq!(status, 404);
    // Only redeliveries.
    let (_, _, none) = get("/app/hook/deliveries?redelivery=true".into()).await;
    assert_eq!(none.as_array().unwrap().len(), 0);
}

// ---- installations and repositories ----------------------------------------------------

#[tokio::test]
async fn installations_and_repositories_with_an_app_page_by_page() {
    let fake = FakeGitHub::start().await;
    let acme = fake.add_installation(org("acme"));
    let alice = fake.add_installation(org("alice"));
    for i in 0..118 {
        fake.add_installation(org(&format!("org-{i}")));
    }
    for i in 0..130 {
        fake.add_repository(&format!("acme/repo-{i:03}"), "Organization", None);
    }
    fake.add_repository("alice/dotfiles", "User", Some(alice));
    fake.add_repository("org-1/other", "Organization", None);
    let gh = app_client(&fake);

    let p1 = gh.list_installation_owners(1).await.unwrap();
    assert_eq!(p1.items.len(), 100);
    assert!(p1.more);
    let p2 = gh.list_installation_owners(2).await.unwrap();
    assert_eq!(p2.items.len(), 20);
    assert!(!p2.more);
    assert_eq!(&p1.items[..2], ["acme", "alice"]);

    // The listing told the client the installations: no lookups.
    let repos1 = gh.list_repositories("acme", 1).await.unwrap();
    let repos2 = gh.list_repositories("acme", 2).await.unwrap();
    assert_eq!((repos1.items.len(), repos1.more), (100, true));
    assert_eq!((repos2.items.len(), repos2.more), (30, false));
    assert_eq!(fake.calls(endpoint::INSTALLATION), 0);
    let r = &repos1.items[0];
    assert_eq!(
        r,
        &RepoRef {
            full_name: "acme/repo-000".into(),
            owner: "acme".into(),
            owner_type: "Organization".into(),
            private: true,
            installation_id: Some(acme),
        }
    );
    let names: HashSet<String> = repos1
        .items
        .iter()
        .chain(&repos2.items)
        .map(|r| r.full_name.clone())
        .collect();
    assert_eq!(names.len(), 130);
    assert!(names.iter().all(|n| n.starts_with("acme/")));

    let alices = gh.list_repositories("alice", 1).await.unwrap();
    assert_eq!(alices.items.len(), 1);
    assert_eq!(alices.items[0].owner_type, "User");
    assert_eq!(alices.items[0].installation_id, Some(alice));
}

#[tokio::test]
async fn a_users_installation_is_found_under_users() {
    let fake = FakeGitHub::start().await;
    let alice = fake.add_installation(org("alice"));
    fake.add_repository("alice/dotfiles", "User", Some(alice));
    let gh = app_client(&fake);
    let page = gh.list_repositories("alice", 1).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].installation_id, Some(alice));
    let paths: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.endpoint == endpoint::INSTALLATION)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        ["/orgs/alice/installation", "/users/alice/installation"]
    );
    // Remembered.
    gh.list_repositories("alice", 1).await.unwrap();
    assert_eq!(fake.calls(endpoint::INSTALLATION), 2);
    // An account the App is not installed on.
    let e = gh.list_repositories("nobody", 1).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn repositories_with_a_pat_fall_back_from_orgs_to_users() {
    let fake = FakeGitHub::start().await;
    let gh = pat_client(&fake);
    for i in 0..101 {
        fake.add_repository(&format!("acme/r{i}"), "Organization", None);
    }
    fake.add_repository("alice/dotfiles", "User", None);
    fake.add_repository("alice/blog", "User", None);

    let p = gh.list_repositories("acme", 1).await.unwrap();
    assert_eq!((p.items.len(), p.more), (100, true));
    assert_eq!(p.items[0].installation_id, None);
    let p = gh.list_repositories("acme", 2).await.unwrap();
    assert_eq!((p.items.len(), p.more), (1, false));

    let before = fake.calls(endpoint::OWNER_REPOSITORIES);
    let p = gh.list_repositories("alice", 1).await.unwrap();
    let names: Vec<&str> = p.items.iter().map(|r| r.full_name.as_str()).collect();
    assert_eq!(names, ["alice/dotfiles", "alice/blog"]);
    assert!(p.items.iter().all(|r| r.owner_type == "User"));
    assert_eq!(fake.calls(endpoint::OWNER_REPOSITORIES), before + 2);
    let last_two: Vec<String> = fake
        .requests()
        .iter()
        .rev()
        .take(2)
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(last_two, ["/users/alice/repos", "/orgs/alice/repos"]);
    // The client remembers alice is a user: one call per page from now on.
    gh.list_repositories("alice", 1).await.unwrap();
    assert_eq!(fake.calls(endpoint::OWNER_REPOSITORIES), before + 3);

    let e = gh.list_repositories("nobody", 1).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");
    let e = gh.list_installation_owners(1).await.unwrap_err();
    match e {
        PortError::Rejected { message, .. } => assert!(message.contains("App"), "{message}"),
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn get_repository_fills_the_installation_and_404_is_none() {
    let fake = FakeGitHub::start().await;
    let acme = fake.add_installation(org("acme"));
    let solo = fake.add_installation(RunnerScope::Repo {
        owner: "octo".into(),
        repo: "one".into(),
    });
    fake.add_repository("acme/app", "Organization", None);
    fake.add_repository("octo/one", "Organization", Some(solo));
    fake.add_repository("octo/two", "Organization", None);
    let gh = app_client(&fake);
    let r = gh.get_repository("acme/app").await.unwrap().unwrap();
    assert_eq!(r.installation_id, Some(acme));
    assert_eq!(r.owner, "acme");
    let r = gh.get_repository("octo/one").await.unwrap().unwrap();
    assert_eq!(r.installation_id, Some(solo));
    assert_eq!(gh.get_repository("acme/missing").await.unwrap(), None);
    assert_eq!(
        gh.get_repository("octo/two").await.unwrap(),
        None,
        "the App is not installed there"
    );
    let e = gh.get_repository("acme").await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");

    let pat = pat_client(&fake);
    let r = pat.get_repository("octo/two").await.unwrap().unwrap();
    assert_eq!(r.installation_id, None);
    assert_eq!(r.full_name, "octo/two");
}

// ---- workflow runs and jobs ----------------------------------------------------------------

#[tokio::test]
async fn queued_and_in_progress_runs_and_their_latest_jobs() {
    let fake = FakeGitHub::start().await;
    let inst = fake.add_installation(org("acme"));
    fake.add_repository("acme/app", "Organization", None);
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let job = |run, id, status: &str| {
        FakeWorkflowJob::new(run, id, status, &["self-hosted", "linux"], at)
    };
    // Run 1: nothing started. Run 2: one job started. Run 3: done.
    for id in [11, 12, 13] {
        fake.add_workflow_job("acme/app", job(1, id, "queued"));
    }
    fake.add_workflow_job("acme/app", job(2, 21, "in_progress"));
    fake.add_workflow_job("acme/app", job(2, 22, "queued"));
    fake.add_workflow_job("acme/app", job(3, 31, "completed"));
    // Run 4 was re-run: attempt 1 done, attempt 2 queued.
    fake.add_workflow_job("acme/app", job(4, 41, "completed"));
    fake.add_workflow_job("acme/app", job(4, 42, "queued").attempt(2));
    let gh = app_client(&fake);
    let repo = gh.get_repository("acme/app").await.unwrap().unwrap();
    assert_eq!(repo.installation_id, Some(inst));

    let queued = gh.list_runs(&repo, "queued", 1).await.unwrap();
    assert_eq!(queued.items, [4, 1], "newest first");
    assert!(!queued.more);
    let running = gh.list_runs(&repo, "in_progress", 1).await.unwrap();
    assert_eq!(running.items, [2]);
    let done = gh.list_runs(&repo, "completed", 1).await.unwrap();
    assert_eq!(done.items, [3]);
    let q = fake
        .requests()
        .into_iter()
        .find(|r| r.endpoint == endpoint::LIST_RUNS)
        .unwrap();
    assert_eq!(
        q.query.as_deref(),
        Some("status=queued&per_page=100&page=1")
    );

    let jobs = gh.list_run_jobs(&repo, 2, 1).await.unwrap();
    let seen: Vec<(u64, &str)> = jobs
        .items
        .iter()
        .map(|j| (j.id, j.status.as_str()))
        .collect();
    assert_eq!(seen, [(21, "in_progress"), (22, "queued")]);
    assert_eq!(jobs.items[1].labels, ["self-hosted", "linux"]);
    assert_eq!(jobs.items[1].created_at, at);
    assert_eq!(jobs.items[1].run_id, 2);
    // Only the latest attempt.
    let jobs = gh.list_run_jobs(&repo, 4, 1).await.unwrap();
    assert_eq!(jobs.items.len(), 1);
    assert_eq!((jobs.items[0].id, jobs.items[0].run_attempt), (42, 2));
    let q = fake.requests().last().unwrap().query.clone();
    assert_eq!(q.as_deref(), Some("filter=latest&per_page=100&page=1"));
    let e = gh.list_run_jobs(&repo, 99, 1).await.unwrap_err();
    assert!(matches!(e, PortError::NotFound { .. }), "{e:?}");

    // A job is one record: set_job (as a runner picks it up) moves run 1 along,
    // and get_job reads the same record.
    fake.set_job(
        "acme/app",
        FakeJob {
            id: 11,
            status: "in_progress".into(),
            conclusion: None,
            runner_name: Some("sr-1".into()),
        },
    );
    let queued = gh.list_runs(&repo, "queued", 1).await.unwrap();
    assert_eq!(queued.items, [4]);
    let running = gh.list_runs(&repo, "in_progress", 1).await.unwrap();
    assert_eq!(running.items, [2, 1]);
    let jobs = gh.list_run_jobs(&repo, 1, 1).await.unwrap();
    assert_eq!(jobs.items[0].status, "in_progress");
    assert_eq!(jobs.items[0].labels, ["self-hosted", "linux"]);
    let target = GitHubTarget {
        scope: org("acme"),
        installation_id: Some(inst),
    };
    let j = gh.get_job(&target, "acme/app", 11).await.unwrap().unwrap();
    assert_eq!(j.runner_name.as_deref(), Some("sr-1"));
    assert_eq!(j.status, "in_progress");
    let e = gh.list_runs(&repo, "queued&x=1", 1).await.unwrap_err();
    assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
}

#[tokio::test]
async fn runs_and_jobs_page_with_a_pat() {
    let fake = FakeGitHub::start().await;
    fake.add_repository("acme/big", "Organization", None);
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    for run in 1..=105 {
        fake.add_workflow_job(
            "acme/big",
            FakeWorkflowJob::new(run, 1000 + run, "queued", &["self-hosted"], at),
        );
    }
    for id in 0..150 {
        fake.add_workflow_job(
            "acme/big",
            FakeWorkflowJob::new(200, 5000 + id, "queued", &["self-hosted"], at),
        );
    }
    let gh = pat_client(&fake);
    let repo = RepoRef {
        full_name: "acme/big".into(),
        owner: "acme".into(),
        owner_type: "Organization".into(),
        private: true,
        installation_id: None,
    };
    let p1 = gh.list_runs(&repo, "queued", 1).await.unwrap();
    let p2 = gh.list_runs(&repo, "queued", 2).await.unwrap();
    assert_eq!((p1.items.len(), p1.more), (100, true));
    assert_eq!((p2.items.len(), p2.more), (6, false));
    assert_eq!(p1.items[0], 200);
    let runs: HashSet<u64> = p1.items.iter().chain(&p2.items).copied().collect();
    assert_eq!(runs.len(), 106);

    let j1 = gh.list_run_jobs(&repo, 200, 1).await.unwrap();
    let j2 = gh.list_run_jobs(&repo, 200, 2).await.unwrap();
    assert_eq!((j1.items.len(), j1.more), (100, true));
    assert_eq!((j2.items.len(), j2.more), (50, false));
    let ids: HashSet<u64> = j1.items.iter().chain(&j2.items).map(|j| j.id).collect();
    assert_eq!(ids.len(), 150);
    // The next link keeps the filter.
    let link = reqwest::Client::new()
        .get(format!(
            "{}/repos/acme/big/actions/runs?status=queued&per_page=100&page=1",
            fake.url()
        ))
        .bearer_auth("pat-1")
        .send()
        .await
        .unwrap()
        .headers()["link"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        link.contains("per_page=100&page=2&status=queued>; rel=\"next\""),
        "{link}"
    );
}

// ---- the rate limit --------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_reflects_the_last_answer_and_an_empty_window_throttles() {
    let fake = FakeGitHub::start().await;
    fake.add_repository("acme/app", "Organization", None);
    let gh = pat_client(&fake);
    assert_eq!(gh.rate_limit(), None, "nothing answered yet");
    gh.get_repository("acme/app").await.unwrap();
    let (remaining, limit) = fake.rate_limit();
    assert_eq!(gh.rate_limit(), Some(RateLimitState { remaining, limit }));
    assert_eq!(limit, 15_000);
    assert_eq!(remaining, limit - 1);

    fake.set_rate_limit(2, 100);
    gh.get_repository("acme/app").await.unwrap();
    assert_eq!(
        gh.rate_limit(),
        Some(RateLimitState {
            remaining: 1,
            limit: 100
        })
    );
    // A 404 is answered with the headers too.
    assert_eq!(gh.get_repository("acme/missing").await.unwrap(), None);
    assert_eq!(
        gh.rate_limit(),
        Some(RateLimitState {
            remaining: 0,
            limit: 100
        })
    );
    let e = gh.get_repository("acme/app").await.unwrap_err();
    match e {
        PortError::Throttled { retry_after, .. } => {
            assert!(retry_after >= Duration::from_secs(3500), "{retry_after:?}")
        }
        e => panic!("{e:?}"),
    }
    let calls = fake.total_calls();
    assert!(matches!(
        gh.list_repositories("acme", 1).await,
        Err(PortError::Throttled { .. })
    ));
    assert_eq!(fake.total_calls(), calls, "blocked until the reset");
}
