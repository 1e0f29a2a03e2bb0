//! GitHub's rules for runner names and labels, and how we name our runners.

/// Characters GitHub refuses in a runner name.
pub const FORBIDDEN_NAME_CHARS: &[char] = &['"', '/', ':', '<', '>', '\\', '|', '*', '?'];
/// GitHub's maximum runner name length.
pub const MAX_RUNNER_NAME: usize = 64;
/// Longest deployment prefix and pool name we accept, so that
/// `{deployment}-{pool}-{job_id}-{attempt}` always fits in 64 characters.
pub const MAX_DEPLOYMENT: usize = 20;
pub const MAX_POOL_NAME: usize = 16;
/// Longest label GitHub accepts.
pub const MAX_LABEL: usize = 100;

/// Why a string is not a valid part of a runner name, if it is not.
pub fn name_part_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if let Some(c) = s.chars().find(|c| FORBIDDEN_NAME_CHARS.contains(c)) {
        return Some(format!("{s:?} contains {c:?}"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{s:?} contains whitespace or control character {c:?}"
        ));
    }
    // The SSM document passes runner names as parameters: keep to a shell-safe set.
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!("{s:?} contains {c:?} (allowed: A-Z a-z 0-9 . _ -)"));
    }
    None
}

/// Why a label is not acceptable to GitHub, if it is not.
pub fn label_problem(s: &str) -> Option<String> {
    if s.trim().is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > MAX_LABEL {
        return Some(format!("{s:?} is longer than {MAX_LABEL} characters"));
    }
    if s.contains(',') {
        return Some(format!("{s:?} contains ','"));
    }
    if s.chars().any(|c| c.is_control()) || s.trim() != s {
        return Some(format!(
            "{s:?} has leading/trailing whitespace or a control character"
        ));
    }
    None
}

/// Separates the deployment from the rest of a runner name. Deployment names
/// hold only `a-z 0-9 -` (config validation), so the first `_` ends the
/// deployment exactly: `sr_cpu-1-0` and `sr-prod_cpu-1-0` never overlap.
pub const DEPLOYMENT_SEPARATOR: char = '_';

/// Why `full_name` is not a GitHub repository name `owner/name` owned by
/// `owner` (the payload's `repository.owner.login`), if it is not. Owners are
/// 1–39 letters, digits or single hyphens (not first); names 1–100 letters,
/// digits, `.`, `-`, `_`, never `.` or `..`. A name that passes can go into a
/// URL path as it is.
pub fn repository_problem(full_name: &str, owner: &str) -> Option<String> {
    let Some((o, name)) = full_name.split_once('/') else {
        return Some(format!("{full_name:?} is not owner/name"));
    };
    let owner_ok = (1..=39).contains(&o.len())
        && !o.starts_with('-')
        && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !owner_ok {
        return Some(format!("{full_name:?}: {o:?} is not a GitHub owner name"));
    }
    let name_ok = (1..=100).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !name_ok {
        return Some(format!("{full_name:?}: {name:?} is not a repository name"));
    }
    if !o.eq_ignore_ascii_case(owner) {
        return Some(format!("{full_name:?} is not owned by {owner:?}"));
    }
    None
}

/// The name of the runner launched for `job_id` (attempt counts relaunches):
/// `{deployment}_{pool}-{job_id}-{attempt}`.
pub fn runner_name(deployment: &str, pool: &str, job_id: u64, attempt: u32) -> String {
    format!("{deployment}{DEPLOYMENT_SEPARATOR}{pool}-{job_id}-{attempt}")
}

/// A runner name of ours, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerName<'a> {
    pub deployment: &'a str,
    pub pool: &'a str,
    pub job_id: u64,
    pub attempt: u32,
}

/// Parse `{deployment}_{pool}-{job_id}-{attempt}`; `None` for any other name.
pub fn parse_runner_name(name: &str) -> Option<RunnerName<'_>> {
    let (deployment, rest) = name.split_once(DEPLOYMENT_SEPARATOR)?;
    let deployment_ok = deployment.starts_with(|c: char| c.is_ascii_lowercase())
        && deployment
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && deployment.len() <= MAX_DEPLOYMENT;
    if !deployment_ok {
        return None;
    }
    let (rest, attempt) = rest.rsplit_once('-')?;
    let (pool, job_id) = rest.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if pool.is_empty() || !digits(job_id) || !digits(attempt) {
        return None;
    }
    Some(RunnerName {
        deployment,
        pool,
        job_id: job_id.parse().ok()?,
        attempt: attempt.parse().ok()?,
    })
}

