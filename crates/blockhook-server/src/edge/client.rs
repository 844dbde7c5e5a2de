//! The client's address of a request, decided in one place: the TCP peer, unless that peer is
//! a trusted reverse proxy (`server.trusted_proxies`), in which case the proxy's header
//! (`server.client_ip_header`, `X-Forwarded-For` by default) names it.
//!
//! A client can put anything in that header, and each proxy on the way appends the address it
//! got the request from. So the header is read only from a trusted peer, and from the right:
//! walking left past the entries that are trusted proxies, the first other entry was appended
//! by a trusted proxy about the peer it saw, the client. Entries left of it may be the
//! client's own inventions and are never used. An entry that does not parse ends the walk and
//! the peer's address is kept: a garbled chain names nobody. A Unix socket peer is the local
//! proxy by construction (the socket is the owner's and group's only), so its header is read
//! the same way.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// The address of the client a request came from (see the module doc), put in every request's
/// extensions by the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The proxies whose header is believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// `None` only for a name that does not parse, which the settings' validation refuses.
    header: Option<HeaderName>,
}

impl TrustedProxies {
    /// Proxies in `nets`, which carry the client's address in the header `header`.
    pub fn new(nets: &[IpNet], header: &str) -> Self {
        Self {
            nets: nets.to_vec(),
            header: HeaderName::from_bytes(header.as_bytes()).ok(),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` (`None`: the Unix socket) with `headers`.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<ClientAddr> {
        // An IPv6 listener sees IPv4 clients as ::ffff:a.b.c.d; the IPv4 CIDRs must match them.
        let peer = peer.map(|ip| ip.to_canonical());
        match peer {
            Some(ip) if !self.trusts(ip) => Some(ClientAddr(ip)),
            _ => self.named_in(headers).or(peer).map(ClientAddr),
        }
    }

    /// The right-most address in the header that is not a trusted proxy; the left-most one if
    /// all are; `None` without a header or at an entry that does not parse.
    fn named_in(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let name = self.header.as_ref()?;
        let mut farthest = None;
        for value in headers.get_all(name).iter().rev() {
            for entry in value.to_str().ok()?.split(',').rev() {
                let ip = parse_entry(entry.trim())?.to_canonical();
                if !self.trusts(ip) {
                    return Some(ip);
                }
                farthest = Some(ip);
            }
        }
        farthest
    }
}

/// An address as proxies write it: `203.0.113.9`, `2001:db8::1`, or with a port
/// (`203.0.113.9:4711`, `[2001:db8::1]:4711`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(
            &[
                "127.0.0.1/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            "X-Forwarded-For",
        )
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn client(peer: &str, values: &[&str]) -> Option<String> {
        proxies()
            .client(Some(peer.parse().unwrap()), &headers(values))
            .map(|c| c.to_string())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_header_says() {
        assert_eq!(
            client("198.51.100.7", &["203.0.113.9"]).unwrap(),
            "198.51.100.7"
        );
        assert_eq!(client("198.51.100.7", &[]).unwrap(), "198.51.100.7");
        // Without trusted proxies no header is ever read.
        let none = TrustedProxies::new(&[], "X-Forwarded-For");
        let c = none.client(
            Some("127.0.0.1".parse().unwrap()),
            &headers(&["203.0.113.9"]),
        );
        assert_eq!(c.unwrap().to_string(), "127.0.0.1");
    }

    #[test]
    fn a_trusted_peer_names_the_client_in_its_header() {
        assert_eq!(
            client("127.0.0.1", &["203.0.113.9"]).unwrap(),
            "203.0.113.9"
        );
        // Without the header, the proxy itself is all that is known.
        assert_eq!(client("127.0.0.1", &[]).unwrap(), "127.0.0.1");
    }

    #[test]
    fn the_right_most_untrusted_entry_of_a_chain_is_the_client() {
        // The client forged the first entry; a second trusted proxy appended the last.
        let chain = ["198.51.100.1, 203.0.113.9, 10.1.2.3"];
        assert_eq!(client("127.0.0.1", &chain).unwrap(), "203.0.113.9");
        // The same chain over several header lines, in order.
        let lines = ["198.51.100.1", "203.0.113.9", "10.1.2.3"];
        assert_eq!(client("127.0.0.1", &lines).unwrap(), "203.0.113.9");
        // Every entry a trusted proxy: the farthest one.
        assert_eq!(
            client("127.0.0.1", &["10.0.0.1, 10.0.0.2"]).unwrap(),
            "10.0.0.1"
        );
    }

    #[test]
    fn entries_with_ports_and_ipv6_are_read() {
        assert_eq!(
            client("127.0.0.1", &["203.0.113.9:4711"]).unwrap(),
            "203.0.113.9"
        );
        assert_eq!(
            client("127.0.0.1", &["2001:db8::1"]).unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::1]:4711"]).unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            client("127.0.0.1", &["::ffff:203.0.113.9"]).unwrap(),
            "203.0.113.9"
        );
        // An IPv4 proxy seen through an IPv6 listener is still trusted.
        assert_eq!(
            client("::ffff:127.0.0.1", &["203.0.113.9"]).unwrap(),
            "203.0.113.9"
        );
    }

    #[test]
    fn a_garbled_chain_leaves_the_peer() {
        assert_eq!(client("127.0.0.1", &["unknown"]).unwrap(), "127.0.0.1");
        assert_eq!(
            client("127.0.0.1", &["203.0.113.9, nonsense"]).unwrap(),
            "127.0.0.1"
        );
        assert_eq!(client("127.0.0.1", &["203.0.113.9,"]).unwrap(), "127.0.0.1");
        // Entries past the client are not looked at.
        assert_eq!(
            client("127.0.0.1", &["nonsense, 203.0.113.9"]).unwrap(),
            "203.0.113.9"
        );
    }

    #[test]
    fn another_header_and_the_unix_socket() {
        let real_ip = TrustedProxies::new(&["127.0.0.1/32".parse().unwrap()], "X-Real-IP");
        let mut h = HeaderMap::new();
        h.insert("x-real-ip", "203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        let c = real_ip.client(Some("127.0.0.1".parse().unwrap()), &h);
        assert_eq!(c.unwrap().to_string(), "203.0.113.9");
        // A Unix socket peer is the local proxy: its header is read; without one, no address.
        assert_eq!(real_ip.client(None, &h).unwrap().to_string(), "203.0.113.9");
        assert_eq!(real_ip.client(None, &HeaderMap::new()), None);
    }
}
