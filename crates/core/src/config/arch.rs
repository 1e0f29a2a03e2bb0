//! A pool's CPU architecture: explicit, or derived from its instance types.
//!
//! The family rule is mirrored by `local.graviton_family` in `terraform/arch.tf`
//! (one regex there); change both together.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The runner's architecture, spelled as the runner tarballs and the SSM
/// document's `runnerArch` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    X64,
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X64 => "x64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// The architecture of an EC2 instance type (`m7g.large` → arm64).
    ///
    /// Graviton families are `a1` and those with a `g` right after the
    /// generation digits (`t4g`, `m7gd`, `c6gn`, `im4gn`, `is4gen`, `g5g`,
    /// `hpc7g`); everything else (`m7i`, `c7a`, `g5`, `inf2`, `m7i-flex`) is x64.
    pub fn of_instance_type(instance_type: &str) -> Self {
        let family = instance_type.split('.').next().unwrap_or("");
        if is_graviton_family(&family.to_ascii_lowercase()) {
            Architecture::Arm64
        } else {
            Architecture::X64
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `^(a1|[a-z]+[0-9]+g[a-z]*)$`, without a regex engine.
fn is_graviton_family(family: &str) -> bool {
    if family == "a1" {
        return true;
    }
    let letters = family.len()
        - family
            .trim_start_matches(|c: char| c.is_ascii_lowercase())
            .len();
    let rest = &family[letters..];
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let attrs = &rest[digits..];
    letters > 0
        && digits > 0
        && attrs.starts_with('g')
        && attrs.chars().all(|c| c.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::Architecture::{self, Arm64, X64};

    #[test]
    fn graviton_families_are_arm64() {
        for t in [
            "a1.large",
            "t4g.micro",
            "m6g.large",
            "m6gd.xlarge",
            "m7g.large",
            "m7gd.2xlarge",
            "m8g.large",
            "c6g.large",
            "c6gn.large",
            "c7g.large",
            "c7gn.xlarge",
            "c8g.large",
            "r6g.large",
            "r8g.large",
            "x2gd.large",
            "im4gn.large",
            "is4gen.large",
            "i4g.large",
            "g5g.xlarge",
            "hpc7g.4xlarge",
            "M7G.LARGE",
        ] {
            assert_eq!(Architecture::of_instance_type(t), Arm64, "{t}");
        }
    }

    #[test]
    fn x86_families_are_x64() {
        for t in [
            "m7i.large",
            "m7i-flex.large",
            "m6i.large",
            "m5.large",
            "c7a.large",
            "r7iz.large",
            "t3.micro",
            "t3a.small",
            "g4dn.xlarge",
            "g4ad.xlarge",
            "g5.xlarge",
            "g6.xlarge",
            "p5.48xlarge",
            "inf2.xlarge",
            "trn1.2xlarge",
            "mac2.metal",
            "u-6tb1.metal",
            "hpc6a.48xlarge",
            "dl1.24xlarge",
            "",
            "nodot",
        ] {
            assert_eq!(Architecture::of_instance_type(t), X64, "{t}");
        }
    }

    #[test]
    fn spelled_as_the_runner_tarballs() {
        assert_eq!(serde_json::to_string(&Arm64).unwrap(), "\"arm64\"");
        assert_eq!(serde_json::to_string(&X64).unwrap(), "\"x64\"");
        assert_eq!(
            serde_json::from_str::<Architecture>("\"arm64\"").unwrap(),
            Arm64
        );
        assert!(serde_json::from_str::<Architecture>("\"aarch64\"").is_err());
        assert_eq!(X64.as_str(), "x64");
        assert_eq!(Arm64.to_string(), "arm64");
    }

    fn sample_with(cpu_types: &str, architecture: Option<&str>) -> String {
        let base = crate::config::tests::sample_toml();
        let types = format!("instance_types = [{cpu_types}]");
        let arch = architecture.map_or(String::new(), |a| format!("\narchitecture = \"{a}\""));
        base.replace(
            r#"instance_types = ["m7i.large", "m6i.large"]"#,
            &format!("{types}{arch}"),
        )
    }

    fn errors(text: &str) -> Vec<String> {
        crate::config::Config::from_toml(text)
            .expect_err("should be refused")
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_pool_derives_its_architecture_from_its_types() {
        let c = crate::config::Config::from_toml(&sample_with(r#""m7g.large", "c7g.large""#, None))
            .unwrap();
        assert_eq!(c.pools[0].arch(), Arm64);
        assert_eq!(c.pools[0].architecture, None);
        assert_eq!(c.pools[1].arch(), X64, "no instance types: x64");
        let explicit = sample_with(r#""m7g.large""#, Some("arm64"));
        let c = crate::config::Config::from_toml(&explicit).unwrap();
        assert_eq!(c.pools[0].architecture, Some(Arm64));
        assert!(c.to_json().contains("\"architecture\": \"arm64\""));
    }

    #[test]
    fn an_explicit_architecture_serves_a_pool_without_types() {
        let text = crate::config::tests::sample_toml()
            .replace("weight = 4", "weight = 4\narchitecture = \"arm64\"");
        let c = crate::config::Config::from_toml(&text).unwrap();
        assert_eq!(c.pools[1].arch(), Arm64);
    }

    #[test]
    fn a_pool_mixing_m7i_and_m7g_is_refused_naming_instance_types() {
        let errs = errors(&sample_with(
            r#""m7i.large", "m7g.large", "c7g.large""#,
            None,
        ));
        assert_eq!(
            errs,
            vec![
                "pools[0].instance_types: mixes architectures \
                 (x64: m7i.large; arm64: m7g.large, c7g.large): one pool, one architecture"
            ]
        );
    }

    #[test]
    fn an_explicit_architecture_contradicting_the_types_is_refused() {
        let errs = errors(&sample_with(r#""m7i.large""#, Some("arm64")));
        assert_eq!(
            errs,
            vec!["pools[0].architecture: is arm64 but the instance types are x64"]
        );
        let errs = errors(&sample_with(r#""m7i.large""#, Some("aarch64")));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("pools[0].architecture"), "{errs:?}");
    }
}
