//! SES receipt IP address filters (docs/ses.md §5.5): account-wide block and allow entries that
//! SES applies to the connecting address before the SMTP session, so before any rule runs.
//!
//! Choices where SES is unconfirmed (marked in docs/ses.md §5.5), each the one that refuses less:
//! - an address on both lists is accepted: an allow entry beats a block entry, whatever their
//!   prefix lengths (AWS's "block 0.0.0.0/0, allow your senders" advice needs it);
//! - an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address it maps, as a
//!   client address and in a range;
//! - `10.0.0.1/24` is the range `10.0.0.0/24`: bits past the prefix are ignored, as AWS's own
//!   example writes it.

use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address (`192.0.2.7`, `2001:db8::1`) or a range in CIDR notation (`192.0.2.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("empty: expected an IP address or a CIDR range")]
    Empty,
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    Address(String),
    #[error("prefix length {0:?} is not a number")]
    Prefix(String),
    #[error("prefix length /{prefix} is longer than the {max} bits of the address")]
    PrefixTooLong { prefix: u32, max: u8 },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(printable(addr)))?;
        let max = bits(addr);
        let prefix = match prefix {
            None => max,
            // Digits only: `u32::from_str` would take a sign.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u32 = p.parse().map_err(|_| CidrError::Prefix(printable(p)))?;
                u8::try_from(n)
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or(CidrError::PrefixTooLong { prefix: n, max })?
            }
            Some(p) => return Err(CidrError::Prefix(printable(p))),
        };
        Ok(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Cidr {
    /// Whether `ip` is in the range. An address of the other family never is, but an
    /// IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip.to_canonical()) {
            (IpAddr::V4(_), IpAddr::V6(_)) => return false,
            // A range written in IPv6 (`::ffff:0:0/96`) holds the IPv4 addresses it maps.
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (_, ip) => ip,
        };
        mask(ip, self.prefix) == self.network
    }
}

fn bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `ip` with every bit past the first `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// A text from a template or a client, safe to print: control characters become `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Policy {
    Block,
    Allow,
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Block" => Ok(Policy::Block),
            "Allow" => Ok(Policy::Allow),
            other => Err(format!("policy {other:?} is not Block or Allow")),
        }
    }
}

/// One receipt filter: `AWS::SES::ReceiptFilter`'s `Filter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpFilter {
    pub name: String,
    pub policy: Policy,
    pub cidr: Cidr,
}

impl fmt::Display for IpFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?} {})", self.name, self.policy, self.cidr)
    }
}

/// What the filters made of one connecting address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterDecision {
    pub client_ip: String,
    pub refused: bool,
    /// The filter that decided: an allow entry, a block entry, or none (accepted by default).
    pub filter: Option<IpFilter>,
    /// A block entry the deciding allow entry overrode.
    pub overrides: Option<IpFilter>,
}

impl FilterDecision {
    /// One line for traces and logs.
    pub fn describe(&self) -> String {
        match (&self.filter, &self.overrides) {
            (Some(f), _) if self.refused => format!(
                "{} refused by IP filter {f}: SES answers 554 before the SMTP session",
                self.client_ip
            ),
            (Some(f), Some(b)) => {
                format!("{} accepted: IP filter {f} overrides {b}", self.client_ip)
            }
            (Some(f), None) => format!("{} accepted by IP filter {f}", self.client_ip),
            (None, _) => format!("{} accepted: no IP filter matches", self.client_ip),
        }
    }
}

