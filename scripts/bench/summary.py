#!/usr/bin/env python3
"""Human summary of scripts/bench.sh's JSON lines (one per burst case; `--start FILE`: the
start-time table only)."""
import json
import sys


def lat(d):
    if not d or not d.get("n"):
        return "-"
    return f"p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms (n={d['n']})"


def secs(v):
    return "-" if v is None else f"{v:.1f} s"


def start_table(cases):
    """The start-time cases (burst start): webhook -> job in_progress, one table."""
    if not cases:
        return
    print("\n[start-local] webhook (queued at t0) -> job in_progress (the fake GitHub's dispatch), "
          "jobs one at a time from rest")
    print(f"  {'case':<14} {'hot':>3} {'jobs':>4} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} "
          f"{'mean ms':>8} {'own runner':>10}  finished")
    for c in cases:
        r = c.get("result", {})
        if r.get("skipped"):
            print(f"  {c['case']:<14} {c['hot']:>3} {c['jobs']:>4}  skipped: {r['skipped'].splitlines()[0][:110]}")
            continue
        d = r.get("webhook_to_in_progress") or {}
        if not d.get("n"):
            print(f"  {c['case']:<14} {c['hot']:>3} {c['jobs']:>4}  no job started (finished: {r.get('finished')})")
            continue
        print(f"  {c['case']:<14} {c['hot']:>3} {d['n']:>4} {d['p50_ms']:>8.1f} {d['p90_ms']:>8.1f} "
              f"{d['max_ms']:>8.1f} {d['mean_ms']:>8.1f} {r.get('taken_by_own_runner', 0):>10}  {r.get('finished')}")


def main(path, only_start=False):
    starts = []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        c = json.loads(line)
        if c.get("bench") == "start-local":
            starts.append(c)
            continue
        if only_start:
            continue
        r = c.get("result", {})
        print(f"\n[{c['bench']}] {c['case']}: {c['jobs']} jobs + {c['duplicates']} duplicates, "
              f"max_runners {c['max_runners']}, {c['run_secs']} s jobs ({c['at']})")
        http = r.get("webhook_http") or r.get("webhook_handler")
        dups = r.get("webhook_http_duplicates") or r.get("webhook_handler_duplicates")
        print(f"  finished: {r.get('finished')}   wall {secs(r.get('wall_s'))}, sending {secs(r.get('send_s'))}")
        print(f"  webhook latency:        {lat(http)}; duplicates {lat(dups)}; statuses {r.get('webhook_status')}")
        print(f"  webhook -> launch:      {lat(r.get('webhook_to_launch'))}")
        print(f"  all launched:           {secs(r.get('all_launched_s'))}   all done: {secs(r.get('all_done_s'))}")
        print(f"  launches {r.get('launches')} for {r.get('jobs_launched')} jobs; job states {r.get('job_states')}")
        u = r.get("utilisation") or {}
        if u.get("saturated"):
            print(f"  utilisation at saturation ({u['period_s']:.1f} s, {u['from_s']:.1f}-{u['to_s']:.1f} s): "
                  f"slots {u['slots']:.1%}, instances {u['instances']:.1%}, jobs running {u['jobs']:.1%}")
        else:
            print(f"  utilisation: not saturated (peak {u.get('peak_slots_used')} slots)")
        if "github_calls_per_job" in r:
            print(f"  GitHub calls per job:   {r['github_calls_per_job']}")
        p3 = r.get("p3")
        if p3:
            print(f"  P3 calls per job:       {p3['per_job_by_service']}")
            for svc, ops in p3["per_job_by_service_and_operation"].items():
                print(f"    {svc:9} {ops}")
            print(f"    by handler: {p3['per_job_by_service_and_handler']}")
            print(f"    SQS event source mapping (not the handlers): {p3.get('event_source_mapping_per_job')}")
    start_table(starts)


if __name__ == "__main__":
    if sys.argv[1] == "--start":
        main(sys.argv[2], only_start=True)
    else:
        main(sys.argv[1])
