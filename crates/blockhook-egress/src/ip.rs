//! Which addresses blockhook may dial: the SSRF address policy.
//!
//! [`is_forbidden`] is the fixed rule: every address that is not plainly a public unicast
//! address is forbidden. [`AddressPolicy`] adds the operator's exemptions (`allow_nets`) on top.
//! Both look at the *canonical* form of an address first, so `::ffff:127.0.0.1` is judged as
//! `127.0.0.1`.
//!
//! IPv4 is a deny list of the special-purpose ranges. IPv6 is an allow list: only global unicast
//! (`2000::/3`) minus its special ranges, plus NAT64 (`64:ff9b::/96`) when the IPv4 address it
//! carries is itself allowed. Everything else (loopback, ULA, link-local, site-local, multicast,
//! the deprecated IPv4-compatible `::/96`, discard-only, unassigned space) is forbidden.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The address policy in force for one client: [`is_forbidden`] minus the allowlisted networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy that permits every public address plus any address inside `allow`.
    ///
    /// Typical exemptions are a test's `127.0.0.0/8` and `::1/128`, or an internal network that
    /// the operator deliberately delivers to.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Whether blockhook may open a connection to `ip`.
    ///
    /// An address is permitted when it (in its given or canonical form) lies inside an
    /// allowlisted network, or when it is not [forbidden](is_forbidden).
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        let exempt = self
            .allow
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip));
        exempt || !is_forbidden(canonical)
    }

    /// The exempted networks, as given.
    pub fn allowed_nets(&self) -> &[IpNet] {
        &self.allow
    }
}

/// Whether `ip` is outside the public unicast internet (and so must never be dialled unless
/// exempted by an [`AddressPolicy`]).
///
/// IPv4-mapped IPv6 addresses are judged by the IPv4 address they carry.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

/// IPv4 special-purpose ranges (RFC 6890 and its updates).
fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", incl. 0.0.0.0
        || a == 10 // private
        || (a == 100 && (64..=127).contains(&b)) // CGNAT 100.64.0.0/10
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, incl. cloud metadata 169.254.169.254
        || (a == 172 && (16..=31).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // deprecated 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18.0.0/15
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast 255.255.255.255
}

