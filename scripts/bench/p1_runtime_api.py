"""A minimal Lambda Runtime API for the P1 cold-start benchmark (stdlib only).

Starts the webhook binary as Lambda would (AWS_LAMBDA_RUNTIME_API pointing
here), serves

  GET  /2018-06-01/runtime/invocation/next            -> the next event
  POST /2018-06-01/runtime/invocation/<id>/response   -> the handler's answer
  POST /2018-06-01/runtime/invocation/<id>/error      -> a handler error
  POST /2018-06-01/runtime/init/error                 -> a failed cold start

and hands out Function URL events (payload 2.0) carrying a GitHub
`workflow_job` example signed with the webhook secret. Per cold start it
measures, on one monotonic clock:

  exec_to_ready_ms   exec of the binary -> its first `next` request
  first_event_ms     first event handed out -> its response
  warm_median_ms     median over the next WARM events
  peak_rss_kib       VmHWM from /proc/<pid>/status after the last event

and checks each answer (HTTP 202 queued), that no log line is WARN or worse
and that the invocation printed its EMF metric line.

  p1_runtime_api.py --bin BOOTSTRAP --example EXAMPLE.json --secret S \
      --env KEY=VALUE ... [--runs 5] [--warm 50] [--label L] [--baseline] --out FILE
"""
import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

PREFIX = "/2018-06-01/runtime"


def function_url_event(body: bytes, secret: str) -> bytes:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return json.dumps({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-github-event": "workflow_job",
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": sig,
            "user-agent": "GitHub-Hookshot/p1",
        },
        "requestContext": {
            "accountId": "anonymous", "apiId": "p1",
            "domainName": "p1.lambda-url.us-east-1.on.aws", "domainPrefix": "p1",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "GitHub-Hookshot/p1"},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }).encode()


