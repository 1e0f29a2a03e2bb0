//! verify + parse + route of the largest `queued` example in
//! `@octokit/webhooks-examples` (no SQS call). Run: scripts/bench.sh webhook_route

use criterion::{Criterion, criterion_group, criterion_main};
use spotrunner_core::Config;
use spotrunner_core::webhook::{Action, WebhookRequest, WebhookSecrets, route, sign};
use spotrunner_testkit::examples::examples;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let ex = examples("workflow_job")
        .into_iter()
        .filter(|e| e.action() == Some("queued"))
        .max_by_key(|e| e.body().len())
        .expect("a queued example");
    let body = ex.body();
    let labels = ex.payload["workflow_job"]["labels"].clone();
    let config = Config::from_json(
        &serde_json::json!({
            "deployment": "sr",
            // GitHub's example payloads are of public repositories, of any owner.
            "allowed_owners": ["*"],
            "allow_public_repositories": true,
            "github": { "auth": { "type": "pat", "token": "env:T" } },
            "webhook": { "secrets": ["value:current", "value:previous"] },
            "pools": [
                { "name": "other", "labels": ["gpu"], "max_runners": 1 },
                { "name": "target", "labels": labels, "max_runners": 1 }
            ]
        })
        .to_string(),
    )
    .expect("bench config");
    // The previous secret matches: the worst case tries both.
    let secrets = WebhookSecrets::new(&["current", "previous"]);
    let sig = sign(b"previous", &body);
    let now = chrono::Utc::now();
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: Some("d"),
        signature: Some(&sig),
        body: &body,
    };
    let routed = route(&config, &secrets, &req, now);
    assert!(
        matches!(routed.action, Action::Enqueue(_)),
        "{:?}",
        routed.response
    );
    let mut g = c.benchmark_group("webhook");
    g.throughput(criterion::Throughput::Bytes(body.len() as u64));
    g.bench_function(format!("verify_parse_route_{}B", body.len()), |b| {
        b.iter(|| route(black_box(&config), &secrets, black_box(&req), now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
