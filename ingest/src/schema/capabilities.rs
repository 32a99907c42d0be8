//! What a ClickHouse server can do, from its version.
//!
//! Only two generations are exercised here: 18.16 (Debian's, the only server the tests can start)
//! and modern releases (23.8 LTS and later, executed through chdb). Every feature below is stable
//! from 20.3 LTS on; anything older gets the legacy rendering.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// `major.minor.patch` of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl FromStr for ServerVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('.').map(|p| p.parse::<u32>());
        match (parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), patch) => Ok(ServerVersion {
                major,
                minor,
                patch: patch.and_then(Result::ok).unwrap_or(0),
            }),
            _ => Err(format!("not a ClickHouse version: {s:?}")),
        }
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The DDL features the schema uses where available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub low_cardinality: bool,
    pub ipv6_type: bool,
    pub codecs: bool,
    pub ttl: bool,
    pub skip_indexes: bool,
}

impl Capabilities {
    const MODERN_FROM: ServerVersion = ServerVersion {
        major: 20,
        minor: 3,
        patch: 0,
    };

    pub fn for_version(v: ServerVersion) -> Capabilities {
        if v >= Self::MODERN_FROM {
            Capabilities::modern()
        } else {
            Capabilities::legacy()
        }
    }

    pub fn modern() -> Capabilities {
        Capabilities {
            low_cardinality: true,
            ipv6_type: true,
            codecs: true,
            ttl: true,
            skip_indexes: true,
        }
    }

    pub fn legacy() -> Capabilities {
        Capabilities {
            low_cardinality: false,
            ipv6_type: false,
            codecs: false,
            ttl: false,
            skip_indexes: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_their_generation() {
        let v = |s: &str| Capabilities::for_version(s.parse().unwrap());
        assert_eq!(v("18.16.1"), Capabilities::legacy());
        assert_eq!(v("23.8.2.7"), Capabilities::modern());
        assert_eq!(v("26.9.1"), Capabilities::modern());
        assert!("x.y".parse::<ServerVersion>().is_err());
    }
}
