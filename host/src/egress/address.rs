//! Which IP addresses a request may connect to.
//!
//! The second of the two layers: an origin that the allowlist admits still
//! must not lead into the host's own network. Loopback, private, link-local
//! (which holds the cloud metadata address), CGNAT, unspecified, broadcast,
//! multicast and reserved ranges are blocked, for IPv4, IPv6 and IPv4-mapped
//! IPv6 alike, unless the deployment lifts the block: for every request
//! (`allow_private_addresses`) or for loopback only and only when the
//! deployment rewrote the origin (`allow_loopback_for_rewrites`, which is how
//! tests reach a provider double on loopback).

use std::net::IpAddr;

/// The deployment's address rules. `Default` blocks every special range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Private, loopback, link-local and CGNAT addresses are allowed for every request.
    pub allow_private: bool,
    /// Loopback addresses are allowed for requests whose origin the deployment rewrote.
    pub allow_loopback_for_rewrites: bool,
}

impl AddressPolicy {
    /// Whether a request may connect to `ip`; `rewritten` says the deployment
    /// rewrote the request's origin.
    pub fn admits(&self, ip: IpAddr, rewritten: bool) -> bool {
        !is_blocked_range(ip)
            || self.allow_private
            || (rewritten && self.allow_loopback_for_rewrites && ip.is_loopback())
    }
}

/// Whether `ip` lies in a range no request reaches unless the deployment says so.
pub fn is_blocked_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                // site-local (deprecated), documentation, discard-only
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)
                || v6.to_ipv4_mapped().is_some_and(|v4| is_blocked_range(IpAddr::V4(v4)))
                || embedded_v4(v6).is_some_and(|v4| is_blocked_range(IpAddr::V4(v4)))
        }
    }
}

/// The IPv4 address an IPv6 address carries by a translation or tunnelling
/// scheme, which a gateway on the path may turn back into IPv4: NAT64
/// (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`) and the deprecated
/// IPv4-compatible form (`::a.b.c.d`).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[0] == 0x0064 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(tail);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_carrying_a_blocked_ipv4_address_are_blocked() {
        for a in [
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "::127.0.0.1",
            "2001:db8::1",
            "fec0::1",
        ] {
            assert!(is_blocked_range(ip(a)), "{a}");
        }
        for a in ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"] {
            assert!(!is_blocked_range(ip(a)), "{a}");
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_private_link_local_cgnat_and_metadata_addresses_are_blocked() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_blocked_range(ip(a)), "{a}");
            assert!(!AddressPolicy::default().admits(ip(a), true), "{a}");
        }
        for a in ["140.82.112.5", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_blocked_range(ip(a)), "{a}");
            assert!(AddressPolicy::default().admits(ip(a), false), "{a}");
        }
    }

    #[test]
    fn loopback_for_rewrites_admits_loopback_only_for_rewritten_origins() {
        let p = AddressPolicy {
            allow_loopback_for_rewrites: true,
            ..AddressPolicy::default()
        };
        assert!(p.admits(ip("127.0.0.1"), true));
        assert!(p.admits(ip("::1"), true));
        assert!(!p.admits(ip("127.0.0.1"), false), "not rewritten");
        assert!(!p.admits(ip("10.0.0.1"), true), "private is not loopback");
        assert!(!p.admits(ip("169.254.169.254"), true), "metadata is not loopback");
    }

    #[test]
    fn allow_private_lifts_every_block() {
        let p = AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        };
        for a in ["127.0.0.1", "10.1.2.3", "169.254.169.254", "fd00::1"] {
            assert!(p.admits(ip(a), false), "{a}");
        }
    }
}
