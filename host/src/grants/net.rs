//! Network grants: which addresses a plugin may reach, by socket and by
//! HTTP. Denied unless granted.
//!
//! An entry is either `host:port` (sockets and HTTP to that host and port)
//! or an origin `scheme://host[:port]` (HTTP only). Hosts are names,
//! `*.suffix` wildcards (HTTP only), IP addresses, CIDR blocks or `*`;
//! ports are numbers, ranges `8000-8100` or `*`.
//!
//! The two ways out of the sandbox are gated separately: WASI sockets
//! through wasmtime's `socket_addr_check` (which sees resolved IPs, so a
//! granted name is checked after DNS), and wasi:http requests, which never
//! pass that check, through the HTTP hook's [`NetPolicy::allows_http`].

use crate::config::{Lines, Problems};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Name(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
    Net(IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NetRule {
    text: String,
    /// `http`/`https` for origins; none for `host:port` entries.
    scheme: Option<String>,
    host: HostPattern,
    ports: (u16, u16),
}

/// The network a job may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    rules: Vec<NetRule>,
    /// Extra certificate authorities HTTPS requests trust besides the
    /// public web PKI (a private ACME server, an internal API): the
    /// `ca = [...]` grant, read when the config loads.
    pub ca_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl NetPolicy {
    pub(crate) fn from_raw(
        raw: &[Spanned<String>],
        lines: &Lines<'_>,
        job: &str,
        problems: &mut Problems,
    ) -> NetPolicy {
        let mut rules = Vec::new();
        for entry in raw {
            match parse_rule(entry.get_ref()) {
                Ok(r) => rules.push(r),
                Err(e) => problems.push(
                    lines.at(entry),
                    Some(job),
                    format!("net grant `{}`: {e}", entry.get_ref()),
                ),
            }
        }
        NetPolicy {
            rules,
            ca_roots: Vec::new(),
        }
    }

    /// Reads the `ca` grant: PEM files (relative to the config file) whose
    /// certificates HTTPS requests also trust.
    pub(crate) fn load_ca(
        &mut self,
        raw: &[Spanned<String>],
        base: &std::path::Path,
        lines: &Lines<'_>,
        job: &str,
        problems: &mut Problems,
    ) {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        for entry in raw {
            let path = base.join(entry.get_ref());
            let certs: Result<Vec<CertificateDer<'static>>, String> =
                CertificateDer::pem_file_iter(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|it| it.collect::<Result<_, _>>().map_err(|e| e.to_string()));
            match certs {
                Ok(c) if !c.is_empty() => self.ca_roots.extend(c),
                Ok(_) => problems.push(
                    lines.at(entry),
                    Some(job),
                    format!(
                        "ca grant `{}`: {} holds no PEM certificate",
                        entry.get_ref(),
                        path.display()
                    ),
                ),
                Err(e) => problems.push(
                    lines.at(entry),
                    Some(job),
                    format!(
                        "ca grant `{}`: cannot read {}: {e}",
                        entry.get_ref(),
                        path.display()
                    ),
                ),
            }
        }
    }

    /// Parses a list of entries (for tests and programmatic use).
    pub fn parse(entries: &[&str]) -> Result<NetPolicy, String> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e))
            .collect::<Result<_, _>>()?;
        Ok(NetPolicy {
            rules,
            ca_roots: Vec::new(),
        })
    }

    /// True when nothing is granted: sockets and name lookup stay off.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some socket rule names a host, so the guest needs DNS.
    pub fn needs_name_lookup(&self) -> bool {
        self.rules.iter().any(|r| {
            r.scheme.is_none() && matches!(r.host, HostPattern::Name(_) | HostPattern::Any)
        })
    }

    /// Whether a plugin may look `name` up: an address literal, or a host
    /// some socket rule lets it connect to.
    pub fn may_resolve(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.rules
            .iter()
            .filter(|r| r.scheme.is_none())
            .any(|r| match &r.host {
                HostPattern::Any => true,
                HostPattern::Name(n) => n.trim_end_matches('.').eq_ignore_ascii_case(&name),
                HostPattern::Suffix(s) => name.ends_with(&s.to_ascii_lowercase()),
                HostPattern::Net(_) => false,
            })
    }

    /// Whether a socket rule could reach a service of this machine that
    /// listens on `listen` (checked without DNS: any host, `localhost`,
    /// or an address range holding it or, for a wildcard listener, the
    /// loopback).
    pub fn may_reach_local(&self, listen: SocketAddr) -> bool {
        let port = listen.port();
        let ips: Vec<IpAddr> = if listen.ip().is_unspecified() {
            vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ]
        } else {
            vec![listen.ip().to_canonical()]
        };
        self.rules.iter().any(|r| {
            r.ports.0 <= port
                && port <= r.ports.1
                && match &r.host {
                    HostPattern::Any => true,
                    HostPattern::Name(n) => n == "localhost" || n.ends_with(".localhost"),
                    HostPattern::Suffix(s) => s == ".localhost",
                    HostPattern::Net(n) => ips.iter().any(|ip| n.contains(ip)),
                }
        })
    }

    /// The entries as written, for messages.
    pub fn describe(&self) -> String {
        if self.rules.is_empty() {
            return "none".into();
        }
        self.rules
            .iter()
            .map(|r| r.text.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Resolves granted names to addresses once per run, so the socket
    /// check compares IPs.
    pub async fn resolve(&self) -> ResolvedNet {
        let mut allowed = Vec::new();
        for r in self.rules.iter().filter(|r| r.scheme.is_none()) {
            match &r.host {
                HostPattern::Any => allowed.push((None, r.ports)),
                HostPattern::Net(n) => allowed.push((Some(*n), r.ports)),
                HostPattern::Name(name) => {
                    if let Ok(addrs) = tokio::net::lookup_host((name.as_str(), r.ports.0)).await {
                        for a in addrs {
                            allowed.push((Some(IpNet::from(a.ip())), r.ports));
                        }
                    } else {
                        tracing::warn!(host = %name, "granted host does not resolve");
                    }
                }
                HostPattern::Suffix(_) => {}
            }
        }
        ResolvedNet { allowed }
    }

    /// What the programs a job starts may connect to: every entry, HTTP
    /// origins included (a granted `curl` or `certbot` speaks HTTP
    /// itself), names resolved now, and the granted port ranges (for
    /// Landlock, which sees ports only). A `*.domain` origin cannot be
    /// resolved ahead: any address on its port is let through.
    pub async fn resolve_for_children(&self) -> (ResolvedNet, Vec<(u16, u16)>) {
        let mut allowed = Vec::new();
        for r in &self.rules {
            match &r.host {
                HostPattern::Any | HostPattern::Suffix(_) => allowed.push((None, r.ports)),
                HostPattern::Net(n) => allowed.push((Some(*n), r.ports)),
                HostPattern::Name(name) => {
                    if let Ok(addrs) = tokio::net::lookup_host((name.as_str(), r.ports.0)).await {
                        for a in addrs {
                            allowed.push((Some(IpNet::from(a.ip().to_canonical())), r.ports));
                        }
                    }
                }
            }
        }
        let ports = self.rules.iter().map(|r| r.ports).collect();
        (ResolvedNet { allowed }, ports)
    }

    /// Whether an HTTP request to this origin is granted.
    pub fn allows_http(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.rules.iter().any(|r| {
            r.scheme.as_deref().is_none_or(|s| s == scheme)
                && r.ports.0 <= port
                && port <= r.ports.1
                && match &r.host {
                    HostPattern::Any => true,
                    HostPattern::Name(n) => *n == host,
                    HostPattern::Suffix(s) => host.ends_with(s.as_str()),
                    HostPattern::Net(n) => ip.is_some_and(|ip| n.contains(&ip)),
                }
        })
    }
}

/// Addresses a run may connect to, after DNS.
#[derive(Debug, Clone, Default)]
pub struct ResolvedNet {
    /// (network, or any; port range)
    allowed: Vec<(Option<IpNet>, (u16, u16))>,
}

impl ResolvedNet {
    /// Whether a socket may reach `addr`.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.allowed.iter().any(|(net, (lo, hi))| {
            *lo <= addr.port() && addr.port() <= *hi && net.is_none_or(|n| n.contains(&ip))
        })
    }
}