/// SES's decision for a connection from `ip`: refused when a block entry matches and no allow
/// entry does.
pub fn decide(filters: &[IpFilter], ip: IpAddr) -> FilterDecision {
    let matching = |policy| {
        filters
            .iter()
            .find(|f| f.policy == policy && f.cidr.contains(ip))
            .cloned()
    };
    let (allow, block) = (matching(Policy::Allow), matching(Policy::Block));
    let client_ip = ip.to_canonical().to_string();
    match allow {
        Some(a) => FilterDecision {
            client_ip,
            refused: false,
            filter: Some(a),
            overrides: block,
        },
        None => FilterDecision {
            client_ip,
            refused: block.is_some(),
            filter: block,
            overrides: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn filter(name: &str, policy: Policy, c: &str) -> IpFilter {
        IpFilter {
            name: name.into(),
            policy,
            cidr: cidr(c),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_parse_to_their_network() {
        assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(cidr("10.0.0.1/24").to_string(), "10.0.0.0/24");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(cidr("2001:db8:ff::/40").to_string(), "2001:db8::/40");
        assert_eq!(cidr("::/0").to_string(), "::/0");
    }

    #[test]
    fn malformed_cidrs_are_typed_errors() {
        let cases: &[(&str, CidrError)] = &[
            ("", CidrError::Empty),
            ("192.0.2", CidrError::Address("192.0.2".into())),
            (" 192.0.2.1", CidrError::Address(" 192.0.2.1".into())),
            ("example.com", CidrError::Address("example.com".into())),
            ("192.0.2.1/", CidrError::Prefix(String::new())),
            ("192.0.2.1/+8", CidrError::Prefix("+8".into())),
            ("192.0.2.1/8/8", CidrError::Prefix("8/8".into())),
            ("192.0.2.1/0x8", CidrError::Prefix("0x8".into())),
            ("192.0.2.1/1000", CidrError::Prefix("1000".into())),
            (
                "192.0.2.1/33",
                CidrError::PrefixTooLong {
                    prefix: 33,
                    max: 32,
                },
            ),
            (
                "2001:db8::/129",
                CidrError::PrefixTooLong {
                    prefix: 129,
                    max: 128,
                },
            ),
            ("1.2.3.4\u{1b}[2J", CidrError::Address("1.2.3.4?[2J".into())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Cidr>().as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn malformed_input_never_panics() {
        let pieces = [
            "",
            "/",
            "//",
            "0",
            "255",
            "256",
            "1.2.3.4",
            "::",
            ":::",
            "ffff",
            "::ffff:1.2.3.4",
            "%",
            "-1",
            "99999999999",
            "\u{0}",
            "é",
            ".",
            "/32",
            "/128",
            "/0",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}{c}");
                    if let Ok(c) = text.parse::<Cidr>() {
                        // Whatever parses contains its own network and prints back to itself.
                        assert!(c.contains(c.network), "{text:?}");
                        assert_eq!(c.to_string().parse::<Cidr>(), Ok(c), "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn ranges_contain_their_addresses_ipv4_and_ipv6() {
        let v4 = cidr("198.51.100.0/24");
        assert!(v4.contains(ip("198.51.100.0")) && v4.contains(ip("198.51.100.255")));
        assert!(!v4.contains(ip("198.51.101.0")));
        assert!(v4.contains(ip("::ffff:198.51.100.9")), "IPv4-mapped");
        assert!(
            cidr("::ffff:0:0/96").contains(ip("198.51.100.9")),
            "mapped range"
        );
        assert!(cidr("::ffff:198.51.100.9").contains(ip("198.51.100.9")));
        assert!(!v4.contains(ip("2001:db8::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")), "IPv4 only");
        let v6 = cidr("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("192.0.2.1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!cidr("192.0.2.7").contains(ip("192.0.2.8")));
    }

    #[test]
    fn allow_beats_block() {
        let filters = [
            filter("block-all", Policy::Block, "0.0.0.0/0"),
            filter("block-v6", Policy::Block, "::/0"),
            filter("partner", Policy::Allow, "192.0.2.0/28"),
            filter("bad-host", Policy::Block, "192.0.2.5"),
        ];
        let d = decide(&filters, ip("192.0.2.5"));
        assert!(!d.refused, "allow wins even over a narrower block: {d:?}");
        assert_eq!(d.filter.as_ref().unwrap().name, "partner");
        assert_eq!(d.overrides.as_ref().unwrap().name, "block-all");
        assert!(
            d.describe()
                .contains("overrides block-all (Block 0.0.0.0/0)")
        );
        let d = decide(&filters, ip("203.0.113.9"));
        assert!(d.refused);
        assert_eq!(d.filter.unwrap().name, "block-all");
        let d = decide(&filters, ip("2001:db8::25"));
        assert!(d.refused);
        assert_eq!(d.filter.unwrap().name, "block-v6");
        let d = decide(&filters, ip("::ffff:192.0.2.1"));
        assert!(!d.refused);
        assert_eq!(d.client_ip, "192.0.2.1");
    }

    #[test]
    fn no_filter_or_no_match_accepts() {
        let d = decide(&[], ip("203.0.113.9"));
        assert!(!d.refused && d.filter.is_none());
        assert_eq!(d.describe(), "203.0.113.9 accepted: no IP filter matches");
        let only_allow = [filter("partner", Policy::Allow, "192.0.2.0/24")];
        let d = decide(&only_allow, ip("203.0.113.9"));
        assert!(!d.refused, "an allow list alone refuses nobody");
    }
}
