//! A value built from the configuration that is built again once it is older
//! than a TTL, so a warm Lambda picks up a changed configuration document (and
//! the secrets and clients built from it) without waiting to be recycled.
//!
//! The rebuild runs on the invocation that finds the value stale (a Lambda
//! freezes between invocations, so a background task would not run). A failed
//! rebuild keeps the value in use and is logged naming what failed; it is tried
//! again a TTL later. Rebuilds never overlap: a caller that finds one running
//! uses the current value.

use crate::runtime::{EnvSource, StartupError};
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Seconds after which the configuration is read again; `0` = never.
pub const CONFIG_TTL_ENV: &str = "SPOTRUNNER_CONFIG_TTL_SECS";
/// The TTL when [`CONFIG_TTL_ENV`] is unset.
pub const DEFAULT_CONFIG_TTL: Duration = Duration::from_secs(300);

/// The TTL `env` asks for: unset or empty → [`DEFAULT_CONFIG_TTL`], `0` →
/// `None` (never rebuild), a whole number of seconds otherwise.
pub fn ttl_from_env(env: &dyn EnvSource) -> Result<Option<Duration>, StartupError> {
    let Some(value) = env.get(CONFIG_TTL_ENV).filter(|v| !v.trim().is_empty()) else {
        return Ok(Some(DEFAULT_CONFIG_TTL));
    };
    match value.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(secs) => Ok(Some(Duration::from_secs(secs))),
        Err(_) => Err(StartupError::BadEnv {
            name: CONFIG_TTL_ENV,
            problem: format!("{value:?} is not a whole number of seconds (0 = never reload)"),
        }),
    }
}

/// A value of `T` built by `build`, rebuilt on [`get`](Self::get) once older
/// than the TTL.
pub struct Reloading<T, F> {
    what: &'static str,
    ttl: Option<Duration>,
    build: F,
    /// The value and when it was last built or a rebuild last tried.
    current: RwLock<(Arc<T>, Instant)>,
    rebuilding: tokio::sync::Mutex<()>,
}

