//! Per-job sizing from labels: `spotrunner/cpu=8`, `spotrunner/ram=32`,
//! `spotrunner/family=c7i+m7i`, `spotrunner/disk=100`, `spotrunner/spot=false`.
//!
//! Pure. Reserved labels (prefix [`PREFIX`], any case) never take part in pool
//! matching; once a pool is chosen, [`decide`] checks them against the pool's
//! [`SizingBounds`] and says what the launch asks (instance requirements,
//! capacity type), what the runner weighs in the global quota and which
//! labels it registers with beyond the pool's.
//!
//! Rules (README "Sizing a job from its labels"):
//! - `cpu=N`: exactly N vCPUs, `sizing.cpu[0] <= N <= sizing.cpu[1]`.
//! - `ram=N`: at least N GiB, within `sizing.ram_gib` (refused without it).
//! - `family=a+b`: only these families, each among the pool's allowed ones.
//! - Without `cpu`, a job asking `ram` or `family` gets any vCPU count in the
//!   pool's `sizing.cpu` range, and weighs as the largest of it.
//! - `disk=N`: at most `sizing.disk_gib` (the launch template's volume; a
//!   launch cannot grow it); refused without it. Changes no launch parameter.
//! - `spot=false`: on-demand; `spot=true` only on a spot pool (no change).
//! - Weight: `max(weight, ceil(weight × cpu / base_cpu))`; more than
//!   `max_total_weight` is refused.

use crate::config::{CapacityType, Pool, SizingBounds};
use crate::ports::InstanceSize;

/// Every sizing label starts with this (compared case-insensitively).
pub const PREFIX: &str = "spotrunner/";

/// The sizing keys, as documented.
pub const KEYS: &[&str] = &["cpu", "ram", "family", "disk", "spot"];

/// Is this a sizing label (`spotrunner/…`, any case)?
pub fn is_reserved(label: &str) -> bool {
    label
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// The job's labels split into those pool matching uses and the sizing ones,
/// each in the job's order.
pub fn split_labels(labels: &[String]) -> (Vec<String>, Vec<String>) {
    labels.iter().cloned().partition(|l| !is_reserved(l))
}

/// What a job's sizing labels ask, before any pool's bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobSize {
    pub cpu: Option<u32>,
    pub ram_gib: Option<u32>,
    /// Lower case, in the label's order.
    pub families: Vec<String>,
    pub disk_gib: Option<u32>,
    pub spot: Option<bool>,
    /// The sizing labels as the job spelled them (once each): the runner
    /// registers with them.
    pub labels: Vec<String>,
}

impl JobSize {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `cpu=8 ram=32 family=c7i+m7i disk=100 spot=false` (the asked keys
    /// only): the `spotrunner:size` tag and the logs.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.cpu {
            parts.push(format!("cpu={c}"));
        }
        if let Some(r) = self.ram_gib {
            parts.push(format!("ram={r}"));
        }
        if !self.families.is_empty() {
            parts.push(format!("family={}", self.families.join("+")));
        }
        if let Some(d) = self.disk_gib {
            parts.push(format!("disk={d}"));
        }
        if let Some(s) = self.spot {
            parts.push(format!("spot={s}"));
        }
        parts.join(" ")
    }
}

/// Why a job's sizing cannot be served: the label and the rule or bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label:?}: {reason}")]
pub struct SizingError {
    pub label: String,
    pub reason: String,
}

fn refuse(label: &str, reason: impl Into<String>) -> SizingError {
    SizingError {
        label: label.to_string(),
        reason: reason.into(),
    }
}

/// Read the sizing labels among `labels` (the others are skipped). An unknown
/// key, a malformed value or a key asked twice is an error naming the label.
pub fn parse(labels: &[String]) -> Result<JobSize, SizingError> {
    let mut size = JobSize::default();
    let mut seen: Vec<(String, &str)> = Vec::new();
    for label in labels.iter().filter(|l| is_reserved(l)) {
        if size.labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            continue; // the same label twice asks nothing new
        }
        let rest = &label[PREFIX.len()..];
        let Some((key, value)) = rest.split_once('=') else {
            return Err(refuse(
                label,
                format!("expected {PREFIX}KEY=VALUE (keys: {})", KEYS.join(", ")),
            ));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(refuse(
                label,
                format!("{key} is already asked by {first:?}"),
            ));
        }
        let number = |what: &str| -> Result<u32, SizingError> {
            match value.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(refuse(
                    label,
                    format!("{key} must be a whole number of {what} (at least 1), not {value:?}"),
                )),
            }
        };
        match key.as_str() {
            "cpu" => size.cpu = Some(number("vCPUs")?),
            "ram" => size.ram_gib = Some(number("GiB")?),
            "disk" => size.disk_gib = Some(number("GiB")?),
            "spot" => {
                size.spot = Some(match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(refuse(
                            label,
                            format!("spot must be true or false, not {value:?}"),
                        ));
                    }
                })
            }
            "family" => {
                for f in value.split('+') {
                    let f = f.trim().to_ascii_lowercase();
                    if let Some(problem) = crate::config::family_problem(&f) {
                        return Err(refuse(label, problem));
                    }
                    if !size.families.contains(&f) {
                        size.families.push(f);
                    }
                }
            }
            other => {
                return Err(refuse(
                    label,
                    format!("unknown sizing key {other:?} (keys: {})", KEYS.join(", ")),
                ));
            }
        }
        seen.push((key, label.as_str()));
        size.labels.push(label.clone());
    }
    Ok(size)
}

