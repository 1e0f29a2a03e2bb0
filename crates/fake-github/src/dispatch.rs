//! GitHub's dispatch of queued jobs to runners.
//!
//! GitHub does not hand a job to the runner that was started for it: a queued
//! job goes to **any** idle runner whose labels fit. The fake models that, as
//! strictly as GitHub does it:
//!
//! - [`FakeGitHub::queue_job`] takes a full `workflow_job` `queued` webhook
//!   payload (GitHub's own examples, with fresh ids), records the job as
//!   `queued` (so `GET /repos/{o}/{r}/actions/jobs/{id}` answers it) and in the
//!   dispatch queue, then delivers the `queued` webhook through the App's hook
//!   (signed, in the delivery log). The job is dispatchable before the webhook
//!   arrives, as on GitHub. A job re-run (`rerun-job`) is queued the same way.
//! - `POST /_fake/runners/{name}/acquire` (test hook: no credentials, not
//!   counted by [`FakeGitHub::calls`]) is a registered runner asking for work,
//!   the way the actions runner polls its session. A runner that never ran a
//!   job (JIT runners are ephemeral: one job, ever) gets the **oldest** queued
//!   job (queue order) whose labels are all, case-insensitively, among the
//!   runner's labels (as registered: exactly what the JIT request carried plus
//!   whatever the fake adds at registration) and whose repository the runner's
//!   scope covers (an organisation runner: the organisation's repositories; a
//!   repository runner: that repository). The job becomes `in_progress` on it,
//!   the runner `online` and busy, the `in_progress` webhook is delivered, and
//!   only then the answer is `200 {"job_id": …}`. No job fits: `204` (the
//!   runner is `online`, idle). Asking again while holding a job answers the
//!   same job (a lost answer retried; no second webhook). Unknown runner: 404;
//!   a name two scopes share: 409. Assignment happens under the fake's one
//!   lock, so two runners never get the same job.
//! - `POST /_fake/runners/{name}/complete`, body optional
//!   (`{"conclusion": "failure"}`; default `success`; also `cancelled`,
//!   `skipped`, `neutral`, `timed_out`, else 422): the runner's job becomes
//!   `completed` with that conclusion, the `completed` webhook is delivered,
//!   and the runner is removed from the runner list (an ephemeral runner
//!   deregisters after its job) before the answer `200 {"job_id": …,
//!   "conclusion": …}`. A runner without a job: 409.
//!
//! Tests read what happened with [`FakeGitHub::assignments`] (job, runner) in
//! assignment order, [`FakeGitHub::dispatch_log`] (with precise times) and
//! [`FakeGitHub::queued_jobs`].

use super::{FakeGitHub, FakeJob, Response, RunnerScope, State, StatusCode, err, ok_json};
use crate::actions::JobRecord;
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One job taken by a runner, as the fake's dispatch recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAssignment {
    pub job_id: u64,
    /// `owner/name` as the queued payload spelled it.
    pub repository: String,
    pub runner_name: String,
    pub runner_id: u64,
    /// When the job entered the dispatch queue ([`FakeGitHub::queue_job`]).
    pub queued_at: DateTime<Utc>,
    /// When the runner took it (the job's `in_progress`), to the nanosecond.
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub conclusion: Option<String>,
}

/// A job waiting for a runner.
#[derive(Debug, Clone)]
struct Queued {
    /// (lower-cased `owner/name`, job id): the key of `State::jobs`.
    key: (String, u64),
    /// `owner/name` as given.
    repository: String,
    labels: Vec<String>,
    queued_at: DateTime<Utc>,
}

/// The dispatch queue, what each runner holds, and the log.
#[derive(Default)]
pub(crate) struct Dispatch {
    /// Queued jobs not yet taken, oldest first.
    queue: Vec<Queued>,
    /// The `queued` payload of every job queued through the dispatch.
    payloads: HashMap<(String, u64), Value>,
    /// Runner id → index in `log` of the job it holds.
    holding: HashMap<u64, usize>,
    /// Runner ids that ever took a job.
    used: std::collections::HashSet<u64>,
    log: Vec<FakeAssignment>,
}

const CONCLUSIONS: &[&str] = &[
    "success",
    "failure",
    "cancelled",
    "skipped",
    "neutral",
    "timed_out",
];

fn secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Put job `id` of `repository` in the dispatch queue (its record must exist).
pub(crate) fn enqueue(
    s: &mut State,
    repository: &str,
    id: u64,
    labels: Vec<String>,
    payload: Value,
) {
    let key = (repository.to_ascii_lowercase(), id);
    let d = &mut s.dispatch;
    d.queue.retain(|q| q.key != key);
    d.queue.push(Queued {
        key: key.clone(),
        repository: repository.to_string(),
        labels,
        queued_at: Utc::now(),
    });
    d.payloads.insert(key, payload);
}

