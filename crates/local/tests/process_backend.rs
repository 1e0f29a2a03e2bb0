//! The local process backend: launch is idempotent per client token, the runner
//! runs bootstrap.sh with its JIT config from a 0600 file, exits are detected and
//! turned into events, terminate ends the process group and removes the directory.

use spotrunner_core::config::{Architecture, CapacityType};
use spotrunner_core::ports::{
    BootstrapCommand, Commands, Compute, LaunchOutcome, LaunchRequest, RunnerParameters,
    SendOutcome, tags,
};
use spotrunner_local::{LocalState, RunnerSettings};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn request(token: &str) -> LaunchRequest {
    LaunchRequest {
        runner_name: "sr_cpu-1-0".into(),
        pool: "cpu".into(),
        launch_template: String::new(),
        instance_types: vec![],
        subnets: vec![],
        capacity_type: CapacityType::Spot,
        client_token: token.into(),
        tags: vec![(tags::DEPLOYMENT.into(), "sr".into())],
        size: None,
    }
}

fn state(dir: &std::path::Path, runner: &str) -> LocalState {
    LocalState::open(
        dir,
        RunnerSettings {
            runner_command: Some(runner.into()),
            runner_dir: None,
            runner_version: "2.329.0".into(),
            ..Default::default()
        },
    )
    .expect("open state")
}

fn write_runner(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("fake-runner.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn instance_id(o: LaunchOutcome) -> String {
    match o {
        LaunchOutcome::Launched { instance_id, .. } => instance_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn runs_bootstrap_reports_exit_and_terminates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("seen");
    let runner = write_runner(
        tmp.path(),
        &format!(
            "echo \"argv=[$*] jit=$ACTIONS_RUNNER_INPUT_JITCONFIG\" > {}; exit 3",
            out.display()
        ),
    );
    let st = state(&tmp.path().join("state"), &runner);
    let id = instance_id(st.backend.launch(&request("tok-1")).await.unwrap());
    let again = instance_id(st.backend.launch(&request("tok-1")).await.unwrap());
    assert_eq!(id, again, "same client token, same instance");
    let other = instance_id(st.backend.launch(&request("tok-2")).await.unwrap());
    assert_ne!(id, other);

    st.parameters
        .put("/sr/jit/sr_cpu-1-0", "SECRET-JIT", &[])
        .await
        .unwrap();
    let file = st.parameters.dir().join("%2Fsr%2Fjit%2Fsr_cpu-1-0");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let cmd = BootstrapCommand {
        instance_id: id.clone(),
        runner_name: "sr_cpu-1-0".into(),
        jit_parameter: "/sr/jit/sr_cpu-1-0".into(),
        max_run_time_secs: 60,
        startup_script_key: None,
        runner_arch: Architecture::X64,
        // Local runners: local.runner_user decides (crate::isolation).
        runner_user: "root".into(),
        allow_unverified_runner: false,
        send_by: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let sent = st.backend.send_bootstrap(&cmd).await.unwrap();
    assert!(matches!(sent, SendOutcome::Sent { .. }));
    // Sending again starts nothing new.
    assert_eq!(st.backend.send_bootstrap(&cmd).await.unwrap(), sent);

    let mut events = Vec::new();
    wait_until("the runner to exit", || {
        events.extend(st.backend.reap().unwrap());
        !events.is_empty()
    });
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].instance_id, id);
    assert_eq!(events[0].exit_code, Some(3));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "argv=[] jit=SECRET-JIT",
        "the JIT config comes in the environment, never on the command line"
    );
    assert!(!file.exists(), "bootstrap.sh deleted the parameter");
    assert_eq!(st.events.list().unwrap().len(), 1, "one durable event");
    assert!(st.backend.reap().unwrap().is_empty(), "reported once");

    let dir = st.backend.instances_dir().join(&id);
    assert!(dir.exists());
    st.backend
        .terminate(std::slice::from_ref(&id))
        .await
        .unwrap();
    assert!(!dir.exists());
    st.backend
        .terminate(std::slice::from_ref(&id))
        .await
        .unwrap();
    let live = st.backend.list_instances("sr").await.unwrap();
    assert_eq!(live.len(), 1, "only the other, pending instance");
    assert_eq!(live[0].instance_id, other);
}

