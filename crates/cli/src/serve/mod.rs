//! `spotrunner serve`: the webhook over HTTP, the create-runner worker loops,
//! the local event path for runner exits and the built-in schedules, in one
//! process. SIGTERM/SIGINT: the loops stop taking jobs and finish the batch in
//! flight while `/webhook` goes on taking and queueing deliveries (GitHub does
//! not redeliver a failed one); then the HTTP front stops accepting and
//! finishes its requests in flight; all state is kept, exit 0. SIGHUP or a
//! change of the file: reload, or keep the old configuration and log the
//! field-named errors.

mod front;
mod http;
mod reload;
mod workers;

use crate::adapters::Adapters;
use crate::handlers::{self, Handlers};
use crate::{Target, config_file};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// What every task of `serve` shares.
pub struct Shared {
    handlers: RwLock<Handlers>,
    pub adapters: Adapters,
    pub target: Target,
    stop: watch::Sender<bool>,
}

impl Shared {
    /// The handlers of the configuration in force.
    pub fn handlers(&self) -> Handlers {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn swap(&self, h: Handlers) {
        *self.handlers.write().unwrap_or_else(|e| e.into_inner()) = h;
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Sleep for `d`, or less when a stop is asked for.
    pub async fn pause(&self, d: Duration) {
        let mut rx = self.stop_signal();
        if *rx.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = rx.changed() => {}
        }
    }
}

/// How long in-flight work may take after SIGTERM.
const GRACE: Duration = Duration::from_secs(60);
/// How long the HTTP front's requests in flight may take once it stops
/// accepting (a request is bounded by the header and body timeouts).
const HTTP_DRAIN: Duration = Duration::from_secs(35);

pub async fn run(target: Target, listen: Option<String>) -> Result<ExitCode, String> {
    let config = config_file::load(&target.config).inspect_err(|e| {
        tracing::error!(error = %e, "configuration refused at start");
    })?;
    let listen = listen.unwrap_or_else(|| config_file::local(&config).listen);
    let adapters = Adapters::open(&target, &config, true).await?;
    // Runner accounts and a state directory they cannot write, before any
    // runner starts (spotrunner_local::isolation).
    if let Some(st) = &adapters.local {
        st.backend.prepare_runners().map_err(|e| {
            tracing::error!(error = %e, "runners cannot be isolated as configured");
            format!("configuration error: {e}")
        })?;
    }
    let handlers = handlers::build(config, &adapters).await?;
    let max_connections = front::max_connections()?;
    let (stop, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        handlers: RwLock::new(handlers),
        adapters,
        target,
        stop,
    });

    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Where tools (and the demo) find this serve: `<state-dir>/serve.addr`.
    if std::fs::create_dir_all(&shared.target.state_dir).is_ok() {
        let _ = std::fs::write(shared.target.state_dir.join("serve.addr"), addr.to_string());
    }
    tracing::info!(%addr, backend = ?shared.target.backend, "spotrunner serve listening");

    let mut tasks = workers::spawn_all(&shared);
    tasks.push(tokio::spawn(reload::watch(shared.clone())));
    let front = front::Front::start(listener, http::router(shared.clone()), max_connections);

    wait_for_stop().await;
    tracing::info!(
        "stopping: no new jobs; finishing work in flight; webhooks are still taken and queued"
    );
    shared.stop.send_replace(true);
    let drained = tokio::time::timeout(GRACE, async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace time over; exiting with work in flight (state is kept)");
    }
    // Only now: until here every delivery was taken (GitHub does not redeliver).
    tracing::info!("closing the HTTP listener; finishing requests in flight");
    if !front.shutdown(HTTP_DRAIN).await {
        tracing::warn!("HTTP requests still in flight at exit");
    }
    tracing::info!("stopped; state kept");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
