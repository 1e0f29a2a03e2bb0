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

/// The name of the runner launched for `job_id` (attempt counts relaunches).
pub fn runner_name(deployment: &str, pool: &str, job_id: u64, attempt: u32) -> String {
    format!("{deployment}-{pool}-{job_id}-{attempt}")
}

/// Is this GitHub runner one of this deployment's?
pub fn is_ours(deployment: &str, runner_name: &str) -> bool {
    runner_name
        .strip_prefix(deployment)
        .is_some_and(|rest| rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ownership_by_prefix() {
        assert!(is_ours("sr", "sr-cpu-1-1"));
        assert!(!is_ours("sr", "srx-cpu-1-1"));
        assert!(!is_ours("sr", "other"));
    }
}