#[tokio::test]
async fn a_restarted_backend_adopts_and_kills_the_process_group() {
    let tmp = tempfile::tempdir().unwrap();
    let child_pid = tmp.path().join("child.pid");
    // The runner starts a grandchild and waits: both must die on terminate.
    let runner = write_runner(
        tmp.path(),
        &format!("sleep 300 & echo $! > {}; wait", child_pid.display()),
    );
    let state_dir = tmp.path().join("state");
    let id = {
        let st = state(&state_dir, &runner);
        let id = instance_id(st.backend.launch(&request("tok-1")).await.unwrap());
        st.parameters.put("/p", "JIT", &[]).await.unwrap();
        let cmd = BootstrapCommand {
            instance_id: id.clone(),
            runner_name: "sr_cpu-1-0".into(),
            jit_parameter: "/p".into(),
            max_run_time_secs: 60,
            startup_script_key: None,
            runner_arch: Architecture::X64,
            // Local runners: local.runner_user decides (crate::isolation).
            runner_user: "root".into(),
            allow_unverified_runner: false,
            send_by: chrono::Utc::now() + chrono::Duration::hours(1),
        };
        st.backend.send_bootstrap(&cmd).await.unwrap();
        id
    };
    wait_until("the grandchild", || child_pid.exists());
    let grandchild: i32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A new backend on the same state: still running, nothing reaped.
    let st = state(&state_dir, &runner);
    assert!(st.backend.reap().unwrap().is_empty());
    let listed = st.backend.list_instances("sr").await.unwrap();
    assert_eq!(listed[0].state, "running");
    st.backend
        .terminate(std::slice::from_ref(&id))
        .await
        .unwrap();
    wait_until("the grandchild to die", || unsafe {
        libc::kill(grandchild, 0) != 0
    });
    assert!(st.backend.list_instances("sr").await.unwrap().is_empty());
}

/// Dead, or a zombie nobody has reaped yet.
fn gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    let dead = unsafe { libc::kill(pid, 0) != 0 };
    dead || zombie
}

#[tokio::test]
async fn a_pid_that_is_alive_but_not_ours_is_never_signalled() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let st = state(&tmp.path().join("state"), "true");
    let id = instance_id(st.backend.launch(&request("tok-1")).await.unwrap());
    // An unrelated process in its own session and process group (as a pid reused
    // after a restart would be), outside the instance directory.
    let mut unrelated = std::process::Command::new("sleep");
    unrelated.arg("300").current_dir(tmp.path());
    unsafe {
        unrelated.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut unrelated = unrelated.spawn().unwrap();
    let pid = unrelated.id() as i32;
    // The instance's record points at it: its `pid` file, as a process started
    // before a crash leaves it.
    let dir = st.backend.instances_dir().join(&id);
    std::fs::write(dir.join("pid"), format!("{pid}\n")).unwrap();

    st.backend
        .terminate(std::slice::from_ref(&id))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        unrelated.try_wait().unwrap().is_none(),
        "the unrelated process (and its group) was signalled"
    );
    assert!(!dir.exists(), "the instance itself is terminated");
    assert!(st.backend.list_instances("sr").await.unwrap().is_empty());
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
}

#[tokio::test]
async fn members_left_by_a_leader_that_exited_are_still_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let child_pid = tmp.path().join("child.pid");
    // The runner leaves a child behind and exits: the group's leader is gone.
    let runner = write_runner(
        tmp.path(),
        &format!("sleep 300 & echo $! > {}; exit 0", child_pid.display()),
    );
    let st = state(&tmp.path().join("state"), &runner);
    let id = instance_id(st.backend.launch(&request("tok-1")).await.unwrap());
    st.parameters.put("/p", "JIT", &[]).await.unwrap();
    let cmd = BootstrapCommand {
        instance_id: id.clone(),
        runner_name: "sr_cpu-1-0".into(),
        jit_parameter: "/p".into(),
        max_run_time_secs: 60,
        startup_script_key: None,
        runner_arch: Architecture::X64,
        // Local runners: local.runner_user decides (crate::isolation).
        runner_user: "root".into(),
        allow_unverified_runner: false,
        send_by: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    st.backend.send_bootstrap(&cmd).await.unwrap();
    let mut events = Vec::new();
    wait_until("the leader to exit", || {
        events.extend(st.backend.reap().unwrap());
        !events.is_empty()
    });
    let orphan: i32 = std::fs::read_to_string(&child_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!gone(orphan), "the runner's child outlived the leader");
    st.backend
        .terminate(std::slice::from_ref(&id))
        .await
        .unwrap();
    wait_until("the leftover member to die", || gone(orphan));
}

