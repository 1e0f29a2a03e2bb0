use super::*;
use proptest::prelude::*;

pub(crate) fn sample_toml() -> &'static str {
    r#"
deployment = "sr"
allowed_owners = ["Codertocat"]
max_total_weight = 10

[github]
api_url = "https://ghe.example.com/api/v3"
auth = { type = "app", app_id = 42, private_key = "ssm:/sr/github/key" }

[webhook]
secrets = ["ssm:/sr/webhook/current", "ssm:/sr/webhook/previous"]

[[pools]]
name = "cpu"
labels = ["linux", "x64"]
launch_template = "sr-cpu"
instance_types = ["m7i.large", "m6i.large"]
subnets = ["subnet-1", "subnet-2"]
on_demand_fallback = true
max_runners = 5

[[pools]]
name = "gpu"
labels = ["linux", "gpu"]
capacity_type = "on-demand"
max_runners = 2
weight = 4
scope = "repo"
"#
}

fn errors_of(r: Result<Config, ConfigError>) -> Vec<String> {
    r.expect_err("should be refused")
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn toml_and_json_load_the_same_document() {
    let from_toml = Config::from_toml(sample_toml()).unwrap();
    let from_json = Config::from_json(&from_toml.to_json()).unwrap();
    assert_eq!(from_toml, from_json);
    assert_eq!(from_toml.pools[0].capacity_type, CapacityType::Spot);
    assert_eq!(from_toml.pools[1].capacity_type, CapacityType::OnDemand);
    assert_eq!(from_toml.pools[1].scope, Scope::Repo);
    assert_eq!(from_toml.pools[0].weight, 1, "default weight");
    assert_eq!(from_toml.pools[0].runner_group, "Default");
    assert_eq!(
        from_toml.github.auth,
        GitHubAuth::App {
            app_id: 42.into(),
            private_key: SecretRef::Ssm("/sr/github/key".into())
        }
    );
}

#[test]
fn empty_labels_name_the_field() {
    let text = sample_toml().replace(r#"labels = ["linux", "gpu"]"#, "labels = []");
    assert_eq!(
        errors_of(Config::from_toml(&text)),
        vec!["pools[1].labels: must not be empty"]
    );
}

#[test]
fn forbidden_character_in_pool_name_is_named() {
    let text = sample_toml().replace(r#"name = "cpu""#, r#"name = "a:b""#);
    assert_eq!(
        errors_of(Config::from_toml(&text)),
        vec![r#"pools[0].name: "a:b" contains ':'"#]
    );
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let text = sample_toml()
        .replace("max_runners = 5", "max_runners = 0")
        .replace("weight = 4", "weight = 11")
        .replace(r#"deployment = "sr""#, r#"deployment = "Bad_Name""#);
    let errs = errors_of(Config::from_toml(&text));
    assert!(
        errs.iter().any(|e| e.starts_with("deployment: ")),
        "{errs:?}"
    );
    assert!(errs.contains(&"pools[0].max_runners: must be at least 1".to_string()));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("pools[1].weight: 11 exceeds"))
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn type_errors_name_the_field_path() {
    let text = sample_toml().replace("max_runners = 2", r#"max_runners = "two""#);
    let errs = errors_of(Config::from_toml(&text));
    assert!(errs[0].starts_with("pools[1].max_runners: "), "{errs:?}");
    let json = r#"{"deployment":"sr","github":{"auth":{"type":"pat","token":"env:T"}},
        "webhook":{"secrets":["env:S"]},"pools":[{"name":"a","labels":["x"],"max_runners":-1}]}"#;
    let errs = errors_of(Config::from_json(json));
    assert!(errs[0].starts_with("pools[0].max_runners: "), "{errs:?}");
}

#[test]
fn unknown_fields_and_bad_secret_refs_are_refused() {
    let text = sample_toml().replace("max_runners = 5", "max_runners = 5\nmax_runner = 3");
    let errs = errors_of(Config::from_toml(&text));
    assert!(errs[0].contains("max_runner"), "{errs:?}");
    let text = sample_toml().replace("ssm:/sr/webhook/previous", "vault:/x");
    let errs = errors_of(Config::from_toml(&text));
    assert!(errs[0].starts_with("webhook.secrets"), "{errs:?}");
    assert!(errs[0].contains("unknown secret scheme"), "{errs:?}");
}

#[test]
fn three_webhook_secrets_are_refused() {
    let text = sample_toml().replace(
        r#""ssm:/sr/webhook/previous"]"#,
        r#""ssm:/sr/webhook/previous", "ssm:/x"]"#,
    );
    let errs = errors_of(Config::from_toml(&text));
    assert_eq!(
        errs,
        vec!["webhook.secrets: must hold 1 or 2 secrets (current, previous), not 3"]
    );
}

#[test]
fn aws_rules_require_templates_and_types() {
    let c = Config::from_toml(sample_toml()).unwrap();
    let errs: Vec<String> = c
        .validate_for_aws()
        .unwrap_err()
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        vec![
            "pools[1].launch_template: is required on AWS",
            "pools[1].instance_types: must not be empty on AWS"
        ]
    );
}

#[test]
fn aws_refuses_literal_secrets_naming_each_field() {
    let text = sample_toml().replace(r#""ssm:/sr/webhook/previous""#, r#""value:old-secret""#);
    let mut c = Config::from_toml(&text).unwrap();
    c.pools.truncate(1);
    c.github.auth = GitHubAuth::Pat {
        token: SecretRef::parse("value:ghp_literal").unwrap(),
    };
    let err = c.validate_for_aws().unwrap_err();
    let errs: Vec<String> = err.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errs,
        vec![
            "github.auth.token: value: secrets are for local testing only; on AWS use ssm:/name",
            "webhook.secrets[1]: value: secrets are for local testing only; on AWS use ssm:/name",
        ]
    );
    // The message names fields, never the secret.
    assert!(!err.to_string().contains("ghp_literal") && !err.to_string().contains("old-secret"));
    // Locally the same document is fine.
    assert!(c.validate().is_ok());
}

#[test]
fn allow_lists() {
    let mut c = Config::from_toml(sample_toml()).unwrap();
    assert!(c.allows("codertocat", "Codertocat/Hello-World"));
    assert!(!c.allows("octo-org", "octo-org/x"));
    c.allowed_repositories = vec!["Codertocat/Hello-World".into()];
    assert!(c.allows("Codertocat", "codertocat/hello-world"));
    assert!(!c.allows("Codertocat", "Codertocat/other"));
}

#[test]
fn secret_refs_redact_literal_values() {
    let r = SecretRef::parse("value:hunter2").unwrap();
    assert_eq!(format!("{r:?}"), "value:<redacted>");
    assert!(SecretRef::parse("ssm:").is_err());
}

// ---- property tests ----

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,15}"
}

fn label_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9._-]{0,20}"
}

