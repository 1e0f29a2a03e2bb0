//! What a call is (its operation, and the protocol its errors are encoded in)
//! and the error answers in each protocol's own shape.
//!
//! - AWS JSON 1.0/1.1 (SQS, DynamoDB, SSM): the operation is in `X-Amz-Target`
//!   (`AmazonSSM.SendCommand`); errors are `{"__type": ..., "message": ...}`.
//! - AWS query / EC2 (`Action=CreateFleet&Version=2016-11-15&...`): errors are
//!   `<Response><Errors><Error><Code>` (EC2) or `<ErrorResponse><Error>` (others).
//! - Anything else (the GitHub REST API): the operation is the method and the
//!   path with numbers replaced by `{n}`; errors are `{"message": ...}`.

use bytes::Bytes;

/// EC2's API version: a query call with it gets EC2's error shape.
const EC2_VERSION: &str = "2016-11-15";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// `X-Amz-Target: <prefix>.<Operation>`.
    AwsJson {
        prefix: String,
        content_type: String,
    },
    /// A form body with `Action=`.
    AwsQuery { ec2: bool },
    /// REST/JSON (GitHub).
    Rest,
}

impl Protocol {
    /// The service a call in this protocol is for: `ec2` and `sqs`/`sts`/…
    /// (query), the JSON target's service (`dynamodb`, `ssm`, `sqs`, …), and
    /// `github` for REST.
    pub fn service(&self) -> &'static str {
        match self {
            Protocol::AwsQuery { ec2: true } => "ec2",
            Protocol::AwsQuery { ec2: false } => "query",
            Protocol::Rest => "github",
            Protocol::AwsJson { prefix, .. } => match prefix.as_str() {
                p if p.starts_with("DynamoDB") => "dynamodb",
                "AmazonSSM" => "ssm",
                "AmazonSQS" => "sqs",
                p if p.starts_with("AWSEvents") => "events",
                _ => "other",
            },
        }
    }
}

/// An error to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Internal,
    Unavailable,
    Throttle,
    /// EC2: a `ClientToken` seen before with other parameters.
    IdempotentParameterMismatch,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The `key=value` pairs of a form body, decoded.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (_, Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (c, None) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of `key` in a form body.
pub fn form_value(body: &str, key: &str) -> Option<String> {
    form_pairs(body)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The operation and protocol of a call.
pub fn classify(
    method: &str,
    path: &str,
    target: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> (String, Protocol) {
    if let Some(target) = target {
        let (prefix, op) = target.rsplit_once('.').unwrap_or(("", target));
        return (
            op.to_string(),
            Protocol::AwsJson {
                prefix: prefix.to_string(),
                content_type: content_type
                    .unwrap_or("application/x-amz-json-1.0")
                    .to_string(),
            },
        );
    }
    if method == "POST"
        && content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        let text = String::from_utf8_lossy(body);
        if let Some(action) = form_value(&text, "Action") {
            let ec2 = form_value(&text, "Version").as_deref() == Some(EC2_VERSION);
            return (action, Protocol::AwsQuery { ec2 });
        }
    }
    let path = path.split('?').next().unwrap_or(path);
    let normalised: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|c| c.is_ascii_digit()) {
                "{n}"
            } else {
                seg
            }
        })
        .collect();
    (format!("{method} {}", normalised.join("/")), Protocol::Rest)
}