/// What a sized job's launch asks, decided against its pool's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    pub size: JobSize,
    /// The instance requirements, when the job asks `cpu`, `ram` or `family`
    /// (else the pool's instance types as they are).
    pub instance: Option<InstanceSize>,
    /// On-demand when the job asks `spot=false`.
    pub capacity: Option<CapacityType>,
    /// What the runner weighs against `max_total_weight`.
    pub weight: u32,
}

impl Sizing {
    /// One line for people (`spotrunner match`).
    pub fn describe(&self) -> String {
        let mut out = format!("sizing {}", self.size.summary());
        if let Some(i) = &self.instance {
            out.push_str(&format!(": {}", i.describe()));
        }
        if self.capacity == Some(CapacityType::OnDemand) {
            out.push_str("; on-demand");
        }
        out.push_str(&format!("; weight {}", self.weight));
        out
    }
}

/// The sizing of a job with `labels` in `pool`: `Ok(None)` when the job asks
/// none, an error naming the label and the bound it breaks otherwise.
pub fn decide(
    pool: &Pool,
    labels: &[String],
    max_total_weight: Option<u32>,
) -> Result<Option<Sizing>, SizingError> {
    let size = parse(labels)?;
    let Some(first) = size.labels.first() else {
        return Ok(None);
    };
    let Some(bounds) = &pool.sizing else {
        return Err(refuse(
            first,
            format!(
                "pool {} takes no sizing labels (it declares no sizing bounds)",
                pool.name
            ),
        ));
    };
    let label_of = |key: &str| {
        size.labels
            .iter()
            .find(|l| {
                l[PREFIX.len()..]
                    .split_once('=')
                    .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            })
            .cloned()
            .unwrap_or_default()
    };
    let [cpu_lo, cpu_hi] = bounds.cpu;
    if let Some(cpu) = size.cpu
        && !(cpu_lo..=cpu_hi).contains(&cpu)
    {
        return Err(refuse(
            &label_of("cpu"),
            format!(
                "{cpu} vCPUs is outside pool {}'s bounds: sizing.cpu = [{cpu_lo}, {cpu_hi}]",
                pool.name
            ),
        ));
    }
    if let Some(ram) = size.ram_gib {
        match bounds.ram_gib {
            None => {
                return Err(refuse(
                    &label_of("ram"),
                    format!("pool {} declares no sizing.ram_gib", pool.name),
                ));
            }
            Some([lo, hi]) if !(lo..=hi).contains(&ram) => {
                return Err(refuse(
                    &label_of("ram"),
                    format!(
                        "{ram} GiB is outside pool {}'s bounds: sizing.ram_gib = [{lo}, {hi}]",
                        pool.name
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let allowed = bounds.allowed_families(pool);
    if let Some(bad) = size.families.iter().find(|f| !allowed.contains(f)) {
        return Err(refuse(
            &label_of("family"),
            format!(
                "family {bad} is not among pool {}'s families [{}]",
                pool.name,
                allowed.join(", ")
            ),
        ));
    }
    if let Some(disk) = size.disk_gib {
        match bounds.disk_gib {
            None => {
                return Err(refuse(
                    &label_of("disk"),
                    format!(
                        "pool {} declares no sizing.disk_gib (its launch template's volume)",
                        pool.name
                    ),
                ));
            }
            Some(max) if disk > max => {
                return Err(refuse(
                    &label_of("disk"),
                    format!(
                        "{disk} GiB is more than pool {}'s volume: sizing.disk_gib = {max}",
                        pool.name
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let capacity = match size.spot {
        Some(false) => Some(CapacityType::OnDemand),
        Some(true) if pool.capacity_type == CapacityType::OnDemand => {
            return Err(refuse(
                &label_of("spot"),
                format!("pool {} launches on-demand only", pool.name),
            ));
        }
        _ => None,
    };
    let shaped = size.cpu.is_some() || size.ram_gib.is_some() || !size.families.is_empty();
    let instance = shaped.then(|| instance_size(bounds, &size, &allowed));
    let weight = match &instance {
        Some(i) => bounds.weight_for(pool.weight, i.vcpu_max),
        None => pool.weight,
    };
    if let Some(max) = max_total_weight
        && weight > max
    {
        let label = if size.cpu.is_some() {
            label_of("cpu")
        } else {
            first.clone()
        };
        return Err(refuse(
            &label,
            format!("the runner would weigh {weight}, more than max_total_weight {max}"),
        ));
    }
    Ok(Some(Sizing {
        size,
        instance,
        capacity,
        weight,
    }))
}

fn instance_size(bounds: &SizingBounds, size: &JobSize, allowed: &[String]) -> InstanceSize {
    let (vcpu_min, vcpu_max) = size.cpu.map_or((bounds.cpu[0], bounds.cpu[1]), |c| (c, c));
    let ram_floor = bounds.ram_gib.map_or(0, |[lo, _]| lo);
    let memory_mib_min = size.ram_gib.unwrap_or(ram_floor).saturating_mul(1024);
    let memory_mib_max = bounds.ram_gib.map(|[_, hi]| hi.saturating_mul(1024));
    let families = if size.families.is_empty() {
        allowed
    } else {
        &size.families[..]
    };
    InstanceSize {
        vcpu_min,
        vcpu_max,
        memory_mib_min,
        memory_mib_max,
        allowed_instance_types: families.iter().map(|f| format!("{f}.*")).collect(),
    }
}

#[cfg(test)]
mod tests;
