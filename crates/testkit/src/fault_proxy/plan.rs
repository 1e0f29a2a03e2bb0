//! Which fault a call gets: a pure function of the seed, the proxy's name, the
//! operation and how many calls of that operation came before. The same seed
//! gives the same faults to the same sequence of calls of each operation, even
//! when operations interleave differently.

use std::time::Duration;

/// What the proxy does to one call instead of (or on top of) forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 500 in the service's shape; not forwarded.
    Internal,
    /// 503 in the service's shape; not forwarded.
    Unavailable,
    /// The service's throttling error; not forwarded.
    Throttle,
    /// Forwarded after a delay.
    Delay(Duration),
    /// Forwarded (the upstream applies it), then the answer is lost: the
    /// connection is dropped (`drop_connection`) or a bare 500 is sent instead.
    LostAnswer { drop_connection: bool },
}

impl Fault {
    /// A stable name for counters and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Internal => "500",
            Fault::Unavailable => "503",
            Fault::Throttle => "throttle",
            Fault::Delay(_) => "delay",
            Fault::LostAnswer {
                drop_connection: true,
            } => "lost-answer-drop",
            Fault::LostAnswer {
                drop_connection: false,
            } => "lost-answer-500",
        }
    }

    /// The call is applied by the upstream.
    pub fn forwards(&self) -> bool {
        matches!(self, Fault::Delay(_) | Fault::LostAnswer { .. })
    }
}

/// Relative weights of the fault kinds (a fault's kind is drawn by weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub internal: u32,
    pub unavailable: u32,
    pub throttle: u32,
    pub delay: u32,
    pub lost_answer: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            internal: 1,
            unavailable: 1,
            throttle: 1,
            delay: 1,
            lost_answer: 2,
        }
    }
}

impl Weights {
    /// Only lost answers.
    pub fn lost_answers_only() -> Self {
        Weights {
            internal: 0,
            unavailable: 0,
            throttle: 0,
            delay: 0,
            lost_answer: 1,
        }
    }
}

/// splitmix64's finaliser: a good 64-bit mix.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, stable across runs and platforms (std's hasher is randomised).
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fault for call number `n` (from 0) of `op` on the proxy `name`.
pub fn decide(
    seed: u64,
    name: &str,
    op: &str,
    n: u64,
    rate: f64,
    weights: &Weights,
    delay: (Duration, Duration),
) -> Option<Fault> {
    let h = mix(seed ^ mix(fnv(name)) ^ mix(fnv(op).wrapping_add(mix(n))));
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u >= rate {
        return None;
    }
    let total = weights.internal
        + weights.unavailable
        + weights.throttle
        + weights.delay
        + weights.lost_answer;
    if total == 0 {
        return None;
    }
    let h2 = mix(h);
    let mut pick = (h2 % u64::from(total)) as u32;
    let h3 = mix(h2);
    for (w, fault) in [
        (weights.internal, Fault::Internal),
        (weights.unavailable, Fault::Unavailable),
        (weights.throttle, Fault::Throttle),
        (weights.delay, Fault::Delay(Duration::ZERO)),
        (
            weights.lost_answer,
            Fault::LostAnswer {
                drop_connection: h3 & 1 == 0,
            },
        ),
    ] {
        if pick < w {
            return Some(match fault {
                Fault::Delay(_) => {
                    let (lo, hi) = (delay.0.as_millis() as u64, delay.1.as_millis() as u64);
                    let ms = lo + (h3 >> 1) % (hi.saturating_sub(lo) + 1);
                    Fault::Delay(Duration::from_millis(ms))
                }
                other => other,
            });
        }
        pick -= w;
    }
    None
}
