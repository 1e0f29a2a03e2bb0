//! What a local runner may see and touch.
//!
//! Every runner starts with a cleared environment plus an allow-list
//! ([`runner_env`]): `PATH` (the shims first), `HOME` (its own directory),
//! the locale, the proxy settings, and the runner's own `SPOTRUNNER_*`
//! variables — none of `serve`'s secrets (`env:` references), credentials or
//! other variables.
//!
//! When `serve` runs as root ([`RunAs::Accounts`], the default there), each
//! runner runs as its own unprivileged account, `<local.runner_user>-<n>`
//! (`spotrunner-runner-1`, `-2`, …: created with `useradd --system` when
//! missing, never uid 0), the lowest one no live instance holds. Its instance
//! directory (mode 0700) is the only place it can write; the state
//! directory (0711), `instances/` (0711), `params/` (0700), `bin/` and
//! `bucket/` (0755) and the ledger (0600) belong to root, so a job cannot
//! list other runners, read pending JIT configs, or change `bootstrap.sh`,
//! the shim or the ledger, and concurrent runners cannot read each other's
//! processes or files. Before an account is given to a runner, and when its
//! instance is terminated, every process of that account is killed: nothing
//! a job left behind outlives it or meets the next job.
//!
//! Otherwise ([`RunAs::ServeUser`]: `serve` is not root, or
//! `local.runner_user = "root"`) runners run as `serve`'s own user: they get
//! the cleared environment and their own JIT config only, but could change
//! anything `serve`'s user can (the state directory included).

use std::ffi::{CStr, CString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The account prefix when `local.runner_user` is not set.
pub const DEFAULT_RUNNER_USER: &str = "spotrunner-runner";
/// How many accounts (concurrent runners) one prefix may have.
pub const MAX_ACCOUNTS: u32 = 1000;

/// Who runner processes run as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunAs {
    /// `serve`'s own user.
    #[default]
    ServeUser,
    /// One account per concurrent runner: `<prefix>-<n>`.
    Accounts { prefix: String },
}

impl RunAs {
    /// From `local.runner_user` for a `serve` whose effective uid is `euid`:
    /// root gets per-runner accounts unless the setting says `"root"`; any
    /// other user runs runners as itself (a name set anyway is refused by
    /// [`RunAs::check`]).
    pub fn from_config(runner_user: Option<&str>, euid: u32) -> Self {
        match runner_user {
            Some("root") => Self::ServeUser,
            Some(prefix) => Self::Accounts {
                prefix: prefix.to_string(),
            },
            None if euid == 0 => Self::Accounts {
                prefix: DEFAULT_RUNNER_USER.to_string(),
            },
            None => Self::ServeUser,
        }
    }
}

/// Why runners cannot be isolated as configured (names the field).
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error(
        "local.runner_user: {prefix:?} needs serve to run as root (it runs as uid {euid}); \
         run serve as root, or remove local.runner_user (runners then run as serve's user)"
    )]
    NotRoot { prefix: String, euid: u32 },
    #[error("local.runner_user: account {name} has uid 0; runner accounts must be unprivileged")]
    Privileged { name: String },
    #[error(
        "local.runner_user: cannot create account {name}: {error}; create it \
         (useradd --system {name}) or set local.runner_user to another prefix"
    )]
    Create { name: String, error: String },
    #[error("local.runner_user: all {MAX_ACCOUNTS} accounts of {prefix:?} are in use")]
    Exhausted { prefix: String },
    #[error(
        "the state directory {state} is out of the runner accounts' reach: {dir} has mode \
         {mode:o} (every directory above it needs o+x); choose another --state-dir"
    )]
    Unreachable {
        state: String,
        dir: String,
        mode: u32,
    },
    #[error("cannot secure the state directory: {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// One runner account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> IsolationError + '_ {
    move |error| IsolationError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// The passwd entry of `name`, if there is one.
