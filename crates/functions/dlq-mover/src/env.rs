//! The dlq-mover's environment: resource names and the two knobs, checked at cold
//! start with errors that name the variable. The jobs DLQ is required; the
//! bootstrap DLQ and the stop-events DLQ are each drained when both of their
//! variables (the DLQ and the queue it goes back to) are set.

use spotrunner_core::dlq_mover::Settings;
use std::num::NonZeroU32;

pub const DLQ_URL: &str = "SPOTRUNNER_DLQ_URL";
pub const JOBS_QUEUE_URL: &str = "SPOTRUNNER_JOBS_QUEUE_URL";
pub const LEDGER_TABLE: &str = "SPOTRUNNER_LEDGER_TABLE";
pub const MAX_PER_RUN: &str = "SPOTRUNNER_DLQ_MAX_PER_RUN";
pub const RATE_PER_SECOND: &str = "SPOTRUNNER_DLQ_RATE_PER_SECOND";
pub const BOOTSTRAP_DLQ_URL: &str = "SPOTRUNNER_BOOTSTRAP_DLQ_URL";
pub const BOOTSTRAP_QUEUE_URL: &str = "SPOTRUNNER_BOOTSTRAP_QUEUE_URL";
pub const STOP_EVENTS_DLQ_URL: &str = "SPOTRUNNER_STOP_EVENTS_DLQ_URL";
pub const STOP_EVENTS_QUEUE_URL: &str = "SPOTRUNNER_STOP_EVENTS_QUEUE_URL";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {missing} is not set, but {set} is: set both or neither")]
    Unpaired {
        missing: &'static str,
        set: &'static str,
    },
    #[error("environment variable {name} must be a whole number from 1 to {max}, got {value:?}")]
    Invalid {
        name: &'static str,
        value: String,
        max: u64,
    },
}

/// A DLQ and the queue its messages go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub dlq_url: String,
    pub queue_url: String,
}

/// Everything the mover reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoverEnv {
    pub dlq_url: String,
    pub jobs_queue_url: String,
    pub ledger_table: String,
    pub settings: Settings,
    /// The bootstrap DLQ → the bootstrap queue.
    pub bootstrap: Option<Redrive>,
    /// The stop-events DLQ → the stop-events queue.
    pub stop_events: Option<Redrive>,
}

impl MoverEnv {
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read through `get` (the process environment, or a map in tests). Empty
    /// values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| get(name).ok_or(EnvError::Missing(name));
        let number = |name: &'static str, max: u64| -> Result<Option<u64>, EnvError> {
            let Some(value) = get(name) else {
                return Ok(None);
            };
            match value.trim().parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(EnvError::Invalid { name, value, max }),
            }
        };
        let mut settings = Settings::default();
        if let Some(n) = number(MAX_PER_RUN, 1_000_000)? {
            settings.max_per_run = n as usize;
        }
        if let Some(n) = number(RATE_PER_SECOND, 3000)? {
            settings.rate_per_second = NonZeroU32::new(n as u32).expect("checked >= 1");
        }
        let pair = |dlq: &'static str, queue: &'static str| -> Result<Option<Redrive>, EnvError> {
            match (get(dlq), get(queue)) {
                (Some(dlq_url), Some(queue_url)) => Ok(Some(Redrive { dlq_url, queue_url })),
                (None, None) => Ok(None),
                (Some(_), None) => Err(EnvError::Unpaired {
                    missing: queue,
                    set: dlq,
                }),
                (None, Some(_)) => Err(EnvError::Unpaired {
                    missing: dlq,
                    set: queue,
                }),
            }
        };
        Ok(Self {
            dlq_url: required(DLQ_URL)?,
            jobs_queue_url: required(JOBS_QUEUE_URL)?,
            ledger_table: required(LEDGER_TABLE)?,
            settings,
            bootstrap: pair(BOOTSTRAP_DLQ_URL, BOOTSTRAP_QUEUE_URL)?,
            stop_events: pair(STOP_EVENTS_DLQ_URL, STOP_EVENTS_QUEUE_URL)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        (DLQ_URL, "https://sqs/dlq"),
        (JOBS_QUEUE_URL, "https://sqs/jobs"),
        (LEDGER_TABLE, "sr-ledger"),
    ];

    #[test]
    fn defaults_when_the_knobs_are_unset() {
        let env = MoverEnv::from_lookup(lookup(&BASE)).unwrap();
        assert_eq!(env.dlq_url, "https://sqs/dlq");
        assert_eq!(env.ledger_table, "sr-ledger");
        assert_eq!(env.settings, Settings::default());
        assert_eq!(env.settings.max_per_run, 1000);
        assert_eq!(env.settings.rate_per_second.get(), 50);
    }

    #[test]
    fn knobs_are_read() {
        let mut pairs = BASE.to_vec();
        pairs.extend([(MAX_PER_RUN, "200"), (RATE_PER_SECOND, " 5 ")]);
        let env = MoverEnv::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(env.settings.max_per_run, 200);
        assert_eq!(env.settings.rate_per_second.get(), 5);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (RATE_PER_SECOND, "0"),
            (RATE_PER_SECOND, "fast"),
            (RATE_PER_SECOND, "2.5"),
            (MAX_PER_RUN, "-1"),
            (MAX_PER_RUN, "99999999999"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((name, value));
            let err = MoverEnv::from_lookup(lookup(&pairs)).unwrap_err();
            assert!(
                matches!(&err, EnvError::Invalid { name: n, .. } if *n == name),
                "{err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_bootstrap_and_stop_events_dlqs_are_read_in_pairs() {
        let env = MoverEnv::from_lookup(lookup(&BASE)).unwrap();
        assert_eq!((env.bootstrap, env.stop_events), (None, None));
        let mut pairs = BASE.to_vec();
        pairs.extend([
            (BOOTSTRAP_DLQ_URL, "https://sqs/boot-dlq"),
            (BOOTSTRAP_QUEUE_URL, "https://sqs/boot"),
            (STOP_EVENTS_DLQ_URL, "https://sqs/stop-dlq"),
            (STOP_EVENTS_QUEUE_URL, "https://sqs/stop"),
        ]);
        let env = MoverEnv::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(
            env.bootstrap,
            Some(Redrive {
                dlq_url: "https://sqs/boot-dlq".into(),
                queue_url: "https://sqs/boot".into()
            })
        );
        assert_eq!(env.stop_events.unwrap().queue_url, "https://sqs/stop");
        // One of a pair alone names the other.
        for (set, missing) in [
            (BOOTSTRAP_DLQ_URL, BOOTSTRAP_QUEUE_URL),
            (BOOTSTRAP_QUEUE_URL, BOOTSTRAP_DLQ_URL),
            (STOP_EVENTS_DLQ_URL, STOP_EVENTS_QUEUE_URL),
            (STOP_EVENTS_QUEUE_URL, STOP_EVENTS_DLQ_URL),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((set, "https://sqs/x"));
            let err = MoverEnv::from_lookup(lookup(&pairs)).unwrap_err();
            assert_eq!(err, EnvError::Unpaired { missing, set });
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn missing_resources_name_the_variable() {
        for missing in [DLQ_URL, JOBS_QUEUE_URL, LEDGER_TABLE] {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = MoverEnv::from_lookup(lookup(&pairs)).unwrap_err();
            assert_eq!(err, EnvError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
    }
}
