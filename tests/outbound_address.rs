//! The classes of address a job may not call, in their odd spellings and inside
//! IPv6, and the rules an operator sets against them. Nothing here sends a packet.

use std::net::IpAddr;

use jobqueue::outbound::address::{Class, Refusal, Rules, classify, embedded_v4};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The address a URL's host means, as the URL parser reads it.
fn url_ip(url: &str) -> IpAddr {
    match url::Url::parse(url).unwrap().host().unwrap() {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(d) => panic!("{url} names {d}, not an address"),
    }
}

#[test]
fn every_class_but_public_unicast_is_named() {
    let cases = [
        ("0.0.0.0", Class::Unspecified),
        ("0.1.2.3", Class::ThisNetwork),
        ("127.0.0.1", Class::Loopback),
        ("127.255.0.9", Class::Loopback),
        ("10.0.0.1", Class::Private),
        ("172.16.0.1", Class::Private),
        ("172.31.255.255", Class::Private),
        ("192.168.1.1", Class::Private),
        ("100.64.0.1", Class::SharedAddressSpace),
        ("100.127.255.254", Class::SharedAddressSpace),
        ("169.254.1.1", Class::LinkLocal),
        ("169.254.169.254", Class::CloudMetadata),
        ("100.100.100.200", Class::CloudMetadata),
        ("198.18.0.1", Class::Benchmarking),
        ("198.19.255.255", Class::Benchmarking),
        ("192.0.2.1", Class::Documentation),
        ("224.0.0.1", Class::Multicast),
        ("239.255.255.250", Class::Multicast),
        ("240.0.0.1", Class::Reserved),
        ("255.255.255.255", Class::Broadcast),
        ("192.0.0.8", Class::IetfProtocol),
        ("::", Class::Unspecified),
        ("::1", Class::Loopback),
        ("fc00::1", Class::UniqueLocal),
        ("fd12:3456::1", Class::UniqueLocal),
        ("fe80::1", Class::LinkLocal),
        ("fec0::1", Class::SiteLocal),
        ("ff02::1", Class::Multicast),
        ("fd00:ec2::254", Class::CloudMetadata),
        ("2001:db8::1", Class::Documentation),
    ];
    for (text, class) in cases {
        assert_eq!(classify(ip(text)), Some(class), "{text}");
    }
    for public in [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700::1111",
        "2a00:1450::1",
    ] {
        assert_eq!(classify(ip(public)), None, "{public}");
    }
}

#[test]
fn an_ipv6_address_that_carries_an_ipv4_one_is_judged_by_it() {
    let cases = [
        ("::ffff:127.0.0.1", Class::Loopback),
        ("::ffff:169.254.169.254", Class::CloudMetadata),
        ("::10.0.0.1", Class::Private),
        ("64:ff9b::a00:1", Class::Private),
        ("64:ff9b::7f00:1", Class::Loopback),
        ("2002:7f00:1::", Class::Loopback),
        ("2002:a9fe:a9fe::1", Class::CloudMetadata),
        // Teredo: the client's 127.0.0.1, inverted, in the last 32 bits.
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", Class::Loopback),
    ];
    for (text, class) in cases {
        assert_eq!(classify(ip(text)), Some(class), "{text}");
    }
    assert_eq!(classify(ip("::ffff:8.8.8.8")), None);
    assert_eq!(
        embedded_v4(ip_v6("2002:0808:0808::")),
        Some("8.8.8.8".parse().unwrap())
    );
    assert_eq!(embedded_v4(ip_v6("2606:4700::1111")), None);
}

fn ip_v6(text: &str) -> std::net::Ipv6Addr {
    text.parse().unwrap()
}

#[test]
fn odd_spellings_of_loopback_are_still_loopback() {
    for url in [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://0x7f000001/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    ] {
        assert_eq!(classify(url_ip(url)), Some(Class::Loopback), "{url}");
    }
    assert_eq!(
        classify(url_ip("http://0251.0376.0251.0376/")),
        Some(Class::CloudMetadata)
    );
}

#[test]
fn an_operator_s_rules_let_exactly_the_listed_through_and_a_deny_wins() {
    let rules = Rules {
        allow_hosts: vec!["internal.svc".into()],
        allow_suffixes: vec![".corp.example".into()],
        allow_networks: vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ],
        deny_hosts: vec!["blocked.corp.example".into()],
        deny_suffixes: vec![],
        deny_networks: vec![
            "10.1.2.0/24".parse().unwrap(),
            "8.8.4.4/32".parse().unwrap(),
        ],
    };
    assert_eq!(rules.judge(None, ip("127.0.0.1")), Ok(()));
    assert_eq!(
        rules.judge(None, ip("::ffff:127.0.0.1")),
        Ok(()),
        "the IPv4 inside"
    );
    assert_eq!(
        rules.judge(None, ip("127.0.0.2")),
        Err(Refusal::Class(Class::Loopback))
    );
    assert_eq!(rules.judge(None, ip("10.1.9.9")), Ok(()));
    assert!(matches!(
        rules.judge(None, ip("10.1.2.3")),
        Err(Refusal::Denied(_))
    ));
    assert_eq!(rules.judge(Some("internal.svc"), ip("10.9.9.9")), Ok(()));
    assert_eq!(rules.judge(Some("INTERNAL.SVC."), ip("10.9.9.9")), Ok(()));
    assert_eq!(
        rules.judge(Some("db.corp.example"), ip("192.168.0.5")),
        Ok(())
    );
    // A suffix is not the name itself, nor a name that only ends alike.
    assert_eq!(
        rules.judge(Some("corp.example"), ip("192.168.0.5")),
        Err(Refusal::Class(Class::Private))
    );
    assert_eq!(
        rules.judge(Some("evilcorp.example"), ip("192.168.0.5")),
        Err(Refusal::Class(Class::Private))
    );
    assert!(matches!(
        rules.judge(Some("blocked.corp.example"), ip("192.168.0.5")),
        Err(Refusal::Denied(_))
    ));
    // A public address passes unless denied.
    assert_eq!(
        rules.judge(Some("example.org"), ip("93.184.216.34")),
        Ok(())
    );
    assert!(matches!(
        rules.judge(None, ip("8.8.4.4")),
        Err(Refusal::Denied(_))
    ));
    // No rules: every non-public class refused, and says which.
    let none = Rules::default();
    let refused = none.judge(None, ip("169.254.169.254")).unwrap_err();
    assert_eq!(refused.to_string(), "a cloud metadata address");
}