impl<T, F, Fut, E> Reloading<T, F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send,
    E: Display,
    T: Send + Sync,
{
    /// Build the first value; its error is the caller's (a cold start fails).
    /// `what` names the value in logs (e.g. the function's name); `ttl` `None`
    /// never rebuilds.
    pub async fn new(what: &'static str, ttl: Option<Duration>, build: F) -> Result<Self, E> {
        let first = build().await?;
        Ok(Self {
            what,
            ttl,
            build,
            current: RwLock::new((Arc::new(first), Instant::now())),
            rebuilding: tokio::sync::Mutex::new(()),
        })
    }

    /// The value, rebuilt first if it is older than the TTL and no rebuild is
    /// running; if the rebuild fails, the value in use.
    pub async fn get(&self) -> Arc<T> {
        let (value, at) = self.snapshot();
        if !self.stale(at) {
            return value;
        }
        let Ok(_guard) = self.rebuilding.try_lock() else {
            return value;
        };
        // Another caller may have rebuilt between the snapshot and the lock.
        let (value, at) = self.snapshot();
        if !self.stale(at) {
            return value;
        }
        match (self.build)().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    (fresh.clone(), Instant::now());
                tracing::info!(what = self.what, "configuration reloaded");
                fresh
            }
            Err(e) => {
                tracing::error!(
                    what = self.what,
                    error = %e,
                    "configuration reload failed; keeping the one in use"
                );
                // Try again a TTL from now, not on every invocation.
                self.current.write().unwrap_or_else(|e| e.into_inner()).1 = Instant::now();
                value
            }
        }
    }

    /// The value in use, without a rebuild.
    pub fn current(&self) -> Arc<T> {
        self.snapshot().0
    }

    fn snapshot(&self) -> (Arc<T>, Instant) {
        let g = self.current.read().unwrap_or_else(|e| e.into_inner());
        (g.0.clone(), g.1)
    }

    fn stale(&self, at: Instant) -> bool {
        self.ttl.is_some_and(|ttl| at.elapsed() >= ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A builder that counts its calls and fails the calls listed in `fail`.
    struct Counter {
        calls: AtomicU32,
        fail: Vec<u32>,
    }

    impl Counter {
        fn new(fail: &[u32]) -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicU32::new(0),
                fail: fail.to_vec(),
            })
        }
        async fn build(&self) -> Result<u32, String> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            // A build takes a while: concurrent callers run into the lock.
            tokio::task::yield_now().await;
            if self.fail.contains(&n) {
                Err(format!("SSM parameter /sr/config: build {n} failed"))
            } else {
                Ok(n)
            }
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    type BoxFut = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;
    type Build = Box<dyn Fn() -> BoxFut + Send + Sync>;

    async fn reloading(ttl: Option<Duration>, counter: &Arc<Counter>) -> Reloading<u32, Build> {
        let c = counter.clone();
        let build: Build = Box::new(move || {
            let c = c.clone();
            Box::pin(async move { c.build().await })
        });
        Reloading::new("test", ttl, build)
            .await
            .expect("first build")
    }

    #[tokio::test]
    async fn a_stale_value_is_rebuilt_and_a_failed_rebuild_keeps_the_old_one() {
        let counter = Counter::new(&[3]);
        // TTL zero: every get finds the value stale.
        let r = reloading(Some(Duration::ZERO), &counter).await;
        assert_eq!(r.current().as_ref(), &1);
        assert_eq!(*r.get().await, 2, "rebuilt");
        assert_eq!(*r.get().await, 2, "build 3 failed: the old value is kept");
        assert_eq!(*r.current(), 2);
        assert_eq!(*r.get().await, 4, "and the next rebuild replaces it");
        assert_eq!(counter.calls(), 4);
    }

    #[tokio::test]
    async fn a_fresh_value_or_no_ttl_is_not_rebuilt() {
        let counter = Counter::new(&[]);
        let r = reloading(Some(Duration::from_secs(3600)), &counter).await;
        for _ in 0..3 {
            assert_eq!(*r.get().await, 1);
        }
        assert_eq!(counter.calls(), 1);
        let counter = Counter::new(&[]);
        let r = reloading(None, &counter).await;
        for _ in 0..3 {
            assert_eq!(*r.get().await, 1);
        }
        assert_eq!(counter.calls(), 1);
    }

    #[tokio::test]
    async fn rebuilds_never_overlap() {
        let counter = Counter::new(&[]);
        let r = reloading(Some(Duration::ZERO), &counter).await;
        let got = futures_join(&r).await;
        assert_eq!(
            counter.calls(),
            2,
            "one rebuild for four concurrent callers"
        );
        assert_eq!(got.iter().filter(|v| **v == 2).count(), 1, "{got:?}");
        assert_eq!(got.iter().filter(|v| **v == 1).count(), 3, "{got:?}");
    }

    /// Four concurrent `get`s on one task.
    async fn futures_join(r: &Reloading<u32, Build>) -> Vec<u32> {
        let (a, b, c, d) = tokio::join!(r.get(), r.get(), r.get(), r.get());
        vec![*a, *b, *c, *d]
    }

    #[tokio::test]
    async fn the_first_build_failing_is_the_callers_error() {
        let counter = Counter::new(&[1]);
        let c = counter.clone();
        let r = Reloading::new("test", None, move || {
            let c = c.clone();
            async move { c.build().await }
        })
        .await;
        assert!(r.is_err_and(|e| e.contains("/sr/config")));
    }

    #[test]
    fn ttl_from_the_environment() {
        let env = |v: Option<&str>| {
            let mut m = BTreeMap::new();
            if let Some(v) = v {
                m.insert(CONFIG_TTL_ENV.to_string(), v.to_string());
            }
            m
        };
        assert_eq!(ttl_from_env(&env(None)).unwrap(), Some(DEFAULT_CONFIG_TTL));
        assert_eq!(
            ttl_from_env(&env(Some(""))).unwrap(),
            Some(DEFAULT_CONFIG_TTL)
        );
        assert_eq!(ttl_from_env(&env(Some("0"))).unwrap(), None);
        assert_eq!(
            ttl_from_env(&env(Some("60"))).unwrap(),
            Some(Duration::from_secs(60))
        );
        let err = ttl_from_env(&env(Some("5m"))).unwrap_err().to_string();
        assert!(err.contains(CONFIG_TTL_ENV), "{err}");
    }
}
