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

use crate::diag::{Lines, Problems};
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
        lines: &Lines,
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
        lines: &Lines,
        job: &str,
        problems: &mut Problems,
    ) {
        for entry in raw {
            let path = base.join(entry.get_ref());
            match read_ca_file(&path) {
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

    /// Whether a rule could reach a service of this machine listening on
    /// `listen`, judged without DNS: any host; an address range holding
    /// the listener's address or, for a wildcard listener, any loopback
    /// or interface address of this machine (and 0.0.0.0, which reaches
    /// the machine itself; IPv4-mapped forms too); a name that is an
    /// address in disguise (`127.1`), a localhost name, this host's name,
    /// or a name `/etc/hosts` gives one of those addresses.
    pub fn may_reach_local(&self, listen: SocketAddr) -> bool {
        let port = listen.port();
        let local = local_networks(listen.ip());
        let is_local = |ip: IpAddr| {
            let ip = ip.to_canonical();
            local.iter().any(|n| n.contains(&ip))
        };
        let local_name = |name: &str| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || ["ip6-localhost", "ip6-loopback", "localhost.localdomain"]
                    .contains(&name.as_str())
                || numeric_host(&name).is_some_and(is_local)
                || this_host_names().contains(&name)
                || hosts_file_addresses(&name).into_iter().any(is_local)
        };
        self.rules.iter().any(|r| {
            r.ports.0 <= port
                && port <= r.ports.1
                && match &r.host {
                    HostPattern::Any => true,
                    HostPattern::Name(n) => local_name(n),
                    HostPattern::Suffix(s) => s.trim_end_matches('.') == ".localhost",
                    HostPattern::Net(n) => local
                        .iter()
                        .any(|l| l.contains(&n.network()) || n.contains(&l.network())),
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

/// The certificates of a PEM file, for a `ca` grant (or an alert's
/// `ca`): what HTTPS trusts besides the public roots.
pub(crate) fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())
        .and_then(|it| it.collect::<Result<_, _>>().map_err(|e| e.to_string()))
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
        if let Some(why) = bad_prefix(rest) {
            return Err(why);
        }
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

/// Why an address with a prefix (`10.0.0.0/33`) is not a network, when
/// that is what it tries to be.
fn bad_prefix(s: &str) -> Option<String> {
    let (host, _) = split_host_port(s);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let (addr, len) = host.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    Some(match len.parse::<u8>() {
        Ok(n) if n > max => format!(
            "`{host}`: a prefix of /{n} is longer than an {} address has bits (at most /{max})",
            if addr.is_ipv4() { "IPv4" } else { "IPv6" }
        ),
        _ => format!("`{host}`: `/{len}` is not a prefix length (0 to {max})"),
    })
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

/// The networks a connect could use to reach a listener on `ip`: the
/// address itself, or for a wildcard every loopback and interface
/// address; with 0.0.0.0 and `::` (which reach the machine itself) and
/// the IPv4-mapped form of each IPv4 one.
fn local_networks(ip: IpAddr) -> Vec<IpNet> {
    let mut v4: Vec<IpNet> = vec!["0.0.0.0/32".parse().expect("a network")];
    let mut v6: Vec<IpNet> = vec!["::/128".parse().expect("a network")];
    if ip.is_unspecified() {
        v4.push("127.0.0.0/8".parse().expect("a network"));
        v6.push("::1/128".parse().expect("a network"));
        for a in interface_addresses() {
            match a {
                IpAddr::V4(_) => v4.push(IpNet::from(a)),
                IpAddr::V6(_) => v6.push(IpNet::from(a)),
            }
        }
    } else {
        match ip.to_canonical() {
            a @ IpAddr::V4(_) => v4.push(IpNet::from(a)),
            a @ IpAddr::V6(_) => v6.push(IpNet::from(a)),
        }
    }
    let mapped: Vec<IpNet> = v4
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => {
                let m = n.network().to_ipv6_mapped();
                ipnet::Ipv6Net::new(m, 96 + n.prefix_len())
                    .ok()
                    .map(IpNet::V6)
            }
            IpNet::V6(_) => None,
        })
        .collect();
    v4.into_iter().chain(v6).chain(mapped).collect()
}

/// This machine's interface addresses (getifaddrs).
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed by freeifaddrs;
    // each sockaddr is read as the family it says it is.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut at = head;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// A host name the resolver reads as an IPv4 address without asking DNS
/// (`127.1`, `2130706433`, `0x7f.1`: inet_aton's forms).
fn numeric_host(name: &str) -> Option<IpAddr> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut addr = libc::in_addr { s_addr: 0 };
    unsafe extern "C" {
        /// glibc's inet_aton(3) (not in the `libc` crate).
        fn inet_aton(cp: *const libc::c_char, inp: *mut libc::in_addr) -> libc::c_int;
    }
    // SAFETY: inet_aton reads a NUL-terminated string and writes one
    // in_addr.
    let ok = unsafe { inet_aton(c.as_ptr(), &mut addr) } != 0;
    ok.then(|| IpAddr::from(u32::from_be(addr.s_addr).to_be_bytes()))
}

/// This machine's own names (its host name, with and without domain).
fn this_host_names() -> Vec<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return Vec::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let short = name.split('.').next().unwrap_or_default().to_owned();
    vec![name, short]
}

/// The addresses `/etc/hosts` gives `name`.
fn hosts_file_addresses(name: &str) -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/hosts")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let addr: IpAddr = words.next()?.parse().ok()?;
            words
                .any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name))
                .then_some(addr)
        })
        .collect()
}

