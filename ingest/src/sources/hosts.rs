//! The `Host` allow-list of the forensic API and console: a page on another site that resolves
//! its own name to this machine (DNS rebinding) sends its own `Host`, and is refused. By default
//! a server listening on loopback answers only loopback names; `http.allowed_hosts` names the
//! others (the name a reverse proxy or the analysts use).

use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Host names (without port), lowercase; empty admits any host.
    names: Vec<String>,
}

impl AllowedHosts {
    /// `configured` (comma-separated) when given, else loopback names for a loopback listener,
    /// else any host.
    pub fn new(configured: &str, listen: &str) -> AllowedHosts {
        let configured: Vec<String> = configured
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let names = if !configured.is_empty() {
            configured
        } else if listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
        {
            ["localhost", "127.0.0.1", "[::1]"]
                .map(String::from)
                .to_vec()
        } else {
            Vec::new()
        };
        AllowedHosts { names }
    }

    /// Whether the request's `Host` (port aside) is allowed.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        if self.names.is_empty() {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let host = host.trim().to_ascii_lowercase();
        // `[::1]:8686`, `localhost:8686`, `localhost`
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host.as_str(),
        };
        self.names.iter().any(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, h.parse().unwrap());
        m
    }

    #[test]
    fn loopback_listeners_answer_loopback_names_only() {
        let a = AllowedHosts::new("", "127.0.0.1:8686");
        for ok in [
            "localhost:8686",
            "127.0.0.1:8686",
            "[::1]:8686",
            "LOCALHOST",
        ] {
            assert!(a.admits(&host(ok)), "{ok}");
        }
        for bad in ["evil.example:8686", "localhost.evil.example", "127.0.0.2"] {
            assert!(!a.admits(&host(bad)), "{bad}");
        }
        assert!(!a.admits(&HeaderMap::new()));
        let proxied = AllowedHosts::new("credtrail.corp.example", "0.0.0.0:8686");
        assert!(proxied.admits(&host("credtrail.corp.example")));
        assert!(!proxied.admits(&host("localhost")));
        assert!(AllowedHosts::new("", "0.0.0.0:8686").admits(&host("anything")));
    }
}
