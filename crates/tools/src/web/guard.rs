//! The address policy of `http_fetch`: which hosts and addresses a model may make us connect to.
//!
//! A model that can fetch URLs can be talked (by a page it read, by a user) into fetching
//! `http://169.254.169.254/` or an intranet admin page: server-side request forgery. The policy
//! refuses every address that is not on the public internet — loopback, private networks,
//! link-local (where cloud metadata services live), multicast, reserved and documentation ranges,
//! and the IPv6 spellings that embed such an IPv4 address — unless the operator allowed it.
//!
//! It is applied where the address is final, so a name cannot smuggle one past it:
//! - [`GuardedResolver`] resolves every host name and drops the blocked addresses, failing the
//!   connection when none is left (a name that resolves to `127.0.0.1` is refused, and DNS
//!   rebinding meets the check on the address actually connected to);
//! - [`AddressPolicy::check_url`] checks IP-literal URLs, which the HTTP client connects to
//!   without asking any resolver, and names that are refused outright (`metadata.google.internal`);
//! - [`AddressPolicy::redirect_policy`] runs `check_url` on every redirect target and counts hops.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not on the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blocked {
    /// `0.0.0.0`, `::`: means "this host" to most stacks.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), IPv6 unique local (`fc00::/7`), site-local
    /// (`fec0::/10`) and local-use NAT64 (`64:ff9b:1::/48`).
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598); also cloud-internal services.
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`: where cloud metadata services answer.
    LinkLocal,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// Everything else that is not globally routable unicast: `0/8`, `192.0.0/24`, `240/4`,
    /// IPv6 outside `2000::/3`, IETF protocol assignments (`2001::/23`, Teredo included), …
    Reserved,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "the unspecified address",
            Self::Loopback => "a loopback address (this machine)",
            Self::Private => "a private-network address",
            Self::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address (where cloud metadata services answer)",
            Self::Broadcast => "the broadcast address",
            Self::Multicast => "a multicast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address, not on the public internet",
        })
    }
}

/// Why `ip` may not be connected to, or `None` for a public internet address.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, c, _] = ip.octets();
    let blocked = match (a, b, c) {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        _ if ip.is_broadcast() => Blocked::Broadcast,
        (0, _, _) => Blocked::Reserved,
        (10, _, _) => Blocked::Private,
        (100, 64..=127, _) => Blocked::SharedAddressSpace,
        (127, _, _) => Blocked::Loopback,
        (169, 254, _) => Blocked::LinkLocal,
        (172, 16..=31, _) => Blocked::Private,
        (192, 0, 0) => Blocked::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Blocked::Documentation,
        // The deprecated 6to4 relay anycast prefix (RFC 7526).
        (192, 88, 99) => Blocked::Reserved,
        (192, 168, _) => Blocked::Private,
        (198, 18..=19, _) => Blocked::Benchmarking,
        (224..=239, _, _) => Blocked::Multicast,
        (240..=255, _, _) => Blocked::Reserved,
        _ => return None,
    };
    Some(blocked)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    // An address that carries an IPv4 address reaches that address (through the kernel's
    // dual stack, a NAT64 gateway or a 6to4 relay), so it is judged by it.
    if let Some(v4) = embedded_v4(ip) {
        return match ip.segments() {
            // IPv4-compatible (`::a.b.c.d`) is deprecated (RFC 4291): refused even for a public
            // address, as nothing legitimate uses it.
            [0, 0, 0, 0, 0, 0, _, _] => Some(classify_v4(v4).unwrap_or(Blocked::Reserved)),
            _ => classify_v4(v4),
        };
    }
    let segments = ip.segments();
    let first = segments[0];
    let blocked = match segments {
        [0x64, 0xff9b, 1, ..] => Blocked::Private,
        [0x2001, 0xdb8, ..] => Blocked::Documentation,
        [0x2001, 2, 0, ..] => Blocked::Benchmarking,
        // IETF protocol assignments (Teredo, ORCHID, …), `2001::/23`.
        [0x2001, 0..=0x1ff, ..] => Blocked::Reserved,
        _ if first & 0xfff0 == 0x3ff0 => Blocked::Documentation,
        _ if first & 0xfe00 == 0xfc00 => Blocked::Private,
        _ if first & 0xffc0 == 0xfe80 => Blocked::LinkLocal,
        _ if first & 0xffc0 == 0xfec0 => Blocked::Private,
        _ if first & 0xff00 == 0xff00 => Blocked::Multicast,
        // SRv6 segment identifiers (RFC 9602): never reachable from the internet.
        [0x5f00, ..] => Blocked::Reserved,
        // Only `2000::/3` is allocated as global unicast; the rest is reserved.
        _ if first & 0xe000 != 0x2000 => Blocked::Reserved,
        _ => return None,
    };
    Some(blocked)
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`, RFC 6052) or 6to4 (`2002:AABB:CCDD::/48`, RFC 3056).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(low(hi, lo)),
        // `::` and `::1` are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) > (0, 1) => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

