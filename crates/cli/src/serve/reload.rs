//! Reload the configuration on SIGHUP or when the file changes; a bad document
//! is refused with its field-named errors and the old configuration stays.

use super::Shared;
use crate::{config_file, handlers};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub async fn watch(shared: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; reload on file change only");
        return;
    };
    let path = shared.target.config.clone();
    let mut last = stamp(&path);
    let mut stop = shared.stop_signal();
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                let now = stamp(&path);
                if now == last { continue; }
                last = now;
                "file changed"
            }
            _ = stop.wait_for(|s| *s) => return,
        };
        reload(&shared, why).await;
    }
}

async fn reload(shared: &Shared, why: &str) {
    let config = match config_file::load(&shared.target.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(reason = why, error = %e, "configuration reload refused; keeping the old one");
            return;
        }
    };
    match handlers::build(config, &shared.adapters).await {
        Ok(h) => {
            let pools = h.config.pools.len();
            shared.swap(h);
            tracing::info!(reason = why, pools, "configuration reloaded");
        }
        Err(e) => {
            tracing::error!(reason = why, error = %e, "configuration reload refused; keeping the old one");
        }
    }
}
