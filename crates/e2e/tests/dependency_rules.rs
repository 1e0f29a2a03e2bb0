//! Rules about what each Lambda links, checked on the resolved dependency tree.

use std::process::Command;

fn tree(package: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_webhook_links_no_ec2_and_no_aws_lc() {
    let t = tree("spotrunner-webhook");
    assert!(t.contains("aws-sdk-sqs"), "sanity: the tree was read");
    for banned in [
        "aws-sdk-ec2",
        "spotrunner-aws-ec2",
        "aws-lc-sys",
        "aws-sdk-sso ",
    ] {
        assert!(!t.contains(banned), "webhook must not depend on {banned}");
    }
}

#[test]
fn core_knows_no_aws_sdk_and_no_http_client() {
    let t = tree("spotrunner-core");
    for banned in ["aws-sdk-", "aws-config", "reqwest", "hyper "] {
        assert!(!t.contains(banned), "core must not depend on {banned}");
    }
}

#[test]
fn the_dlq_mover_links_no_ec2_and_no_aws_lc() {
    let t = tree("spotrunner-dlq-mover");
    assert!(t.contains("aws-sdk-sqs"), "sanity: the tree was read");
    for banned in [
        "aws-sdk-ec2",
        "spotrunner-aws-ec2",
        "aws-lc-sys",
        "aws-sdk-sso ",
    ] {
        assert!(!t.contains(banned), "dlq-mover must not depend on {banned}");
    }
}

#[test]
fn only_recovery_links_s3_and_it_links_no_aws_lc() {
    for lambda in [
        "spotrunner-webhook",
        "spotrunner-create-runner",
        "spotrunner-stop-runner",
        "spotrunner-janitor",
        "spotrunner-dlq-mover",
    ] {
        let t = tree(lambda);
        assert!(
            t.contains("aws-sdk-sqs"),
            "sanity: the tree of {lambda} was read"
        );
        for banned in ["aws-sdk-s3", "spotrunner-aws-s3"] {
            assert!(!t.contains(banned), "{lambda} must not depend on {banned}");
        }
    }
    let t = tree("spotrunner-recovery");
    assert!(
        t.contains("aws-sdk-s3"),
        "recovery fills the runner cache on S3"
    );
    for banned in ["aws-lc-sys", "aws-sdk-ec2", "aws-sdk-sso "] {
        assert!(!t.contains(banned), "recovery must not depend on {banned}");
    }
}