/// The host names refused by name: cloud metadata services, whatever they resolve to (some
/// resolve only inside the cloud, to addresses a future provider might not place in link-local).
const BLOCKED_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
];

/// A host name the operator exempted: exact, or `*.example.com` for every name under it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Subdomains(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.ends_with('.')),
        }
    }
}

/// Lower case, without the trailing dot of a fully qualified name, as names compare.
fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What a URL or address was refused for. Its message is a sentence for the model to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    message: String,
}

impl Refused {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// A refusal worded by the caller (a redirect found refused outside the redirect policy).
    pub(crate) fn from_message(message: impl Into<String>) -> Self {
        Self::new(message)
    }

    /// The first [`Refused`] in an error's chain of sources: the HTTP client wraps the one a
    /// resolver or redirect policy returned in its own errors.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(refused) = error.downcast_ref::<Refused>() {
                return Some(refused);
            }
            current = error.source();
        }
        None
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// Networks and host names that may be fetched although their addresses are not public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    networks: Vec<IpNet>,
    hosts: Vec<HostPattern>,
}

/// The note every refusal ends with: the model cannot change the policy, but the person reading
/// the transcript can.
const HOW_TO_ALLOW: &str = "only public internet addresses are fetched (an operator can \
                            exempt it with the `allow` list of the http_fetch provider)";

