//! Two deployments whose names share a prefix, `sr` and `sr-prod`, side by side
//! in one AWS account (moto) and one GitHub organisation (the fake): each
//! janitor cleans up only its own leaks; the other deployment's runners,
//! instances and JIT parameters — healthy or leaked — survive it.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use spotrunner_aws::{dynamodb::DynamoLedger, sqs::SqsJobQueue};
use spotrunner_core::janitor::{ActionKind, Janitor, JanitorSettings};
use spotrunner_core::job::JobMessage;
use spotrunner_core::names;
use spotrunner_core::ports::{
    Ledger, Limits, RunnerChange, RunnerParameters, RunnerRecord, RunnerScope, RunnerState,
};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What one deployment has: a healthy runner, and three leaks its own janitor
/// must clean up (an orphan instance, an offline GitHub registration, a JIT
/// parameter), none of which the ledger knows.
struct Deployment {
    name: &'static str,
    janitor: Janitor,
    ledger: Arc<DynamoLedger>,
    healthy_runner: String,
    healthy_instance: String,
    healthy_parameter: String,
    orphan_instance: String,
    leaked_registration: String,
    leaked_parameter: String,
}

fn org() -> RunnerScope {
    RunnerScope::Org {
        org: "octo-org".into(),
    }
}

async fn deployment(w: &World, name: &'static str, base: u64, now: DateTime<Utc>) -> Deployment {
    let sdk = spotrunner_aws::sdk::local(w._moto.url()).await;
    let table = format!("{name}-ledger");
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .unwrap();
    let queue = w
        .sqs
        .create_queue()
        .queue_name(format!("{name}-jobs"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let ledger = Arc::new(DynamoLedger::new(&sdk, table));
    let mut config = (*w.config).clone();
    config.deployment = name.to_string();
    let janitor = Janitor {
        config: Arc::new(config),
        settings: JanitorSettings::for_deployment(name),
        ledger: ledger.clone(),
        github: w.janitor.github.clone(),
        compute: w.compute.clone(),
        parameters: w.params.clone(),
        jobs_queue: Arc::new(SqsJobQueue::new(&sdk, queue)),
    };
    let parameter = |runner: &str| format!("/{name}/jit/{runner}");

    // The healthy runner: job claimed and launched, runner bootstrapped and
    // online on GitHub, its instance running, its parameter bound.
    let job = base + 1;
    let healthy_runner = names::runner_name(name, "cpu", job, 0);
    let msg: JobMessage = w.job(job, "cpu");
    ledger
        .claim_job(&msg, now, Duration::minutes(5))
        .await
        .unwrap();
    let record = RunnerRecord {
        name: healthy_runner.clone(),
        pool: "cpu".into(),
        job_id: job,
        weight: 1,
        state: RunnerState::Reserved,
        instance_id: None,
        command_id: None,
        github_runner_id: None,
        jit_parameter: parameter(&healthy_runner),
        created_at: now,
        launched_at: None,
        updated_at: now,
        end_reason: None,
    };
    let limits = Limits {
        pool_max: 10,
        weight: 1,
        global_max_weight: None,
    };
    ledger.reserve(&record, limits).await.unwrap();
    let github_id = w.github.add_runner(org(), &healthy_runner, "online", false);
    let healthy_instance = w.run_instance(name, &healthy_runner, job).await;
    let change = RunnerChange {
        state: Some(RunnerState::Bootstrapped),
        instance_id: Some(healthy_instance.clone()),
        github_runner_id: Some(github_id),
        launched_at: Some(now),
        ..RunnerChange::default()
    };
    ledger
        .update_runner(&healthy_runner, &change, now)
        .await
        .unwrap();
    let healthy_parameter = parameter(&healthy_runner);
    w.params
        .put(&healthy_parameter, "JIT-SECRET", &[])
        .await
        .unwrap();
    w.params
        .bind_to_instance(&healthy_parameter, &healthy_instance)
        .await
        .unwrap();

    // Leaks of this deployment (the ledger knows none of them).
    let orphan_runner = names::runner_name(name, "cpu", base + 2, 0);
    let orphan_instance = w.run_instance(name, &orphan_runner, base + 2).await;
    let leaked_registration = names::runner_name(name, "cpu", base + 3, 0);
    w.github
        .add_runner(org(), &leaked_registration, "offline", false);
    let leaked_parameter = parameter(&names::runner_name(name, "cpu", base + 4, 0));
    w.params
        .put(&leaked_parameter, "JIT-SECRET", &[])
        .await
        .unwrap();

    Deployment {
        name,
        janitor,
        ledger,
        healthy_runner,
        healthy_instance,
        healthy_parameter,
        orphan_instance,
        leaked_registration,
        leaked_parameter,
    }
}

async fn running_instances(w: &World) -> BTreeSet<String> {
    let out = w.ec2.describe_instances().send().await.unwrap();
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            matches!(
                i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                Some("running" | "pending")
            )
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect()
}

async fn parameters(w: &World) -> BTreeSet<String> {
    w.params.list("/").await.unwrap().into_iter().collect()
}

fn registrations(w: &World) -> BTreeSet<String> {
    w.github.runners().into_iter().map(|r| r.name).collect()
}

/// Everything of `d` is still there: healthy and leaked alike.
async fn untouched(w: &World, d: &Deployment) {
    let running = running_instances(w).await;
    assert!(
        running.contains(&d.healthy_instance),
        "{}: healthy instance",
        d.name
    );
    assert!(
        running.contains(&d.orphan_instance),
        "{}: its orphan is not the other's to end",
        d.name
    );
    let regs = registrations(w);
    assert!(
        regs.contains(&d.healthy_runner),
        "{}: healthy registration",
        d.name
    );
    assert!(
        regs.contains(&d.leaked_registration),
        "{}: its offline registration",
        d.name
    );
    let params = parameters(w).await;
    assert!(
        params.contains(&d.healthy_parameter),
        "{}: healthy parameter",
        d.name
    );
    assert!(
        params.contains(&d.leaked_parameter),
        "{}: its leaked parameter",
        d.name
    );
    let runner = d
        .ledger
        .get_runner(&d.healthy_runner)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        runner.state,
        RunnerState::Bootstrapped,
        "{}: ledger",
        d.name
    );
}

/// `d`'s janitor removed exactly its three leaks and kept its healthy runner.
async fn cleaned(w: &World, d: &Deployment) {
    let running = running_instances(w).await;
    assert!(
        running.contains(&d.healthy_instance),
        "{}: healthy instance kept",
        d.name
    );
    assert!(
        !running.contains(&d.orphan_instance),
        "{}: orphan terminated",
        d.name
    );
    let regs = registrations(w);
    assert!(
        regs.contains(&d.healthy_runner),
        "{}: healthy registration kept",
        d.name
    );
    assert!(
        !regs.contains(&d.leaked_registration),
        "{}: leaked registration deleted",
        d.name
    );
    let params = parameters(w).await;
    assert!(
        params.contains(&d.healthy_parameter),
        "{}: healthy parameter kept",
        d.name
    );
    assert!(
        !params.contains(&d.leaked_parameter),
        "{}: leaked parameter deleted",
        d.name
    );
}

#[tokio::test]
async fn janitors_of_sr_and_sr_prod_never_touch_each_other() {
    let w = world(10, None).await;
    let now = Utc::now();
    let sr = deployment(&w, "sr", 100, now).await;
    let prod = deployment(&w, "sr-prod", 200, now).await;
    let later = now + Duration::seconds(60);

    // sr's janitor: exactly its own three leaks; sr-prod untouched.
    let report = sr.janitor.run(later, false).await.expect("sr janitor");
    let mut acted: Vec<(ActionKind, String)> = report
        .results
        .iter()
        .map(|r| (r.action.kind, r.action.subject.clone()))
        .collect();
    acted.sort();
    let mut expected = vec![
        (ActionKind::TerminateOrphan, sr.orphan_instance.clone()),
        (
            ActionKind::DeleteGitHubRunner,
            sr.leaked_registration.clone(),
        ),
        (ActionKind::DeleteParameter, sr.leaked_parameter.clone()),
    ];
    expected.sort();
    assert_eq!(acted, expected, "{report:?}");
    assert_eq!(report.failed(), 0);
    cleaned(&w, &sr).await;
    untouched(&w, &prod).await;

    // sr-prod's janitor: its own leaks; sr's healthy runner survives it too.
    let report = prod
        .janitor
        .run(later, false)
        .await
        .expect("sr-prod janitor");
    assert_eq!(report.results.len(), 3, "{report:?}");
    assert_eq!(report.failed(), 0);
    cleaned(&w, &prod).await;
    cleaned(&w, &sr).await;

    // And neither sees anything left to do.
    for d in [&sr, &prod] {
        let again = d.janitor.run(later, true).await.expect("dry run");
        assert!(again.results.is_empty(), "{}: {again:?}", d.name);
    }
}
