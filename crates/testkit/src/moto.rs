//! A `moto_server` on a free 127.0.0.1 port.
//!
//! [`Moto::start`] gives a private server, stopped when dropped. [`shared`] gives the
//! process-wide server behind a lock, reset before each test; it is started once and
//! dies with the test process (PR_SET_PDEATHSIG), so no server outlives a test run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, MutexGuard};

/// The Python that has moto (installed for python3.11 by scripts/install-test-deps.sh).
fn python() -> String {
    if let Ok(p) = std::env::var("MOTO_PYTHON") {
        return p;
    }
    let has = |p: &str| {
        Command::new(p)
            .args(["-c", "import moto"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ["python3.11", "python3"]
        .into_iter()
        .find(|p| has(p))
        .unwrap_or("python3")
        .to_string()
}

fn serial_script() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/lib/moto_serial.py"
    )
    .to_string()
}

/// A running moto server.
pub struct Moto {
    child: Option<Child>,
    url: String,
}

impl Moto {
    /// Start a private server; it is killed when the value is dropped.
    pub fn start() -> Moto {
        let port = free_port();
        // By default moto runs under scripts/lib/moto_serial.py: one request at a
        // time, so that DynamoDB transactions and SQS receives are atomic as they
        // are on AWS (moto's threaded server races). `MOTO_SERVER` overrides it.
        let (program, mut args) = match std::env::var("MOTO_SERVER") {
            Ok(p) => (p, Vec::new()),
            Err(_) => (python(), vec![serial_script()]),
        };
        args.extend([
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]);
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
        // server when the thread that spawned it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {program}: {e}. Run scripts/install-test-deps.sh (installs moto[server])")
        });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child: Some(child),
            url,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`; use as `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Wipe all state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("moto reachable");
        let req = format!(
            "POST /moto-api/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("send reset");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read reset");
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
            "moto reset: {resp}"
        );
    }

    /// Stop the server now.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

struct Shared {
    url: String,
    lock: Mutex<()>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Exclusive use of the process-wide server, reset to empty. Hold the guard for the
/// whole test: tests that use moto run one at a time within a test binary.
pub async fn shared() -> SharedMoto {
    let shared = SHARED.get_or_init(|| {
        // Spawn from a thread that lives as long as the process, so PDEATHSIG fires
        // only when the test process itself ends.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let moto = Moto::start();
            tx.send(moto.url().to_string()).expect("send url");
            loop {
                std::thread::park();
            }
        });
        Shared {
            url: rx.recv().expect("moto started"),
            lock: Mutex::new(()),
        }
    });
    let guard = shared.lock.lock().await;
    let moto = SharedMoto {
        url: shared.url.clone(),
        _guard: guard,
    };
    moto.reset();
    moto
}

/// A lock on the shared server (see [`shared`]).
pub struct SharedMoto {
    url: String,
    _guard: MutexGuard<'static, ()>,
}

impl SharedMoto {
    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn reset(&self) {
        let m = Moto {
            child: None,
            url: self.url.clone(),
        };
        m.reset();
    }
}
