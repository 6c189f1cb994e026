//! Addresses: `host:port` lists as Pegasus reads them, and the one rule for the address a node
//! advertises, shared by the checker and the server.
//!
//! The advertised-address rule is Pegasus's (`network::get_local_ipv4`,
//! `rpc_address::ipv4_from_network_interface`), in this order:
//!
//! 1. `[network] explicit_host_address`, if set and it resolves to an IPv4 address;
//! 2. `[network] primary_interface`, if set: the first IPv4 address of the interface of exactly
//!    that name (any address, `127.0.0.1` for `lo` too);
//! 3. if `primary_interface` is empty: the first site-local IPv4 address (10/8, 172.16/12,
//!    192.168/16) of an interface that is not a docker NIC (name containing `docker`, or the
//!    address `172.17.42.1`), in the kernel's interface order;
//! 4. the host name, resolved.

use std::fmt;
use std::net::Ipv4Addr;

use crate::config::Config;
use crate::facts::HostFacts;
use crate::keys;
use crate::source::Span;

/// The host part of a `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A dotted IPv4 address.
    Ip(Ipv4Addr),
    /// A DNS name.
    Name(String),
}

/// A parsed `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Why a `host:port` item could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `:port`.
    #[error("`{0}` has no port")]
    MissingPort(String),
    /// The port is not a number.
    #[error("port `{0}` is not a number")]
    BadPort(String),
    /// The port is 0 or above 65535.
    #[error("port {0} is out of range (1-65535)")]
    PortOutOfRange(u64),
    /// The host is neither an IPv4 address nor a DNS name.
    #[error("`{0}` is neither an IPv4 address nor a host name")]
    BadHost(String),
    /// An IPv6 address: Pegasus addresses are IPv4 only.
    #[error("`{0}` is an IPv6 address; Pegasus addresses are IPv4 only")]
    Ipv6(String),
}

/// One item of a comma-separated address list, with its span in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListItem {
    /// The item as written, trimmed.
    pub text: String,
    /// Where it is.
    pub span: Span,
    /// What it means.
    pub parsed: Result<HostPort, AddressError>,
}

/// Splits a comma-separated `host:port` list whose raw text starts at byte `offset`.
/// Empty items (a trailing comma) are skipped, as Pegasus skips them.
pub fn parse_list(raw: &str, offset: usize) -> Vec<ListItem> {
    let mut items = Vec::new();
    let mut at = 0;
    for piece in raw.split(',') {
        let lead = piece.len() - piece.trim_start().len();
        let text = piece.trim();
        if !text.is_empty() {
            items.push(ListItem {
                text: text.to_owned(),
                span: Span::new(offset + at + lead, text.len()),
                parsed: parse_host_port(text),
            });
        }
        at += piece.len() + 1;
    }
    items
}

/// Parses one `host:port`.
pub fn parse_host_port(text: &str) -> Result<HostPort, AddressError> {
    if text.starts_with('[') || text.matches(':').count() > 1 {
        return Err(AddressError::Ipv6(text.to_owned()));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(AddressError::MissingPort(text.to_owned()));
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::BadPort(port.to_owned()));
    }
    let port = match port.parse::<u64>() {
        Ok(p @ 1..=65535) => p as u16,
        Ok(p) => return Err(AddressError::PortOutOfRange(p)),
        Err(_) => return Err(AddressError::PortOutOfRange(u64::MAX)),
    };
    Ok(HostPort {
        host: parse_host(host)?,
        port,
    })
}

fn parse_host(host: &str) -> Result<Host, AddressError> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(ip));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    // All-numeric labels would be a mistyped IP (`10.0.0.256`, `10.0.0`), not a name.
    let looks_numeric = host
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if host.len() <= 253 && host.split('.').all(label_ok) && !looks_numeric {
        Ok(Host::Name(host.to_owned()))
    } else {
        Err(AddressError::BadHost(host.to_owned()))
    }
}

/// Site-local as Pegasus means it: 10/8, 172.16/12, 192.168/16.
pub fn is_site_local(ip: Ipv4Addr) -> bool {
    ip.is_private()
}

/// A docker NIC as Pegasus means it: the name contains `docker`, or the address is `172.17.42.1`.
pub fn is_docker(interface: &str, ip: Ipv4Addr) -> bool {
    interface.contains("docker") || ip == Ipv4Addr::new(172, 17, 42, 1)
}

/// The `[network]` keys that decide the advertised address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    /// `[network] primary_interface` (empty: pick automatically).
    pub primary_interface: String,
    /// `[network] explicit_host_address` (empty: not set).
    pub explicit_host_address: String,
}

