"""AWS-side helpers for scripts/webhook-smoke.sh, against moto (boto3 ships with moto).

setup ENDPOINT CONFIG_JSON SECRET  -> prints the jobs queue URL
post URL SECRET EXAMPLE_JSON       -> signs and POSTs the example, prints status and body
receive ENDPOINT QUEUE_URL          -> prints the job messages on the queue, as JSON lines
"""
import hashlib
import hmac
import json
import sys
import urllib.request

import boto3


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def setup(endpoint, config_path, secret):
    ssm = client("ssm", endpoint)
    with open(config_path) as f:
        ssm.put_parameter(Name="/smoke/config", Value=f.read(), Type="String", Overwrite=True)
    ssm.put_parameter(Name="/smoke/webhook-secret", Value=secret, Type="SecureString", Overwrite=True)
    print(client("sqs", endpoint).create_queue(QueueName="smoke-jobs")["QueueUrl"])


def post(url, secret, example_path):
    with open(example_path, "rb") as f:
        body = f.read()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "content-type": "application/json",
        "x-github-event": "workflow_job",
        "x-github-delivery": "smoke-delivery",
        "x-hub-signature-256": sig,
    })
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            print(r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())


def receive(endpoint, queue_url):
    r = client("sqs", endpoint).receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    for m in r.get("Messages", []):
        print(m["Body"])


if __name__ == "__main__":
    {"setup": setup, "post": post, "receive": receive}[sys.argv[1]](*sys.argv[2:])
