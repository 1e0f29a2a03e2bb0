//! `allowed_owners` fails closed on AWS: empty is refused unless the
//! repositories are named, `["*"]` says "any owner" on purpose.

use super::tests::sample_toml;
use super::*;

fn aws_errors(c: &Config) -> Vec<String> {
    c.validate_for_aws()
        .err()
        .map(|e| e.errors.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default()
}

/// The sample, valid on AWS except for what a test changes.
fn aws_config() -> Config {
    let mut c = Config::from_toml(sample_toml()).unwrap();
    c.pools.truncate(1);
    assert_eq!(aws_errors(&c), Vec::<String>::new());
    c
}

#[test]
fn an_empty_owner_list_is_refused_on_aws_naming_the_way_out() {
    let mut c = aws_config();
    c.allowed_owners.clear();
    let errs = aws_errors(&c);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("allowed_owners: is empty"), "{errs:?}");
    assert!(errs[0].contains(r#"["*"]"#), "{errs:?}");
    // Locally (serve on one's own machine) it still means "any".
    assert_eq!(c.validate(), Ok(()));
    assert!(c.allows("anyone", "anyone/repo"));
}

#[test]
fn named_repositories_bound_the_owners() {
    let mut c = aws_config();
    c.allowed_owners.clear();
    c.allowed_repositories = vec!["acme/app".into()];
    assert_eq!(aws_errors(&c), Vec::<String>::new());
    assert!(c.allows("acme", "acme/app"));
    assert!(!c.allows("evil", "evil/app"));
}

#[test]
fn any_owner_said_explicitly_is_accepted_and_means_any() {
    let mut c = aws_config();
    c.allowed_owners = vec!["*".into()];
    assert_eq!(aws_errors(&c), Vec::<String>::new());
    assert!(c.allows("anyone", "anyone/repo"));
    assert!(c.allows_any_owner());
    assert_eq!(c.named_owners().count(), 0);
}

#[test]
fn any_owner_must_stand_alone() {
    let mut c = aws_config();
    c.allowed_owners = vec!["*".into(), "acme".into()];
    let errs: Vec<String> = c
        .validate()
        .unwrap_err()
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        vec![r#"allowed_owners: "*" (any owner) must stand alone; remove it or the named owners"#]
    );
}
