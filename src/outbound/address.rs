//! Which addresses a job may call: by default only public unicast ones. Every
//! other class is named, so a refusal can say which rule refused it. An IPv6
//! address that carries an IPv4 one (mapped, compatible, NAT64, 6to4, Teredo) is
//! judged by the IPv4 address inside it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A class of address that is not public unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Unspecified,
    ThisNetwork,
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    CloudMetadata,
    Benchmarking,
    Documentation,
    Multicast,
    Reserved,
    Broadcast,
    UniqueLocal,
    SiteLocal,
    IetfProtocol,
}

impl Class {
    /// As a refusal names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unspecified => "unspecified",
            Class::ThisNetwork => "this-network (0.0.0.0/8)",
            Class::Loopback => "loopback",
            Class::Private => "private (RFC 1918)",
            Class::SharedAddressSpace => "shared address space (100.64.0.0/10)",
            Class::LinkLocal => "link-local",
            Class::CloudMetadata => "cloud metadata",
            Class::Benchmarking => "benchmarking (198.18.0.0/15)",
            Class::Documentation => "documentation",
            Class::Multicast => "multicast",
            Class::Reserved => "reserved (240.0.0.0/4)",
            Class::Broadcast => "broadcast",
            Class::UniqueLocal => "unique-local (fc00::/7)",
            Class::SiteLocal => "site-local (fec0::/10)",
            Class::IetfProtocol => "IETF protocol assignments (192.0.0.0/24)",
        }
    }
}

