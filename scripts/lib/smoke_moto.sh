# shellcheck shell=bash
# Sourced by scripts/webhook-smoke.sh and scripts/bench/p1-cold-start.sh: a
# work directory cleaned up on exit, a moto server on a free port, and the
# webhook's deployment in it (/smoke/config, /smoke/webhook-secret, the
# smoke-jobs queue). Expects PY; sets work, pids, endpoint, queue_url.
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 "${2:-600}"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.5; done; echo "port $1 never opened" >&2; return 1; }

# Start moto and set up the deployment with webhook secret $1.
smoke_moto_setup() {
  local moto_port
  moto_port=$(free_port)
  MOTO_IAM_LOAD_MANAGED_POLICIES=true moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
  pids+=($!)
  wait_port "$moto_port" 60
  endpoint="http://127.0.0.1:$moto_port"
  cat >"$work/config.json" <<JSON
{"deployment":"smoke","allowed_owners":["*"],"allow_public_repositories":true,
 "github":{"auth":{"type":"pat","token":"env:GH_TOKEN"}},
 "webhook":{"secrets":["ssm:/smoke/webhook-secret"]},
 "pools":[{"name":"k8s","labels":["k8s"],"max_runners":2,
            "launch_template":"smoke-k8s","instance_types":["t3.micro"]}]}
JSON
  # shellcheck disable=SC2034 # read by the sourcing script
  queue_url=$("$PY" scripts/lib/smoke_aws.py setup "$endpoint" "$work/config.json" "$1")
}
