//! serve's HTTP front against the real binary: GitHub's 25 MiB body limit (a
//! bigger body gets a JSON 413), a slow client cut off by the header and body
//! timeouts while others are served, the connection cap (over it a connection
//! waits and is served once one closes), `accept` out of file descriptors
//! (logged once per streak, then served again), and JSON on every error answer.
//! No timed asserts: every wait is "until, or fail after a generous deadline".

mod common;

use common::*;
use spotrunner_testkit::fake_github::FakeGitHub;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(90);
const MIB: usize = 1024 * 1024;

fn write_config(github: &FakeGitHub, dir: &Path) -> std::path::PathBuf {
    let runner = runner_script(dir, "exit 0");
    let path = dir.join("config.json");
    write_json(
        &path,
        &config(
            github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
            serde_json::json!({ "runner_command": runner.display().to_string() }),
        ),
    );
    path
}

/// A client that opens a new connection for every request.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(LONG)
        .build()
        .unwrap()
}

/// A JSON document of about `size` bytes that no handler acts on.
fn padded_json(size: usize) -> Vec<u8> {
    let mut body = b"{\"zen\":\"".to_vec();
    body.resize(size - 2, b'a');
    body.extend_from_slice(b"\"}");
    body
}

fn is_json_error(resp_headers: &reqwest::header::HeaderMap, body: &serde_json::Value) -> bool {
    resp_headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
        && body["error"].as_str().is_some_and(|e| !e.is_empty())
}