/// The error answer for `kind` in `protocol`'s shape.
pub fn error_answer(protocol: &Protocol, kind: ErrorKind, request_id: &str) -> Answer {
    let status = match kind {
        ErrorKind::Internal => 500,
        ErrorKind::Unavailable => 503,
        ErrorKind::Throttle => match protocol {
            Protocol::Rest => 403,
            _ => 400,
        },
        ErrorKind::IdempotentParameterMismatch => 400,
    };
    match protocol {
        Protocol::AwsJson {
            prefix,
            content_type,
        } => {
            let (code, message) = json_code(prefix, kind);
            let mut headers = vec![
                ("content-type".to_string(), content_type.clone()),
                ("x-amzn-requestid".to_string(), request_id.to_string()),
            ];
            if prefix == "AmazonSQS" {
                // SQS's JSON protocol also carries the query-compatible code.
                let short = code.rsplit('#').next().unwrap_or(code);
                let fault = if status >= 500 { "Receiver" } else { "Sender" };
                headers.push(("x-amzn-query-error".into(), format!("{short};{fault}")));
            }
            let body = serde_json::json!({ "__type": code, "message": message });
            Answer {
                status,
                headers,
                body: Bytes::from(body.to_string()),
            }
        }
        Protocol::AwsQuery { ec2 } => {
            let (code, message) = query_code(kind);
            let body = if *ec2 {
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                     <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
                     <RequestID>{request_id}</RequestID></Response>"
                )
            } else {
                let fault = if status >= 500 { "Receiver" } else { "Sender" };
                format!(
                    "<?xml version=\"1.0\"?>\n<ErrorResponse><Error><Type>{fault}</Type>\
                     <Code>{code}</Code><Message>{message}</Message></Error>\
                     <RequestId>{request_id}</RequestId></ErrorResponse>"
                )
            };
            Answer {
                status,
                headers: vec![("content-type".into(), "text/xml;charset=UTF-8".into())],
                body: Bytes::from(body),
            }
        }
        Protocol::Rest => {
            let (message, mut headers) = match kind {
                ErrorKind::Internal => ("Server Error", vec![]),
                ErrorKind::Unavailable => ("Service Unavailable", vec![]),
                // A secondary rate limit with the shortest retry-after GitHub sends.
                ErrorKind::Throttle => (
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                    vec![("retry-after".to_string(), "1".to_string())],
                ),
                ErrorKind::IdempotentParameterMismatch => ("Conflict", vec![]),
            };
            headers.push(("content-type".into(), "application/json".into()));
            let body = serde_json::json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest",
            });
            Answer {
                status,
                headers,
                body: Bytes::from(body.to_string()),
            }
        }
    }
}

fn json_code(prefix: &str, kind: ErrorKind) -> (&'static str, &'static str) {
    match (prefix, kind) {
        ("DynamoDB_20120810", ErrorKind::Throttle) => (
            "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        ),
        ("DynamoDB_20120810", ErrorKind::Internal) => (
            "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "Internal server error",
        ),
        ("AmazonSQS", ErrorKind::Throttle) => (
            "com.amazonaws.sqs#RequestThrottled",
            "Request is throttled.",
        ),
        ("AmazonSQS", ErrorKind::Internal) => ("com.amazonaws.sqs#InternalError", "Internal error"),
        (_, ErrorKind::Throttle) => ("ThrottlingException", "Rate exceeded"),
        (_, ErrorKind::Internal) => ("InternalServerError", "Internal server error"),
        (_, ErrorKind::Unavailable) => ("ServiceUnavailable", "Service unavailable"),
        (_, ErrorKind::IdempotentParameterMismatch) => (
            "IdempotentParameterMismatch",
            "The client token was used before with other parameters.",
        ),
    }
}

fn query_code(kind: ErrorKind) -> (&'static str, &'static str) {
    match kind {
        ErrorKind::Internal => (
            "InternalError",
            "An internal error has occurred. Retry your request.",
        ),
        ErrorKind::Unavailable => (
            "Unavailable",
            "The server is overloaded and can't handle the request.",
        ),
        ErrorKind::Throttle => ("RequestLimitExceeded", "Request limit exceeded."),
        ErrorKind::IdempotentParameterMismatch => (
            "IdempotentParameterMismatch",
            "Arguments on this idempotent request are inconsistent with arguments used in previous request(s).",
        ),
    }
}

/// The answer that stands for a lost one: a bare 500 without the upstream's body.
pub fn lost_answer() -> Answer {
    Answer {
        status: 500,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: Bytes::from_static(b"upstream answer lost"),
    }
}