/// Does the runner's scope cover repository `owner/name`?
fn covers(scope: &RunnerScope, repository: &str) -> bool {
    let Some((owner, name)) = repository.split_once('/') else {
        return false;
    };
    match scope {
        RunnerScope::Org { org } => org.eq_ignore_ascii_case(owner),
        RunnerScope::Repo { owner: o, repo } => {
            o.eq_ignore_ascii_case(owner) && repo.eq_ignore_ascii_case(name)
        }
    }
}

/// Are all of the job's labels among the runner's (case-insensitively)?
fn labels_fit(job: &[String], runner: &[String]) -> bool {
    job.iter()
        .all(|l| runner.iter().any(|r| r.eq_ignore_ascii_case(l)))
}

/// The group name GitHub shows for a runner.
fn group_name(s: &State, scope: &RunnerScope, group: u64) -> String {
    if group == 1 {
        return "Default".into();
    }
    match scope {
        RunnerScope::Org { org } => s
            .groups
            .get(&org.to_ascii_lowercase())
            .and_then(|g| g.iter().find(|(id, _)| *id == group))
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| "Default".into()),
        RunnerScope::Repo { .. } => "Default".into(),
    }
}

/// The one registered runner named `name`, by index.
fn runner_index(s: &State, name: &str) -> Result<usize, Response> {
    let found: Vec<usize> = s
        .runners
        .iter()
        .enumerate()
        .filter(|(_, r)| r.name.eq_ignore_ascii_case(name))
        .map(|(i, _)| i)
        .collect();
    match found.as_slice() {
        [i] => Ok(*i),
        [] => Err(err(
            StatusCode::NOT_FOUND,
            &format!("No runner named {name} is registered"),
        )),
        _ => Err(err(
            StatusCode::CONFLICT,
            &format!("Several runners are named {name} (in different scopes)"),
        )),
    }
}

