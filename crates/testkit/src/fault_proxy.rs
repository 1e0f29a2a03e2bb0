//! A fault-injection HTTP reverse proxy in front of moto or the fake GitHub.
//!
//! [`FaultProxy::start`] listens on 127.0.0.1:0 and forwards every call to the
//! upstream. On a share of the calls ([`FaultConfig::rate`]), chosen from a seed
//! (printed at start; `SPOTRUNNER_FAULT_SEED` replays it), it answers instead
//! with a 500, a 503 or the service's own throttling error, delays the call, or
//! forwards it and then loses the answer (connection dropped, or a bare 500):
//! the upstream applied the call, the client does not know. Faults can be
//! limited to some operations (`X-Amz-Target` for AWS JSON, `Action=` for
//! EC2/query, `METHOD /path/{n}` for REST) and switched off at run time.
//!
//! It also makes moto as strict as EC2 about `ClientToken` on `CreateFleet` and
//! `RunInstances`: a token seen with the same parameters gets the first answer
//! again without reaching moto; with other parameters, `IdempotentParameterMismatch`.
//! And it keeps SSM commands to the instances they were sent to (moto adds every
//! instance of the region to each command: see `ssm_commands`).
//!
//! Every call is recorded ([`Record`]): operation, fault, whether it reached the
//! upstream, and (for the operations in [`FaultConfig::record_bodies`]) the
//! request and the upstream's answer, so tests can count e.g. the `CreateFleet`
//! calls that reached moto per `ClientToken` or the `SendCommand`s per instance.
//! Several listeners ([`FaultProxy::add_front`]) can share one proxy, so the
//! calls of each handler are told apart while EC2's token memory stays one.

mod client_token;
mod plan;
mod shape;
mod ssm_commands;
#[cfg(test)]
mod tests;

pub use client_token::IDEMPOTENT_LAUNCHES;
pub use plan::{Fault, Weights, decide};
pub use shape::{Protocol, form_pairs, form_value};

use bytes::Bytes;
use client_token::{Remembered, Seen, Tokens, lookup, params_hash};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use shape::{Answer, ErrorKind, error_answer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable that replays a seed.
pub const SEED_ENV: &str = "SPOTRUNNER_FAULT_SEED";

/// `SPOTRUNNER_FAULT_SEED` if set (decimal), else a fresh seed from the clock.
pub fn seed_from_env() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            plan::mix(t ^ u64::from(std::process::id()))
        })
}

/// How a proxy misbehaves.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Named in the start line and mixed into the seed, so two proxies on one
    /// seed fault differently.
    pub name: String,
    pub seed: u64,
    /// Share of eligible calls that get a fault (0.0 – 1.0).
    pub rate: f64,
    pub weights: Weights,
    /// Range of [`Fault::Delay`].
    pub delay: (Duration, Duration),
    /// Only these operations get faults (`None`: all).
    pub only: Option<BTreeSet<String>>,
    /// These operations never get faults.
    pub except: BTreeSet<String>,
    /// Enforce EC2's `ClientToken` semantics on `CreateFleet`/`RunInstances`.
    pub strict_client_token: bool,
    /// Keep SSM commands to the instances they were sent to in the answers of
    /// `SendCommand` and `ListCommands`.
    pub ssm_command_targets: bool,
    /// Keep the request and upstream answer bodies of these operations in the
    /// records (`None`: of every operation). Bodies are cut at 64 KiB.
    pub record_bodies: Option<BTreeSet<String>>,
}

impl FaultConfig {
    /// 20 % faults of every kind on every operation, strict tokens, bodies kept.
    pub fn new(name: &str, seed: u64) -> Self {
        FaultConfig {
            name: name.to_string(),
            seed,
            rate: 0.2,
            weights: Weights::default(),
            delay: (Duration::from_millis(20), Duration::from_millis(200)),
            only: None,
            except: BTreeSet::new(),
            strict_client_token: true,
            ssm_command_targets: true,
            record_bodies: None,
        }
    }

    /// [`FaultConfig::new`] with [`seed_from_env`].
    pub fn from_env(name: &str) -> Self {
        Self::new(name, seed_from_env())
    }

    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    pub fn weights(mut self, weights: Weights) -> Self {
        self.weights = weights;
        self
    }

    pub fn only<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ops: I) -> Self {
        self.only = Some(ops.into_iter().map(Into::into).collect());
        self
    }

    pub fn except<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ops: I) -> Self {
        self.except = ops.into_iter().map(Into::into).collect();
        self
    }

    pub fn record_bodies<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ops: I) -> Self {
        self.record_bodies = Some(ops.into_iter().map(Into::into).collect());
        self
    }

    fn eligible(&self, op: &str) -> bool {
        !self.except.contains(op) && self.only.as_ref().is_none_or(|o| o.contains(op))
    }
}