/// The class of a non-public address; None for a public unicast one.
pub fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    let [a, b, c, d] = ip.octets();
    Some(match (a, b, c, d) {
        (0, 0, 0, 0) => Class::Unspecified,
        (0, ..) => Class::ThisNetwork,
        (127, ..) => Class::Loopback,
        (10, ..) => Class::Private,
        (172, 16..=31, ..) => Class::Private,
        (192, 168, ..) => Class::Private,
        // Alibaba Cloud's metadata service lives in the shared address space.
        (100, 100, 100, 200) => Class::CloudMetadata,
        (100, 64..=127, ..) => Class::SharedAddressSpace,
        (169, 254, 169, 254) | (169, 254, 170, 2) => Class::CloudMetadata,
        (169, 254, ..) => Class::LinkLocal,
        (192, 0, 0, _) => Class::IetfProtocol,
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => Class::Documentation,
        (198, 18..=19, ..) => Class::Benchmarking,
        (224..=239, ..) => Class::Multicast,
        (255, 255, 255, 255) => Class::Broadcast,
        (240..=255, ..) => Class::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Class::Unspecified,
        [0, 0, 0, 0, 0, 0, 0, 1] => Class::Loopback,
        // AWS's metadata service over IPv6.
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => Class::CloudMetadata,
        [x, ..] if x & 0xfe00 == 0xfc00 => Class::UniqueLocal,
        [x, ..] if x & 0xffc0 == 0xfe80 => Class::LinkLocal,
        [x, ..] if x & 0xffc0 == 0xfec0 => Class::SiteLocal,
        [x, ..] if x & 0xff00 == 0xff00 => Class::Multicast,
        [0x2001, 0x0db8, ..] => Class::Documentation,
        // Discard-only (100::/64) and the rest of the IETF's special block.
        [0x0100, 0, 0, 0, ..] => Class::Reserved,
        [0x2001, x, ..] if x < 0x0200 => Class::IetfProtocol,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one carries: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`,
/// bits 16-47) and Teredo (`2001::/32`, the client's address inverted in the last
/// 32 bits).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let from =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(from(hi, lo)),
        // `::` and `::1` are not IPv4-compatible addresses.
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => {
            Some(from(hi, lo))
        }
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(from(hi, lo)),
        [0x2002, hi, lo, ..] => Some(from(hi, lo)),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(from(!hi, !lo)),
        _ => None,
    }
}

/// What an operator lets through despite the classes, and what it refuses despite
/// them: hosts by exact name, by suffix, and networks by CIDR. A deny wins.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub allow_hosts: Vec<String>,
    /// `.example.com` matches `a.example.com` (not `example.com` itself).
    pub allow_suffixes: Vec<String>,
    pub allow_networks: Vec<IpNet>,
    pub deny_hosts: Vec<String>,
    pub deny_suffixes: Vec<String>,
    pub deny_networks: Vec<IpNet>,
}

/// Why an address or a host is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its address is of this class and no rule allows it.
    Class(Class),
    /// A deny rule names it.
    Denied(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Class(class) => write!(f, "a {} address", class.as_str()),
            Refusal::Denied(rule) => write!(f, "denied by {rule}"),
        }
    }
}

/// One list of rules as a setting writes it: entries separated by commas, each a
/// network (`10.0.0.0/8`), an address (`127.0.0.1`, `::1`), a host suffix
/// (`.corp.example`) or a host (`api.internal`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleList {
    pub hosts: Vec<String>,
    pub suffixes: Vec<String>,
    pub networks: Vec<IpNet>,
}

impl RuleList {
    pub fn parse(text: &str) -> Result<RuleList, String> {
        let mut list = RuleList::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                list.networks.push(net.trunc());
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                list.networks.push(IpNet::from(ip));
            } else if entry.contains('/') {
                return Err(format!(
                    "{entry:?} is not a network (write it as 10.0.0.0/8)"
                ));
            } else if let Some(suffix) = entry.strip_prefix('.') {
                if !is_host_name(suffix) {
                    return Err(format!("{entry:?} is not a host suffix (.example.com)"));
                }
                list.suffixes
                    .push(format!(".{}", suffix.to_ascii_lowercase()));
            } else if is_host_name(entry) {
                list.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{entry:?} is not a network, an address, a host or a .suffix"
                ));
            }
        }
        Ok(list)
    }
}

impl RuleList {
    /// Whether a queue holding its calls to this list lets `url` through: a name
    /// when a host or suffix rule names it, an address when a network holds it
    /// (an IPv6 address carrying an IPv4 one by either). Names are not resolved
    /// for it: the service's guard judges their addresses as always.
    pub fn admits(&self, url: &url::Url) -> bool {
        match url.host() {
            Some(url::Host::Domain(name)) => {
                Rules::host_matches(name, &self.hosts, &self.suffixes).is_some()
            }
            Some(url::Host::Ipv4(ip)) => self.holds(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => {
                self.holds(IpAddr::V6(ip))
                    || embedded_v4(ip).is_some_and(|v4| self.holds(IpAddr::V4(v4)))
            }
            None => false,
        }
    }

    fn holds(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.suffixes.is_empty() && self.networks.is_empty()
    }
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Rules {
    /// The rules of an allow list and a deny list.
    pub fn of(allow: RuleList, deny: RuleList) -> Rules {
        Rules {
            allow_hosts: allow.hosts,
            allow_suffixes: allow.suffixes,
            allow_networks: allow.networks,
            deny_hosts: deny.hosts,
            deny_suffixes: deny.suffixes,
            deny_networks: deny.networks,
        }
    }

    /// Whether the name `host` is denied by name, before it is resolved.
    pub fn denied_name(&self, host: &str) -> Option<Refusal> {
        Self::host_matches(host, &self.deny_hosts, &self.deny_suffixes)
            .map(|rule| Refusal::Denied(format!("the host rule {rule}")))
    }

    fn host_matches(host: &str, exact: &[String], suffixes: &[String]) -> Option<String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        exact
            .iter()
            .find(|h| h.eq_ignore_ascii_case(&host))
            .cloned()
            .or_else(|| {
                suffixes
                    .iter()
                    .find(|s| host.ends_with(&s.to_ascii_lowercase()) && host.len() > s.len())
                    .cloned()
            })
    }

    /// Whether `ip`, reached through the name `host` (None for an IP literal),
    /// may be called.
    pub fn judge(&self, host: Option<&str>, ip: IpAddr) -> Result<(), Refusal> {
        // The IPv4 inside an IPv6 address is what the packets reach.
        let effective = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if let Some(host) = host
            && let Some(rule) = Self::host_matches(host, &self.deny_hosts, &self.deny_suffixes)
        {
            return Err(Refusal::Denied(format!("the host rule {rule}")));
        }
        if let Some(net) = self
            .deny_networks
            .iter()
            .find(|n| n.contains(&ip) || n.contains(&effective))
        {
            return Err(Refusal::Denied(format!("the network rule {net}")));
        }
        let Some(class) = classify(ip) else {
            return Ok(());
        };
        let allowed_host = host.is_some_and(|h| {
            Self::host_matches(h, &self.allow_hosts, &self.allow_suffixes).is_some()
        });
        let allowed_net = self
            .allow_networks
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&effective));
        if allowed_host || allowed_net {
            Ok(())
        } else {
            Err(Refusal::Class(class))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_s_destinations_name_hosts_suffixes_and_networks() {
        let list = RuleList::parse("api.example.com, .partner.example, 203.0.113.0/24").unwrap();
        let admits = |url: &str| list.admits(&url::Url::parse(url).unwrap());
        assert!(admits("https://API.example.com/x"));
        assert!(admits("https://eu.partner.example/"));
        assert!(admits("http://203.0.113.9:8080/"));
        assert!(
            admits("http://[::ffff:203.0.113.9]/"),
            "an IPv4 inside IPv6"
        );
        assert!(
            !admits("https://partner.example/"),
            "a suffix is not its own host"
        );
        assert!(!admits("https://example.com/"));
        assert!(!admits("http://203.0.114.1/"));
        assert!(!admits("https://api.example.com.evil.test/"));
        assert!(!RuleList::default().admits(&url::Url::parse("http://a/").unwrap()));
    }
}