impl NetworkSettings {
    /// Reads the two keys from `config`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            primary_interface: config.text(&keys::PRIMARY_INTERFACE).to_owned(),
            explicit_host_address: config.text(&keys::EXPLICIT_HOST_ADDRESS).to_owned(),
        }
    }
}

/// Where the advertised address came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressOrigin {
    /// `explicit_host_address`.
    Explicit,
    /// The interface named by `primary_interface`.
    NamedInterface(String),
    /// The first site-local, non-docker address, on this interface.
    FirstPrivate(String),
    /// The host name, resolved.
    Hostname(String),
}

/// The address a node advertises, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertisedAddress {
    /// The address.
    pub ip: Ipv4Addr,
    /// Why this one.
    pub origin: AddressOrigin,
}

/// No address could be chosen at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no address to advertise: no interface matched and the host name `{hostname}` does not resolve to IPv4"
)]
pub struct NoAddress {
    /// The host name that did not resolve.
    pub hostname: String,
}

/// The site-local, non-docker addresses in interface order: what an empty `primary_interface`
/// chooses from (the first one wins).
pub fn candidates(facts: &HostFacts) -> Vec<(&str, Ipv4Addr)> {
    facts
        .interfaces
        .iter()
        .flat_map(|i| i.ipv4.iter().map(move |&ip| (i.name.as_str(), ip)))
        .filter(|&(name, ip)| is_site_local(ip) && !is_docker(name, ip))
        .collect()
}