/// IPv6: allow global unicast only, minus its special ranges; NAT64, 6to4 and Teredo are judged
/// by the IPv4 addresses they embed.
fn v6_forbidden(ip: Ipv6Addr) -> bool {
    let s = ip.segments();

    // NAT64 well-known prefix 64:ff9b::/96: the gateway dials the embedded IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_forbidden(embedded_v4(s[6], s[7]));
    }
    // Outside global unicast 2000::/3: loopback, unspecified, IPv4-compatible ::/96,
    // discard-only 100::/64, local-use NAT64 64:ff9b:1::/48, ULA fc00::/7, link-local fe80::/10,
    // site-local fec0::/10, multicast ff00::/8, SRv6 5f00::/16 and unassigned space.
    if s[0] & 0xe000 != 0x2000 {
        return true;
    }
    // Teredo 2001::/32: server IPv4 in bits 32..64, client IPv4 (inverted) in the last 32 bits.
    if s[0] == 0x2001 && s[1] == 0 {
        let server = embedded_v4(s[2], s[3]);
        let client = embedded_v4(!s[6], !s[7]);
        return v4_forbidden(server) || v4_forbidden(client);
    }
    // 6to4 2002::/16: the IPv4 address of the tunnel end point follows the prefix.
    if s[0] == 0x2002 {
        return v4_forbidden(embedded_v4(s[1], s[2]));
    }
    (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x3fff && s[1] < 0x1000) // documentation 3fff::/20
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0) // benchmarking 2001:2::/48
        || (s[0] == 0x2001 && (0x0010..=0x002f).contains(&s[1])) // ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const FORBIDDEN: &[&str] = &[
        // unspecified / "this network"
        "0.0.0.0",
        "0.1.2.3",
        "0.255.255.255",
        // loopback
        "127.0.0.1",
        "127.255.255.254",
        "127.1.2.3",
        // private
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        // CGNAT
        "100.64.0.1",
        "100.127.255.255",
        // link-local and metadata
        "169.254.0.1",
        "169.254.169.254",
        // IETF protocol assignments, documentation, benchmarking, 6to4 relay
        "192.0.0.1",
        "192.0.0.170",
        "192.0.2.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "192.88.99.1",
        // multicast, reserved, broadcast
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "250.1.2.3",
        "255.255.255.255",
        // IPv6 unspecified, loopback, IPv4-compatible
        "::",
        "::1",
        "::127.0.0.1",
        "::8.8.8.8",
        // IPv4-mapped forms of forbidden IPv4
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        // ULA, link-local, site-local, multicast
        "fc00::1",
        "fd00::1",
        "fdff:ffff::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "feff::1",
        "ff02::1",
        "ff0e::1",
        // documentation and other special global-unicast ranges
        "2001:db8::1",
        "2001:db8:ffff::1",
        "3fff::1",
        "3fff:fff::1",
        "2001:2::1",
        "2001:10::1",
        "2001:20::1",
        // discard-only, local-use NAT64, SRv6, unassigned
        "100::1",
        "64:ff9b:1::1",
        "5f00::1",
        "4000::1",
        "1::1",
        // NAT64 of forbidden IPv4
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::10.0.0.1",
        // 6to4 of forbidden IPv4
        "2002:7f00:1::1",
        "2002:c0a8:101::1",
        "2002:a00:1::",
        // Teredo with a forbidden server or client address (client is stored inverted)
        "2001:0:7f00:1::808:808",
        "2001:0:808:808::80ff:fffe", // client = !80ff:fffe = 7f00:0001 = 127.0.0.1
    ];

    const PERMITTED: &[&str] = &[
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "169.253.255.255",
        "192.0.1.1",
        "192.0.3.1",
        "192.167.255.255",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "::ffff:8.8.8.8",
        "2606:4700::1",
        "2001:4860:4860::8888",
        "2a00:1450:4001:800::200e",
        "3fff:1000::1",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:0:808:808::f7f7:f7f7", // Teredo server 8.8.8.8, client !f7f7:f7f7 = 8.8.8.8
    ];

    #[test]
    fn every_special_range_is_forbidden() {
        let policy = AddressPolicy::default();
        for s in FORBIDDEN {
            assert!(is_forbidden(ip(s)), "{s} should be forbidden");
            assert!(!policy.permits(ip(s)), "{s} should not be permitted");
        }
    }

    #[test]
    fn public_addresses_are_permitted() {
        let policy = AddressPolicy::default();
        for s in PERMITTED {
            assert!(!is_forbidden(ip(s)), "{s} should not be forbidden");
            assert!(policy.permits(ip(s)), "{s} should be permitted");
        }
    }

    #[test]
    fn allow_nets_exempt_addresses_and_their_mapped_forms() {
        let policy = AddressPolicy::new(vec![net("127.0.0.0/8"), net("::1/128")]);
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("127.9.9.9")));
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        assert!(policy.permits(ip("::1")));
        // everything else stays forbidden
        assert!(!policy.permits(ip("10.0.0.1")));
        assert!(!policy.permits(ip("169.254.169.254")));
        assert!(!policy.permits(ip("fd00::1")));
        assert!(!policy.permits(ip("::2")));
        // public addresses are still permitted
        assert!(policy.permits(ip("8.8.8.8")));
        assert_eq!(policy.allowed_nets().len(), 2);
    }

    #[test]
    fn an_exemption_for_a_mapped_range_also_applies() {
        let policy = AddressPolicy::new(vec![net("::ffff:10.0.0.0/104")]);
        assert!(policy.permits(ip("::ffff:10.1.2.3")));
        assert!(
            !policy.permits(ip("10.1.2.3")),
            "exemption is for the mapped form only"
        );
        assert!(!policy.permits(ip("::ffff:192.168.0.1")));
    }

    #[test]
    fn a_narrow_exemption_does_not_open_its_neighbours() {
        let policy = AddressPolicy::new(vec![net("10.1.0.0/16")]);
        assert!(policy.permits(ip("10.1.200.3")));
        assert!(!policy.permits(ip("10.2.0.1")));
        assert!(!policy.permits(ip("127.0.0.1")));
    }
}
