use super::*;
use crate::config::Config;

fn labels(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

/// A spot pool of m7i/c7i types from 2 to 16 vCPUs, sized within 2–16 vCPUs.
fn config(sizing: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"deployment":"sr","github":{{"auth":{{"type":"pat","token":"value:x"}}}},
            "webhook":{{"secrets":["value:s"]}},
            "max_total_weight": 20,
            "pools":[{{"name":"cpu","labels":["linux"],"launch_template":"lt",
                      "instance_types":["m7i.large","m7i.2xlarge","c7i.4xlarge"],
                      "subnets":["subnet-1"],"max_runners":3,"weight":2
                      {sizing}}}]}}"#
    ))
    .unwrap()
}

fn sized_pool() -> Pool {
    config(r#","sizing":{"cpu":[2,16],"ram_gib":[4,64],"disk_gib":100}"#)
        .pools
        .remove(0)
}

fn refused(pool: &Pool, l: &[&str], max: Option<u32>) -> SizingError {
    decide(pool, &labels(l), max).expect_err("should be refused")
}

#[test]
fn reserved_labels_are_recognised_in_any_case_and_split_off() {
    assert!(is_reserved("spotrunner/cpu=8"));
    assert!(is_reserved("SpotRunner/CPU=8"));
    assert!(!is_reserved("spotrunner"));
    assert!(!is_reserved("linux"));
    assert!(!is_reserved("x/spotrunner/cpu=8"));
    let (plain, sizing) = split_labels(&labels(&[
        "self-hosted",
        "spotrunner/cpu=8",
        "linux",
        "Spotrunner/ram=32",
    ]));
    assert_eq!(plain, labels(&["self-hosted", "linux"]));
    assert_eq!(sizing, labels(&["spotrunner/cpu=8", "Spotrunner/ram=32"]));
}

#[test]
fn every_key_parses() {
    let size = parse(&labels(&[
        "linux",
        "spotrunner/cpu=8",
        "spotrunner/RAM=32",
        "spotrunner/family=C7i+m7i",
        "spotrunner/disk=100",
        "spotrunner/spot=False",
    ]))
    .unwrap();
    assert_eq!(size.cpu, Some(8));
    assert_eq!(size.ram_gib, Some(32));
    assert_eq!(size.families, vec!["c7i", "m7i"]);
    assert_eq!(size.disk_gib, Some(100));
    assert_eq!(size.spot, Some(false));
    assert_eq!(size.labels.len(), 5, "linux is not a sizing label");
    assert_eq!(
        size.summary(),
        "cpu=8 ram=32 family=c7i+m7i disk=100 spot=false"
    );
    assert!(parse(&labels(&["linux"])).unwrap().is_empty());
}

#[test]
fn malformed_unknown_and_repeated_labels_are_named() {
    let e = parse(&labels(&["spotrunner/gpu=1"])).unwrap_err();
    assert_eq!(e.label, "spotrunner/gpu=1");
    assert!(e.reason.contains("unknown sizing key \"gpu\""), "{e}");
    for bad in [
        "spotrunner/cpu=eight",
        "spotrunner/cpu=0",
        "spotrunner/cpu=-2",
        "spotrunner/ram=",
        "spotrunner/spot=maybe",
        "spotrunner/family=c7i+",
        "spotrunner/family=c7i.large",
        "spotrunner/cpu",
    ] {
        let e = parse(&labels(&["linux", bad])).unwrap_err();
        assert_eq!(e.label, bad, "{e}");
        assert!(
            e.to_string().starts_with(&format!("label {bad:?}: ")),
            "{e}"
        );
    }
    let e = parse(&labels(&["spotrunner/cpu=8", "spotrunner/CPU=4"])).unwrap_err();
    assert_eq!(e.label, "spotrunner/CPU=4");
    assert!(
        e.reason.contains("already asked by \"spotrunner/cpu=8\""),
        "{e}"
    );
    // The very same label twice asks nothing new.
    let size = parse(&labels(&["spotrunner/cpu=8", "spotrunner/cpu=8"])).unwrap();
    assert_eq!(size.labels, labels(&["spotrunner/cpu=8"]));
}

#[test]
fn eight_cpus_in_a_two_to_sixteen_pool_ask_exactly_eight() {
    let pool = sized_pool();
    let s = decide(&pool, &labels(&["linux", "spotrunner/cpu=8"]), Some(20))
        .unwrap()
        .expect("sized");
    let i = s.instance.clone().expect("instance requirements");
    assert_eq!((i.vcpu_min, i.vcpu_max), (8, 8));
    assert_eq!((i.memory_mib_min, i.memory_mib_max), (4096, Some(65536)));
    // The families of the pool's instance types, as patterns.
    assert_eq!(i.allowed_instance_types, vec!["m7i.*", "c7i.*"]);
    assert_eq!(s.capacity, None);
    // weight 2 is for base_cpu = cpu[0] = 2: 8 vCPUs weigh 2 × 8 / 2.
    assert_eq!(s.weight, 8);
    assert!(s.describe().contains("8 vCPU"), "{}", s.describe());
}

#[test]
fn a_job_without_sizing_labels_is_not_sized() {
    assert_eq!(decide(&sized_pool(), &labels(&["linux"]), None), Ok(None));
    let plain = config("").pools.remove(0);
    assert_eq!(decide(&plain, &labels(&["linux"]), None), Ok(None));
}

#[test]
fn out_of_bounds_requests_name_the_label_and_the_bound() {
    let pool = sized_pool();
    let e = refused(&pool, &["linux", "spotrunner/cpu=32"], None);
    assert_eq!(e.label, "spotrunner/cpu=32");
    assert!(e.reason.contains("sizing.cpu = [2, 16]"), "{e}");
    let e = refused(&pool, &["spotrunner/cpu=1"], None);
    assert!(e.reason.contains("sizing.cpu = [2, 16]"), "{e}");
    let e = refused(&pool, &["spotrunner/ram=128"], None);
    assert_eq!(e.label, "spotrunner/ram=128");
    assert!(e.reason.contains("sizing.ram_gib = [4, 64]"), "{e}");
    let e = refused(&pool, &["spotrunner/family=r7i"], None);
    assert!(e.reason.contains("[m7i, c7i]"), "{e}");
    let e = refused(&pool, &["spotrunner/disk=200"], None);
    assert!(e.reason.contains("sizing.disk_gib = 100"), "{e}");
    // Weighed against the global quota: 16 vCPUs weigh 16 > 10.
    let e = refused(&pool, &["spotrunner/cpu=16"], Some(10));
    assert_eq!(e.label, "spotrunner/cpu=16");
    assert!(e.reason.contains("max_total_weight 10"), "{e}");
}

#[test]
fn a_pool_without_sizing_refuses_every_sizing_label() {
    let plain = config("").pools.remove(0);
    let e = refused(&plain, &["linux", "spotrunner/spot=false"], None);
    assert_eq!(e.label, "spotrunner/spot=false");
    assert!(e.reason.contains("declares no sizing bounds"), "{e}");
    let no_ram = config(r#","sizing":{"cpu":[2,16]}"#).pools.remove(0);
    assert!(
        refused(&no_ram, &["spotrunner/ram=8"], None)
            .reason
            .contains("no sizing.ram_gib")
    );
    assert!(
        refused(&no_ram, &["spotrunner/disk=8"], None)
            .reason
            .contains("no sizing.disk_gib")
    );
}

#[test]
fn ram_or_family_without_cpu_take_the_pools_range_and_weigh_as_its_largest() {
    let pool = sized_pool();
    let s = decide(
        &pool,
        &labels(&["spotrunner/ram=32", "spotrunner/family=c7i"]),
        None,
    )
    .unwrap()
    .unwrap();
    let i = s.instance.unwrap();
    assert_eq!((i.vcpu_min, i.vcpu_max), (2, 16));
    assert_eq!(i.memory_mib_min, 32 * 1024);
    assert_eq!(i.allowed_instance_types, vec!["c7i.*"]);
    assert_eq!(s.weight, 16);
}

#[test]
fn disk_and_spot_change_no_instance_and_no_weight() {
    let pool = sized_pool();
    let s = decide(
        &pool,
        &labels(&["spotrunner/disk=100", "spotrunner/spot=false"]),
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.instance, None);
    assert_eq!(s.capacity, Some(CapacityType::OnDemand));
    assert_eq!(s.weight, pool.weight);
    let s = decide(&pool, &labels(&["spotrunner/spot=true"]), None)
        .unwrap()
        .unwrap();
    assert_eq!(s.capacity, None);
    let mut od = pool.clone();
    od.capacity_type = CapacityType::OnDemand;
    assert!(
        refused(&od, &["spotrunner/spot=true"], None)
            .reason
            .contains("on-demand only")
    );
}

#[test]
fn weight_grows_with_the_size_rounding_up_and_never_below_the_pools() {
    let mut b = sized_pool().sizing.unwrap();
    assert_eq!(b.weight_for(2, 2), 2);
    assert_eq!(b.weight_for(2, 3), 3);
    assert_eq!(b.weight_for(1, 3), 2, "ceil(3 / 2)");
    b.base_cpu = Some(4);
    assert_eq!(b.weight_for(2, 2), 2, "never below the pool's weight");
    assert_eq!(b.weight_for(2, 16), 8);
}
