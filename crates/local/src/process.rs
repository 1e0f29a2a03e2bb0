//! The local process backend: an "instance" is a working directory under
//! `<state>/instances/` plus a child process (its own session and process group)
//! running `bootstrap.sh`. Rows in the `instances` table record the client token
//! (a retried launch finds its instance again), the pid and the directory, so a
//! restarted `serve` adopts, watches and ends processes it did not start.
//! What a runner process may see and touch (its environment, its account, its
//! JIT config): [`crate::isolation`].

use crate::db::{Db, bad_doc, err};
use crate::isolation::{self, Account, IsolationError, RunAs};
use crate::queue::{names, now_ms};
use crate::shim::Scripts;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use spotrunner_core::config::CapacityType;
use spotrunner_core::ports::{
    BootstrapCommand, Commands, Compute, Instance, LaunchOutcome, LaunchRequest, PortError,
    SendOutcome, tags,
};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const SERVICE: &str = "local-compute";

/// The tag a local instance records its requested capacity type in.
pub const CAPACITY_TAG: &str = "spotrunner:capacity-type";

fn capacity_name(c: CapacityType) -> &'static str {
    match c {
        CapacityType::Spot => "spot",
        CapacityType::OnDemand => "on-demand",
    }
}

/// What the runner of an instance is, and where the shims live.
#[derive(Debug, Clone, Default)]
pub struct RunnerSettings {
    /// `SPOTRUNNER_RUNNER_CMD` for bootstrap.sh.
    pub runner_command: Option<String>,
    /// `SPOTRUNNER_RUNNER_DIR` (an installed actions runner).
    pub runner_dir: Option<String>,
    pub runner_version: String,
    /// Who the runner processes run as (`local.runner_user`).
    pub run_as: RunAs,
}

/// A runner process that ended, as sent to the `events` queue for stop-runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerExited {
    pub instance_id: String,
    pub runner_name: String,
    pub pool: String,
    pub exit_code: Option<i32>,
    pub at: DateTime<Utc>,
}

/// One row of the `instances` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalInstance {
    pub instance_id: String,
    pub runner_name: String,
    pub pool: String,
    pub dir: PathBuf,
    /// `pending` (no process yet), `running`, `stopped` (process ended), `terminated`.
    pub state: String,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub launched_at: DateTime<Utc>,
    pub tags: Vec<(String, String)>,
}

impl LocalInstance {
    /// The job this instance's runner was launched for (its tag), for log lines.
    pub fn job_id(&self) -> Option<u64> {
        self.tags
            .iter()
            .find(|(k, _)| k == tags::JOB_ID)
            .and_then(|(_, v)| v.parse().ok())
    }
}

/// [`Compute`] and [`Commands`] on local processes.
#[derive(Clone)]
pub struct LocalBackend {
    db: Db,
    instances_dir: PathBuf,
    params_dir: PathBuf,
    bucket_dir: PathBuf,
    scripts: Scripts,
    settings: Arc<RwLock<RunnerSettings>>,
    /// Held while an account is chosen and given to an instance; true once
    /// the state directory was secured (at start, or at the first launch
    /// after a reload turned accounts on): SQLite gives the files it creates
    /// later the database's own mode, so once is enough.
    accounts: Arc<Mutex<bool>>,
}

pub(crate) fn io(e: std::io::Error) -> PortError {
    PortError::unavailable(SERVICE, e)
}

fn refused(e: IsolationError) -> PortError {
    PortError::rejected(SERVICE, e)
}

impl LocalBackend {
    /// `state_dir` holds `instances/`, `params/` (see [`crate::FileParameters`]),
    /// `bucket/` (startup scripts) and `bin/` ([`crate::shim::install`]).
    pub fn new(
        db: Db,
        state_dir: &Path,
        scripts: Scripts,
        settings: RunnerSettings,
    ) -> Result<Self, PortError> {
        let instances_dir = state_dir.join("instances");
        let bucket_dir = state_dir.join("bucket");
        std::fs::create_dir_all(&instances_dir).map_err(io)?;
        std::fs::create_dir_all(&bucket_dir).map_err(io)?;
        Ok(Self {
            db,
            instances_dir,
            params_dir: state_dir.join("params"),
            bucket_dir,
            scripts,
            settings: Arc::new(RwLock::new(settings)),
            accounts: Arc::new(Mutex::new(false)),
        })
    }