/// Read a whole answer from a connection the server closes after it.
async fn read_answer(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(LONG, conn.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The JSON body of a raw HTTP/1.1 answer (not chunked).
fn raw_json(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_up_to_25_mib_are_taken_and_bigger_ones_get_a_json_413() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = write_config(&github, tmp.path());
    let serve = Serve::start(&path, &tmp.path().join("state"));
    let client = client();

    // 3 MiB, over axum's 2 MiB default: taken, and answered by its content.
    let body = padded_json(3 * MIB);
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    let resp = post_push(&client, &serve, body, &sig).await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["ignored"]
            .as_str()
            .is_some_and(|r| r.contains("push is not handled")),
        "{v}"
    );

    // 3 MiB that is not JSON: the content decides (400), not the size.
    let body = vec![b'x'; 3 * MIB];
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    let resp = post_push(&client, &serve, body, &sig).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // 26 MiB with a Content-Length: 413, JSON naming the limit.
    let resp = post_push(&client, &serve, padded_json(26 * MIB), "sha256=00")
        .await
        .expect("the 413 is read, not lost to a reset");
    assert_eq!(resp.status().as_u16(), 413);
    let headers = resp.headers().clone();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(is_json_error(&headers, &v), "{headers:?} {v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("25 MiB") && msg.contains(&(25 * MIB).to_string()),
        "{msg}"
    );

    // 26 MiB chunked (no length up front): the same.
    let mut conn = TcpStream::connect(&serve.addr).await.unwrap();
    conn.write_all(
        b"POST /webhook HTTP/1.1\r\nhost: spotrunner\r\nx-github-event: push\r\n\
          transfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b'a'; MIB];
    for _ in 0..26 {
        conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        conn.write_all(&chunk).await.unwrap();
        conn.write_all(b"\r\n").await.unwrap();
    }
    conn.write_all(b"0\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        raw_json(&answer)["error"]
            .as_str()
            .is_some_and(|e| e.contains("25 MiB")),
        "{answer}"
    );

    // A client that waits for `100 Continue` is answered without sending it.
    let mut conn = TcpStream::connect(&serve.addr).await.unwrap();
    conn.write_all(
        format!(
            "POST /webhook HTTP/1.1\r\nhost: spotrunner\r\nx-github-event: push\r\n\
             expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            26 * MIB
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(raw_json(&answer)["error"].is_string(), "{answer}");

    // And serve is fine.
    let resp = client.get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_dribbles_its_head_is_cut_off_while_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = write_config(&github, tmp.path());
    let serve = Serve::start(&path, &tmp.path().join("state"));

    let head = b"POST /webhook HTTP/1.1\r\nhost: spotrunner\r\nx-github-event: ping\r\n\
                 content-type: application/json\r\ncontent-length: 2\r\n\r\n";
    let mut slow = TcpStream::connect(&serve.addr).await.unwrap();
    slow.write_all(&head[..1]).await.unwrap();

    // Another connection is served meanwhile.
    let body = b"{}".to_vec();
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    assert_eq!(
        post_webhook(&client(), &serve.addr, "ping", &body, &sig).await,
        Some(200)
    );

    // One byte every 3 s: cut off (closed, or answered 408) before the head is whole.
    let mut sent = 1;
    let mut buf = [0u8; 4096];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break String::new(),
            Ok(Ok(n)) => break String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => {}
        }
        assert!(
            sent < head.len(),
            "the slow client sent its whole head and was never cut off"
        );
        if slow.write_all(&head[sent..sent + 1]).await.is_err() {
            break String::new();
        }
        sent += 1;
    };
    assert!(
        ended.is_empty() || ended.starts_with("HTTP/1.1 408"),
        "{ended}"
    );
    assert!(sent < head.len());
    let resp = client().get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_gets_a_json_408() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = write_config(&github, tmp.path());
    let serve = Serve::start(&path, &tmp.path().join("state"));

    let mut slow = TcpStream::connect(&serve.addr).await.unwrap();
    slow.write_all(
        b"POST /webhook HTTP/1.1\r\nhost: spotrunner\r\nx-github-event: ping\r\n\
          content-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
    )
    .await
    .unwrap();
    // One body byte every 3 s until an answer comes (1000 bytes would take 50 min).
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                if got.is_empty() {
                    let _ = slow.write_all(b" ").await;
                }
            }
        }
        assert!(Instant::now() < deadline, "no answer to a body that stalls");
    }
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        raw_json(&answer)["error"]
            .as_str()
            .is_some_and(|e| e.contains("not received")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_a_connection_waits_and_is_served_once_one_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = write_config(&github, tmp.path());
    let serve = Serve::start_with(
        &path,
        &tmp.path().join("state"),
        &[("SPOTRUNNER_MAX_CONNECTIONS", "4")],
    )
    .unwrap();

    // Four connections take the four places: each is in a request whose body
    // has not come (the body timeout, 30 s, keeps them there).
    let held_since = Instant::now();
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(&serve.addr).await.unwrap();
        c.write_all(
            b"POST /webhook HTTP/1.1\r\nhost: spotrunner\r\nx-github-event: ping\r\n\
              content-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        holders.push(c);
    }
    let url = serve.url("/healthz");
    let fifth =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    if held_since.elapsed() < Duration::from_secs(20) {
        // The holders certainly still hold: the fifth must be waiting.
        assert!(
            !fifth.is_finished(),
            "a fifth connection was served over a cap of 4"
        );
    }
    drop(holders.remove(0));
    let status = tokio::time::timeout(LONG, fifth)
        .await
        .expect("the waiting connection is served once one closes")
        .unwrap();
    assert_eq!(status.ok(), Some(200));
    drop(holders);
    let log = serve.log_text();
    assert!(!log.contains("cannot accept"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_accept_backs_off_logs_once_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = write_config(&github, tmp.path());
    let serve = Serve::start(&path, &tmp.path().join("state"));
    let pid = serve.pid();

    // Leave serve two file descriptors.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) },
        0
    );
    let tight = libc::rlimit {
        rlim_cur: open + 2,
        rlim_max: old.rlim_max,
    };
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &tight, std::ptr::null_mut()) },
        0,
        "prlimit: {}",
        std::io::Error::last_os_error()
    );

    let mut conns = Vec::new();
    for _ in 0..8 {
        conns.push(TcpStream::connect(&serve.addr).await.unwrap());
    }
    wait_until("serve to report that it cannot accept", LONG, || {
        serve.log_text().contains("cannot accept connections")
    });
    // A few seconds out of descriptors: one line per streak, not one per try.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = serve.log_text();
    let failures = log.matches("cannot accept connections").count();
    let recoveries = log.matches("accepting connections again").count();
    assert!(
        failures <= recoveries + 1,
        "{failures} accept error lines for {recoveries} recoveries:\n{log}"
    );

    // Descriptors back: the waiting connections and new ones are served.
    assert_eq!(
        unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &old, std::ptr::null_mut()) },
        0
    );
    drop(conns);
    let resp = client().get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    wait_until("serve to report that it accepts again", LONG, || {
        serve.log_text().contains("accepting connections again")
    });
    let log = serve.log_text();
    let failures = log.matches("cannot accept connections").count();
    let recoveries = log.matches("accepting connections again").count();
    assert!(failures <= recoveries + 1, "{log}");
    assert!(failures >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_json() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let path = write_config(&github, tmp.path());
    let serve = Serve::start(&path, &tmp.path().join("state"));
    let client = client();

    let cases = [
        (reqwest::Method::GET, "/nowhere", 404),
        (reqwest::Method::POST, "/nowhere", 404),
        (reqwest::Method::GET, "/webhook", 405),
        (reqwest::Method::POST, "/healthz", 405),
        (reqwest::Method::DELETE, "/status", 405),
        (reqwest::Method::POST, "/webhook", 401),
    ];
    for (method, route, want) in cases {
        let resp = client
            .request(method.clone(), serve.url(route))
            .header("x-github-event", "ping")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method} {route}");
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {route}: not JSON ({e}): {text:?}"));
        assert!(is_json_error(&headers, &v), "{method} {route}: {v}");
        if want == 405 {
            assert!(
                headers.contains_key("allow"),
                "{method} {route}: {headers:?}"
            );
        }
    }
    let resp = client.get(serve.url("/nowhere")).send().await.unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("/nowhere"), "{v}");
}

/// POST `body` to serve's `/webhook` as a `push` event signed `sig`.
async fn post_push(
    client: &reqwest::Client,
    serve: &Serve,
    body: Vec<u8>,
    sig: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(serve.url("/webhook"))
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
}