class Run:
    """One cold start: the events to hand out and what was seen."""

    def __init__(self, events):
        self.events = list(events)
        self.next_index = 0
        self.handed = {}        # request id -> (index, monotonic ns handed out)
        self.latency_ns = {}    # index -> ns
        self.answers = {}       # index -> response body (JSON)
        self.errors = []
        self.ready_ns = None
        self.done = threading.Event()
        self.lock = threading.Lock()


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    run: Run = None  # set per cold start

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        run = Api.run
        if self.path != f"{PREFIX}/invocation/next":
            return self._reply(404)
        with run.lock:
            if run.ready_ns is None:
                run.ready_ns = time.monotonic_ns()
            i = run.next_index
            run.next_index += 1
        if i >= len(run.events):
            run.done.set()
            # Park the runtime until the benchmark kills it.
            time.sleep(3600)
            return
        rid = str(uuid.uuid4())
        body = run.events[i]
        headers = {
            "content-type": "application/json",
            "lambda-runtime-aws-request-id": rid,
            "lambda-runtime-deadline-ms": str(int(time.time() * 1000) + 10_000),
            "lambda-runtime-invoked-function-arn":
                "arn:aws:lambda:us-east-1:123456789012:function:p1-webhook",
            "lambda-runtime-trace-id": "Root=1-00000000-000000000000000000000000;Sampled=0",
        }
        with run.lock:
            run.handed[rid] = (i, time.monotonic_ns())
        self._reply(200, body, headers)

    def do_POST(self):
        run = Api.run
        now = time.monotonic_ns()
        body = self._body()
        parts = self.path[len(PREFIX):].strip("/").split("/")
        if parts == ["init", "error"]:
            run.errors.append(f"init error: {body.decode(errors='replace')}")
            run.done.set()
            return self._reply(202, b'{"status":"OK"}')
        if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            with run.lock:
                i, t0 = run.handed.pop(parts[1], (None, None))
            if i is None:
                return self._reply(400)
            run.latency_ns[i] = now - t0
            if parts[2] == "error":
                run.errors.append(f"event {i}: {body.decode(errors='replace')}")
            else:
                run.answers[i] = body
            return self._reply(202, b'{"status":"OK"}')
        return self._reply(404)


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def one_cold_start(args, port, env, events, log_path):
    run = Run(events)
    Api.run = run
    child_env = dict(env)
    child_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        t_exec = time.monotonic_ns()
        child = subprocess.Popen([args.bin], env=child_env, stdout=log, stderr=subprocess.STDOUT)
        finished = run.done.wait(timeout=120)
        rss = vm_hwm_kib(child.pid) if child.poll() is None else None
        child.kill()
        child.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    problems = list(run.errors)
    if not finished:
        problems.append("timed out waiting for the events to be handled")
    if run.ready_ns is None:
        problems.append("the binary never asked for an event")
    for i in range(len(events)):
        try:
            answer = json.loads(run.answers[i])
        except (KeyError, ValueError):
            problems.append(f"event {i}: no answer")
            continue
        if answer.get("statusCode") != 202 or '"queued":true' not in answer.get("body", ""):
            problems.append(f"event {i}: {answer}")
            break
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            problems.append(f"not a JSON log line: {line[:200]}")
    warns = [r for r in records if r.get("level") in ("WARN", "ERROR")]
    emf = [r for r in records if "_aws" in r and "webhook_accepted" in r]
    if warns:
        problems.append(f"{len(warns)} WARN/ERROR line(s), first: {json.dumps(warns[0])[:300]}")
    if len(emf) != len(events) and not args.baseline:
        problems.append(f"{len(emf)} EMF webhook_accepted lines for {len(events)} invocations")
    lat = [run.latency_ns[i] / 1e6 for i in sorted(run.latency_ns)]
    return {
        "exec_to_ready_ms": round((run.ready_ns - t_exec) / 1e6, 3) if run.ready_ns else None,
        "first_event_ms": round(lat[0], 3) if lat else None,
        "warm_median_ms": round(statistics.median(lat[1:]), 3) if len(lat) > 1 else None,
        "warm_events": max(0, len(lat) - 1),
        "peak_rss_kib": rss,
        "warn_lines": len(warns),
        "emf_lines": len(emf),
        "ok": not problems,
        "problems": problems[:5],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--example", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warm", type=int, default=50)
    p.add_argument("--label", default="")
    p.add_argument("--baseline", action="store_true",
                   help="a binary from before the EMF metrics: do not require them")
    p.add_argument("--logs", default=".")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    with open(args.example, "rb") as f:
        body = json.dumps(json.load(f), separators=(",", ":")).encode()
    events = [function_url_event(body, args.secret) for _ in range(1 + args.warm)]
    env = {"PATH": os.environ.get("PATH", "")}
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    size = os.stat(args.bin).st_size
    results = []
    with open(args.out, "a") as out:
        for n in range(args.runs):
            r = one_cold_start(args, port, env, events, os.path.join(args.logs, f"run{n}.log"))
            r = {"bench": "p1_cold_start", "label": args.label, "run": n,
                 "binary_bytes": size, **r}
            results.append(r)
            out.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
        good = [r for r in results if r["ok"]]
        med = lambda k: round(statistics.median(r[k] for r in good), 3) if good else None
        summary = {
            "bench": "p1_cold_start_summary", "label": args.label, "runs": len(results),
            "ok_runs": len(good), "binary_bytes": size,
            "exec_to_ready_ms_median": med("exec_to_ready_ms"),
            "exec_to_ready_ms_min": min((r["exec_to_ready_ms"] for r in good), default=None),
            "first_event_ms_median": med("first_event_ms"),
            "warm_median_ms_median": med("warm_median_ms"),
            "peak_rss_kib_max": max((r["peak_rss_kib"] or 0 for r in good), default=None),
            "target_exec_to_ready_ms": 8,
        }
        out.write(json.dumps(summary) + "\n")
        print(json.dumps(summary), flush=True)
    server.shutdown()
    sys.exit(0 if len(good) == len(results) else 1)


if __name__ == "__main__":
    main()
