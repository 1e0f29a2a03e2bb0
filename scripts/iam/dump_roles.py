#!/usr/bin/env python3
"""Dump every IAM role of one spotrunner deployment, as deployed, for the
effective-permission matrix (scripts/iam/matrix.mjs).

    dump_roles.py --endpoint URL --outputs tf-outputs.json --out policies.json

Reads from the IAM API at URL (moto_server in scripts/terraform-check.sh; any
IAM endpoint works): every role tagged spotrunner:deployment = <prefix> (they
must be exactly the roles of the `role_arns` output), each with its inline
policies and every attached managed policy's default version, AWS managed
documents included (moto loads them with MOTO_IAM_LOAD_MANAGED_POLICIES=true).
Also stores the key policy of the parameter KMS key (KMS needs it to let IAM
policies decide), the queue policies of the stop-events queue and its DLQ (who
may send EventBridge's runner events), the documents of AmazonSSMManagedInstanceCore and
AdministratorAccess as the matrix's regression inputs, and the Terraform
outputs the matrix names resources with.

And, found in the emulator by the deployment tag (not from the module's own
outputs, so that a resource the guardrails forgot still gets its rows): the
EventBridge rules, the event source mappings of the functions, the HTTP APIs,
the log groups, the alarms, the security groups the launch templates use and
the module's own ones, and the custom `resolve:ssm:` AMI parameters of the
launch templates (`deployed` in the dump).
"""
import argparse
import json
import sys

import boto3

DEPLOYMENT_TAG = "spotrunner:deployment"
REFERENCE_POLICIES = ["AmazonSSMManagedInstanceCore", "AdministratorAccess"]


def tf_value(outputs, name):
    if name not in outputs:
        sys.exit(f"dump_roles: output {name!r} missing from the Terraform outputs")
    return outputs[name]["value"]


def policy_document(iam, arn):
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    return policy["PolicyName"], version["PolicyVersion"]["Document"]


def as_dict(doc):
    return json.loads(doc) if isinstance(doc, str) else doc


def tagged(tags, prefix):
    """Tags as a list of {Key, Value} or a dict: is it ours?"""
    if isinstance(tags, dict):
        return tags.get(DEPLOYMENT_TAG) == prefix
    return {"Key": DEPLOYMENT_TAG, "Value": prefix} in (tags or [])


