//! create-runner end to end: real adapters (DynamoDB ledger, EC2 CreateFleet, SSM
//! parameters and SendCommand, SQS) against moto, the GitHub client against the
//! fake GitHub over HTTP (App JWT + installation token), driven through the
//! Lambda glue with SQS events built from messages received from moto.

mod common;

use common::*;
use spotrunner_core::ports::{Ledger, tags};
use spotrunner_testkit::fake_github::endpoint;
use std::collections::{BTreeMap, BTreeSet};
#[tokio::test]
async fn fifty_jobs_over_two_pools_give_fifty_tagged_vms_parameters_and_commands() {
    let w = world(50, None).await;
    for id in 0..50u64 {
        let pool = if id.is_multiple_of(2) { "cpu" } else { "gpu" };
        w.send(&w.job(1000 + id, pool).to_json()).await;
    }
    w.settle(4).await;

    let instances = w.instances(None).await;
    assert_eq!(instances.len(), 50, "exactly one VM per job");
    let mut by_job = BTreeMap::new();
    for i in &instances {
        let job: u64 = tag(i, tags::JOB_ID).unwrap().parse().unwrap();
        let pool = tag(i, tags::POOL).unwrap();
        assert_eq!(
            pool,
            if job.is_multiple_of(2) { "cpu" } else { "gpu" },
            "job {job} on the wrong pool"
        );
        assert_eq!(
            tag(i, tags::RUNNER_NAME).unwrap(),
            format!("sr_{pool}-{job}-0")
        );
        by_job.insert(job, i.instance_id().unwrap().to_string());
    }
    assert_eq!(by_job.len(), 50);

    // One JIT parameter per runner, tagged with its instance.
    let mut values = Vec::new();
    for (job, instance) in &by_job {
        let pool = if job.is_multiple_of(2) { "cpu" } else { "gpu" };
        let name = format!("/sr/jit/sr_{pool}-{job}-0");
        let p = w
            .ssm
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await
            .expect("parameter");
        values.push(p.parameter.unwrap().value.unwrap());
        let t = w
            .ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(&name)
            .send()
            .await
            .unwrap();
        assert!(
            t.tag_list()
                .iter()
                .any(|t| t.key() == "spotrunner:instance-arn"
                    && t.value() == format!("{INSTANCE_ARN_PREFIX}{instance}")),
            "{name} not tagged with {instance}"
        );
    }

    // One SendCommand per instance; no JIT value in any parameter.
    let mut commands = Vec::new();
    let mut next = None;
    loop {
        let out = w
            .ssm
            .list_commands()
            .set_next_token(next)
            .send()
            .await
            .unwrap();
        commands.extend(out.commands().to_vec());
        next = out.next_token().map(String::from);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(commands.len(), 50, "one SendCommand per VM");
    let mut targets = BTreeSet::new();
    for c in &commands {
        targets.extend(c.instance_ids().iter().cloned());
        let params = format!("{:?}", c.parameters());
        for v in &values {
            assert!(
                !params.contains(v.as_str()),
                "a JIT value leaked into SendCommand"
            );
        }
        assert!(params.contains("jitParameter"));
    }
    assert_eq!(targets.len(), 50);

    // GitHub: one JIT call per job, one installation token for all of them.
    assert_eq!(w.github.calls(endpoint::GENERATE_JITCONFIG), 50);
    assert_eq!(
        w.github.tokens_minted(),
        1,
        "installation token cached across jobs"
    );
    let ledger_runners = w.ledger.list_runners().await.unwrap();
    assert_eq!(ledger_runners.len(), 50);
    assert!(ledger_runners.iter().all(|r| r.command_id.is_some()));
    println!(
        "calls per job: github jit {} / 50, tokens {} total, github total {} / 50",
        w.github.calls(endpoint::GENERATE_JITCONFIG),
        w.github.tokens_minted(),
        w.github.total_calls()
    );
}

#[tokio::test]
async fn every_message_three_times_with_eight_concurrent_invocations_gives_one_vm_per_job() {
    let w = world(50, None).await;
    for _round in 0..3 {
        for id in 0..30u64 {
            let pool = if id.is_multiple_of(3) { "gpu" } else { "cpu" };
            w.send(&w.job(2000 + id, pool).to_json()).await;
        }
    }
    w.settle(8).await;
    let instances = w.instances(None).await;
    let jobs: BTreeSet<String> = instances
        .iter()
        .map(|i| tag(i, tags::JOB_ID).unwrap())
        .collect();
    assert_eq!(jobs.len(), 30);
    assert_eq!(instances.len(), 30, "duplicates launched nothing");
    assert_eq!(w.github.calls(endpoint::GENERATE_JITCONFIG), 30);
}

#[tokio::test]
async fn max_runners_five_never_exceeded_and_all_twenty_served_as_runners_finish() {
    let w = world(5, None).await;
    for id in 0..20u64 {
        w.send(&w.job(3000 + id, "cpu").to_json()).await;
    }
    let mut served = 0;
    for _ in 0..20 {
        w.pump(JOBS, 4).await;
        w.pump(BOOT, 4).await;
        let live = w.instances(Some("running")).await.len();
        assert!(live <= 5, "{live} live VMs of a pool capped at 5");
        served += w.finish_all().await;
        if served == 20 {
            break;
        }
    }
    assert_eq!(served, 20, "every job served once runners finished");
    assert_eq!(w.instances(None).await.len(), 20, "no job launched twice");
}

#[tokio::test]
async fn global_weighted_quota_holds_with_mixed_weights() {
    // gpu weighs 3, cpu 1; quota 10.
    let w = world(50, Some(10)).await;
    for id in 0..6u64 {
        w.send(&w.job(4000 + id, "gpu").to_json()).await;
        w.send(&w.job(4100 + id, "cpu").to_json()).await;
    }
    let mut served = 0;
    for _ in 0..20 {
        w.pump(JOBS, 4).await;
        w.pump(BOOT, 4).await;
        let weight: u32 = w
            .instances(Some("running"))
            .await
            .iter()
            .map(|i| {
                if tag(i, tags::POOL).as_deref() == Some("gpu") {
                    3
                } else {
                    1
                }
            })
            .sum();
        assert!(weight <= 10, "live weight {weight} above the quota of 10");
        served += w.finish_all().await;
        if served == 12 {
            break;
        }
    }
    assert_eq!(served, 12);
}

#[tokio::test]
async fn one_malformed_message_in_a_batch_of_ten_fails_alone() {
    let w = world(50, None).await;
    for id in 0..9u64 {
        w.send(&w.job(5000 + id, "cpu").to_json()).await;
    }
    w.send("{\"version\":1,\"job_id\":\"not a number\"}").await;
    let r = w
        .sqs
        .receive_message()
        .queue_url(&w.jobs_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let msgs = r.messages.unwrap_or_default();
    assert_eq!(msgs.len(), 10);
    let bad_id = msgs
        .iter()
        .find(|m| m.body().unwrap().contains("not a number"))
        .and_then(|m| m.message_id.clone())
        .unwrap();
    let event = sqs_event(&msgs, JOBS);
    let resp = w.handler.handle(event).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec![bad_id.as_str()]);
    assert_eq!(w.instances(None).await.len(), 9);
}
