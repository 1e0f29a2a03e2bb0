//! The HTTP front of `serve`: its own accept loop over hyper's HTTP/1 server,
//! so that the limits hold whatever a client does.
//!
//! - At most `max_connections` connections at once (default 256,
//!   `SPOTRUNNER_MAX_CONNECTIONS`): a permit is taken *before* `accept`, so a
//!   connection over the cap waits in the kernel's backlog until one closes.
//! - A request head must arrive within [`HEADER_TIMEOUT`] (also an idle
//!   keep-alive connection's limit); a client that dribbles it is disconnected.
//!   The body's limit is the handler's (`http.rs`).
//! - When `accept` itself fails (EMFILE: out of file descriptors) the error is
//!   logged once, and the loop backs off until an accept works again (logged
//!   too) instead of spinning or logging every attempt.
//! - [`Front::shutdown`] stops accepting (the listener is closed), lets every
//!   connection finish the request in flight and closes the idle ones.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;

/// How long a client may take to send a request head (and how long a
/// keep-alive connection may stay idle).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once unless `SPOTRUNNER_MAX_CONNECTIONS` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
pub const MAX_CONNECTIONS_ENV: &str = "SPOTRUNNER_MAX_CONNECTIONS";
const MAX_CONNECTIONS_LIMIT: usize = 65_536;
/// The pause after a failed `accept`: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_LAST: Duration = Duration::from_secs(1);

/// The connection cap from the environment, or the default.
pub fn max_connections() -> Result<usize, String> {
    match std::env::var(MAX_CONNECTIONS_ENV) {
        Err(_) => Ok(DEFAULT_MAX_CONNECTIONS),
        Ok(v) if v.trim().is_empty() => Ok(DEFAULT_MAX_CONNECTIONS),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_CONNECTIONS_LIMIT).contains(n))
            .ok_or_else(|| {
                format!(
                    "{MAX_CONNECTIONS_ENV}: expected a whole number from 1 to \
                     {MAX_CONNECTIONS_LIMIT}, got {v:?}"
                )
            }),
    }
}

/// The running front: the accept loop and its connections.
pub struct Front {
    close: watch::Sender<bool>,
    accept: JoinHandle<()>,
    permits: Arc<Semaphore>,
    cap: u32,
}

impl Front {
    pub fn start(listener: TcpListener, app: Router, max_connections: usize) -> Front {
        let cap = max_connections.clamp(1, MAX_CONNECTIONS_LIMIT);
        let permits = Arc::new(Semaphore::new(cap));
        let (close, closed) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, app, permits.clone(), closed));
        Front {
            close,
            accept,
            permits,
            cap: cap as u32,
        }
    }

    /// Stop accepting (the listening socket is closed), let each connection
    /// finish its request in flight, close the idle ones; wait up to `wait`.
    /// `false` when connections were still open then.
    pub async fn shutdown(self, wait: Duration) -> bool {
        self.close.send_replace(true);
        let _ = self.accept.await;
        // Each connection holds a permit until it has ended.
        tokio::time::timeout(wait, self.permits.acquire_many(self.cap))
            .await
            .is_ok()
    }
}

/// Errors of one peer (it went away before we accepted it), not of ours.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

fn backoff(failures: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16) as u32;
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_LAST)
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    permits: Arc<Semaphore>,
    mut closed: watch::Receiver<bool>,
) {
    // Failed accepts in the current streak.
    let mut failures: u64 = 0;
    loop {
        // Over the cap, wait here: the next connection stays in the backlog.
        let permit = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                if failures > 0 {
                    tracing::info!(failed_accepts = failures, "accepting connections again");
                    failures = 0;
                }
                tokio::spawn(connection(stream, app.clone(), permit, closed.clone()));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                drop(permit);
                failures += 1;
                if failures == 1 {
                    tracing::error!(
                        error = %e,
                        "cannot accept connections (out of file descriptors?); \
                         backing off until it works again (logged once)"
                    );
                }
                tokio::select! {
                    biased;
                    _ = closed.wait_for(|c| *c) => return,
                    _ = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}

/// One connection: HTTP/1.1 with a header read timeout; the permit is given
/// back when it ends.
async fn connection(
    stream: TcpStream,
    app: Router,
    _permit: OwnedSemaphorePermit,
    mut closed: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closed.wait_for(|c| *c), if !draining => {
                // Finish the request in flight, then close; an idle one closes now.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_second() {
        assert_eq!(backoff(1), Duration::from_millis(50));
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(5), Duration::from_millis(800));
        assert_eq!(backoff(6), BACKOFF_LAST);
        assert_eq!(backoff(u64::MAX), BACKOFF_LAST);
    }
}