/// One call through the proxy.
#[derive(Debug, Clone)]
pub struct Record {
    /// Order of arrival, from 0.
    pub seq: u64,
    /// The listener it came through ([`FaultProxy::add_front`]).
    pub front: String,
    pub op: String,
    /// The service called: `ec2`, `ssm`, `sqs`, `dynamodb`, `github` (REST), …
    /// ([`Protocol::service`]).
    pub service: String,
    /// When the call arrived.
    pub at: SystemTime,
    /// The path and query called.
    pub path: String,
    /// The AWS SDK's `amz-sdk-invocation-id`: the same on every attempt of one
    /// operation call (its own retries), new for each call.
    pub sdk_invocation: Option<String>,
    /// The SDK's attempt number (`amz-sdk-request: attempt=N; max=M`).
    pub sdk_attempt: Option<u32>,
    /// This operation's call number (from 0): the input of [`decide`].
    pub n: u64,
    pub fault: Option<Fault>,
    /// The upstream received (and so applied) the call.
    pub reached_upstream: bool,
    /// Answered from the `ClientToken` memory without reaching the upstream.
    pub replayed: bool,
    /// Refused with `IdempotentParameterMismatch`.
    pub mismatch: bool,
    /// What the client got; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// The upstream's status, when it was reached.
    pub upstream_status: Option<u16>,
    pub request_body: Option<String>,
    /// The upstream's answer body (also for lost answers).
    pub upstream_body: Option<String>,
}

#[derive(Default)]
struct Log {
    records: Vec<Record>,
    per_op: BTreeMap<String, u64>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    config: Mutex<FaultConfig>,
    enabled: std::sync::atomic::AtomicBool,
    log: Mutex<Log>,
    /// EC2's token memory; held across the forward so that two calls with one
    /// token are answered one after the other, as EC2 does.
    tokens: tokio::sync::Mutex<Tokens>,
    /// What each forwarded SSM command was sent to.
    ssm_sent: Mutex<ssm_commands::Sent>,
}