def deployed_resources(session, endpoint, prefix, outputs):
    """The deployment's resources a job could use to switch the control plane
    off, found by their deployment tag."""
    found = {}

    events = session.client("events", endpoint_url=endpoint)
    rules, token = [], None
    while True:
        page = events.list_rules(NamePrefix=f"{prefix}-", **({"NextToken": token} if token else {}))
        for r in page.get("Rules", []):
            if tagged(events.list_tags_for_resource(ResourceARN=r["Arn"]).get("Tags"), prefix):
                rules.append(r["Arn"])
        token = page.get("NextToken")
        if not token:
            break
    found["event_rules"] = sorted(rules)

    lam = session.client("lambda", endpoint_url=endpoint)
    # Every mapping of the account, kept when it feeds one of our functions.
    ours = set(tf_value(outputs, "function_names").values())
    mappings, marker = [], None
    while True:
        page = lam.list_event_source_mappings(**({"Marker": marker} if marker else {}))
        for m in page.get("EventSourceMappings", []):
            if m.get("FunctionArn", "").split(":function:")[-1].split(":")[0] in ours:
                mappings.append(m["UUID"])
        marker = page.get("NextMarker")
        if not marker:
            break
    found["event_source_mappings"] = sorted(mappings)

    apis = session.client("apigatewayv2", endpoint_url=endpoint)
    found["apis"] = sorted(a["ApiId"] for a in apis.get_apis().get("Items", []) if tagged(a.get("Tags"), prefix))

    logs = session.client("logs", endpoint_url=endpoint)
    groups = []
    for p in ("/aws/lambda/", "/aws/apigateway/"):
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=f"{p}{prefix}-"):
            for g in page["logGroups"]:
                if tagged(logs.list_tags_log_group(logGroupName=g["logGroupName"]).get("tags"), prefix):
                    groups.append(g["logGroupName"])
    found["log_groups"] = sorted(groups)

    cw = session.client("cloudwatch", endpoint_url=endpoint)
    alarms = []
    for page in cw.get_paginator("describe_alarms").paginate(AlarmNamePrefix=f"{prefix}-"):
        for a in page["MetricAlarms"]:
            if tagged(cw.list_tags_for_resource(ResourceARN=a["AlarmArn"]).get("Tags"), prefix):
                alarms.append(a["AlarmName"])
    found["alarms"] = sorted(alarms)

    ec2 = session.client("ec2", endpoint_url=endpoint)
    groups = {
        g["GroupId"]
        for g in ec2.describe_security_groups(Filters=[{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [prefix]}])["SecurityGroups"]
    }
    ami_parameters = set()
    for lt in tf_value(outputs, "launch_templates").values():
        versions = ec2.describe_launch_template_versions(LaunchTemplateId=lt["id"], Versions=["$Latest"])
        for v in versions["LaunchTemplateVersions"]:
            data = v["LaunchTemplateData"]
            for ni in data.get("NetworkInterfaces", []):
                groups.update(ni.get("Groups", []))
            groups.update(data.get("SecurityGroupIds", []))
            image = data.get("ImageId", "")
            if image.startswith("resolve:ssm:"):
                name = image[len("resolve:ssm:"):].split(":")[0]
                if not name.startswith("/aws/service/"):
                    ami_parameters.add(name)
    found["security_groups"] = sorted(groups)
    found["ami_parameters"] = sorted(ami_parameters)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--outputs", required=True, help="terraform output -json of examples/local")
    ap.add_argument("--out", required=True)
    ap.add_argument("--region", default=None)
    args = ap.parse_args()

    outputs = json.load(open(args.outputs))
    prefix = tf_value(outputs, "prefix")
    region = args.region or tf_value(outputs, "region")
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )
    iam = session.client("iam", endpoint_url=args.endpoint)
    sts = session.client("sts", endpoint_url=args.endpoint)
    account = sts.get_caller_identity()["Account"]

    expected = tf_value(outputs, "role_arns")  # logical name -> ARN
    by_arn = {arn: name for name, arn in expected.items()}

    roles = {}
    tagged = set()
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            tags = iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
            if {"Key": DEPLOYMENT_TAG, "Value": prefix} not in tags:
                continue
            tagged.add(role["Arn"])
            inline = []
            for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
                doc = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
                inline.append({"name": name, "document": as_dict(doc)})
            attached = []
            for page2 in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role["RoleName"]):
                for a in page2["AttachedPolicies"]:
                    pname, doc = policy_document(iam, a["PolicyArn"])
                    attached.append({"arn": a["PolicyArn"], "name": pname, "document": as_dict(doc)})
            roles[by_arn.get(role["Arn"], role["RoleName"])] = {
                "name": role["RoleName"],
                "arn": role["Arn"],
                "inline": inline,
                "attached": attached,
            }

    if tagged != set(expected.values()):
        sys.exit(
            "dump_roles: the roles tagged spotrunner:deployment=%s %s differ from the role_arns output %s"
            % (prefix, sorted(tagged), sorted(expected.values()))
        )

    partition = next(iter(expected.values())).split(":")[1]
    reference = {}
    for name in REFERENCE_POLICIES:
        _, doc = policy_document(iam, f"arn:{partition}:iam::aws:policy/{name}")
        reference[name] = as_dict(doc)

    # KMS authorises a key's use only when its key policy lets IAM policies
    # decide (or allows the caller itself): the matrix needs the key policy.
    key_policies = {}
    key_arn = outputs.get("parameter_kms_key_arn", {}).get("value")
    if key_arn:
        kms = session.client("kms", endpoint_url=args.endpoint)
        key_policies[key_arn] = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])

    # Resource policies of the queues EventBridge sends to (the stop-events
    # queue and its DLQ): the matrix checks that only the stop-runner rules may.
    queue_policies = {}
    sqs = session.client("sqs", endpoint_url=args.endpoint)
    for name in ("stop_events_queue_url", "stop_events_dlq_url"):
        url = outputs.get(name, {}).get("value")
        if not url:
            continue
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {})
        if "Policy" not in attrs:
            sys.exit(f"dump_roles: queue {url} ({name}) has no queue policy")
        queue_policies[url] = json.loads(attrs["Policy"])

    deployed = deployed_resources(session, args.endpoint, prefix, outputs)

    keep = [
        "prefix", "region", "role_arns", "config_parameter", "github_credential_parameter",
        "webhook_secret_parameters", "jit_parameter_prefix", "jobs_queue_url", "bootstrap_queue_url",
        "dlq_url", "ledger_table", "bucket", "bootstrap_script_key", "ssm_document", "launch_templates",
        "function_names", "runner_instance_profile", "parameter_kms_key_arn",
        "bootstrap_dlq_url", "stop_events_queue_url", "stop_events_dlq_url", "event_rules",
        "runner_roles",
    ]
    dump = {
        "account": account,
        "partition": partition,
        "region": region,
        "prefix": prefix,
        "outputs": {k: outputs[k]["value"] for k in keep if k in outputs},
        "roles": roles,
        "reference_policies": reference,
        "key_policies": key_policies,
        "queue_policies": queue_policies,
        "deployed": deployed,
    }
    with open(args.out, "w") as f:
        json.dump(dump, f, indent=1, sort_keys=True)
    print(
        f"dump_roles: {len(roles)} roles of {prefix} "
        + ", ".join(f"{k} ({len(v['inline'])} inline, {len(v['attached'])} attached)" for k, v in sorted(roles.items()))
        + "; deployed: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(deployed.items()))
        + f" -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