/// The routes under `/_fake/runners/`; `None` for every other path.
pub(crate) fn serve(s: &mut State, method: &str, segs: &[&str], body: &[u8]) -> Option<Response> {
    let ["_fake", "runners", name, what] = segs else {
        return None;
    };
    if method != "POST" {
        return Some(err(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"));
    }
    match *what {
        "acquire" => Some(acquire(s, name)),
        "complete" => Some(complete(s, name, body)),
        _ => Some(err(StatusCode::NOT_FOUND, "Not Found")),
    }
}

/// The stored `queued` payload of a job, moved to `action`, with the job's
/// status, times and runner.
fn progressed(s: &State, a: &FakeAssignment, action: &str) -> Value {
    let key = (a.repository.to_ascii_lowercase(), a.job_id);
    let mut p = s
        .dispatch
        .payloads
        .get(&key)
        .cloned()
        .unwrap_or(Value::Null);
    let (group_id, group) = s
        .runners
        .iter()
        .find(|r| r.id == a.runner_id)
        .map(|r| {
            (
                r.runner_group_id,
                group_name(s, &r.scope, r.runner_group_id),
            )
        })
        .unwrap_or((1, "Default".into()));
    p["action"] = action.into();
    let wj = &mut p["workflow_job"];
    wj["status"] = action.into();
    wj["conclusion"] = a.conclusion.clone().into();
    wj["started_at"] = time(secs(a.started_at)).into();
    wj["completed_at"] = a.completed_at.map(|t| time(secs(t))).into();
    wj["runner_id"] = a.runner_id.into();
    wj["runner_name"] = a.runner_name.clone().into();
    wj["runner_group_id"] = group_id.into();
    wj["runner_group_name"] = group.into();
    p
}

fn with_delivery(mut resp: Response, payload: &Value) -> Response {
    resp.extensions_mut().insert(crate::hooks::NewDelivery {
        event: "workflow_job".into(),
        payload: serde_json::to_vec(payload).unwrap_or_default(),
    });
    resp
}

fn acquire(s: &mut State, name: &str) -> Response {
    let i = match runner_index(s, name) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let runner = s.runners[i].clone();
    if let Some(&n) = s.dispatch.holding.get(&runner.id) {
        // The answer was lost and the runner asks again: the same job.
        return ok_json(
            StatusCode::OK,
            json!({ "job_id": s.dispatch.log[n].job_id }),
        );
    }
    if s.dispatch.used.contains(&runner.id) {
        return err(
            StatusCode::CONFLICT,
            &format!("Runner {name} is ephemeral and already ran a job"),
        );
    }
    // A job whose status changed meanwhile (cancelled, set by a test) is no
    // longer queued.
    let jobs = &s.jobs;
    s.dispatch
        .queue
        .retain(|q| jobs.get(&q.key).is_some_and(|j| j.job.status == "queued"));
    let pick = s.dispatch.queue.iter().position(|q| {
        labels_fit(&q.labels, &runner.labels) && covers(&runner.scope, &q.repository)
    });
    let Some(pos) = pick else {
        let r = &mut s.runners[i];
        r.status = "online".into();
        r.busy = false;
        return StatusCode::NO_CONTENT.into_response();
    };
    let q = s.dispatch.queue.remove(pos);
    let now = Utc::now();
    let group = (
        runner.runner_group_id,
        group_name(s, &runner.scope, runner.runner_group_id),
    );
    if let Some(rec) = s.jobs.get_mut(&q.key) {
        start(rec, &runner.name, now);
        rec.runner = Some((runner.id, group.0, group.1));
    }
    let r = &mut s.runners[i];
    r.status = "online".into();
    r.busy = true;
    let a = FakeAssignment {
        job_id: q.key.1,
        repository: q.repository,
        runner_name: runner.name.clone(),
        runner_id: runner.id,
        queued_at: q.queued_at,
        started_at: now,
        completed_at: None,
        conclusion: None,
    };
    s.dispatch.used.insert(runner.id);
    s.dispatch.holding.insert(runner.id, s.dispatch.log.len());
    let payload = progressed(s, &a, "in_progress");
    s.dispatch.log.push(a);
    with_delivery(
        ok_json(StatusCode::OK, json!({ "job_id": q.key.1 })),
        &payload,
    )
}

fn start(rec: &mut JobRecord, runner: &str, now: DateTime<Utc>) {
    rec.job = FakeJob {
        id: rec.job.id,
        status: "in_progress".into(),
        conclusion: None,
        runner_name: Some(runner.to_string()),
    };
    rec.started_at = Some(secs(now).max(rec.created_at));
    rec.completed_at = None;
}

fn complete(s: &mut State, name: &str, body: &[u8]) -> Response {
    let conclusion = if body.iter().all(u8::is_ascii_whitespace) {
        "success".to_string()
    } else {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return err(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        match v.get("conclusion") {
            None | Some(Value::Null) => "success".to_string(),
            Some(Value::String(c)) if CONCLUSIONS.contains(&c.as_str()) => c.clone(),
            Some(other) => {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("conclusion must be one of {CONCLUSIONS:?}, not {other}"),
                );
            }
        }
    };
    let i = match runner_index(s, name) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let runner_id = s.runners[i].id;
    let Some(n) = s.dispatch.holding.get(&runner_id).copied() else {
        return err(StatusCode::CONFLICT, &format!("Runner {name} holds no job"));
    };
    let now = Utc::now();
    let mut a = s.dispatch.log[n].clone();
    a.completed_at = Some(now);
    a.conclusion = Some(conclusion.clone());
    let key = (a.repository.to_ascii_lowercase(), a.job_id);
    if let Some(rec) = s.jobs.get_mut(&key) {
        rec.job.status = "completed".into();
        rec.job.conclusion = Some(conclusion.clone());
        rec.completed_at = Some(secs(now).max(rec.started_at.unwrap_or(rec.created_at)));
    }
    // The payload names the runner's group: build it before the runner goes.
    let payload = progressed(s, &a, "completed");
    s.dispatch.log[n] = a.clone();
    s.dispatch.holding.remove(&runner_id);
    s.runners.remove(i);
    with_delivery(
        ok_json(
            StatusCode::OK,
            json!({ "job_id": a.job_id, "conclusion": conclusion }),
        ),
        &payload,
    )
}

impl FakeGitHub {
    /// Queue a job the way GitHub does: `payload` is a full `workflow_job`
    /// `queued` webhook payload (`workflow_job.id`, `run_id`, `run_attempt`,
    /// `labels`, `name`, `created_at`, and `repository.full_name` are read).
    /// The job is recorded `queued` and put in the dispatch queue, then the
    /// `queued` webhook is delivered through the App's hook. Returns the
    /// delivery's HTTP status (0 when none came).
    ///
    /// # Panics
    /// If the payload lacks the job's id or the repository's `full_name` (a
    /// mistake in the test).
    pub async fn queue_job(&self, mut payload: Value) -> u16 {
        let id = payload["workflow_job"]["id"]
            .as_u64()
            .expect("queue_job: workflow_job.id");
        let repository = payload["repository"]["full_name"]
            .as_str()
            .expect("queue_job: repository.full_name")
            .to_string();
        let wj = &payload["workflow_job"];
        let labels: Vec<String> = wj["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        let created_at = wj["created_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| secs(Utc::now()));
        let rec = JobRecord {
            job: FakeJob {
                id,
                status: "queued".into(),
                conclusion: None,
                runner_name: None,
            },
            name: wj["name"].as_str().map(str::to_string),
            run_id: wj["run_id"].as_u64().unwrap_or(1),
            run_attempt: wj["run_attempt"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            labels: labels.clone(),
            created_at,
            started_at: None,
            completed_at: None,
            runner: None,
        };
        payload["action"] = "queued".into();
        let wj = &mut payload["workflow_job"];
        wj["status"] = "queued".into();
        wj["conclusion"] = Value::Null;
        wj["completed_at"] = Value::Null;
        for k in [
            "runner_id",
            "runner_name",
            "runner_group_id",
            "runner_group_name",
        ] {
            wj[k] = Value::Null;
        }
        let body = serde_json::to_vec(&payload).expect("payload serializes");
        {
            let mut s = self.st();
            s.jobs.insert((repository.to_ascii_lowercase(), id), rec);
            enqueue(&mut s, &repository, id, labels, payload);
        }
        self.deliver("workflow_job", &body).await
    }

    /// Every job a runner took: (job id, runner name), in assignment order.
    pub fn assignments(&self) -> Vec<(u64, String)> {
        self.st()
            .dispatch
            .log
            .iter()
            .map(|a| (a.job_id, a.runner_name.clone()))
            .collect()
    }

    /// Every job a runner took, with its times and conclusion, in assignment order.
    pub fn dispatch_log(&self) -> Vec<FakeAssignment> {
        self.st().dispatch.log.clone()
    }

    /// The ids of the jobs still waiting for a runner, oldest first.
    pub fn queued_jobs(&self) -> Vec<u64> {
        let s = self.st();
        s.dispatch
            .queue
            .iter()
            .filter(|q| s.jobs.get(&q.key).is_some_and(|j| j.job.status == "queued"))
            .map(|q| q.key.1)
            .collect()
    }
}

/// A shell script that plays the actions runner as far as dispatch goes, for
/// the local backend's runner command (tests and the start benchmark): it
/// asks `POST {github_url}/_fake/runners/$SPOTRUNNER_RUNNER_NAME/acquire`
/// every ~50 ms until GitHub gives it a job (whichever fits, not necessarily
/// the one it was launched for), writes the job id to
/// `$SPOTRUNNER_WORK_DIR/../job`, holds it until `hold/<job_id>` exists (when
/// `hold` is given), then completes it (retried until answered) and exits 0.
/// It exits 1 when its registration is gone (404) or GitHub has been
/// unreachable for 5 s (the test ended).
pub fn dispatch_runner_script(github_url: &str, hold: Option<&std::path::Path>) -> String {
    let hold = hold
        .map(|h| {
            format!(
                "while [ ! -e '{}'/\"$job\" ]; do sleep 0.05; done\n",
                h.display()
            )
        })
        .unwrap_or_default();
    format!(
        r#"#!/bin/sh
# The actions runner, as far as GitHub's dispatch goes (fake GitHub test hooks).
url='{github_url}/_fake/runners'
name="$SPOTRUNNER_RUNNER_NAME"
out="$SPOTRUNNER_WORK_DIR/../acquire.json"
job=""
down=0
while [ -z "$job" ]; do
    code=$(curl -s -m 10 -o "$out" -w '%{{http_code}}' -X POST "$url/$name/acquire" || true)
    if [ "$code" = 200 ]; then
        job=$(sed -n 's/.*"job_id":\([0-9][0-9]*\).*/\1/p' "$out")
    fi
    # Deregistered (a runner whose registration is deleted exits), or
    # GitHub gone for 5 s (the test ended): stop asking.
    [ "$code" = 404 ] && exit 1
    case "$code" in 000|"") down=$((down + 1)) ;; *) down=0 ;; esac
    [ "$down" -lt 100 ] || exit 1
    [ -n "$job" ] || sleep 0.05
done
echo "$job" > "$SPOTRUNNER_WORK_DIR/../job"
{hold}while :; do
    code=$(curl -s -m 10 -o /dev/null -w '%{{http_code}}' -X POST "$url/$name/complete" || true)
    case "$code" in 200|404|409|422) break ;; esac
    sleep 0.05
done
exit 0
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_case_insensitively_and_all_of_them() {
        let runner = vec!["self-hosted".to_string(), "Linux".into(), "gpu".into()];
        assert!(labels_fit(&["linux".into(), "GPU".into()], &runner));
        assert!(labels_fit(&[], &runner));
        assert!(!labels_fit(&["linux".into(), "arm64".into()], &runner));
    }

    #[test]
    fn scope_covers_its_org_or_its_repository_only() {
        let org = RunnerScope::Org { org: "Octo".into() };
        assert!(covers(&org, "octo/a"));
        assert!(!covers(&org, "octopus/a"));
        let repo = RunnerScope::Repo {
            owner: "octo".into(),
            repo: "A".into(),
        };
        assert!(covers(&repo, "Octo/a"));
        assert!(!covers(&repo, "octo/b"));
        assert!(!covers(&repo, "noslash"));
    }
}
