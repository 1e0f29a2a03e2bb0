//! Which pool serves a job: every job label (case-insensitive) must be a label of the
//! pool (`self-hosted` is implicit on every pool); the most specific pool wins
//! (fewest labels beyond the job's), ties go to the earlier pool. Sizing labels
//! (`spotrunner/…`, `crate::sizing`) take no part: they choose the instance
//! once the pool is chosen.

use crate::config::Pool;
use crate::sizing;

pub const SELF_HOSTED: &str = "self-hosted";

/// The outcome of matching one pool against a job's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolFit {
    /// Serves the job; `extra` = pool labels the job did not ask for.
    Fits { extra: usize },
    /// The pool lacks these job labels.
    Missing(Vec<String>),
}

/// How one pool fares against a job's labels (sizing labels left out).
pub fn fit(pool: &Pool, job_labels: &[String]) -> PoolFit {
    let job_labels: Vec<&String> = job_labels
        .iter()
        .filter(|l| !sizing::is_reserved(l))
        .collect();
    let has = |label: &str| {
        label.eq_ignore_ascii_case(SELF_HOSTED)
            || pool.labels.iter().any(|l| l.eq_ignore_ascii_case(label))
    };
    let missing: Vec<String> = job_labels
        .iter()
        .filter(|l| !has(l))
        .map(|l| l.to_string())
        .collect();
    if !missing.is_empty() {
        return PoolFit::Missing(missing);
    }
    let pool_total = pool.labels.len()
        + usize::from(
            !pool
                .labels
                .iter()
                .any(|l| l.eq_ignore_ascii_case(SELF_HOSTED)),
        );
    // Distinct job labels, case-insensitively; all of them are on the pool.
    let mut asked: Vec<String> = job_labels.iter().map(|l| l.to_ascii_lowercase()).collect();
    asked.sort();
    asked.dedup();
    PoolFit::Fits {
        extra: pool_total.saturating_sub(asked.len()),
    }
}

/// Does the job carry any label besides sizing labels? One without is not ours.
fn has_plain_label(job_labels: &[String]) -> bool {
    job_labels.iter().any(|l| !sizing::is_reserved(l))
}

/// The pool that serves a job with these labels, if any. A job without labels
/// (sizing labels aside) is not ours.
pub fn match_pool<'a>(pools: &'a [Pool], job_labels: &[String]) -> Option<&'a Pool> {
    if !has_plain_label(job_labels) {
        return None;
    }
    let mut best: Option<(&Pool, usize)> = None;
    for pool in pools {
        if let PoolFit::Fits { extra } = fit(pool, job_labels)
            && best.is_none_or(|(_, e)| extra < e)
        {
            best = Some((pool, extra));
        }
    }
    best.map(|(p, _)| p)
}

/// Why each pool would or would not serve a job (`spotrunner match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The pool [`match_pool`] picks.
    pub chosen: Option<String>,
    /// Every pool in configuration order, with its verdict.
    pub pools: Vec<PoolVerdict>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolVerdict {
    pub pool: String,
    pub fit: PoolFit,
    /// One line for people: why it was chosen or rejected.
    pub reason: String,
}

/// [`match_pool`] with its reasons: the chosen pool, and for each other pool
/// which labels it lacks or why a more specific pool won.
pub fn explain(pools: &[Pool], job_labels: &[String]) -> Explanation {
    let chosen = match_pool(pools, job_labels).map(|p| p.name.clone());
    let best_extra = pools
        .iter()
        .filter(|p| Some(&p.name) == chosen.as_ref())
        .find_map(|p| match fit(p, job_labels) {
            PoolFit::Fits { extra } => Some(extra),
            PoolFit::Missing(_) => None,
        });
    let verdicts = pools
        .iter()
        .map(|pool| {
            let fit = fit(pool, job_labels);
            let reason = if !has_plain_label(job_labels) {
                "a job without labels (sizing labels aside) is not ours".to_string()
            } else {
                match &fit {
                    PoolFit::Missing(m) => format!("lacks label(s) {}", m.join(", ")),
                    PoolFit::Fits { extra } if Some(&pool.name) == chosen.as_ref() => {
                        format!("chosen: has every label, {extra} label(s) beyond the job's")
                    }
                    PoolFit::Fits { extra } if Some(*extra) == best_extra => {
                        format!("fits equally ({extra} extra), but an earlier pool wins the tie")
                    }
                    PoolFit::Fits { extra } => {
                        format!("fits, but less specific: {extra} label(s) beyond the job's")
                    }
                }
            };
            PoolVerdict {
                pool: pool.name.clone(),
                fit,
                reason,
            }
        })
        .collect();
    Explanation {
        chosen,
        pools: verdicts,
    }
}

#[cfg(test)]
mod tests;
