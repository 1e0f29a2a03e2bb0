use super::*;
use crate::config::{CapacityType, Pool, Scope};
use proptest::prelude::*;

fn pool(name: &str, labels: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        launch_template: None,
        instance_types: vec![],
        subnets: vec![],
        capacity_type: CapacityType::Spot,
        on_demand_fallback: false,
        max_runners: 1,
        weight: 1,
        runner_group: "Default".into(),
        scope: Scope::Org,
        boot_timeout_secs: 300,
        idle_timeout_secs: 900,
        max_run_time_secs: 3600,
        startup_script: None,
        runner_user: "runner".into(),
        allow_unverified_runner: false,
        check_job_queued: false,
        architecture: None,
        relaunch: Default::default(),
        spot: Default::default(),
        hot: None,
        sizing: None,
        allow_public_repositories: None,
    }
}

fn labels(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

#[test]
fn explain_names_the_winner_and_why_each_other_pool_lost() {
    let pools = vec![
        pool("gpu", &["linux", "gpu"]),
        pool("big", &["linux", "x64", "large"]),
        pool("small", &["linux", "x64"]),
        pool("small2", &["linux", "x64"]),
    ];
    let e = explain(&pools, &labels(&["self-hosted", "linux", "x64"]));
    assert_eq!(e.chosen.as_deref(), Some("small"));
    let why: Vec<(&str, &str)> = e
        .pools
        .iter()
        .map(|v| (v.pool.as_str(), v.reason.as_str()))
        .collect();
    assert!(why[0].1.contains("lacks label(s) x64"), "{why:?}");
    assert!(why[1].1.contains("less specific"), "{why:?}");
    assert!(why[2].1.starts_with("chosen"), "{why:?}");
    assert!(why[3].1.contains("earlier pool wins the tie"), "{why:?}");
    let none = explain(&pools, &labels(&["windows"]));
    assert_eq!(none.chosen, None);
    assert!(none.pools.iter().all(|v| v.reason.contains("windows")));
}

#[test]
fn most_specific_pool_wins_and_ties_go_to_the_first() {
    let pools = vec![
        pool("big", &["linux", "x64", "large", "gpu"]),
        pool("a", &["linux", "x64"]),
        pool("b", &["linux", "x64"]),
    ];
    let got = match_pool(&pools, &labels(&["self-hosted", "Linux", "X64"]));
    assert_eq!(got.map(|p| p.name.as_str()), Some("a"));
    let got = match_pool(&pools, &labels(&["gpu"]));
    assert_eq!(got.map(|p| p.name.as_str()), Some("big"));
}

#[test]
fn a_label_no_pool_has_means_not_ours() {
    let pools = vec![pool("a", &["linux"])];
    assert!(match_pool(&pools, &labels(&["self-hosted", "windows"])).is_none());
    assert!(match_pool(&pools, &labels(&["ubuntu-latest"])).is_none());
    assert!(match_pool(&pools, &[]).is_none());
    assert_eq!(
        fit(&pools[0], &labels(&["linux", "arm64", "gpu"])),
        PoolFit::Missing(labels(&["arm64", "gpu"]))
    );
}

#[test]
fn self_hosted_alone_matches_every_pool() {
    let pools = vec![pool("a", &["linux", "x64"]), pool("b", &["linux"])];
    let got = match_pool(&pools, &labels(&["self-hosted"]));
    assert_eq!(got.map(|p| p.name.as_str()), Some("b"));
}

fn label() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "linux",
        "x64",
        "arm64",
        "gpu",
        "large",
        "self-hosted",
        "db",
    ])
    .prop_map(String::from)
}

fn random_case(s: &str, flips: &[bool]) -> String {
    s.chars()
        .zip(flips.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    /// The chosen pool holds every job label, and no matching pool is more specific
    /// or equally specific and earlier.
    #[test]
    fn choice_is_sound_and_most_specific(
        pool_labels in prop::collection::vec(prop::collection::hash_set(label(), 1..5), 1..6),
        job in prop::collection::vec(label(), 1..4),
        flips in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let pools: Vec<Pool> = pool_labels
            .iter()
            .enumerate()
            .map(|(i, ls)| {
                let v: Vec<&str> = ls.iter().map(|s| s.as_str()).collect();
                pool(&format!("p{i}"), &v)
            })
            .collect();
        let job: Vec<String> = job.iter().map(|l| random_case(l, &flips)).collect();
        let holds = |p: &Pool| job.iter().all(|l| l.eq_ignore_ascii_case("self-hosted")
            || p.labels.iter().any(|pl| pl.eq_ignore_ascii_case(l)));
        match match_pool(&pools, &job) {
            None => prop_assert!(pools.iter().all(|p| !holds(p))),
            Some(chosen) => {
                prop_assert!(holds(chosen));
                let idx = pools.iter().position(|p| p.name == chosen.name).unwrap();
                let PoolFit::Fits { extra: best } = fit(chosen, &job) else {
                    return Err(TestCaseError::fail("chosen pool must fit"));
                };
                for (i, p) in pools.iter().enumerate() {
                    if let PoolFit::Fits { extra } = fit(p, &job) {
                        prop_assert!(extra >= best);
                        if i < idx { prop_assert!(extra > best); }
                    }
                }
            }
        }
    }
}

#[test]
fn sizing_labels_take_no_part_in_matching() {
    let pools = vec![pool("big", &["linux", "large"]), pool("small", &["linux"])];
    let job = labels(&[
        "self-hosted",
        "linux",
        "spotrunner/cpu=8",
        "SpotRunner/ram=32",
    ]);
    assert_eq!(fit(&pools[1], &job), PoolFit::Fits { extra: 0 });
    assert_eq!(
        match_pool(&pools, &job).map(|p| p.name.as_str()),
        Some("small")
    );
    let e = explain(&pools, &job);
    assert_eq!(e.chosen.as_deref(), Some("small"));
    assert!(e.pools[0].reason.contains("less specific"), "{e:?}");
    // Sizing labels alone are no labels at all.
    assert!(match_pool(&pools, &labels(&["spotrunner/cpu=8"])).is_none());
}
