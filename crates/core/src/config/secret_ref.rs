//! A reference to a secret, never the secret itself (except `value:` for local demos).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// `ssm:/param/name`, `env:VAR`, `file:/path`, or `value:literal` (local testing only).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Ssm(String),
    Env(String),
    File(String),
    Value(String),
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} must start with ssm:, env:, file: or value:"))?;
        if rest.is_empty() {
            return Err(format!("{s:?} names nothing after {scheme}:"));
        }
        match scheme {
            "ssm" => Ok(Self::Ssm(rest.into())),
            "env" => Ok(Self::Env(rest.into())),
            "file" => Ok(Self::File(rest.into())),
            "value" => Ok(Self::Value(rest.into())),
            other => Err(format!(
                "unknown secret scheme {other:?}: use ssm:, env:, file: or value:"
            )),
        }
    }
}

impl SecretRef {
    /// `value:literal`: the secret itself, not a reference (local testing only).
    pub fn is_literal(&self) -> bool {
        matches!(self, Self::Value(_))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ssm(n) => write!(f, "ssm:{n}"),
            Self::Env(n) => write!(f, "env:{n}"),
            Self::File(n) => write!(f, "file:{n}"),
            Self::Value(_) => write!(f, "value:<redacted>"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => s.serialize_str(&format!("value:{v}")),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretRef::parse(&s).map_err(serde::de::Error::custom)
    }
}