fn parse_rule(text: &str) -> Result<NetRule, String> {
    let t = text.trim();
    let (scheme, rest) = match t.split_once("://") {
        Some((s, rest)) => {
            let s = s.to_ascii_lowercase();
            if s != "http" && s != "https" {
                return Err(format!(
                    "scheme `{s}` is not http or https; for other protocols write `host:port`"
                ));
            }
            (Some(s), rest.trim_end_matches('/'))
        }
        None => (None, t),
    };
    if rest.contains('/') && !looks_like_cidr(rest) {
        return Err("an origin has no path; write `https://host[:port]`".into());
    }
    let (host_text, port_text) = split_host_port(rest);
    let ports = match (port_text, &scheme) {
        (Some(p), _) => parse_ports(p)?,
        (None, Some(s)) => {
            let p = if s == "https" { 443 } else { 80 };
            (p, p)
        }
        (None, None) => return Err("needs a port: write `host:port` (or `host:*`)".into()),
    };
    let host_text = host_text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host = if host_text == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host_text.strip_prefix("*.") {
        HostPattern::Suffix(format!(".{suffix}"))
    } else if let Ok(net) = host_text.parse::<IpNet>() {
        HostPattern::Net(net)
    } else if let Ok(ip) = host_text.parse::<IpAddr>() {
        HostPattern::Net(IpNet::from(ip))
    } else if !host_text.is_empty()
        && host_text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        HostPattern::Name(host_text)
    } else {
        return Err(format!(
            "`{host_text}` is not a host name, address or CIDR block"
        ));
    };
    if scheme.is_none() && matches!(host, HostPattern::Suffix(_)) {
        return Err(
            "`*.domain` wildcards work for HTTP origins only; write `https://*.domain`".into(),
        );
    }
    Ok(NetRule {
        text: t.to_owned(),
        scheme,
        host,
        ports,
    })
}

