//! The vetting DNS resolver: the only place a host name becomes addresses.
//!
//! reqwest asks this resolver for every named host and dials only the addresses it returns,
//! so filtering here (and not in a check before the request) leaves no window for DNS
//! rebinding: there is no second lookup.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::ip::AddressPolicy;

/// Resolves through the system resolver (or the configured overrides) and drops every address
/// the policy forbids.
#[derive(Debug)]
pub(crate) struct VettingResolver {
    policy: Arc<AddressPolicy>,
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl VettingResolver {
    pub(crate) fn new(policy: Arc<AddressPolicy>, overrides: Vec<(String, Vec<IpAddr>)>) -> Self {
        let overrides = overrides
            .into_iter()
            .map(|(name, addrs)| (normalise(&name), addrs))
            .collect();
        Self { policy, overrides }
    }
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = normalise(name.as_str());
        let policy = Arc::clone(&self.policy);
        let overridden = self.overrides.get(&host).cloned();
        Box::pin(async move {
            match resolve_vetted(&policy, &host, overridden).await {
                // Port 0: the connector puts the URL's port in.
                Ok(vetted) => {
                    Ok(Box::new(vetted.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs)
                }
                Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

async fn resolve_vetted(
    policy: &AddressPolicy,
    host: &str,
    overridden: Option<Vec<IpAddr>>,
) -> Result<Vec<IpAddr>, ResolveError> {
    let candidates = match overridden {
        Some(addrs) => addrs,
        None => lookup(host).await?,
    };
    vet(policy, host, candidates)
}

/// Lower case, without a trailing dot: how override names are matched.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn lookup(host: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let addrs =
        tokio::net::lookup_host((host, 0))
            .await
            .map_err(|source| ResolveError::Lookup {
                host: host.to_owned(),
                source,
            })?;
    Ok(addrs.map(|a| a.ip()).collect())
}

/// Keep the permitted addresses (deduplicated, order kept); fail when none is left.
pub(crate) fn vet(
    policy: &AddressPolicy,
    host: &str,
    candidates: Vec<IpAddr>,
) -> Result<Vec<IpAddr>, ResolveError> {
    if candidates.is_empty() {
        return Err(ResolveError::NoAddresses {
            host: host.to_owned(),
        });
    }
    let total = candidates.len();
    let mut vetted: Vec<IpAddr> = Vec::with_capacity(total);
    for ip in candidates {
        if policy.permits(ip) && !vetted.contains(&ip) {
            vetted.push(ip);
        }
    }
    if vetted.is_empty() {
        tracing::warn!(
            host,
            addresses = total,
            "every resolved address is forbidden"
        );
        return Err(ResolveError::Blocked {
            host: host.to_owned(),
        });
    }
    if vetted.len() < total {
        tracing::debug!(
            host,
            kept = vetted.len(),
            of = total,
            "dropped forbidden addresses"
        );
    }
    Ok(vetted)
}

/// What the resolver hands back to reqwest on failure; the client finds it again in the error
/// chain to tell DNS failures from policy refusals.
#[derive(Debug)]
pub(crate) enum ResolveError {
    Lookup { host: String, source: io::Error },
    NoAddresses { host: String },
    Blocked { host: String },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lookup { host, source } => write!(f, "could not resolve {host}: {source}"),
            Self::NoAddresses { host } => write!(f, "{host} resolved to no address"),
            Self::Blocked { host } => {
                write!(
                    f,
                    "every address of {host} is forbidden by the address policy"
                )
            }
        }
    }
}

/// No `source`: the lookup's io error text is already part of the message.
impl std::error::Error for ResolveError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
            .collect()
    }

    #[test]
    fn forbidden_addresses_are_dropped_and_order_kept() {
        let policy = AddressPolicy::default();
        let got = vet(
            &policy,
            "mixed.example",
            ips(&[
                "10.0.0.1",
                "8.8.8.8",
                "127.0.0.1",
                "2606:4700::1",
                "8.8.8.8",
                "fd00::1",
            ]),
        );
        assert_eq!(got.ok(), Some(ips(&["8.8.8.8", "2606:4700::1"])));
    }

    #[test]
    fn all_forbidden_is_blocked() {
        let policy = AddressPolicy::default();
        let err = vet(
            &policy,
            "evil.example",
            ips(&["127.0.0.1", "::ffff:169.254.169.254"]),
        );
        assert!(matches!(err, Err(ResolveError::Blocked { .. })), "{err:?}");
        assert!(matches!(err.err(), Some(ResolveError::Blocked { .. })));
    }

    #[test]
    fn nothing_resolved_is_a_dns_failure() {
        let err = vet(&AddressPolicy::default(), "empty.example", Vec::new());
        assert!(matches!(err.err(), Some(ResolveError::NoAddresses { .. })));
    }

    #[test]
    fn allowlisted_private_addresses_pass() {
        let policy = AddressPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}")),
        ]);
        let got = vet(&policy, "local.example", ips(&["127.0.0.1", "10.0.0.1"]));
        assert_eq!(got.ok(), Some(ips(&["127.0.0.1"])));
    }

    #[tokio::test]
    async fn overrides_are_matched_case_insensitively_and_still_vetted() {
        let policy = Arc::new(AddressPolicy::default());
        let resolver = VettingResolver::new(
            policy,
            vec![
                ("Merchant.Example.".into(), ips(&["127.0.0.1"])),
                ("public.example".into(), ips(&["8.8.8.8"])),
            ],
        );
        let name: Name = "merchant.example"
            .parse()
            .unwrap_or_else(|_| panic!("name"));
        let err = resolver.resolve(name).await.err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("every address of merchant.example is forbidden by the address policy")
        );
        let name: Name = "PUBLIC.example".parse().unwrap_or_else(|_| panic!("name"));
        let addrs: Vec<SocketAddr> = match resolver.resolve(name).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(addrs, vec![SocketAddr::new(ips(&["8.8.8.8"])[0], 0)]);
    }
}
