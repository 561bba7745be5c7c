//! Any URL, and any IPv4 or IPv6 address, judged by the guard on calls out: nothing
//! panics, and nothing is judged public that a second implementation of the
//! tables (written from the RFCs as networks, apart from `outbound::address`'s
//! match arms) says is not, nor the other way round.
//!
//!     cargo +nightly fuzz run destination fuzz/seeds/destination -- -max_total_time=60

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use jobqueue::outbound::address::{Rules, classify};
use jobqueue::outbound::guard::Guard;
use libfuzzer_sys::fuzz_target;

/// IPv4 networks that are not public unicast (RFC 6890 and the cloud metadata
/// addresses).
const V4: [&str; 15] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "100.100.100.200/32",
];

/// IPv6 networks that are not public unicast, once embedded IPv4 is taken out.
const V6: [&str; 10] = [
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
    "2001:db8::/32",
    "100::/64",
    "2001::/23",
    "fd00:ec2::254/128",
];

fn listed(ip: IpAddr, table: &[&str]) -> bool {
    table
        .iter()
        .any(|n| n.parse::<IpNet>().expect("a network").contains(&ip))
}

/// The IPv4 an IPv6 address carries, by prefix: mapped, compatible, NAT64, 6to4,
/// Teredo (its client address inverted).
fn inside(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(v6);
    let net = |text: &str| text.parse::<IpNet>().expect("a network").contains(&IpAddr::V6(v6));
    let low = (bits & 0xffff_ffff) as u32;
    if net("::ffff:0:0/96") || net("64:ff9b::/96") {
        return Some(Ipv4Addr::from(low));
    }
    if net("::/96") && low > 1 {
        return Some(Ipv4Addr::from(low));
    }
    if net("2002::/16") {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    if net("2001::/32") {
        return Some(Ipv4Addr::from(!low));
    }
    None
}

/// Whether the second implementation holds `ip` public.
fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => !listed(ip, &V4),
        IpAddr::V6(v6) => match inside(v6) {
            Some(v4) => !listed(IpAddr::V4(v4), &V4),
            None => !listed(ip, &V6),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let guard = Guard::new(Rules::default());
    // The bytes as an address: the two implementations agree.
    let ip = match data.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).unwrap()))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).unwrap()))),
        _ => None,
    };
    if let Some(ip) = ip {
        assert_eq!(
            classify(ip).is_none(),
            public(ip),
            "{ip}: classify says {:?}",
            classify(ip)
        );
    }
    // The bytes as a URL: one the guard lets through at submit names a public
    // address (or a name, judged when resolved).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [text.to_string(), format!("http://{text}/")] {
        let Ok(url) = url::Url::parse(&candidate) else {
            continue;
        };
        let host = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        let allowed = guard.at_submit(&url).is_ok() && guard.literal(&url).is_ok();
        if let Some(ip) = host {
            assert_eq!(allowed, public(ip), "{candidate} names {ip}");
        }
    }
});
