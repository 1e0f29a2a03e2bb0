//! The setup page answers only under its own name (the DNS-rebinding defence).
//!
//! The page listens on a loopback address, but a web page elsewhere can still
//! reach it: its attacker makes a name of theirs (`evil.example`) resolve to
//! 127.0.0.1 after the browser loaded it, and then its scripts talk to
//! `http://evil.example:PORT/` as a same-origin page, reading the form (which
//! holds the state) or calling `/callback` with a code of their choosing. The
//! browser still sends the name it used in the `Host` header, so every request
//! whose `Host` is not exactly `127.0.0.1:PORT` (the address listened on, as
//! `[::1]:PORT` for IPv6) or `localhost:PORT` is refused with `403` before any
//! handler runs: no page, no state, no conversion, nothing stored.

use super::page;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The `Host` values a browser sends for the page's own origin.
pub struct Allowed {
    hosts: [String; 2],
}

impl Allowed {
    pub fn for_addr(addr: SocketAddr) -> Arc<Allowed> {
        Arc::new(Allowed {
            hosts: [addr.to_string(), format!("localhost:{}", addr.port())],
        })
    }

    /// Is `host` (a `Host` header) one of the page's own names? Host names
    /// compare without regard to case; the port must be there and match.
    pub fn admits(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The address the page is served at.
    pub fn canonical(&self) -> &str {
        &self.hosts[0]
    }
}

/// Refuse a request under any other name (see the module's documentation).
pub async fn guard(State(allowed): State<Arc<Allowed>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(h) = &host
        && allowed.admits(h)
    {
        return next.run(req).await;
    }
    let shown = host.as_deref().unwrap_or("(none)");
    tracing::warn!(
        host = shown,
        path = req.uri().path(),
        "github-app create: refused a request under another host name (DNS rebinding?)"
    );
    let message = format!(
        "this page answers only at http://{}/ and the request's Host header was {shown:?} \
         (a page under another name reached it, as DNS rebinding does); \
         it was refused: nothing was converted or stored",
        allowed.canonical()
    );
    (StatusCode::FORBIDDEN, Html(page::failed(&message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loopback_names_with_the_port_are_admitted() {
        let a = Allowed::for_addr("127.0.0.1:4711".parse().unwrap());
        for ok in ["127.0.0.1:4711", "localhost:4711", "LocalHost:4711"] {
            assert!(a.admits(ok), "{ok}");
        }
        for bad in [
            "evil.example:4711",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:4712",
            "127.0.0.1:4711.evil.example",
            "localhost.evil.example:4711",
            "",
        ] {
            assert!(!a.admits(bad), "{bad}");
        }
        let v6 = Allowed::for_addr("[::1]:4711".parse().unwrap());
        assert!(v6.admits("[::1]:4711") && v6.admits("localhost:4711"));
        assert!(!v6.admits("::1:4711"));
    }
}
