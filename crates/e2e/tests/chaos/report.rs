//! The invariants, checked at the end (and sampled during the run), each
//! broken one reported with its job ids and counts.

use super::proxylog::{launches, lost_ledger_writes, send_commands};
use super::pump::Poller;
use super::{DEPLOYMENT, MAX_TOTAL_WEIGHT, POOLS, World, is_live, tag};
use spotrunner_core::ports::{Ledger, tags};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub job: Option<u64>,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, job: Option<u64>, detail: String) -> Self {
        Violation {
            invariant,
            job,
            detail,
        }
    }
}

/// The caps as seen during the run.
#[derive(Default)]
pub struct Samples {
    pub taken: usize,
    /// Highest ledger counter / live instances per pool, highest weights.
    pub max_counter: BTreeMap<String, u32>,
    pub max_live: BTreeMap<String, u32>,
    pub max_weight_counter: u32,
    pub max_live_weight: u32,
    pub violations: Vec<Violation>,
}

impl Samples {
    pub async fn take(&mut self, w: &World, instances: &[aws_sdk_ec2::types::Instance]) {
        self.taken += 1;
        let capacity = w.direct.ledger.capacity().await.expect("capacity");
        let mut live: BTreeMap<String, u32> = BTreeMap::new();
        for i in instances.iter().filter(|i| is_live(i)) {
            *live
                .entry(tag(i, tags::POOL).unwrap_or_default())
                .or_default() += 1;
        }
        let mut live_weight = 0;
        for p in POOLS {
            let counter = capacity.pools.get(p.name).copied().unwrap_or(0);
            let l = live.get(p.name).copied().unwrap_or(0);
            live_weight += l * p.weight;
            let c = self.max_counter.entry(p.name.into()).or_default();
            *c = (*c).max(counter);
            let m = self.max_live.entry(p.name.into()).or_default();
            *m = (*m).max(l);
            if counter > p.max_runners || l > p.max_runners {
                self.violations.push(Violation::new(
                    "caps hold",
                    None,
                    format!(
                        "sample {}: pool {} counter {counter}, live instances {l}, max_runners {}",
                        self.taken, p.name, p.max_runners
                    ),
                ));
            }
        }
        self.max_weight_counter = self.max_weight_counter.max(capacity.weight);
        self.max_live_weight = self.max_live_weight.max(live_weight);
        if capacity.weight > MAX_TOTAL_WEIGHT || live_weight > MAX_TOTAL_WEIGHT {
            self.violations.push(Violation::new(
                "caps hold",
                None,
                format!(
                    "sample {}: weight counter {}, live weight {live_weight}, max_total_weight {MAX_TOTAL_WEIGHT}",
                    self.taken, capacity.weight
                ),
            ));
        }
    }
}