impl super::Kind for NetPolicy {
    fn key(&self) -> &'static str {
        "net"
    }

    fn explain(&self) -> super::Explained {
        super::Explained::Whole(self.describe())
    }

    /// Sockets on, with every address through the check, so a denied
    /// connect is recorded with the grant to add rather than failing as a
    /// bare "permission denied". With no net grant nothing passes; names
    /// are resolved once, when the run starts.
    fn wire<'a>(
        &'a self,
        wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
        violations: &'a super::Violations,
    ) -> super::Wiring<'a> {
        Box::pin(async move {
            let resolved = self.resolve().await;
            let described = self.describe();
            let violations = violations.clone();
            wasi.allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(self.needs_name_lookup());
            wasi.socket_addr_check(move |addr, use_| {
                use wasmtime_wasi::sockets::SocketAddrUse as U;
                let ok = match use_ {
                    // Implicit binds before a connect use the wildcard
                    // address.
                    U::TcpBind | U::UdpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    U::TcpConnect | U::UdpSend | U::UdpReceive => resolved.allows(addr),
                    U::TcpListen | U::TcpAccept => false,
                };
                if !ok && !matches!(use_, U::UdpReceive) {
                    let what = match use_ {
                        U::TcpBind => "TCP bind to",
                        U::TcpListen => "TCP listen on",
                        U::TcpAccept => "TCP accept on",
                        U::TcpConnect => "TCP connect to",
                        U::UdpBind => "UDP bind to",
                        U::UdpSend => "UDP send to",
                        U::UdpReceive => "UDP receive from",
                    };
                    violations.record(format!(
                        "{what} {addr} is not in the job's net grant ({described}); add \"{addr}\" to `net = [...]`"
                    ));
                }
                Box::pin(async move { ok })
            });
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_that_reach_opsds_own_endpoint_are_seen_without_dns() {
        let any: SocketAddr = "0.0.0.0:9779".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:9779".parse().unwrap();
        let reaches =
            |grant: &str, listen| NetPolicy::parse(&[grant]).unwrap().may_reach_local(listen);
        for g in [
            "127.0.0.1:9779",
            "127.0.0.2:9779",
            "127.1:9779",
            "2130706433:9779",
            "localhost.:9779",
            "ip6-localhost:9779",
            "0.0.0.0:9779",
            "http://[::ffff:127.0.0.1]:9779",
            "[::1]:9779",
            "127.0.0.0/8:9000-9999",
        ] {
            assert!(reaches(g, any), "{g} with a wildcard listener");
        }
        assert!(reaches("127.0.0.1:9779", lo));
        assert!(!reaches("127.0.0.1:9780", lo));
        assert!(!reaches("db.internal:9779", lo));
        assert!(!reaches("10.1.2.3:5432", any));
    }

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
        let e = parse_rule("10.0.0.0/33:80").unwrap_err();
        assert!(e.contains("/33") && e.contains("at most /32"), "{e}");
        let e = parse_rule("[::1/200]:80").unwrap_err();
        assert!(e.contains("at most /128"), "{e}");
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