fn pool_strategy() -> impl Strategy<Value = Pool> {
    (
        name_strategy(),
        prop::collection::hash_set(label_strategy().prop_map(|l| l.to_ascii_lowercase()), 1..5),
        1u32..50,
        1u32..5,
        any::<bool>(),
        30u64..3600,
        prop::option::of("[ -~]{0,40}"),
        prop::option::of((1u32..4, 4u32..16, prop::option::of(1u32..512))),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(name, labels, max_runners, weight, repo, boot, script, sizing, public)| Pool {
                name,
                labels: labels.into_iter().collect(),
                launch_template: Some("lt".into()),
                instance_types: vec!["m7i.large".into()],
                subnets: vec!["subnet-abc".into()],
                capacity_type: CapacityType::Spot,
                on_demand_fallback: repo,
                max_runners,
                weight,
                runner_group: "Default".into(),
                scope: if repo { Scope::Repo } else { Scope::Org },
                boot_timeout_secs: boot,
                idle_timeout_secs: 600,
                max_run_time_secs: 7200,
                startup_script: script,
                runner_user: if repo { "root" } else { "runner" }.into(),
                allow_unverified_runner: false,
                check_job_queued: repo,
                architecture: None,
                relaunch: Default::default(),
                spot: Default::default(),
                hot: None,
                sizing: sizing.map(|(lo, hi, disk)| SizingBounds {
                    cpu: [lo, hi],
                    ram_gib: Some([lo * 2, hi * 4]),
                    families: if repo {
                        vec!["m7i".into(), "c7i".into()]
                    } else {
                        vec![]
                    },
                    disk_gib: disk,
                    base_cpu: Some(lo),
                }),
                allow_public_repositories: public,
            },
        )
}

prop_compose! {
    fn config_strategy()(
        deployment in "[a-z][a-z0-9-]{0,19}",
        pools in prop::collection::vec(pool_strategy(), 1..4),
        pat in any::<bool>(),
        public in any::<bool>(),
    ) -> Config {
        let mut pools = pools;
        for (i, p) in pools.iter_mut().enumerate() {
            p.name = format!("{}{i}", &p.name[..p.name.len().min(14)]);
        }
        Config {
            deployment,
            github: GitHubConfig {
                api_url: "https://api.github.com".into(),
                auth: if pat {
                    GitHubAuth::Pat { token: SecretRef::Env("GH_TOKEN".into()) }
                } else {
                    GitHubAuth::App { app_id: 7.into(), private_key: SecretRef::File("/k.pem".into()) }
                },
            },
            webhook: WebhookConfig { secrets: vec![SecretRef::Ssm("/s".into())] },
            allowed_owners: vec![],
            allowed_repositories: vec!["o/r".into()],
            max_total_weight: Some(100),
            allow_public_repositories: public,
            runner_version: "2.329.0".into(),
            pools,
            recovery: Default::default(),
            local: None,
        }
    }
}

