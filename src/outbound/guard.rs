//! The guard on every call out: the address a call connects to is judged, not the
//! name it was asked by.
//!
//! - A name is resolved here ([`Resolver`], the outbound client's only resolver):
//!   every address it has is judged, the whole name is refused if any one is, and
//!   the connector gets exactly the addresses judged, so no second lookup can
//!   answer differently (DNS rebinding has nothing to slip through).
//! - A host written as an address is judged as the URL parser reads it
//!   (`2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` are all 127.0.0.1): at
//!   submit, where the URL alone shows it ([`Guard::at_submit`]), and again before
//!   the call ([`Guard::literal`]), since the connector never resolves it.
//! - Proxies from the environment are not used, and redirects are not followed
//!   (see `crate::http`): a 3xx is the attempt's outcome.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::address::{Refusal, Rules};

/// The settings that let an operator through, as refusals name them.
pub const ALLOW_SETTING: &str = "JOBQUEUE_OUTBOUND_ALLOW";

/// Why a destination was refused: what was asked, the address, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub host: String,
    pub ip: Option<IpAddr>,
    pub why: Refusal,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.ip, &self.why) {
            (Some(ip), Refusal::Class(_)) if self.host != ip.to_string() => write!(
                f,
                "{} resolves to {ip}, {}; the service calls only public addresses unless \
                 {ALLOW_SETTING} allows it",
                self.host, self.why
            ),
            (_, Refusal::Class(_)) => write!(
                f,
                "{} is {}; the service calls only public addresses unless {ALLOW_SETTING} \
                 allows it",
                self.host, self.why
            ),
            (_, Refusal::Denied(_)) => write!(f, "{} is {}", self.host, self.why),
        }
    }
}

impl std::error::Error for Refused {}

/// The rules every call is judged by.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    rules: Arc<Rules>,
}

impl Guard {
    pub fn new(rules: Rules) -> Guard {
        Guard {
            rules: Arc::new(rules),
        }
    }

    /// What the URL alone shows: a host written as an address that is refused,
    /// or a name a deny rule names. A name's addresses are judged when it is
    /// resolved, at each attempt.
    pub fn at_submit(&self, url: &url::Url) -> Result<(), Refused> {
        if let Some(url::Host::Domain(name)) = url.host()
            && let Some(why) = self.rules.denied_name(name)
        {
            return Err(Refused {
                host: name.to_string(),
                ip: None,
                why,
            });
        }
        self.literal(url)
    }

    /// The check before a call whose host is written as an address (the
    /// connector does not resolve it, so the resolver never sees it).
    pub fn literal(&self, url: &url::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.literal_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.literal_ip(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }

    fn literal_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        self.rules.judge(None, ip).map_err(|why| Refused {
            host: ip.to_string(),
            ip: Some(ip),
            why,
        })
    }

    /// The outbound client's resolver, judging by these rules.
    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver {
            rules: self.rules.clone(),
        })
    }
}

/// Resolves names for the outbound client, and refuses a name any of whose
/// addresses is refused.
pub struct Resolver {
    rules: Arc<Rules>,
}

impl Resolver {
    /// The addresses of `name`, all of them judged.
    pub async fn lookup(rules: &Rules, name: &str) -> Result<Vec<SocketAddr>, BoxError> {
        if let Some(why) = rules.denied_name(name) {
            return Err(Box::new(Refused {
                host: name.to_string(),
                ip: None,
                why,
            }));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0)).await?.collect();
        for addr in &addrs {
            if let Err(why) = rules.judge(Some(name), addr.ip()) {
                return Err(Box::new(Refused {
                    host: name.to_string(),
                    ip: Some(addr.ip()),
                    why,
                }));
            }
        }
        Ok(addrs)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules.clone();
        Box::pin(async move {
            let addrs = Resolver::lookup(&rules, name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal somewhere in an error's causes, if the guard refused the call.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
}