impl AddressPolicy {
    /// The policy exempting `allow`: each entry a network (`10.0.0.0/8`, `fd00::/8`), a single
    /// address (`127.0.0.1`), a host name (`intranet.example`) or every name under a domain
    /// (`*.corp.example`). The error names the entry (`allow[2]`) and says what is wrong.
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for (index, entry) in allow.iter().enumerate() {
            let trimmed = entry.trim();
            if let Ok(network) = trimmed.parse::<IpNet>() {
                policy.networks.push(network.trunc());
            } else if let Ok(ip) = trimmed.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if let Some(domain) = trimmed.strip_prefix("*.")
                && is_host_name(&normalize_host(domain))
            {
                policy
                    .hosts
                    .push(HostPattern::Subdomains(normalize_host(domain)));
            } else if is_host_name(&normalize_host(trimmed)) {
                policy
                    .hosts
                    .push(HostPattern::Exact(normalize_host(trimmed)));
            } else {
                return Err(format!(
                    "`allow[{index}]`: `{entry}` is neither a network (`10.0.0.0/8`), an address \
                     (`127.0.0.1`), a host name (`intranet.example`) nor a domain \
                     (`*.corp.example`)"
                ));
            }
        }
        Ok(policy)
    }

    /// Whether the operator exempted this host name (then its addresses are not checked).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.hosts.iter().any(|pattern| pattern.matches(&host))
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.networks.iter().any(|network| {
            network.contains(&ip)
                || network.contains(&canonical)
                || embedded.is_some_and(|v4| network.contains(&v4))
        })
    }

    /// Why `ip` may not be connected to, or `None` when it may (public, or allowed).
    pub fn check_ip(&self, ip: IpAddr) -> Option<Blocked> {
        if self.allows_ip(ip) {
            return None;
        }
        classify(ip)
    }

    /// Checks a host name before it is resolved: names of metadata services are refused.
    pub fn check_name(&self, host: &str) -> Result<(), Refused> {
        if self.allows_host(host) {
            return Ok(());
        }
        let name = normalize_host(host);
        if BLOCKED_NAMES.contains(&name.as_str()) {
            return Err(Refused::new(format!(
                "`{host}` is a cloud metadata service; {HOW_TO_ALLOW}"
            )));
        }
        Ok(())
    }

    /// Checks what can be checked of a URL before connecting: the scheme, credentials, an
    /// IP-literal host (no resolver sees it) and a host name refused by name.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::new(format!(
                "`{}:` URLs are not fetched; only http and https are",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::new(
                "URLs with a user name or password are not fetched",
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(Refused::new("the URL has no host"));
        };
        // The URL parser has already turned every IPv4 spelling (`2130706433`, `0x7f.1`) into
        // dotted decimal and bracketed IPv6, so a host that parses as an address is one.
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let Ok(ip) = bare.parse::<IpAddr>() else {
            return self.check_name(host);
        };
        match self.check_ip(ip) {
            None => Ok(()),
            Some(blocked) => Err(Refused::new(format!(
                "{} is {blocked}{}; {HOW_TO_ALLOW}",
                ip,
                describe_embedded(ip)
            ))),
        }
    }

    /// Keeps the addresses of `host` that may be connected to; refuses when none is left.
    pub fn filter(&self, host: &str, addresses: Vec<IpAddr>) -> Result<Vec<IpAddr>, Refused> {
        if self.allows_host(host) {
            return Ok(addresses);
        }
        let mut kept = Vec::with_capacity(addresses.len());
        let mut refused = Vec::new();
        for ip in addresses {
            match self.check_ip(ip) {
                None => kept.push(ip),
                Some(blocked) => refused.push((ip, blocked)),
            }
        }
        if !refused.is_empty() {
            tracing::debug!(
                host,
                ?refused,
                kept = kept.len(),
                "dropped blocked addresses"
            );
        }
        match refused.first() {
            Some((ip, blocked)) if kept.is_empty() => Err(Refused::new(format!(
                "`{host}` resolves to {ip}, {blocked}{}{}; {HOW_TO_ALLOW}",
                describe_embedded(*ip),
                match refused.len() {
                    1 => String::new(),
                    n => format!(" (and {} more blocked address(es))", n - 1),
                }
            ))),
            _ if kept.is_empty() => Err(Refused::new(format!("`{host}` has no addresses"))),
            _ => Ok(kept),
        }
    }

    /// The redirect policy: every hop's URL passes [`check_url`](Self::check_url) (host names
    /// in it are then resolved through the [`GuardedResolver`]), and at most `max_redirects`
    /// hops are followed.
    pub fn redirect_policy(self: Arc<Self>, max_redirects: usize) -> reqwest::redirect::Policy {
        reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds the URLs requested so far, so its length is this hop's number.
            let hop = attempt.previous().len();
            if hop > max_redirects {
                let refused = Refused::new(format!(
                    "it redirected more than {max_redirects} times (the limit); the next hop \
                     was {}",
                    attempt.url()
                ));
                return attempt.error(refused);
            }
            match self.check_url(attempt.url()) {
                Ok(()) => {
                    tracing::debug!(hop, to = %attempt.url(), "following a redirect");
                    attempt.follow()
                }
                Err(refused) => {
                    let refused = Refused::new(format!(
                        "it redirected to {}, which is refused: {refused}",
                        attempt.url()
                    ));
                    attempt.error(refused)
                }
            }
        })
    }
}

