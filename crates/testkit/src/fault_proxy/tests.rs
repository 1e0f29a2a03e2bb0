use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counting upstream: `CreateFleet` answers with a new instance id per call,
/// everything else echoes the operation; `GET /page` sends a `Link` to itself.
async fn upstream() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicU64::new(0));
    let (c, base) = (calls.clone(), url.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (c, base) = (c.clone(), base.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (c, base) = (c.clone(), base.clone());
                    async move {
                        let n = c.fetch_add(1, Ordering::SeqCst);
                        let link = format!("<{base}/page?page=2>; rel=\"next\"");
                        let target = req
                            .headers()
                            .get("x-amz-target")
                            .map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let out = if form_value(&text, "Action").as_deref() == Some("CreateFleet") {
                            format!(
                                "<CreateFleetResponse><instanceId>i-{n}</instanceId></CreateFleetResponse>"
                            )
                        } else if text != "{}" && target.as_deref() == Some("AmazonSSM.SendCommand")
                        {
                            // moto: every instance of the region on every command.
                            format!(
                                r#"{{"Command":{{"CommandId":"c-{n}","InstanceIds":["i-1","i-2","i-3"],"TargetCount":3}}}}"#
                            )
                        } else if target.as_deref() == Some("AmazonSSM.ListCommands") {
                            LIST_COMMANDS.to_string()
                        } else {
                            format!("ok {n}")
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("link", link)
                                .body(Full::new(Bytes::from(out)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, calls)
}

/// moto's ListCommands: every command carries every instance.
const LIST_COMMANDS: &str = r#"{"Commands":[
    {"CommandId":"c-0","InstanceIds":["i-1","i-2","i-3"]},
    {"CommandId":"c-1","InstanceIds":["i-1","i-2","i-3"]},
    {"CommandId":"other","InstanceIds":["i-1","i-3"]}]}"#;

fn fleet(token: &str, tag: &str) -> String {
    format!(
        "Action=CreateFleet&Version=2016-11-15&ClientToken={token}\
         &TagSpecification.1.Tag.1.Key=spotrunner%3Ajob-id&TagSpecification.1.Tag.1.Value={tag}"
    )
}

async fn post_form(url: &str, body: String) -> Result<(u16, String), reqwest::Error> {
    let r = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

async fn post_json(url: &str, target: &str) -> Result<(u16, String), reqwest::Error> {
    let r = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", target)
        .body("{}")
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

#[test]
fn same_seed_same_faults_other_seed_other_faults() {
    let w = Weights::default();
    let d = (Duration::from_millis(1), Duration::from_millis(9));
    let seq = |seed: u64| -> Vec<Option<Fault>> {
        (0..500)
            .map(|n| decide(seed, "moto", "SendCommand", n, 0.2, &w, d))
            .collect()
    };
    assert_eq!(seq(42), seq(42));
    assert_ne!(seq(42), seq(43));
    let faults = seq(42).iter().filter(|f| f.is_some()).count();
    assert!(
        (60..=140).contains(&faults),
        "{faults} faults in 500 at 20 %"
    );
    // Every kind turns up.
    let kinds: BTreeSet<&str> = seq(42).iter().flatten().map(Fault::kind).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    // Another proxy name or operation on the same seed faults differently.
    let other: Vec<_> = (0..500)
        .map(|n| decide(42, "github", "SendCommand", n, 0.2, &w, d))
        .collect();
    assert_ne!(seq(42), other);
    assert!((0..100).all(|n| decide(42, "moto", "X", n, 0.0, &w, d).is_none()));
    assert!((0..100).all(|n| decide(42, "moto", "X", n, 1.0, &w, d).is_some()));
}

#[tokio::test]
async fn the_same_seed_replays_the_same_faults_through_the_proxy() {
    let (up, _) = upstream().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let proxy = FaultProxy::start(&up, FaultConfig::new("moto", 7).rate(0.3)).await;
        for i in 0..60 {
            let target = if i % 2 == 0 {
                "AmazonSSM.SendCommand"
            } else {
                "DynamoDB_20120810.PutItem"
            };
            let _ = post_json(proxy.url(), target).await;
        }
        runs.push(
            proxy
                .records()
                .iter()
                .map(|r| (r.op.clone(), r.fault.map(|f| f.kind())))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].iter().any(|(_, f)| f.is_some()));
}

#[tokio::test]
async fn client_token_replays_the_first_answer_and_refuses_other_parameters() {
    let (up, calls) = upstream().await;
    let proxy = FaultProxy::start(&up, FaultConfig::new("moto", 1).rate(0.0)).await;
    let first = post_form(proxy.url(), fleet("tok-1", "7")).await.unwrap();
    assert_eq!(first.0, 200);
    assert!(first.1.contains("i-0"), "{first:?}");
    // Same token, same parameters: the same answer, moto not asked again.
    let again = post_form(proxy.url(), fleet("tok-1", "7")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Same token, other parameters: EC2's mismatch error, query-protocol XML.
    let (status, body) = post_form(proxy.url(), fleet("tok-1", "8")).await.unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("<Response><Errors><Error><Code>IdempotentParameterMismatch</Code>"),
        "{body}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Another token launches again.
    let other = post_form(proxy.url(), fleet("tok-2", "8")).await.unwrap();
    assert!(other.1.contains("i-1"), "{other:?}");
    assert_eq!(proxy.forwarded("CreateFleet"), 2);
    assert_eq!(proxy.calls("CreateFleet"), 4);
    let recs = proxy.records();
    assert!(recs[1].replayed && recs[2].mismatch);
    // A plain call without a token is not remembered.
    post_form(proxy.url(), "Action=RunInstances&Version=2016-11-15".into())
        .await
        .unwrap();
    post_form(proxy.url(), "Action=RunInstances&Version=2016-11-15".into())
        .await
        .unwrap();
    assert_eq!(proxy.forwarded("RunInstances"), 2);
}

#[tokio::test]
async fn a_lost_answer_reaches_the_upstream_and_a_retry_gets_the_remembered_one() {
    let (up, calls) = upstream().await;
    let proxy = FaultProxy::start(
        &up,
        FaultConfig::new("moto", 3)
            .rate(1.0)
            .weights(Weights::lost_answers_only()),
    )
    .await;
    for _ in 0..12 {
        match post_form(proxy.url(), fleet("tok-9", "1")).await {
            Ok((status, body)) => {
                assert_eq!(status, 500);
                assert!(!body.contains("i-0"), "the answer is lost: {body}");
            }
            Err(e) => assert!(!e.is_timeout(), "{e}"),
        }
    }
    let recs = proxy.records();
    let kinds: BTreeSet<&str> = recs
        .iter()
        .filter_map(|r| r.fault.map(|f| f.kind()))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["lost-answer-500", "lost-answer-drop"]),
        "both ways of losing an answer"
    );
    // Applied once; the retries were answered from the token memory.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(recs[0].reached_upstream);
    assert!(recs[0].upstream_body.as_deref().unwrap().contains("i-0"));
    assert!(recs[1..].iter().all(|r| r.replayed && !r.reached_upstream));
    // Without a token every lost answer is applied.
    for _ in 0..3 {
        let _ = post_json(proxy.url(), "AmazonSSM.SendCommand").await;
    }
    assert_eq!(proxy.forwarded("SendCommand"), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // Switched off: answers come through.
    proxy.set_enabled(false);
    let (status, body) = post_json(proxy.url(), "AmazonSSM.SendCommand")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok 4"));
}

#[tokio::test]
async fn errors_in_each_protocols_shape_only_on_selected_operations() {
    let (up, calls) = upstream().await;
    let proxy = FaultProxy::start(
        &up,
        FaultConfig::new("moto", 5)
            .rate(1.0)
            .weights(Weights {
                throttle: 1,
                ..Weights::lost_answers_only()
            })
            .only([
                "PutItem",
                "SendMessage",
                "DescribeInstances",
                "GET /orgs/o/actions/runners/{n}",
            ]),
    )
    .await;
    // Find a throttle for each protocol (the draw alternates with lost answers).
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        if let Ok((400, b)) = post_json(proxy.url(), "DynamoDB_20120810.PutItem").await {
            assert!(
                b.contains("\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\""),
                "{b}"
            );
            seen.insert("dynamodb");
        }
        if let Ok((400, b)) = post_json(proxy.url(), "AmazonSQS.SendMessage").await {
            assert!(b.contains("RequestThrottled"), "{b}");
            seen.insert("sqs");
        }
        if let Ok((400, b)) = post_form(
            proxy.url(),
            "Action=DescribeInstances&Version=2016-11-15".into(),
        )
        .await
        {
            assert!(b.contains("<Code>RequestLimitExceeded</Code>"), "{b}");
            seen.insert("ec2");
        }
        if let Ok(r) = reqwest::get(format!("{}/orgs/o/actions/runners/12", proxy.url())).await
            && r.status() == 403
        {
            assert_eq!(r.headers()["retry-after"], "1");
            assert!(r.text().await.unwrap().contains("secondary rate limit"));
            seen.insert("github");
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    // Not selected: never faulted.
    let before = calls.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(
            post_json(proxy.url(), "AmazonSSM.SendCommand")
                .await
                .unwrap()
                .0,
            200
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), before + 10);
    assert!(!proxy.faults().contains_key("SendCommand"));
    assert!(proxy.summary().contains("PutItem"));
}

#[tokio::test]
async fn links_point_back_at_the_proxy_and_fronts_are_told_apart() {
    let (up, _) = upstream().await;
    let proxy = FaultProxy::start(&up, FaultConfig::new("github", 1).rate(0.0)).await;
    let janitor = proxy.add_front("janitor").await;
    let r = reqwest::get(format!("{janitor}/page")).await.unwrap();
    assert_eq!(
        r.headers()["link"].to_str().unwrap(),
        format!("<{janitor}/page?page=2>; rel=\"next\"")
    );
    reqwest::get(format!("{}/page", proxy.url())).await.unwrap();
    let fronts: Vec<String> = proxy.records().into_iter().map(|r| r.front).collect();
    assert_eq!(fronts, ["janitor", "github"]);
    assert_eq!(proxy.records()[0].op, "GET /page");
}

#[tokio::test]
async fn ssm_commands_keep_the_instances_they_were_sent_to() {
    let (up, _) = upstream().await;
    let proxy = FaultProxy::start(&up, FaultConfig::new("moto", 1).rate(0.0)).await;
    let call = |target: &'static str, body: &'static str| {
        let url = proxy.url().to_string();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/"))
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", target)
                .body(body)
                .send()
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()
        }
    };
    let c0 = call("AmazonSSM.SendCommand", r#"{"InstanceIds":["i-1"]}"#).await;
    assert_eq!(c0["Command"]["InstanceIds"], serde_json::json!(["i-1"]));
    assert_eq!(c0["Command"]["TargetCount"], 1);
    call("AmazonSSM.SendCommand", r#"{"InstanceIds":["i-2"]}"#).await;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["Commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["CommandId"].as_str().unwrap().to_string())
            .collect()
    };
    // Filtered: what was sent there (and, as moto says, what the proxy never saw).
    let l = call("AmazonSSM.ListCommands", r#"{"InstanceId":"i-1"}"#).await;
    assert_eq!(ids(&l), ["c-0", "other"]);
    assert_eq!(l["Commands"][0]["InstanceIds"], serde_json::json!(["i-1"]));
    let l = call("AmazonSSM.ListCommands", r#"{"InstanceId":"i-2"}"#).await;
    assert_eq!(ids(&l), ["c-1"]);
    let l = call("AmazonSSM.ListCommands", "{}").await;
    assert_eq!(ids(&l), ["c-0", "c-1", "other"]);
    assert_eq!(l["Commands"][1]["InstanceIds"], serde_json::json!(["i-2"]));
}
