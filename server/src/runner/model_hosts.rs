//! The model hosts an admin allows: `http:` runtimes may call only these.
//!
//! An entry is one of
//! - `host` (any port), `host:port`;
//! - `*.domain` or `*.domain:port`: every name under `domain`;
//! - a URL prefix, `http://host[:port]/path` or `https://…`: that scheme,
//!   host and port, and paths under the prefix.
//!
//! Hosts compare as URL parsing writes them (lowercase, IPv4 in dotted
//! form, IPv6 in brackets). A name that resolves to a loopback, link-local
//! or unspecified address is refused at call time unless an entry names
//! that exact host (not a `*.` entry): allowing `*.models.example` does not
//! let a name under it point at this machine or at a cloud metadata
//! address. Entries are checked again on every call, so a host taken off
//! the list stops being called at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use app::domain::AppError;

/// The longest entry accepted.
pub const MAX_ENTRY_LEN: usize = 300;

/// One allowed entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// `https` or `http` for a URL prefix; `None` for any.
    scheme: Option<String>,
    /// The host, or the domain of a `*.` entry.
    host: String,
    wildcard: bool,
    port: Option<u16>,
    /// For a URL prefix: the path the URL's path must start with.
    path: Option<String>,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::validation("entry", message)
}

impl HostPattern {
    /// Parses an entry as an admin writes it.
    pub fn parse(entry: &str) -> Result<Self, AppError> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(invalid(
                "Write a host (models.example.com), a host and port (10.0.0.5:8080), *.domain, or a URL prefix (https://models.example.com/v1/).",
            ));
        }
        if entry.len() > MAX_ENTRY_LEN {
            return Err(invalid(format!(
                "An entry has at most {MAX_ENTRY_LEN} characters."
            )));
        }
        if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("An entry has no spaces."));
        }
        if entry.contains("://") {
            let url =
                Url::parse(entry).map_err(|e| invalid(format!("'{entry}' is not a URL: {e}.")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid("A URL prefix starts with http:// or https://."));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(invalid("A URL prefix has no user name or password."));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid("A URL prefix has no query (?) or fragment (#)."));
            }
            let host = url
                .host_str()
                .ok_or_else(|| invalid("A URL prefix names a host."))?;
            return Ok(HostPattern {
                scheme: Some(url.scheme().to_owned()),
                host: host.to_owned(),
                wildcard: false,
                // Unset when it is the scheme's own (URL parsing drops it).
                port: url.port(),
                path: Some(url.path().to_owned()),
            });
        }
        if entry.contains(['/', '@', '?', '#', '\\']) {
            return Err(invalid(format!(
                "'{entry}' is not a host: write a URL prefix with http:// or https:// to name a path."
            )));
        }
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        if rest.contains('*') {
            return Err(invalid(
                "Only a leading '*.' is allowed, as in *.models.example.com.",
            ));
        }
        let url = Url::parse(&format!("http://{rest}"))
            .map_err(|e| invalid(format!("'{entry}' is not a host: {e}.")))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(format!("'{entry}' is not a host.")))?;
        let is_address = host.starts_with('[') || host.parse::<IpAddr>().is_ok();
        if wildcard && is_address {
            return Err(invalid("A '*.' entry names a domain, not an address."));
        }
        if url.path() != "/" {
            return Err(invalid(format!("'{entry}' is not a host.")));
        }
        Ok(HostPattern {
            scheme: None,
            host: host.to_owned(),
            wildcard,
            port: url.port(),
            path: None,
        })
    }

    /// The entry as stored and shown: what it was parsed from, normalized.
    pub fn entry(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        match (&self.scheme, &self.path) {
            (Some(scheme), Some(path)) => format!("{scheme}://{}{port}{path}", self.host),
            _ if self.wildcard => format!("*.{}{port}", self.host),
            _ => format!("{}{port}", self.host),
        }
    }

    /// Whether a model URL falls under this entry.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host_ok = if self.wildcard {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        };
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == url.scheme());
        let port = match (&self.scheme, self.port) {
            (Some(scheme), None) => default_port(scheme),
            (_, port) => port,
        };
        let port_ok = port.is_none_or(|p| Some(p) == url.port_or_known_default());
        let path_ok = self.path.as_deref().is_none_or(|prefix| {
            let path = url.path();
            path == prefix
                || (path.starts_with(prefix)
                    && (prefix.ends_with('/') || path.as_bytes()[prefix.len()] == b'/'))
        });
        host_ok && scheme_ok && port_ok && path_ok
    }

    /// Whether this entry names `host` itself (not a `*.` entry).
    fn names_exactly(&self, host: &str) -> bool {
        !self.wildcard && self.host.eq_ignore_ascii_case(host)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The allowed entries this instance calls by: shared by the executor and
/// its resolver, replaced whenever the list changes.
#[derive(Default)]
pub struct ModelHosts {
    patterns: RwLock<Vec<HostPattern>>,
}

impl ModelHosts {
    pub fn set(&self, entries: &[String]) {
        let patterns = entries
            .iter()
            .filter_map(|entry| match HostPattern::parse(entry) {
                Ok(pattern) => Some(pattern),
                Err(error) => {
                    tracing::warn!(entry, %error, "an allowed model host does not read as one; ignored");
                    None
                }
            })
            .collect();
        if let Ok(mut current) = self.patterns.write() {
            *current = patterns;
        }
    }

    /// Why a model URL may not be called, if it may not.
    pub fn refusal(&self, url: &str) -> Option<String> {
        let parsed = match Url::parse(url) {
            Ok(parsed) => parsed,
            Err(_) => return Some(format!("'{url}' is not a URL")),
        };
        let allowed = self
            .patterns
            .read()
            .is_ok_and(|patterns| patterns.iter().any(|p| p.allows(&parsed)));
        (!allowed).then(|| not_allowed(&parsed))
    }

    fn names_exactly(&self, host: &str) -> bool {
        self.patterns
            .read()
            .is_ok_and(|patterns| patterns.iter().any(|p| p.names_exactly(host)))
    }
}

/// The message for a model URL no entry allows.
fn not_allowed(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let host = match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    format!("the model host {host} is not allowed; an admin can allow it under Admin → Model hosts")
}

/// Whether calling `address` could reach this machine or a link-local
/// service (such as a cloud's metadata endpoint).
pub fn is_local(address: IpAddr) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        v4 => v4,
    };
    match address {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves model hosts with the system's resolver, then drops loopback,
/// link-local and unspecified addresses unless an entry names the host
/// exactly. A name left with no address fails to resolve, with the reason.
pub struct CheckedResolver {
    pub hosts: Arc<ModelHosts>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let exact = self.hosts.names_exactly(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| exact || !is_local(a.ip()))
                .collect();
            if kept.is_empty() && !found.is_empty() {
                tracing::warn!(host, addresses = ?found, "a model host resolves only to local addresses; refused");
                return Err(format!(
                    "{host} resolves to a loopback or link-local address, which only an entry naming it exactly allows"
                )
                .into());
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entry: &str, url: &str) -> bool {
        HostPattern::parse(entry)
            .unwrap()
            .allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn entries_read_back_normalized() {
        for (entry, stored) in [
            ("Models.Example.com", "models.example.com"),
            ("10.0.0.5:8080", "10.0.0.5:8080"),
            ("*.models.example", "*.models.example"),
            ("[::1]:9000", "[::1]:9000"),
            ("https://m.example/v1/", "https://m.example/v1/"),
            // A scheme's own port is left out.
            ("http://m.example:80/v1", "http://m.example/v1"),
            ("http://m.example:8080/v1", "http://m.example:8080/v1"),
            // An IPv4 address written another way is still that address.
            ("0x7f.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(
                HostPattern::parse(entry).unwrap().entry(),
                stored,
                "{entry}"
            );
        }
        for bad in [
            "",
            "models example",
            "*.10.0.0.1",
            "a.*.example",
            "ftp://m.example/",
            "http://user:pw@m.example/",
            "https://m.example/?q=1",
            "m.example/v1",
            "user@m.example",
            "m.example:99999",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn urls_match_by_host_port_scheme_and_path_prefix() {
        assert!(allows("m.example", "http://m.example:8080/predict"));
        assert!(allows("m.example", "https://M.EXAMPLE/predict"));
        assert!(!allows("m.example", "http://m.example.evil.test/predict"));
        assert!(!allows("m.example", "http://m.example@evil.test/predict"));
        assert!(allows("m.example:8080", "http://m.example:8080/p"));
        assert!(!allows("m.example:8080", "http://m.example:8081/p"));
        assert!(!allows("m.example:8080", "http://m.example/p"));
        assert!(allows("*.m.example", "http://a.b.m.example/p"));
        assert!(!allows("*.m.example", "http://m.example/p"));
        assert!(!allows("*.m.example", "http://am.example/p"));
        assert!(allows("https://m.example/v1", "https://m.example/v1"));
        assert!(allows(
            "https://m.example/v1",
            "https://m.example:443/v1/models/x:predict"
        ));
        assert!(!allows(
            "https://m.example/v1",
            "https://m.example/v10/models"
        ));
        assert!(!allows(
            "https://m.example/v1",
            "http://m.example/v1/models"
        ));
        assert!(!allows(
            "https://m.example/v1",
            "https://m.example:8443/v1/m"
        ));
        assert!(allows(
            "http://m.example:8080/v1",
            "http://m.example:8080/v1/m"
        ));
        assert!(!allows("http://m.example:8080/v1", "http://m.example/v1/m"));
        assert!(allows("https://m.example/v1/", "https://m.example/v1/m"));
        assert!(!allows("https://m.example/v1/", "https://m.example/v2/m"));
        // Addresses written another way are the same address.
        assert!(allows("127.0.0.1", "http://2130706433:9/p"));
        assert!(!allows(
            "127.0.0.1",
            "http://169.254.169.254/latest/meta-data"
        ));
    }

    #[test]
    fn loopback_and_link_local_addresses_are_local() {
        for local in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local(local.parse().unwrap()), "{local}");
        }
        for remote in [
            "10.0.0.5",
            "192.168.1.2",
            "8.8.8.8",
            "2001:db8::1",
            "fd00::1",
        ] {
            assert!(!is_local(remote.parse().unwrap()), "{remote}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_named_exactly() {
        let hosts = Arc::new(ModelHosts::default());
        hosts.set(&["*.localhost".into()]);
        let resolver = CheckedResolver {
            hosts: hosts.clone(),
        };
        // `localhost` resolves to loopback: only an entry naming it lets it through.
        let refused = resolver.resolve("localhost".parse().unwrap()).await;
        let error = refused.err().expect("localhost was resolved").to_string();
        assert!(error.contains("loopback or link-local"), "{error}");
        hosts.set(&["localhost:9000".into()]);
        let addrs: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .expect("an exact entry allows it")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn a_url_no_entry_allows_is_refused_with_its_host() {
        let hosts = ModelHosts::default();
        hosts.set(&["m.example".into(), "not a host".into()]);
        assert_eq!(hosts.refusal("http://m.example:8080/predict"), None);
        let refusal = hosts.refusal("http://169.254.169.254/latest").unwrap();
        assert!(
            refusal.contains("169.254.169.254:80 is not allowed"),
            "{refusal}"
        );
        assert!(refusal.contains("Admin → Model hosts"));
    }
}