proptest! {
    #[test]
    fn valid_configs_round_trip_through_json_and_toml(c in config_strategy()) {
        prop_assert_eq!(c.validate(), Ok(()));
        prop_assert_eq!(&Config::from_json(&c.to_json()).unwrap(), &c);
        let toml_text = toml::to_string(&c).unwrap();
        prop_assert_eq!(&Config::from_toml(&toml_text).unwrap(), &c);
    }

    #[test]
    fn a_forbidden_character_is_always_named(
        c in config_strategy(),
        idx in any::<prop::sample::Index>(),
        bad in prop::sample::select(crate::names::FORBIDDEN_NAME_CHARS.to_vec()),
    ) {
        let mut c = c;
        let i = idx.index(c.pools.len());
        c.pools[i].name = format!("p{bad}");
        let err = Config::from_json(&c.to_json()).unwrap_err();
        let field = format!("pools[{i}].name");
        prop_assert!(err.errors.iter().any(|e| e.field == field && e.message.contains(bad)),
            "{:?}", err);
    }
}

#[test]
fn runner_version_is_latest_or_a_version_and_max_age_at_least_a_day() {
    let latest = format!("runner_version = \"latest\"\n{}", sample_toml());
    assert_eq!(Config::from_toml(&latest).unwrap().runner_version, "latest");
    let c = Config::from_toml(sample_toml()).unwrap();
    assert_eq!(c.runner_version, "2.329.0");
    assert_eq!(c.recovery.runner_cache.max_age_days, 30);
    let bad = format!("runner_version = \"v2.330\"\n{}", sample_toml());
    assert_eq!(
        errors_of(Config::from_toml(&bad)),
        vec![r#"runner_version: "v2.330" must be "latest" or a version like 2.329.0"#]
    );
    let zero = format!(
        "{}\n[recovery.runner_cache]\nmax_age_days = 0\n",
        sample_toml()
    );
    assert_eq!(
        errors_of(Config::from_toml(&zero)),
        vec!["recovery.runner_cache.max_age_days: must be at least 1"]
    );
}

fn with_sizing(sizing: &str) -> String {
    sample_toml().replace(
        "max_runners = 5\n",
        &format!("max_runners = 5\nsizing = {sizing}\n"),
    )
}

#[test]
fn sizing_bounds_load_from_toml() {
    let c = Config::from_toml(&with_sizing(
        r#"{ cpu = [2, 8], ram_gib = [4, 32], families = ["m7i", "c7i"], disk_gib = 100, base_cpu = 2 }"#,
    ))
    .unwrap();
    let s = c.pools[0].sizing.as_ref().expect("sizing");
    assert_eq!(s.cpu, [2, 8]);
    assert_eq!(s.ram_gib, Some([4, 32]));
    assert_eq!(s.disk_gib, Some(100));
    assert_eq!(c.pools[1].sizing, None);
    assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
}

#[test]
fn sizing_problems_name_their_field() {
    assert_eq!(
        errors_of(Config::from_toml(&with_sizing("{ cpu = [8, 2] }"))),
        vec!["pools[0].sizing.cpu: [8, 2] must be [min, max] with 1 <= min <= max"]
    );
    let errors = errors_of(Config::from_toml(&with_sizing(
        r#"{ cpu = [2, 8], ram_gib = [0, 8], families = ["m7g", "c7i.large"], disk_gib = 0 }"#,
    )));
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].starts_with("pools[0].sizing.ram_gib: "),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("pools[0].sizing.disk_gib: "),
        "{errors:?}"
    );
    assert_eq!(
        errors[2],
        r#"pools[0].sizing.families[0]: "m7g" is arm64 but the pool is x64"#
    );
    assert!(
        errors[3]
            .starts_with("pools[0].sizing.families[1]: \"c7i.large\" is not an instance family"),
        "{errors:?}"
    );
    // max_total_weight = 10: a 16-vCPU runner of weight 1 per 1 vCPU weighs 16.
    let errors = errors_of(Config::from_toml(&with_sizing("{ cpu = [1, 16] }")));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("pools[0].sizing.cpu: a 16-vCPU runner weighs 16"),
        "{errors:?}"
    );
    let errors = errors_of(Config::from_toml(&with_sizing("{ cpu = [2] }")));
    assert!(errors[0].starts_with("pools[0].sizing.cpu"), "{errors:?}");
}

#[test]
fn a_pool_label_may_not_use_the_sizing_prefix() {
    let text = sample_toml().replace(
        r#"labels = ["linux", "gpu"]"#,
        r#"labels = ["linux", "SpotRunner/cpu=8"]"#,
    );
    let errors = errors_of(Config::from_toml(&text));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("pools[1].labels[1]: \"SpotRunner/cpu=8\" uses the reserved prefix"),
        "{errors:?}"
    );
}