/// Is this GitHub runner one of this deployment's? By exact identity: the
/// name parses and its deployment is exactly `deployment`, never a prefix.
pub fn is_ours(deployment: &str, runner_name: &str) -> bool {
    parse_runner_name(runner_name).is_some_and(|n| n.deployment == deployment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_githubs_grammar() {
        for (full, owner) in [
            ("o/r", "o"),
            ("Octo-Org/my.repo_1", "octo-org"),
            ("a/..x", "a"),
        ] {
            assert_eq!(repository_problem(full, owner), None, "{full}");
        }
        for (full, owner) in [
            ("owner/../../etc", "owner"),
            ("o/..", "o"),
            ("o/.", "o"),
            ("o", "o"),
            ("o/r/x", "o"),
            ("-o/r", "-o"),
            ("o/r r", "o"),
            ("o%2F/r", "o%2F"),
            ("o/", "o"),
            ("evil/r", "o"),
        ] {
            assert!(repository_problem(full, owner).is_some(), "{full}");
        }
    }

    #[test]
    fn runner_names_fit_github_rules_at_the_limits() {
        let d = "d".repeat(MAX_DEPLOYMENT);
        let p = "p".repeat(MAX_POOL_NAME);
        let name = runner_name(&d, &p, u64::MAX, 999);
        assert!(name.len() <= MAX_RUNNER_NAME, "{} > 64", name.len());
        assert_eq!(name_part_problem(&name), None);
    }

    #[test]
    fn forbidden_characters_are_named() {
        for c in FORBIDDEN_NAME_CHARS {
            let s = format!("a{c}b");
            let msg = name_part_problem(&s).expect("refused");
            assert!(msg.contains(&format!("{c:?}")), "{msg}");
        }
        assert!(name_part_problem("a b").is_some());
        assert!(name_part_problem("a;b").unwrap().contains("allowed"));
        assert!(name_part_problem("a$b").is_some());
        assert!(name_part_problem("").is_some());
        assert_eq!(name_part_problem("cpu-x64"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(label_problem("linux"), None);
        assert!(label_problem("").is_some());
        assert!(label_problem(" x").is_some());
        assert!(label_problem("a,b").is_some());
        assert!(label_problem(&"x".repeat(101)).is_some());
    }

    #[test]
    fn ownership_is_exact_never_a_prefix() {
        assert!(is_ours("sr", "sr_cpu-1-1"));
        assert!(is_ours("sr-prod", "sr-prod_cpu-1-1"));
        // Two deployments whose names share a prefix never see each other's runners.
        assert!(!is_ours("sr", "sr-prod_cpu-1-1"));
        assert!(!is_ours("sr-prod", "sr_prod-cpu-1-1"));
        assert!(!is_ours("sr", "srx_cpu-1-1"));
        // The old grammar, other people's runners and malformed names are not ours.
        assert!(!is_ours("sr", "sr-cpu-1-1"));
        assert!(!is_ours("sr", "other"));
        assert!(!is_ours("sr", "sr_cpu-x-1"));
        assert!(!is_ours("sr", "sr_cpu-1"));
        assert!(!is_ours("sr", "sr_-1-1"));
    }

    #[test]
    fn names_parse_back() {
        let name = runner_name("sr-prod", "gpu_big-1", 42, 3);
        assert_eq!(name, "sr-prod_gpu_big-1-42-3");
        assert_eq!(
            parse_runner_name(&name),
            Some(RunnerName {
                deployment: "sr-prod",
                pool: "gpu_big-1",
                job_id: 42,
                attempt: 3
            })
        );
    }

    proptest::proptest! {
        /// Any two distinct valid deployments: each owns exactly its own names.
        #[test]
        fn each_deployment_owns_only_its_names(
            a in "[a-z][a-z0-9-]{0,19}",
            b in "[a-z][a-z0-9-]{0,19}",
            pool in "[A-Za-z0-9._-]{1,16}",
            job in proptest::num::u64::ANY,
            attempt in 0u32..1000,
        ) {
            let name = runner_name(&a, &pool, job, attempt);
            proptest::prop_assert!(is_ours(&a, &name));
            proptest::prop_assert_eq!(is_ours(&b, &name), a == b);
            let parsed = parse_runner_name(&name).unwrap();
            proptest::prop_assert_eq!((parsed.pool, parsed.job_id, parsed.attempt), (pool.as_str(), job, attempt));
        }
    }
}