/// One VM per job, one runner command per VM, every job completed; then the
/// leftovers after the janitor's pass.
pub async fn check(w: &World, jobs: &[u64], poller: &Poller) -> Vec<Violation> {
    let mut v = Vec::new();
    let records = w.aws.records();
    let instances = w.instances().await;
    let runners = w.direct.ledger.list_runners().await.expect("runners");
    let ledger_jobs = w.direct.ledger.list_jobs().await.expect("jobs");
    let launches = launches(&records);

    // Exactly one instance per job.
    let mut by_job: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for i in &instances {
        let job = tag(i, tags::JOB_ID)
            .and_then(|j| j.parse().ok())
            .unwrap_or(0);
        by_job.entry(job).or_default().push(format!(
            "{} ({}, {})",
            i.instance_id().unwrap_or("?"),
            tag(i, tags::RUNNER_NAME).unwrap_or_default(),
            i.state().and_then(|s| s.name()).map_or("?", |n| n.as_str()),
        ));
    }
    for job in jobs {
        let got = by_job.get(job).cloned().unwrap_or_default();
        if got.len() != 1 {
            v.push(Violation::new(
                "one VM per job",
                Some(*job),
                format!("{} instances: {got:?}", got.len()),
            ));
        }
    }
    for (runner, calls) in &launches {
        let applied = calls.iter().filter(|c| c.reached_moto).count();
        if applied > 1 {
            v.push(Violation::new(
                "one VM per job",
                None,
                format!("runner {runner}: CreateFleet applied {applied} times: {calls:?}"),
            ));
        }
        let mismatches = calls.iter().filter(|c| c.mismatch).count();
        if mismatches > 0 {
            v.push(Violation::new(
                "CreateFleet deterministic",
                None,
                format!(
                    "runner {runner}: {mismatches} retries with its ClientToken but other \
                     parameters (IdempotentParameterMismatch); calls {calls:?}"
                ),
            ));
        }
    }

    // One runner command per instance, as the proxy saw them reach moto (moto
    // puts every instance on every command); first, that the proxy saw every
    // command moto has.
    let proxied = send_commands(&records);
    let mut in_moto = BTreeSet::new();
    let mut pages = w.direct.ssm.list_commands().into_paginator().send();
    while let Some(page) = pages.next().await {
        for c in page.expect("list commands").commands() {
            in_moto.insert(c.command_id().unwrap_or_default().to_string());
        }
    }
    let seen: BTreeSet<String> = proxied
        .values()
        .flatten()
        .map(|c| c.command_id.clone())
        .collect();
    if seen != in_moto {
        v.push(Violation::new(
            "test harness: the proxy saw every SendCommand",
            None,
            format!(
                "moto has {} commands, the proxy saw {}; only in moto: {:?}",
                in_moto.len(),
                seen.len(),
                in_moto.difference(&seen).collect::<Vec<_>>()
            ),
        ));
    }
    // A step whose SendCommand lost its answer may send again when SSM still
    // lists nothing after the grace (by design: bootstrap.sh runs once per VM,
    // so the second command starts no second runner). A command sent after
    // an earlier one was answered is a double send.
    for (instance, cmds) in &proxied {
        let mut by_seq: Vec<_> = cmds.iter().collect();
        by_seq.sort_by_key(|c| c.seq);
        let (earlier, _last) = by_seq.split_at(by_seq.len().saturating_sub(1));
        if earlier.iter().any(|c| c.answered) {
            let job = instances
                .iter()
                .find(|i| i.instance_id() == Some(instance.as_str()))
                .and_then(|i| tag(i, tags::JOB_ID))
                .and_then(|j| j.parse().ok());
            let recorded = runners
                .iter()
                .find(|r| r.instance_id.as_deref() == Some(instance.as_str()))
                .and_then(|r| r.command_id.clone());
            v.push(Violation::new(
                "one SendCommand per VM (a resend only after a lost answer)",
                job,
                format!(
                    "{instance}: {} commands reached moto {:?}; the ledger records {recorded:?}",
                    cmds.len(),
                    cmds.iter()
                        .map(|c| format!(
                            "{} by {}, SDK call {} attempt {} (answer {})",
                            c.command_id,
                            c.front,
                            &c.invocation[..c.invocation.len().min(8)],
                            c.attempt,
                            if c.answered { "received" } else { "lost" }
                        ))
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }

    // Every job completed.
    let now = chrono::Utc::now();
    let age = |t: chrono::DateTime<chrono::Utc>| (now - t).num_seconds();
    let by_id: BTreeMap<u64, _> = ledger_jobs.iter().map(|j| (j.job_id, j)).collect();
    for job in jobs {
        let record = by_id.get(job);
        let state = record.map_or("unknown to the ledger", |j| j.state.as_str());
        if state != "completed" {
            let its: Vec<String> = runners
                .iter()
                .filter(|r| r.job_id == *job)
                .map(|r| {
                    let lost = lost_ledger_writes(&records, &format!("runner#{}", r.name));
                    format!(
                        "{} {} {:?} (updated {} s ago){}",
                        r.name,
                        r.state.as_str(),
                        r.end_reason,
                        age(r.updated_at),
                        if lost.is_empty() {
                            String::new()
                        } else {
                            format!(", ledger writes with a lost answer: {lost:?}")
                        }
                    )
                })
                .collect();
            let detail = record.map_or(String::new(), |j| {
                format!(
                    " (attempt {}, lease {}, updated {} s ago)",
                    j.launch_attempt,
                    j.lease_until
                        .map_or("none".into(), |l| format!("{} s", -age(l))),
                    age(j.updated_at)
                )
            });
            let polled = poller.history(*job).map_or("never polled".to_string(), |h| {
                format!(
                    "polled {} job messages ({} retried), {} bootstrap ({} retried), last {:?} ago",
                    h.job_messages,
                    h.job_retries,
                    h.boot_messages,
                    h.boot_retries,
                    h.last.elapsed()
                )
            });
            v.push(Violation::new(
                "every job completed",
                Some(*job),
                format!("job is {state}{detail}; runners {its:?}; {polled}"),
            ));
        }
    }

    // Nothing left after the janitor.
    for i in instances.iter().filter(|i| is_live(i)) {
        v.push(Violation::new(
            "nothing left",
            tag(i, tags::JOB_ID).and_then(|j| j.parse().ok()),
            format!(
                "live instance {} ({})",
                i.instance_id().unwrap_or("?"),
                tag(i, tags::RUNNER_NAME).unwrap_or_default()
            ),
        ));
    }
    let mut pages = w
        .direct
        .ssm
        .describe_parameters()
        .max_results(50)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for p in page.expect("describe parameters").parameters() {
            let name = p.name().unwrap_or_default();
            if name.starts_with(&format!("/{DEPLOYMENT}/jit/")) {
                v.push(Violation::new(
                    "nothing left",
                    None,
                    format!("JIT parameter {name}"),
                ));
            }
        }
    }
    for r in w.github.runners() {
        if spotrunner_core::names::is_ours(DEPLOYMENT, &r.name) {
            v.push(Violation::new(
                "nothing left",
                None,
                format!("GitHub registration {} ({})", r.name, r.status),
            ));
        }
    }
    for r in runners.iter().filter(|r| r.state.as_str() != "released") {
        v.push(Violation::new(
            "nothing left",
            Some(r.job_id),
            format!("ledger runner {} still {}", r.name, r.state.as_str()),
        ));
    }
    let capacity = w.direct.ledger.capacity().await.expect("capacity");
    if capacity.weight != 0 || capacity.pools.values().any(|c| *c != 0) {
        v.push(Violation::new(
            "nothing left",
            None,
            format!("capacity counters not back to 0: {capacity:?}"),
        ));
    }
    v
}

/// The broken invariants, grouped, with their job ids and a few details each.
pub fn render(violations: &[Violation]) -> String {
    let mut by: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
    for x in violations {
        by.entry(x.invariant).or_default().push(x);
    }
    let mut s = String::new();
    for (invariant, list) in by {
        let mut jobs: Vec<u64> = list.iter().filter_map(|x| x.job).collect();
        jobs.sort_unstable();
        jobs.dedup();
        s.push_str(&format!(
            "BROKEN {invariant}: {} violations, jobs {jobs:?}\n",
            list.len()
        ));
        for x in list.iter().take(12) {
            s.push_str(&format!("    job {:?}: {}\n", x.job, x.detail));
        }
        if list.len() > 12 {
            s.push_str(&format!("    … and {} more\n", list.len() - 12));
        }
    }
    s
}