    fn state_dir(&self) -> &Path {
        self.instances_dir.parent().unwrap_or(&self.instances_dir)
    }

    /// Before `serve` runs a runner: with [`RunAs::Accounts`], check that it
    /// runs as root, secure the state directory and have the first account
    /// ([`crate::isolation`]). An error names `local.runner_user`.
    pub fn prepare_runners(&self) -> Result<(), IsolationError> {
        let run_as = self.run_as();
        let RunAs::Accounts { prefix } = &run_as else {
            return Ok(());
        };
        // SAFETY: geteuid never fails.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(IsolationError::NotRoot {
                prefix: prefix.clone(),
                euid,
            });
        }
        let mut secured = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        isolation::secure_state_dir(self.state_dir())?;
        *secured = true;
        drop(secured);
        let first = isolation::account(prefix, 1)?;
        tracing::info!(
            accounts = format!("{prefix}-<n>"),
            first = first.name,
            "runners run as their own unprivileged accounts"
        );
        Ok(())
    }

    fn run_as(&self) -> RunAs {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .run_as
            .clone()
    }

    /// Lay out a runner's directory (`tmp`, `home`, `jit`) and move its JIT
    /// parameter into `jit/` (only it can read it there; the shim deletes it
    /// once read). With accounts: the directory is made afresh and given to
    /// a free account, whose leftover processes are killed first.
    fn prepare_instance(
        &self,
        inst: &LocalInstance,
        jit_parameter: &str,
        run_as: &RunAs,
    ) -> Result<Option<Account>, PortError> {
        const SUBDIRS: [&str; 3] = ["tmp", "home", "jit"];
        let account = match run_as {
            RunAs::ServeUser => {
                for sub in SUBDIRS {
                    std::fs::create_dir_all(inst.dir.join(sub)).map_err(io)?;
                }
                None
            }
            RunAs::Accounts { prefix } => {
                let mut secured = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
                if !*secured {
                    isolation::secure_state_dir(self.state_dir()).map_err(refused)?;
                    *secured = true;
                }
                // Given to an account before (a spawn cut short by a crash):
                // end what runs there and start over.
                if let Some(uid) = isolation::account_owner(&inst.dir) {
                    isolation::kill_account(uid);
                }
                match std::fs::remove_dir_all(&inst.dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                }
                std::fs::create_dir(&inst.dir).map_err(io)?;
                let account = isolation::free_account(prefix, &self.instances_dir, &inst.dir)
                    .map_err(refused)?;
                let killed = isolation::kill_account(account.uid);
                if killed > 0 {
                    tracing::warn!(
                        account = account.name,
                        killed,
                        "killed processes a former runner left behind"
                    );
                }
                isolation::hand_over(&inst.dir, &SUBDIRS, &account).map_err(io)?;
                Some(account)
            }
        };
        let name = crate::params::encode(jit_parameter);
        let to = isolation::jit_dir(&inst.dir).join(&name);
        match std::fs::rename(self.params_dir.join(&name), &to) {
            Ok(()) => {
                if let Some(a) = &account {
                    std::os::unix::fs::lchown(&to, Some(a.uid), Some(a.gid)).map_err(io)?;
                }
            }
            // Deleted meanwhile: bootstrap.sh reports it missing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        Ok(account)
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Replace the runner settings (a configuration reload).
    pub fn set_settings(&self, settings: RunnerSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// Where `s3://BUCKET/KEY` lives for the shim.
    pub fn bucket_dir(&self) -> &Path {
        &self.bucket_dir
    }

    pub fn instances_dir(&self) -> &Path {
        &self.instances_dir
    }

    /// Every instance row, terminated ones included, oldest first.
    pub fn instances(&self) -> Result<Vec<LocalInstance>, PortError> {
        self.db.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT instance_id, runner_name, pool, dir, state, pid, exit_code,
                     launched_at, tags FROM instances ORDER BY launched_at, instance_id",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([], row_to_instance)
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            rows.into_iter().map(|r| r.map_err(bad_doc)).collect()
        })
    }

    fn instance(&self, id: &str) -> Result<Option<LocalInstance>, PortError> {
        self.db.read(|c| {
            c.query_row(
                "SELECT instance_id, runner_name, pool, dir, state, pid, exit_code,
                 launched_at, tags FROM instances WHERE instance_id = ?1",
                params![id],
                row_to_instance,
            )
            .optional()
            .map_err(err)?
            .transpose()
            .map_err(bad_doc)
        })
    }

    /// Find runner processes that ended: mark their instance `stopped` and send a
    /// [`RunnerExited`] event, in one transaction. Returns the events sent.
    pub fn reap(&self) -> Result<Vec<RunnerExited>, PortError> {
        let mut out = Vec::new();
        for inst in self.instances()? {
            if inst.state != "running" {
                continue;
            }
            // An announced spot interruption whose grace has passed: EC2
            // reclaims the instance; here its process group ends.
            if let Some(pid) = inst.pid
                && crate::interrupt::reclaim_at(&inst.dir).is_some_and(|at| at <= Utc::now())
                && alive(pid, &inst.dir)
            {
                tracing::warn!(
                    job_id = inst.job_id(),
                    instance_id = inst.instance_id,
                    "spot interruption: the instance is reclaimed now"
                );
                kill_group(pid, &inst.instance_id, &inst.dir, Duration::from_secs(3));
            }
            if inst.pid.is_some_and(|pid| alive(pid, &inst.dir)) {
                continue;
            }
            let exit_code = std::fs::read_to_string(inst.dir.join("exit"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let event = RunnerExited {
                instance_id: inst.instance_id.clone(),
                runner_name: inst.runner_name.clone(),
                pool: inst.pool.clone(),
                exit_code,
                at: Utc::now(),
            };
            let body = serde_json::to_string(&event).map_err(bad_doc)?;
            let changed = self.db.tx(|tx| {
                let n = tx
                    .execute(
                        "UPDATE instances SET state = 'stopped', exit_code = ?1, ended_at = ?2
                         WHERE instance_id = ?3 AND state = 'running'",
                        params![exit_code, event.at.to_rfc3339(), inst.instance_id],
                    )
                    .map_err(err)?;
                if n > 0 {
                    let now = now_ms();
                    tx.execute(
                        "INSERT INTO messages (queue, body, sent_at, visible_at)
                         VALUES (?1, ?2, ?3, ?3)",
                        params![names::EVENTS, body, now],
                    )
                    .map_err(err)?;
                }
                Ok(n > 0)
            })?;
            if changed {
                tracing::info!(
                    job_id = inst.job_id(),
                    instance_id = inst.instance_id,
                    runner_name = inst.runner_name,
                    exit_code,
                    "runner process exited"
                );
                out.push(event);
            }
        }
        Ok(out)
    }

    fn spawn(&self, inst: &LocalInstance, cmd: &BootstrapCommand) -> Result<i32, PortError> {
        let settings = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let account = self.prepare_instance(inst, &cmd.jit_parameter, &settings.run_as)?;
        let dir = |p: &Path| p.display().to_string();
        let mut own: Vec<(String, String)> = [
            ("SPOTRUNNER_NO_SHUTDOWN", "1".to_string()),
            ("SPOTRUNNER_HOME", dir(&inst.dir)),
            ("SPOTRUNNER_WORK_DIR", dir(&inst.dir.join("work"))),
            (
                "SPOTRUNNER_LOCAL_PARAMS",
                dir(&isolation::jit_dir(&inst.dir)),
            ),
            ("SPOTRUNNER_LOCAL_BUCKET", dir(&self.bucket_dir)),
            ("SPOTRUNNER_INSTANCE_ID", inst.instance_id.clone()),
            ("TMPDIR", dir(&inst.dir.join("tmp"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        own.push(match (&settings.runner_command, &settings.runner_dir) {
            (Some(command), _) => ("SPOTRUNNER_RUNNER_CMD".into(), command.clone()),
            (None, Some(d)) => ("SPOTRUNNER_RUNNER_DIR".into(), d.clone()),
            (None, None) => (
                "SPOTRUNNER_RUNNER_DIR".into(),
                dir(&inst.dir.join("runner")),
            ),
        });
        let env = isolation::runner_env(
            &self.scripts.bin_dir,
            &inst.dir.join("home"),
            account.as_ref().map(|a| a.name.as_str()),
            |k| std::env::var(k).ok(),
            own,
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                "echo $$ > pid.tmp && mv pid.tmp pid; \
                 bash \"$0\" \"$@\" > runner.log 2>&1; \
                 echo $? > exit.tmp; mv exit.tmp exit",
            )
            .arg(&self.scripts.bootstrap)
            .args(["--runner-name", &cmd.runner_name])
            .args(["--jit-parameter", &cmd.jit_parameter])
            .args(["--bucket", "local"])
            .args(["--runner-version", &settings.runner_version])
            .args(["--runner-arch", cmd.runner_arch.as_str()])
            .args(["--max-run-time-secs", &cmd.max_run_time_secs.to_string()]);
        if let Some(key) = &cmd.startup_script_key {
            c.args(["--startup-script-key", key]);
        }
        // Nothing of serve's environment but the allow-list.
        c.current_dir(&inst.dir)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(a) = &account {
            // std drops the supplementary groups too (setgroups(0) as root).
            c.uid(a.uid).gid(a.gid);
        }
        // Own session and process group: signals to `serve` do not reach the
        // runner, and terminate() ends the whole group.
        unsafe {
            c.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = c.spawn().map_err(io)?;
        let pid = child.id() as i32;
        // Reap it when it ends (a restarted serve polls instead).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(pid)
    }
}

type RowResult = Result<LocalInstance, serde_json::Error>;

fn row_to_instance(r: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let dir: String = r.get(3)?;
    let launched_at: String = r.get(7)?;
    let tags: String = r.get(8)?;
    let inst = (|| -> RowResult {
        Ok(LocalInstance {
            instance_id: r.get(0).unwrap_or_default(),
            runner_name: r.get(1).unwrap_or_default(),
            pool: r.get(2).unwrap_or_default(),
            dir: PathBuf::from(&dir),
            state: r.get(4).unwrap_or_default(),
            pid: r.get(5).unwrap_or(None),
            exit_code: r.get(6).unwrap_or(None),
            launched_at: serde_json::from_value(serde_json::Value::String(launched_at.clone()))?,
            tags: serde_json::from_str(&tags)?,
        })
    })();
    Ok(inst)
}

/// Is `pid` a live (not zombie) process whose working directory is `dir`?
/// The directory check guards against a recycled pid after a restart.
pub fn alive(pid: i32, dir: &Path) -> bool {
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    match std::fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => cwd == dir,
        // Gone between the two reads, or not ours to look at.
        Err(_) => false,
    }
}

/// End the runner's process group: SIGTERM to every process of the group that is
/// verified to be ours, wait up to `grace`, then SIGKILL what of ours is left.
///
/// The pid comes from a row or a `pid` file that may be older than a restart, so
/// the pid — and a group of that number — may belong to someone else by now
/// (pid reuse). No group is ever signalled as a whole: each member of group `pgid`
/// is pinned with a pidfd, checked ([`ours`]) and signalled through the pidfd, so a
/// signal reaches only a process that was verified, never one that took its pid
/// after the check. The sweep repeats until nothing of ours is left, so a member
/// forked meanwhile (it inherits the marker) is ended too; a leader that is gone
/// does not stop its remaining members from being ended.
fn kill_group(pgid: i32, instance_id: &str, dir: &Path, grace: Duration) {
    if pgid <= 0 {
        return;
    }
    if signal_ours(pgid, instance_id, dir, libc::SIGTERM) > 0 {
        let deadline = std::time::Instant::now() + grace;
        while !ours_in_group(pgid, instance_id, dir).is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for _ in 0..50 {
        if signal_ours(pgid, instance_id, dir, libc::SIGKILL) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(
        pgid,
        instance_id,
        "processes of the instance survived SIGKILL"
    );
}

/// Signal every process of group `pgid` that is ours, each re-verified just before
/// its signal; returns how many were signalled.
fn signal_ours(pgid: i32, instance_id: &str, dir: &Path, sig: libc::c_int) -> usize {
    ours_in_group(pgid, instance_id, dir)
        .into_iter()
        .filter(|&pid| {
            Pinned::open(pid)
                .is_some_and(|p| p.signal_if(sig, || ours(pid, pgid, instance_id, dir)))
        })
        .count()
}

/// The live processes of group `pgid` that are ours (see [`ours`]).
fn ours_in_group(pgid: i32, instance_id: &str, dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| ours(pid, pgid, instance_id, dir))
        .collect()
}

/// Is `pid` a live (not zombie) process of group `pgid` that was started for this
/// instance: its environment carries `SPOTRUNNER_INSTANCE_ID=<instance_id>` (set
/// on the spawned shell, inherited by bootstrap.sh, the runner and its children)
/// or its working directory is the instance directory or below? A process that
/// merely took a recycled pid or group number has neither.
fn ours(pid: i32, pgid: i32, instance_id: &str, dir: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the `(comm)`: state, ppid, pgrp, ...
    let mut fields = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace())
        .into_iter()
        .flatten();
    let state = fields.next();
    let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
    if matches!(state, Some("Z" | "X") | None) || group != Some(pgid) {
        return false;
    }
    let marker = format!("SPOTRUNNER_INSTANCE_ID={instance_id}");
    let marked = std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker.as_bytes()));
    marked || std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
}

/// A process held by a pidfd: a signal sent through it reaches that process or
/// nothing (never a later process with the same pid).
pub(crate) struct Pinned {
    pid: i32,
    #[cfg(target_os = "linux")]
    fd: Option<std::os::fd::OwnedFd>,
}

impl Pinned {
    pub(crate) fn open(pid: i32) -> Option<Self> {
        if pid <= 0 {
            return None;
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                // SAFETY: the fd was just returned to us and is owned by nobody else.
                let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
                return Some(Self { pid, fd: Some(fd) });
            }
            // ESRCH: gone. ENOSYS (a kernel before 5.3): verify-then-kill below.
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
                return None;
            }
            Some(Self { pid, fd: None })
        }
        #[cfg(not(target_os = "linux"))]
        Some(Self { pid })
    }

    /// Send `sig` if `verified()` holds now (checked after the pin, so it speaks of
    /// the pinned process if that still lives); `true` when a signal was sent.
    pub(crate) fn signal_if(&self, sig: libc::c_int, verified: impl FnOnce() -> bool) -> bool {
        if !verified() {
            return false;
        }
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            use std::os::fd::AsRawFd;
            // SAFETY: pidfd_send_signal(fd, sig, NULL info, 0 flags).
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    sig,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            return rc == 0;
        }
        // No pidfds: the check and the signal are as close together as they get.
        // SAFETY: kill(2) on one (positive) pid.
        unsafe { libc::kill(self.pid, sig) == 0 }
    }
}

fn read_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[async_trait]
impl Compute for LocalBackend {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, PortError> {
        let now = Utc::now();
        let candidate = format!(
            "i-local{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let dir = self.instances_dir.join(&candidate);
        // What EC2 calls the instance lifecycle, as a tag: a process is a
        // process, but the status and the tests see what was asked for.
        let mut tags = req.tags.clone();
        tags.push((CAPACITY_TAG.into(), capacity_name(req.capacity_type).into()));
        let tags = serde_json::to_string(&tags).map_err(bad_doc)?;
        let instance_id = self.db.tx(|tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT instance_id FROM instances WHERE client_token = ?1",
                    params![req.client_token],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            if let Some(id) = existing {
                return Ok(id);
            }
            tx.execute(
                "INSERT INTO instances (instance_id, client_token, runner_name, pool, dir, state,
                 tags, launched_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
                params![
                    candidate,
                    req.client_token,
                    req.runner_name,
                    req.pool,
                    dir.to_string_lossy(),
                    tags,
                    now.to_rfc3339()
                ],
            )
            .map_err(err)?;
            Ok(candidate.clone())
        })?;
        if let Some(inst) = self.instance(&instance_id)?
            && inst.state != "terminated"
        {
            std::fs::create_dir_all(&inst.dir).map_err(io)?;
        }
        Ok(LaunchOutcome::Launched {
            instance_id,
            capacity_type: req.capacity_type,
        })
    }

    async fn terminate(&self, instance_ids: &[String]) -> Result<(), PortError> {
        for id in instance_ids {
            let Some(inst) = self.instance(id)? else {
                continue;
            };
            if let Some(pid) = inst.pid.or_else(|| read_pid(&inst.dir)) {
                kill_group(pid, &inst.instance_id, &inst.dir, Duration::from_secs(3));
            }
            // A runner account: whatever the job left (a daemon in its own
            // session, without the marker) ends with the instance.
            if let Some(uid) = isolation::account_owner(&inst.dir) {
                let killed = isolation::kill_account(uid);
                if killed > 0 {
                    tracing::info!(
                        instance_id = id,
                        uid,
                        killed,
                        "killed processes the job left behind"
                    );
                }
            }
            match std::fs::remove_dir_all(&inst.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            self.db.tx(|tx| {
                tx.execute(
                    "UPDATE instances SET state = 'terminated',
                     ended_at = COALESCE(ended_at, ?1) WHERE instance_id = ?2",
                    params![Utc::now().to_rfc3339(), id],
                )
                .map_err(err)?;
                Ok(())
            })?;
            tracing::info!(
                job_id = inst.job_id(),
                instance_id = id,
                runner_name = inst.runner_name,
                "instance terminated"
            );
        }
        Ok(())
    }

    async fn list_instances(&self, deployment: &str) -> Result<Vec<Instance>, PortError> {
        Ok(self
            .instances()?
            .into_iter()
            .filter(|i| i.state != "terminated")
            .filter(|i| {
                i.tags
                    .iter()
                    .any(|(k, v)| k == tags::DEPLOYMENT && v == deployment)
            })
            .map(|i| Instance {
                instance_id: i.instance_id,
                state: i.state,
                launched_at: Some(i.launched_at),
                tags: i.tags,
            })
            .collect())
    }

    async fn tag_instance(
        &self,
        instance_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), PortError> {
        let Some(mut inst) = self.instance(instance_id)? else {
            return Err(PortError::NotFound {
                service: SERVICE,
                what: format!("instance {instance_id}"),
            });
        };
        inst.tags.retain(|(k, _)| k != key);
        inst.tags.push((key.to_string(), value.to_string()));
        let doc = serde_json::to_string(&inst.tags).map_err(bad_doc)?;
        self.db.tx(|tx| {
            tx.execute(
                "UPDATE instances SET tags = ?1 WHERE instance_id = ?2",
                params![doc, instance_id],
            )
            .map_err(err)?;
            Ok(())
        })
    }
}

#[async_trait]
impl Commands for LocalBackend {
    async fn send_bootstrap(&self, cmd: &BootstrapCommand) -> Result<SendOutcome, PortError> {
        let Some(inst) = self.instance(&cmd.instance_id)? else {
            return Ok(SendOutcome::NotReady);
        };
        match inst.state.as_str() {
            "terminated" => {
                return Err(PortError::rejected(
                    SERVICE,
                    format!("instance {} is terminated", inst.instance_id),
                ));
            }
            "running" | "stopped" => {
                return Ok(SendOutcome::Sent {
                    command_id: format!("cmd-{}", inst.instance_id),
                });
            }
            _ => {}
        }
        std::fs::create_dir_all(&inst.dir).map_err(io)?;
        // A process started before a crash wrote its pid first thing: adopt it.
        let pid = match read_pid(&inst.dir) {
            Some(pid) => pid,
            None if inst.dir.join("exit").exists() => 0,
            None => self.spawn(&inst, cmd)?,
        };
        self.db.tx(|tx| {
            tx.execute(
                "UPDATE instances SET state = 'running', pid = ?1, command_id = ?2
                 WHERE instance_id = ?3 AND state = 'pending'",
                params![pid, format!("cmd-{}", inst.instance_id), inst.instance_id],
            )
            .map_err(err)?;
            Ok(())
        })?;
        tracing::info!(
            job_id = inst.job_id(),
            instance_id = inst.instance_id,
            runner_name = cmd.runner_name,
            pid,
            "runner process started"
        );
        Ok(SendOutcome::Sent {
            command_id: format!("cmd-{}", inst.instance_id),
        })
    }

    async fn find_bootstrap(
        &self,
        instance_id: &str,
        runner_name: &str,
    ) -> Result<Option<String>, PortError> {
        let Some(inst) = self.instance(instance_id)? else {
            return Ok(None);
        };
        if inst.runner_name != runner_name {
            return Ok(None);
        }
        if matches!(inst.state.as_str(), "running" | "stopped") {
            return Ok(Some(format!("cmd-{}", inst.instance_id)));
        }
        // Started, but `serve` died before it recorded the process (between
        // the spawn and the row's update): record it now, or the reaper
        // would never watch it and its exit would end nothing.
        let pid = match read_pid(&inst.dir) {
            Some(pid) => pid,
            None if inst.dir.join("exit").exists() => 0,
            None => return Ok(None),
        };
        let command_id = format!("cmd-{}", inst.instance_id);
        self.db.tx(|tx| {
            tx.execute(
                "UPDATE instances SET state = 'running', pid = ?1, command_id = ?2
                 WHERE instance_id = ?3 AND state = 'pending'",
                params![pid, command_id, inst.instance_id],
            )
            .map_err(err)?;
            Ok(())
        })?;
        tracing::info!(
            job_id = inst.job_id(),
            instance_id = inst.instance_id,
            pid,
            "runner process adopted (started before a crash, not recorded)"
        );
        Ok(Some(command_id))
    }
}