/// A Graviton pool's runner: bootstrap.sh gets `--runner-arch arm64` and
/// takes the arm64 tarball from the (local) runner cache; only that one exists.
#[tokio::test]
async fn an_arm64_runner_installs_the_arm64_tarball() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("seen");
    let src = tmp.path().join("tarsrc");
    std::fs::create_dir_all(&src).unwrap();
    let run = src.join("run.sh");
    std::fs::write(
        &run,
        format!("#!/bin/sh\necho arm64-runner > {}\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let st = LocalState::open(
        &tmp.path().join("state"),
        RunnerSettings {
            runner_command: None,
            runner_dir: None,
            runner_version: "2.329.0".into(),
            ..Default::default()
        },
    )
    .expect("open state");
    let cache = st.backend.bucket_dir().join("runner-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let tarball = cache.join("actions-runner-linux-arm64-2.329.0.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("run.sh")
        .status()
        .unwrap();
    assert!(tar.success());
    // Verified, as the runner-cache task leaves it: the sidecar's SHA-256.
    let sum = std::process::Command::new("sha256sum")
        .arg(&tarball)
        .output()
        .unwrap();
    std::fs::write(tarball.with_extension("gz.sha256"), &sum.stdout[..64]).unwrap();

    let id = instance_id(st.backend.launch(&request("tok-arm")).await.unwrap());
    st.parameters.put("/p", "JIT", &[]).await.unwrap();
    let cmd = BootstrapCommand {
        instance_id: id.clone(),
        runner_name: "sr_arm-1-0".into(),
        jit_parameter: "/p".into(),
        max_run_time_secs: 60,
        startup_script_key: None,
        runner_arch: Architecture::Arm64,
        runner_user: "root".into(),
        allow_unverified_runner: false,
        send_by: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    st.backend.send_bootstrap(&cmd).await.unwrap();
    let mut events = Vec::new();
    wait_until("the runner to exit", || {
        events.extend(st.backend.reap().unwrap());
        !events.is_empty()
    });
    assert_eq!(
        events[0].exit_code,
        Some(0),
        "bootstrap found the arm64 tarball"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "arm64-runner"
    );
}

/// `serve` died between starting the runner process and recording it (the
/// row still says `pending`): the bootstrap step that finds the runner's
/// command adopts the process, so its exit is reaped (chaos_local seed
/// 7552566079353983107 left such a runner for ever).
#[tokio::test]
async fn a_process_started_but_not_recorded_is_adopted_and_its_exit_reaped() {
    let tmp = tempfile::tempdir().unwrap();
    let st = state(&tmp.path().join("state"), "true");
    let id = instance_id(st.backend.launch(&request("tok-1")).await.unwrap());
    let listed = st.backend.list_instances("sr").await.unwrap();
    assert_eq!(listed[0].state, "pending");
    assert!(st.backend.reap().unwrap().is_empty());
    // What a runner that started and ended before the crash leaves: its
    // pid file (first thing it writes) and its exit status.
    let dir = st
        .backend
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.instance_id == id)
        .unwrap()
        .dir;
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pid"), "999999999").unwrap();
    std::fs::write(dir.join("exit"), "0").unwrap();
    let found = st.backend.find_bootstrap(&id, "sr_cpu-1-0").await.unwrap();
    assert_eq!(found, Some(format!("cmd-{id}")));
    let exits = st.backend.reap().unwrap();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(
        (exits[0].instance_id.as_str(), exits[0].exit_code),
        (id.as_str(), Some(0))
    );
}