/// Applies the advertised-address rule (see the module docs). `resolve` turns a name into an
/// IPv4 address; the server passes DNS, the checker passes what a facts file recorded.
pub fn choose(
    settings: &NetworkSettings,
    facts: &HostFacts,
    resolve: &dyn Fn(&str) -> Option<Ipv4Addr>,
) -> Result<AdvertisedAddress, NoAddress> {
    if !settings.explicit_host_address.is_empty() {
        let explicit = settings.explicit_host_address.parse().ok();
        if let Some(ip) = explicit.or_else(|| resolve(&settings.explicit_host_address)) {
            return Ok(AdvertisedAddress {
                ip,
                origin: AddressOrigin::Explicit,
            });
        }
    }
    let wanted = settings.primary_interface.as_str();
    let chosen = if wanted.is_empty() {
        candidates(facts)
            .first()
            .map(|&(name, ip)| (ip, AddressOrigin::FirstPrivate(name.to_owned())))
    } else {
        facts
            .interfaces
            .iter()
            .find(|i| i.name == wanted && !i.ipv4.is_empty())
            .map(|i| (i.ipv4[0], AddressOrigin::NamedInterface(i.name.clone())))
    };
    if let Some((ip, origin)) = chosen {
        return Ok(AdvertisedAddress { ip, origin });
    }
    resolve(&facts.hostname)
        .map(|ip| AdvertisedAddress {
            ip,
            origin: AddressOrigin::Hostname(facts.hostname.clone()),
        })
        .ok_or_else(|| NoAddress {
            hostname: facts.hostname.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Interface;

    fn facts(interfaces: &[(&str, &[&str])]) -> HostFacts {
        HostFacts {
            hostname: "node1".into(),
            interfaces: interfaces
                .iter()
                .map(|(name, ips)| Interface {
                    name: (*name).into(),
                    ipv4: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
                })
                .collect(),
            ..HostFacts::default()
        }
    }

    fn no_dns(_: &str) -> Option<Ipv4Addr> {
        None
    }

    #[test]
    fn list_items_keep_their_spans_and_skip_empty_items() {
        let raw = "10.0.0.1:34601, host-a:34601,,";
        let items = parse_list(raw, 100);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].span, Span::new(116, 12));
        assert_eq!(
            items[1].parsed.as_ref().unwrap().host,
            Host::Name("host-a".into())
        );
    }

    #[test]
    fn malformed_items_say_what_is_wrong() {
        assert_eq!(
            parse_host_port("10.0.0.1"),
            Err(AddressError::MissingPort("10.0.0.1".into()))
        );
        assert_eq!(
            parse_host_port("10.0.0.1:70000"),
            Err(AddressError::PortOutOfRange(70000))
        );
        assert_eq!(
            parse_host_port("10.0.0.1:0"),
            Err(AddressError::PortOutOfRange(0))
        );
        assert_eq!(
            parse_host_port("10.0.0.1:x"),
            Err(AddressError::BadPort("x".into()))
        );
        assert_eq!(
            parse_host_port("10.0.0.256:1"),
            Err(AddressError::BadHost("10.0.0.256".into()))
        );
        assert!(matches!(
            parse_host_port("[::1]:1"),
            Err(AddressError::Ipv6(_))
        ));
    }

    #[test]
    fn empty_primary_interface_takes_the_first_private_non_docker_address() {
        let f = facts(&[
            ("lo", &["127.0.0.1"]),
            ("docker0", &["172.17.0.1"]),
            ("eth0", &["203.0.113.5"]),
            ("eth1", &["10.1.2.3"]),
            ("eth2", &["192.168.1.9"]),
        ]);
        let chosen = choose(&NetworkSettings::default(), &f, &no_dns).unwrap();
        assert_eq!(chosen.ip, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(chosen.origin, AddressOrigin::FirstPrivate("eth1".into()));
        assert_eq!(candidates(&f).len(), 2);
    }

    #[test]
    fn a_named_interface_wins_even_for_loopback_and_explicit_wins_over_all() {
        let f = facts(&[("lo", &["127.0.0.1"]), ("eth0", &["10.0.0.2"])]);
        let lo = NetworkSettings {
            primary_interface: "lo".into(),
            ..Default::default()
        };
        assert_eq!(choose(&lo, &f, &no_dns).unwrap().ip, Ipv4Addr::LOCALHOST);
        let explicit = NetworkSettings {
            primary_interface: "lo".into(),
            explicit_host_address: "10.9.9.9".into(),
        };
        assert_eq!(
            choose(&explicit, &f, &no_dns).unwrap().origin,
            AddressOrigin::Explicit
        );
    }

    #[test]
    fn without_a_match_the_host_name_is_resolved() {
        let f = facts(&[("lo", &["127.0.0.1"])]);
        let dns = |name: &str| (name == "node1").then_some(Ipv4Addr::new(127, 0, 1, 1));
        let chosen = choose(&NetworkSettings::default(), &f, &dns).unwrap();
        assert_eq!(chosen.origin, AddressOrigin::Hostname("node1".into()));
        assert!(choose(&NetworkSettings::default(), &f, &no_dns).is_err());
    }
}

/// An allow-list of client addresses: IPv4 or IPv6 addresses and CIDR blocks, comma-separated
/// (`[security] admin_allowed_hosts = 127.0.0.1, 10.0.0.0/8`). Empty allows everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<(std::net::IpAddr, u8)>);

impl AllowList {
    /// Parses a list; the first item that is not an address or block is the error.
    pub fn parse(raw: &str) -> Result<AllowList, String> {
        let mut blocks = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            blocks.push(Self::block(item).ok_or_else(|| {
                format!("`{item}` is not an IP address or a CIDR block (`10.0.0.0/8`)")
            })?);
        }
        Ok(AllowList(blocks))
    }

    fn block(item: &str) -> Option<(std::net::IpAddr, u8)> {
        let (ip, bits) = match item.split_once('/') {
            Some((ip, bits)) => (
                ip.parse::<std::net::IpAddr>().ok()?,
                bits.parse::<u8>().ok()?,
            ),
            None => {
                let ip = item.parse::<std::net::IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some((ip, bits))
    }

    /// Whether the list allows everyone (it is empty).
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` may (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.is_open()
            || self.0.iter().any(|(net, bits)| match (net, ip) {
                (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                    prefix(u32::from(*n).into(), u32::from(a).into(), *bits, 32)
                }
                (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
                    prefix(u128::from(*n), u128::from(a), *bits, 128)
                }
                _ => false,
            })
    }
}

/// Whether the first `bits` of `a` and `b` (numbers of `width` bits) agree.
fn prefix(a: u128, b: u128, bits: u8, width: u32) -> bool {
    let shift = width - u32::from(bits);
    shift >= width || (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod allow_list_tests {
    use super::AllowList;

    #[test]
    fn addresses_and_blocks_allow_what_they_cover() {
        let list = AllowList::parse(" 127.0.0.1, 10.1.0.0/16,::1 ,").unwrap();
        let allows = |ip: &str| list.allows(ip.parse().unwrap());
        assert!(allows("127.0.0.1") && allows("10.1.255.3") && allows("::1"));
        assert!(allows("::ffff:10.1.0.9"), "IPv4-mapped");
        assert!(!allows("127.0.0.2") && !allows("10.2.0.1") && !allows("::2"));
        assert!(
            AllowList::parse("0.0.0.0/0")
                .unwrap()
                .allows("8.8.8.8".parse().unwrap())
        );
        assert!(
            AllowList::parse("")
                .unwrap()
                .allows("8.8.8.8".parse().unwrap())
        );
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0/8",
            "1.2.3.4/x",
            "::1/129",
        ] {
            assert!(AllowList::parse(bad).is_err(), "{bad}");
        }
    }
}