/// `" (it carries 127.0.0.1)"` for an IPv6 address that carries an IPv4 one, so the model sees
/// why `::ffff:7f00:1` is loopback.
fn describe_embedded(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6)
            .map(|v4| format!(" (it carries the IPv4 address {v4})"))
            .unwrap_or_default(),
        IpAddr::V4(_) => String::new(),
    }
}

/// Turns host names into addresses: the system's resolver by default ([`SystemResolver`]); a
/// caller may supply another (a fixed table in tests, a DNS-over-HTTPS client).
#[async_trait]
pub trait NameResolver: Send + Sync {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl NameResolver for SystemResolver {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let addresses = tokio::net::lookup_host((host, 0)).await?;
        Ok(addresses.map(|address| address.ip()).collect())
    }
}

/// The HTTP client's resolver: resolves with a [`NameResolver`], then keeps only the addresses
/// the [`AddressPolicy`] allows. A connection to a name whose every address is blocked fails
/// with a [`Refused`] in its error chain.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    resolver: Arc<dyn NameResolver>,
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    pub fn new(policy: Arc<AddressPolicy>, resolver: Arc<dyn NameResolver>) -> Self {
        Self { policy, resolver }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let resolver = Arc::clone(&self.resolver);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            policy.check_name(&host)?;
            let addresses = resolver.lookup(&host).await.map_err(|e| {
                Box::new(std::io::Error::new(
                    e.kind(),
                    format!("cannot resolve `{host}`: {e}"),
                )) as Box<dyn std::error::Error + Send + Sync>
            })?;
            let kept = policy.filter(&host, addresses)?;
            // Port 0: the client puts in the URL's port.
            let addrs: Addrs = Box::new(kept.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn classifies_special_purpose_addresses() {
        use Blocked::*;
        let table: &[(&str, Option<Blocked>)] = &[
            // IPv4
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Reserved)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("100.63.255.255", None),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.100.100.200", Some(SharedAddressSpace)), // Alibaba Cloud metadata
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("100.128.0.0", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)), // AWS, GCP, Azure metadata
            ("172.15.255.255", None),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.0", None),
            ("192.0.0.8", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("192.88.99.1", Some(Reserved)),
            ("192.168.1.1", Some(Private)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.0", None),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.215.14", None),
            // IPv6
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::7f00:1", Some(Loopback)),
            ("::a9fe:a9fe", Some(LinkLocal)),
            ("::8.8.8.8", Some(Reserved)), // IPv4-compatible: deprecated
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a00:1", Some(Private)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::808:808", None),
            ("64:ff9b:1::1", Some(Private)),
            ("2002:7f00:1::1", Some(Loopback)), // 6to4 of 127.0.0.1
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
            ("2001::1", Some(Reserved)), // Teredo
            ("2001:2::1", Some(Benchmarking)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fd00:ec2::254", Some(Private)), // AWS metadata over IPv6
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("100::1", Some(Reserved)),
            ("5f00::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            ("::ffff:0:7f00:1", Some(Reserved)), // IPv4-translated (SIIT)
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001::200e", None),
        ];
        for (text, expected) in table {
            assert_eq!(classify(ip(text)), *expected, "{text}");
        }
    }

    #[test]
    fn finds_the_ipv4_address_inside_ipv6_forms() {
        let v4 = |text: &str| text.parse::<Ipv6Addr>().ok().and_then(embedded_v4);
        assert_eq!(v4("::ffff:7f00:1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(v4("::7f00:1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(v4("64:ff9b::7f00:1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(v4("2002:7f00:1::"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(v4("::1"), None);
        assert_eq!(v4("::"), None);
        assert_eq!(v4("2001:db8::1"), None);
    }

    #[test]
    fn allow_entries_exempt_networks_and_names() {
        let policy = AddressPolicy::new(&[
            "127.0.0.1/32".into(),
            "10.1.0.0/16".into(),
            "fd00::1".into(),
            "intranet.example".into(),
            "*.corp.example".into(),
        ])
        .expect("valid");
        assert_eq!(policy.check_ip(ip("127.0.0.1")), None);
        assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), None);
        assert_eq!(policy.check_ip(ip("127.0.0.2")), Some(Blocked::Loopback));
        assert_eq!(policy.check_ip(ip("10.1.200.3")), None);
        assert_eq!(policy.check_ip(ip("10.2.0.1")), Some(Blocked::Private));
        assert_eq!(policy.check_ip(ip("fd00::1")), None);
        assert_eq!(policy.check_ip(ip("fd00::2")), Some(Blocked::Private));
        assert!(policy.allows_host("intranet.example"));
        assert!(policy.allows_host("Intranet.Example."));
        assert!(!policy.allows_host("evil-intranet.example"));
        assert!(policy.allows_host("wiki.corp.example"));
        assert!(policy.allows_host("a.b.corp.example"));
        assert!(!policy.allows_host("corp.example"));
        assert!(!policy.allows_host("notcorp.example"));
        // An exempted name's addresses are not checked.
        assert_eq!(
            policy.filter("wiki.corp.example", vec![ip("192.168.0.5")]),
            Ok(vec![ip("192.168.0.5")])
        );
    }

    #[test]
    fn a_bad_allow_entry_is_named() {
        let error =
            AddressPolicy::new(&["10.0.0.0/8".into(), "not a host!".into()]).expect_err("invalid");
        assert!(
            error.starts_with("`allow[1]`: `not a host!` is neither"),
            "{error}"
        );
        assert!(AddressPolicy::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn filter_keeps_public_addresses_and_refuses_when_none_is_left() {
        let policy = AddressPolicy::default();
        assert_eq!(
            policy.filter("mixed.example", vec![ip("10.0.0.1"), ip("93.184.215.14")]),
            Ok(vec![ip("93.184.215.14")])
        );
        let refused = policy
            .filter("internal.example", vec![ip("10.0.0.1"), ip("::1")])
            .expect_err("refused");
        let message = refused.to_string();
        assert!(
            message.contains("`internal.example` resolves to 10.0.0.1"),
            "{message}"
        );
        assert!(message.contains("private-network"), "{message}");
        assert!(message.contains("1 more blocked"), "{message}");
    }

    #[test]
    fn urls_are_checked_by_scheme_credentials_literal_and_name() {
        let policy = AddressPolicy::default();
        let check = |text: &str| {
            let url = Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            policy
                .check_url(&url)
                .map_err(|refused| refused.to_string())
        };
        assert_eq!(check("https://example.com/a"), Ok(()));
        assert_eq!(check("http://93.184.215.14/"), Ok(()));
        let refused = |text: &str, needle: &str| {
            let message = check(text).expect_err(text);
            assert!(message.contains(needle), "{text}: {message}");
        };
        refused("file:///etc/passwd", "`file:` URLs are not fetched");
        refused("ftp://example.com/", "`ftp:` URLs");
        refused("http://user:pw@example.com/", "user name or password");
        refused("http://127.0.0.1:8080/", "127.0.0.1 is a loopback address");
        refused("http://[::1]/", "::1 is a loopback");
        refused(
            "http://[::ffff:127.0.0.1]/",
            "carries the IPv4 address 127.0.0.1",
        );
        refused("http://[::ffff:7f00:1]/", "loopback");
        // The URL parser reads these as 127.0.0.1, as browsers do.
        refused("http://2130706433/", "127.0.0.1 is a loopback");
        refused("http://0x7f.1/", "127.0.0.1 is a loopback");
        refused("http://169.254.169.254/latest/meta-data/", "link-local");
        refused("http://metadata.google.internal/", "cloud metadata service");
        refused(
            "http://METADATA.google.internal./",
            "cloud metadata service",
        );
    }
}