/// The running proxy; its listeners stop when it is dropped.
pub struct FaultProxy {
    shared: Arc<Shared>,
    url: String,
    seed: u64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// The service answered by dropping the connection (a lost answer).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

const MAX_BODY: usize = 64 * 1024;

impl FaultProxy {
    /// Start in front of `upstream` (a base URL, e.g. moto's or the fake
    /// GitHub's); prints the seed.
    pub async fn start(upstream: &str, config: FaultConfig) -> FaultProxy {
        println!(
            "fault proxy {} seed={} (replay with {SEED_ENV}={}) rate={} in front of {upstream}",
            config.name, config.seed, config.seed, config.rate
        );
        let seed = config.seed;
        let name = config.name.clone();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("reqwest client"),
            config: Mutex::new(config),
            enabled: std::sync::atomic::AtomicBool::new(true),
            log: Mutex::new(Log::default()),
            tokens: tokio::sync::Mutex::new(Tokens::new()),
            ssm_sent: Mutex::new(ssm_commands::Sent::new()),
        });
        let mut proxy = FaultProxy {
            shared,
            url: String::new(),
            seed,
            tasks: Mutex::new(Vec::new()),
        };
        proxy.url = proxy.add_front(&name).await;
        proxy
    }

    /// The first listener's base URL (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Another listener on the same proxy (same faults, counters and token
    /// memory); its calls are recorded with `label`. Returns its base URL.
    pub async fn add_front(&self, label: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let front = Arc::new((label.to_string(), url.clone()));
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (shared, front) = (shared.clone(), front.clone());
                tokio::spawn(async move {
                    // Each call runs in its own task: a client that hangs up
                    // mid-call does not cancel a forward (nor its record).
                    let svc = service_fn(move |req| {
                        let call = tokio::spawn(handle(shared.clone(), front.clone(), req));
                        async move { call.await.unwrap_or(Err(Dropped)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        self.tasks.lock().unwrap().push(task);
        url
    }

    /// Faults on (`true`, the default) or off; `ClientToken` strictness stays.
    pub fn set_enabled(&self, on: bool) {
        self.shared
            .enabled
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_rate(&self, rate: f64) {
        self.shared.config.lock().unwrap().rate = rate;
    }

    /// Every call so far, in order of arrival.
    pub fn records(&self) -> Vec<Record> {
        let mut r = self.shared.log.lock().unwrap().records.clone();
        r.sort_by_key(|r| r.seq);
        r
    }

    /// The calls recorded from the `index`-th on, in the order they were
    /// recorded (when each ended: a slow call can end after a later one, so
    /// `seq` does not follow this order). For readers that follow a long run
    /// without copying every record each time: pass the count read so far.
    pub fn recorded_from(&self, index: usize) -> Vec<Record> {
        let log = self.shared.log.lock().unwrap();
        log.records.get(index..).unwrap_or_default().to_vec()
    }

    /// Calls received, by (listener, service, operation).
    pub fn counts(&self) -> BTreeMap<(String, String, String), usize> {
        let mut out = BTreeMap::new();
        for r in &self.shared.log.lock().unwrap().records {
            *out.entry((r.front.clone(), r.service.clone(), r.op.clone()))
                .or_default() += 1;
        }
        out
    }

    /// Calls of `op` received.
    pub fn calls(&self, op: &str) -> usize {
        self.count(|r| r.op == op)
    }

    /// Calls of `op` that reached the upstream (and so were applied).
    pub fn forwarded(&self, op: &str) -> usize {
        self.count(|r| r.op == op && r.reached_upstream)
    }

    fn count(&self, f: impl Fn(&Record) -> bool) -> usize {
        self.shared
            .log
            .lock()
            .unwrap()
            .records
            .iter()
            .filter(|r| f(r))
            .count()
    }

    /// Faults applied, by operation and kind.
    pub fn faults(&self) -> BTreeMap<String, BTreeMap<&'static str, usize>> {
        let mut out: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
        for r in &self.shared.log.lock().unwrap().records {
            if let Some(f) = r.fault {
                *out.entry(r.op.clone())
                    .or_default()
                    .entry(f.kind())
                    .or_default() += 1;
            }
        }
        out
    }

    /// One line per operation: calls, forwarded, replayed/mismatched tokens, faults.
    pub fn summary(&self) -> String {
        #[derive(Default)]
        struct Line {
            calls: usize,
            forwarded: usize,
            replayed: usize,
            mismatch: usize,
            faults: BTreeMap<&'static str, usize>,
        }
        let mut lines: BTreeMap<String, Line> = BTreeMap::new();
        for r in &self.shared.log.lock().unwrap().records {
            let l = lines.entry(r.op.clone()).or_default();
            l.calls += 1;
            l.forwarded += usize::from(r.reached_upstream);
            l.replayed += usize::from(r.replayed);
            l.mismatch += usize::from(r.mismatch);
            if let Some(f) = r.fault {
                *l.faults.entry(f.kind()).or_default() += 1;
            }
        }
        let name = self.shared.config.lock().unwrap().name.clone();
        let mut s = format!("fault proxy {name} (seed {}):\n", self.seed);
        for (op, l) in lines {
            s.push_str(&format!(
                "  {op}: {} calls, {} reached upstream",
                l.calls, l.forwarded
            ));
            if l.replayed + l.mismatch > 0 {
                s.push_str(&format!(
                    ", token replayed {} / mismatch {}",
                    l.replayed, l.mismatch
                ));
            }
            if !l.faults.is_empty() {
                s.push_str(&format!(", faults {:?}", l.faults));
            }
            s.push('\n');
        }
        s
    }
}

impl Shared {
    /// Number the call and choose its fault.
    fn begin(&self, op: &str) -> (u64, u64, Option<Fault>, bool) {
        let config = self.config.lock().unwrap();
        let mut log = self.log.lock().unwrap();
        let seq = log.per_op.values().sum::<u64>();
        let n = *log.per_op.get(op).unwrap_or(&0);
        log.per_op.insert(op.to_string(), n + 1);
        let on = self.enabled.load(std::sync::atomic::Ordering::SeqCst);
        let fault = (on && config.eligible(op))
            .then(|| {
                decide(
                    config.seed,
                    &config.name,
                    op,
                    n,
                    config.rate,
                    &config.weights,
                    config.delay,
                )
            })
            .flatten();
        let keep = config.record_bodies.as_ref().is_none_or(|o| o.contains(op));
        (seq, n, fault, keep)
    }

    async fn forward(&self, parts: &Parts, body: Bytes) -> Answer {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut rb = self
            .client
            .request(parts.method.clone(), format!("{}{path}", self.upstream));
        for (k, v) in &parts.headers {
            if !is_hop_by_hop(k.as_str()) {
                rb = rb.header(k, v);
            }
        }
        match rb.body(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .filter(|(k, _)| !is_hop_by_hop(k.as_str()))
                    .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                    .collect();
                match resp.bytes().await {
                    Ok(body) => Answer {
                        status,
                        headers,
                        body,
                    },
                    Err(e) => bad_gateway(&e),
                }
            }
            Err(e) => bad_gateway(&e),
        }
    }

    /// Forward, or answer from EC2's token memory.
    async fn apply(
        &self,
        parts: &Parts,
        body: Bytes,
        op: &str,
        protocol: &Protocol,
        rec: &mut Record,
    ) -> Answer {
        let strict = self.config.lock().unwrap().strict_client_token;
        let text = String::from_utf8_lossy(&body).into_owned();
        let token = (strict
            && *protocol == Protocol::AwsQuery { ec2: true }
            && IDEMPOTENT_LAUNCHES.contains(&op))
        .then(|| form_value(&text, "ClientToken"))
        .flatten();
        let Some(token) = token else {
            rec.reached_upstream = true;
            let fix_ssm = self.config.lock().unwrap().ssm_command_targets
                && matches!(protocol, Protocol::AwsJson { prefix, .. } if prefix == "AmazonSSM")
                && ssm_commands::CORRECTED.contains(&op);
            let mut answer = self.forward(parts, body.clone()).await;
            if fix_ssm {
                let mut sent = self.ssm_sent.lock().unwrap();
                ssm_commands::correct(&mut sent, op, &body, &mut answer);
            }
            return answer;
        };
        let params = params_hash(&text);
        let mut tokens = self.tokens.lock().await;
        match lookup(&tokens, &token, params) {
            Seen::Replay(answer) => {
                rec.replayed = true;
                answer
            }
            Seen::Mismatch => {
                rec.mismatch = true;
                error_answer(
                    protocol,
                    ErrorKind::IdempotentParameterMismatch,
                    &format!("mismatch-{}", rec.seq),
                )
            }
            Seen::New => {
                rec.reached_upstream = true;
                let answer = self.forward(parts, body).await;
                if (200..300).contains(&answer.status) {
                    tokens.insert(
                        token,
                        Remembered {
                            params,
                            answer: answer.clone(),
                        },
                    );
                }
                answer
            }
        }
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

fn bad_gateway(e: &dyn std::fmt::Display) -> Answer {
    Answer {
        status: 502,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: Bytes::from(format!("fault proxy: upstream failed: {e}")),
    }
}

fn cut(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(MAX_BODY)]).into_owned()
}

async fn handle(
    shared: Arc<Shared>,
    front: Arc<(String, String)>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let (op, protocol) = shape::classify(
        parts.method.as_str(),
        path,
        header("x-amz-target"),
        header("content-type"),
        &body,
    );
    let (seq, n, fault, keep) = shared.begin(&op);
    let mut rec = Record {
        seq,
        front: front.0.clone(),
        op: op.clone(),
        service: protocol.service().to_string(),
        at: SystemTime::now(),
        path: path.to_string(),
        sdk_invocation: header("amz-sdk-invocation-id").map(String::from),
        sdk_attempt: header("amz-sdk-request").and_then(|v| {
            v.split(';')
                .find_map(|p| p.trim().strip_prefix("attempt="))
                .and_then(|n| n.parse().ok())
        }),
        n,
        fault,
        reached_upstream: false,
        replayed: false,
        mismatch: false,
        status: None,
        upstream_status: None,
        request_body: keep.then(|| cut(&body)),
        upstream_body: None,
    };
    let request_id = format!("{:016x}-{seq}", plan::mix(seq));
    let answer = match fault {
        Some(Fault::Internal) => Some(error_answer(&protocol, ErrorKind::Internal, &request_id)),
        Some(Fault::Unavailable) => {
            Some(error_answer(&protocol, ErrorKind::Unavailable, &request_id))
        }
        Some(Fault::Throttle) => Some(error_answer(&protocol, ErrorKind::Throttle, &request_id)),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::LostAnswer { .. }) | None => None,
    };
    let answer = match answer {
        Some(a) => a,
        None => {
            let a = shared.apply(&parts, body, &op, &protocol, &mut rec).await;
            if rec.reached_upstream {
                rec.upstream_status = Some(a.status);
                rec.upstream_body = keep.then(|| cut(&a.body));
            }
            match fault {
                Some(Fault::LostAnswer {
                    drop_connection: true,
                }) => {
                    shared.log.lock().unwrap().records.push(rec);
                    return Err(Dropped);
                }
                Some(Fault::LostAnswer {
                    drop_connection: false,
                }) => shape::lost_answer(),
                _ => a,
            }
        }
    };
    rec.status = Some(answer.status);
    shared.log.lock().unwrap().records.push(rec);
    let mut resp = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        let v = if k.eq_ignore_ascii_case("link") || k.eq_ignore_ascii_case("location") {
            v.replace(&shared.upstream, &front.1)
        } else {
            v.clone()
        };
        resp = resp.header(k.as_str(), v);
    }
    Ok(resp.body(Full::new(answer.body)).expect("a valid response"))
}