pub fn lookup(name: &str) -> Option<Account> {
    let c = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives `pwd`'s use.
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points into `buf`, NUL-terminated.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some(Account {
        name,
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// Account `<prefix>-<n>`, created (system account, own group, no home, no
/// login shell) when missing; never one with uid 0.
pub fn account(prefix: &str, n: u32) -> Result<Account, IsolationError> {
    let name = format!("{prefix}-{n}");
    let found = match lookup(&name) {
        Some(a) => a,
        None => {
            let out = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home"])
                .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
                .arg(&name)
                .output()
                .map_err(|e| IsolationError::Create {
                    name: name.clone(),
                    error: format!("useradd: {e}"),
                })?;
            // A concurrent creator (exit 9: the name is taken) is fine.
            if !out.status.success() && lookup(&name).is_none() {
                return Err(IsolationError::Create {
                    name,
                    error: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            tracing::info!(account = name, "runner account created");
            lookup(&name).ok_or_else(|| IsolationError::Create {
                name: name.clone(),
                error: "useradd succeeded but the account is not found".into(),
            })?
        }
    };
    if found.uid == 0 {
        return Err(IsolationError::Privileged { name });
    }
    Ok(found)
}

/// The lowest account of `prefix` that owns no instance directory under
/// `instances` (other than `own`). The caller holds the allocation lock.
pub(crate) fn free_account(
    prefix: &str,
    instances: &Path,
    own: &Path,
) -> Result<Account, IsolationError> {
    let held: std::collections::BTreeSet<u32> = std::fs::read_dir(instances)
        .map_err(io_at(instances))?
        .flatten()
        .filter(|e| e.path() != own)
        .filter_map(|e| std::fs::symlink_metadata(e.path()).ok())
        .filter(|m| m.is_dir())
        .map(|m| m.uid())
        .collect();
    for n in 1..=MAX_ACCOUNTS {
        let a = account(prefix, n)?;
        if !held.contains(&a.uid) {
            return Ok(a);
        }
    }
    Err(IsolationError::Exhausted {
        prefix: prefix.to_string(),
    })
}

/// Make the state directory root's and reachable, before any runner runs as
/// an account: see the module docs for the modes. Fails when a directory
/// above it keeps the accounts out.
pub fn secure_state_dir(state: &Path) -> Result<(), IsolationError> {
    let modes: [(&str, u32); 5] = [
        ("", 0o711),
        ("instances", 0o711),
        ("params", 0o700),
        ("bin", 0o755),
        ("bucket", 0o755),
    ];
    for (sub, mode) in modes {
        let p = if sub.is_empty() {
            state.to_path_buf()
        } else {
            state.join(sub)
        };
        std::fs::create_dir_all(&p).map_err(io_at(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io_at(&p))?;
    }
    for db in ["spotrunner.db", "spotrunner.db-wal", "spotrunner.db-shm"] {
        let p = state.join(db);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&p)(e)),
        }
    }
    let mut dir = state.parent();
    while let Some(d) = dir {
        let mode = std::fs::metadata(d).map_err(io_at(d))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(IsolationError::Unreachable {
                state: state.display().to_string(),
                dir: d.display().to_string(),
                mode: mode & 0o7777,
            });
        }
        dir = d.parent();
    }
    Ok(())
}

/// Give a fresh instance directory to `account`: `dir` and `subdirs` are
/// created (not through links) and owned by it, `dir` with mode 0700.
pub(crate) fn hand_over(dir: &Path, subdirs: &[&str], account: &Account) -> std::io::Result<()> {
    for sub in subdirs {
        std::fs::create_dir(dir.join(sub))?;
    }
    for p in std::iter::once(dir.to_path_buf()).chain(subdirs.iter().map(|s| dir.join(s))) {
        std::os::unix::fs::lchown(&p, Some(account.uid), Some(account.gid))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Variables of `serve` a runner may inherit (never secrets).
const PASSED: &[&str] = &[
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_NUMERIC",
    "LC_TIME",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// The whole environment of a runner's process (it starts from nothing):
/// `PATH` with `bin_dir` first, `HOME`, `USER`/`LOGNAME` when known, the
/// allow-listed variables of `serve` (from `get`), and `own` (its
/// `SPOTRUNNER_*` variables).
pub(crate) fn runner_env(
    bin_dir: &Path,
    home: &Path,
    user: Option<&str>,
    get: impl Fn(&str) -> Option<String>,
    own: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        get("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
    );
    let mut env = vec![
        ("PATH".to_string(), path),
        ("HOME".to_string(), home.display().to_string()),
    ];
    let user = user.map(str::to_string).or_else(|| get("USER"));
    if let Some(u) = user {
        env.push(("USER".into(), u.clone()));
        env.push(("LOGNAME".into(), u));
    }
    env.extend(
        PASSED
            .iter()
            .filter_map(|k| get(k).map(|v| (k.to_string(), v))),
    );
    env.extend(own);
    env
}

/// Every process whose real or effective uid is `uid`.
fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| owned_by(*pid, uid))
        .collect()
}

fn owned_by(pid: i32, uid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|ids| {
            ids.split_whitespace()
                .take(2)
                .any(|id| id.parse() == Ok(uid))
        })
        .unwrap_or(false)
}

/// SIGKILL every process of account `uid` (never root's), each pinned and
/// checked again before its signal, until none is left. Returns how many
/// were killed.
pub(crate) fn kill_account(uid: u32) -> usize {
    if uid == 0 {
        return 0;
    }
    let mut killed = 0;
    for _ in 0..50 {
        let pids = processes_of(uid);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if crate::process::Pinned::open(pid)
                .is_some_and(|p| p.signal_if(libc::SIGKILL, || owned_by(pid, uid)))
            {
                killed += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

/// The owner of an instance directory when it is a runner account's (not
/// root's, not `serve`'s own).
pub(crate) fn account_owner(dir: &Path) -> Option<u32> {
    let uid = std::fs::symlink_metadata(dir).ok()?.uid();
    // SAFETY: geteuid never fails.
    let me = unsafe { libc::geteuid() };
    (uid != 0 && uid != me).then_some(uid)
}

/// Where a runner's own copy of its JIT parameter lives (the shim's
/// `$SPOTRUNNER_LOCAL_PARAMS`).
pub(crate) fn jit_dir(instance_dir: &Path) -> PathBuf {
    instance_dir.join("jit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_isolates_by_default_and_root_opts_out() {
        assert_eq!(
            RunAs::from_config(None, 0),
            RunAs::Accounts {
                prefix: DEFAULT_RUNNER_USER.into()
            }
        );
        assert_eq!(RunAs::from_config(Some("root"), 0), RunAs::ServeUser);
        assert_eq!(RunAs::from_config(None, 1000), RunAs::ServeUser);
        assert_eq!(
            RunAs::from_config(Some("ci"), 1000),
            RunAs::Accounts {
                prefix: "ci".into()
            }
        );
    }

    #[test]
    fn the_environment_is_the_allow_list_only() {
        let serve = |k: &str| match k {
            "PATH" => Some("/usr/bin".to_string()),
            "LANG" => Some("C.UTF-8".to_string()),
            "GITHUB_TOKEN" | "AWS_SECRET_ACCESS_KEY" => Some("secret".to_string()),
            _ => None,
        };
        let env = runner_env(
            Path::new("/s/bin"),
            Path::new("/s/instances/i/home"),
            Some("spotrunner-runner-1"),
            serve,
            vec![("SPOTRUNNER_INSTANCE_ID".into(), "i".into())],
        );
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "HOME",
                "USER",
                "LOGNAME",
                "LANG",
                "SPOTRUNNER_INSTANCE_ID"
            ]
        );
        assert_eq!(env[0].1, "/s/bin:/usr/bin");
        assert!(env.iter().all(|(_, v)| v != "secret"));
    }

    #[test]
    fn an_unreachable_state_directory_is_refused_naming_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let closed = tmp.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = secure_state_dir(&closed.join("state")).unwrap_err();
        assert!(
            matches!(&err, IsolationError::Unreachable { dir, mode: 0o700, .. } if dir == &closed.display().to_string()),
            "{err}"
        );
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state = closed.join("state");
        secure_state_dir(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o711);
        assert_eq!(mode(&state.join("params")), 0o700);
    }
}
