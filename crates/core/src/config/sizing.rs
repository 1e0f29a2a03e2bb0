//! A pool's sizing bounds: what a job may ask with `spotrunner/…` labels
//! (`crate::sizing`). A pool without them refuses every sizing label.

use super::{Architecture, Pool};
use serde::{Deserialize, Serialize};

/// The bounds of a pool's per-job sizing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingBounds {
    /// `[min, max]` vCPUs a job may ask (`spotrunner/cpu=N`); also the range
    /// EC2 chooses from when a job asks memory or a family but no vCPU count.
    pub cpu: [u32; 2],
    /// `[min, max]` GiB of memory a job may ask (`spotrunner/ram=N`); unset:
    /// `ram` labels are refused. Also caps the memory of any sized instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_gib: Option<[u32; 2]>,
    /// Instance families a job may ask (`spotrunner/family=c7i+m7i`), and
    /// those a sized launch chooses from; empty: the families of the pool's
    /// `instance_types`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// The root volume of the pool's launch template, in GiB: a job may ask up
    /// to this (`spotrunner/disk=N`; a launch cannot grow the volume). Unset:
    /// `disk` labels are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
    /// The vCPU count the pool's `weight` is for; a runner of `cpu` vCPUs
    /// weighs `ceil(weight × cpu / base_cpu)`, never less than `weight`.
    /// Unset: `cpu[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_cpu: Option<u32>,
}

impl SizingBounds {
    pub fn base_cpu(&self) -> u32 {
        self.base_cpu.unwrap_or(self.cpu[0]).max(1)
    }

    /// The weight of a runner of `cpu` vCPUs in a pool of weight `weight`.
    pub fn weight_for(&self, weight: u32, cpu: u32) -> u32 {
        let base = u64::from(self.base_cpu());
        let w = (u64::from(weight) * u64::from(cpu)).div_ceil(base);
        u32::try_from(w).unwrap_or(u32::MAX).max(weight)
    }

    /// The families a sized launch may use: `families`, else those of the
    /// pool's instance types (lower case, in order, once each).
    pub fn allowed_families(&self, pool: &Pool) -> Vec<String> {
        let source: Vec<String> = if self.families.is_empty() {
            pool.instance_types
                .iter()
                .map(|t| family_of(t).to_string())
                .collect()
        } else {
            self.families.clone()
        };
        let mut out: Vec<String> = Vec::new();
        for f in source {
            let f = f.to_ascii_lowercase();
            if !f.is_empty() && !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }

    /// Problems as (field under `sizing.`, message).
    pub(crate) fn problems(
        &self,
        pool: &Pool,
        max_total_weight: Option<u32>,
    ) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let [lo, hi] = self.cpu;
        if lo == 0 || lo > hi {
            p.push((
                "cpu".into(),
                format!("[{lo}, {hi}] must be [min, max] with 1 <= min <= max"),
            ));
        }
        if let Some([lo, hi]) = self.ram_gib
            && (lo == 0 || lo > hi)
        {
            p.push((
                "ram_gib".into(),
                format!("[{lo}, {hi}] must be [min, max] with 1 <= min <= max"),
            ));
        }
        if self.disk_gib == Some(0) {
            p.push(("disk_gib".into(), "must be at least 1 when set".into()));
        }
        if self.base_cpu == Some(0) {
            p.push(("base_cpu".into(), "must be at least 1 when set".into()));
        }
        let arch = pool.arch();
        for (j, f) in self.families.iter().enumerate() {
            if let Some(problem) = family_problem(f) {
                p.push((format!("families[{j}]"), problem));
            } else if Architecture::of_instance_type(f) != arch {
                p.push((
                    format!("families[{j}]"),
                    format!(
                        "{f:?} is {} but the pool is {arch}",
                        Architecture::of_instance_type(f)
                    ),
                ));
            } else if self.families[..j].iter().any(|g| g.eq_ignore_ascii_case(f)) {
                p.push((format!("families[{j}]"), format!("{f:?} is listed twice")));
            }
        }
        if let Some(max) = max_total_weight
            && lo >= 1
            && lo <= hi
        {
            let w = self.weight_for(pool.weight, hi);
            if w > max {
                p.push((
                    "cpu".into(),
                    format!(
                        "a {hi}-vCPU runner weighs {w} (weight {} × {hi} / base_cpu {}), more than max_total_weight {max}: it could never start",
                        pool.weight,
                        self.base_cpu()
                    ),
                ));
            }
        }
        p
    }
}

/// `m7i.2xlarge` → `m7i`.
pub fn family_of(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or("")
}

/// Why a family name is not one (`c7i`, `m7i-flex`, `r7gd`), if it is not.
pub fn family_problem(f: &str) -> Option<String> {
    let ok = !f.is_empty()
        && f.len() <= 20
        && f.starts_with(|c: char| c.is_ascii_alphabetic())
        && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    (!ok).then(|| {
        format!("{f:?} is not an instance family (letters, digits and '-', like c7i or m7i-flex)")
    })
}
