//! A GitHub App's id: the number, or a reference to where it is stored
//! (`ssm:/sr/github/app-id`, written by `spotrunner github-app create`, so a
//! deployment can exist before its App does).

use super::SecretRef;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub enum AppId {
    Id(u64),
    Ref(SecretRef),
}

impl AppId {
    /// Parse an id as stored (a positive whole number, spaces around allowed).
    pub fn parse_stored(text: &str) -> Result<u64, String> {
        match text.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("must hold a GitHub App id (a positive whole number)".into()),
        }
    }
}

impl From<u64> for AppId {
    fn from(id: u64) -> Self {
        Self::Id(id)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(n) => write!(f, "{n}"),
            Self::Ref(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for AppId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Id(n) => s.serialize_u64(*n),
            Self::Ref(r) => r.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        let bad = "app_id must be a GitHub App id (a positive whole number) or a reference to it (ssm:/name, env:VAR, file:/path)";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(bad))? {
            Raw::Num(0) => Err(serde::de::Error::custom(bad)),
            Raw::Num(n) => Ok(Self::Id(n)),
            Raw::Text(t) if t.chars().all(|c| c.is_ascii_digit()) => AppId::parse_stored(&t)
                .map(Self::Id)
                .map_err(|_| serde::de::Error::custom(bad)),
            Raw::Text(t) => SecretRef::parse(&t)
                .map(Self::Ref)
                .map_err(|e| serde::de::Error::custom(format!("app_id: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<AppId, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn a_number_a_digit_string_or_a_reference() {
        assert_eq!(parse(serde_json::json!(42)).unwrap(), AppId::Id(42));
        assert_eq!(parse(serde_json::json!("42")).unwrap(), AppId::Id(42));
        assert_eq!(
            parse(serde_json::json!("ssm:/sr/github/app-id")).unwrap(),
            AppId::Ref(SecretRef::Ssm("/sr/github/app-id".into()))
        );
        assert!(
            parse(serde_json::json!(0))
                .unwrap_err()
                .contains("positive")
        );
        assert!(parse(serde_json::json!(-3)).unwrap_err().contains("app_id"));
        assert!(
            parse(serde_json::json!("nope"))
                .unwrap_err()
                .contains("ssm:")
        );
        assert_eq!(
            serde_json::to_value(AppId::Ref(SecretRef::Ssm("/a".into()))).unwrap(),
            serde_json::json!("ssm:/a")
        );
        assert_eq!(
            serde_json::to_value(AppId::Id(7)).unwrap(),
            serde_json::json!(7)
        );
    }

    #[test]
    fn a_stored_id_is_trimmed_and_must_be_positive() {
        assert_eq!(AppId::parse_stored(" 123\n"), Ok(123));
        assert!(AppId::parse_stored("0").is_err());
        assert!(AppId::parse_stored("abc").is_err());
    }
}
