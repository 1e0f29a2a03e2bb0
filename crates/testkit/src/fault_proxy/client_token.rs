//! EC2's `ClientToken` idempotency, which moto ignores: the same token with the
//! same parameters returns the first answer (no second instance); with other
//! parameters it is refused with `IdempotentParameterMismatch`.

use super::plan::fnv;
use super::shape::{Answer, form_pairs};
use std::collections::HashMap;

/// The EC2 calls whose `ClientToken` makes them idempotent here.
pub const IDEMPOTENT_LAUNCHES: [&str; 2] = ["CreateFleet", "RunInstances"];

/// What a token's first successful call was and got.
#[derive(Debug, Clone)]
pub(crate) struct Remembered {
    pub params: u64,
    pub answer: Answer,
}

/// Tokens seen, by token.
pub(crate) type Tokens = HashMap<String, Remembered>;

/// A hash of every parameter but the token itself, independent of their order.
pub(crate) fn params_hash(body: &str) -> u64 {
    let mut pairs: Vec<(String, String)> = form_pairs(body)
        .into_iter()
        .filter(|(k, _)| k != "ClientToken")
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    fnv(&joined.join("\n"))
}

/// How the proxy answers a launch carrying a token it has seen.
pub(crate) enum Seen {
    Replay(Answer),
    Mismatch,
    New,
}

pub(crate) fn lookup(tokens: &Tokens, token: &str, params: u64) -> Seen {
    match tokens.get(token) {
        Some(r) if r.params == params => Seen::Replay(r.answer.clone()),
        Some(_) => Seen::Mismatch,
        None => Seen::New,
    }
}