fn looks_like_cidr(s: &str) -> bool {
    let (host, _) = split_host_port(s);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpNet>()
        .is_ok()
}

/// Splits `host:port`, `[v6]:port`, `v6-cidr` (no port) and `host`.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if s.starts_with('[')
        && let Some(end) = s.find(']')
    {
        let port = s[end + 1..].strip_prefix(':');
        return (&s[..=end], port);
    }
    if s.matches(':').count() > 1 {
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    }
}

fn parse_ports(p: &str) -> Result<(u16, u16), String> {
    if p == "*" {
        return Ok((1, u16::MAX));
    }
    let num = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port `{s}` is not a number from 1 to 65535"))
    };
    match p.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("port range `{p}` runs backwards"));
            }
            Ok((a, b))
        }
        None => num(p).map(|n| (n, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries() {
        assert!(
            NetPolicy::parse(&[
                "db.internal:5432",
                "10.0.0.0/8:*",
                "[::1]:80",
                "https://*.example.com"
            ])
            .is_ok()
        );
        assert!(parse_rule("db.internal").unwrap_err().contains("port"));
        assert!(parse_rule("ftp://x").unwrap_err().contains("scheme"));
        assert!(
            parse_rule("*.x.com:443")
                .unwrap_err()
                .contains("HTTP origins")
        );
        assert!(parse_rule("x:70000").is_err());
    }

    #[test]
    fn http_origins() {
        let p = NetPolicy::parse(&["https://acme.example", "127.0.0.1:14000"]).unwrap();
        assert!(p.allows_http("https", "acme.example", None));
        assert!(!p.allows_http("http", "acme.example", None));
        assert!(!p.allows_http("https", "acme.example", Some(8443)));
        assert!(p.allows_http("http", "127.0.0.1", Some(14000)));
        assert!(!p.allows_http("https", "evil.example", None));
        assert!(!NetPolicy::default().allows_http("https", "acme.example", None));
    }

    #[tokio::test]
    async fn sockets_check_addresses() {
        let p = NetPolicy::parse(&[
            "127.0.0.1:5432",
            "10.1.0.0/16:8000-8100",
            "https://x.example",
        ])
        .unwrap();
        let r = p.resolve().await;
        assert!(r.allows("127.0.0.1:5432".parse().unwrap()));
        assert!(!r.allows("127.0.0.1:5433".parse().unwrap()));
        assert!(r.allows("10.1.2.3:8050".parse().unwrap()));
        assert!(!r.allows("10.2.0.1:8050".parse().unwrap()));
        assert!(!r.allows("93.184.216.34:443".parse().unwrap()));
        assert!(
            !NetPolicy::default()
                .resolve()
                .await
                .allows("127.0.0.1:80".parse().unwrap())
        );
    }
}
