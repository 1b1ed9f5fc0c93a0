//! The server filter: one server's IP, or a network of them in CIDR
//! notation (`10.2.1.0/24`, `fd00:1::/64`), matched on address bits, so
//! that `10.2.1.0/24` never picks `10.2.13.9` (a text prefix would).

use std::net::IpAddr;

/// A parsed server filter: the addresses from `first` to `last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerNet {
    first: IpAddr,
    last: IpAddr,
    /// The canonical text (`10.2.1.0/24`, or the address alone).
    text: String,
}

impl ServerNet {
    /// Parses an IP address or a CIDR network; host bits past the prefix
    /// are ignored (`10.2.1.7/24` is `10.2.1.0/24`, as PostgreSQL's `inet`
    /// reads it).
    pub fn parse(value: &str) -> Result<Self, String> {
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| match partial_ipv4(value) {
            Some(network) => format!(
                "'{value}' is not an IP address: for the servers whose address starts so, give \
                 the network {network}"
            ),
            None => format!(
                "'{value}' is not an IP address or a CIDR network: give one server's address \
                 (10.2.1.7) or a network (10.2.1.0/24 for the servers 10.2.1.x)"
            ),
        })?;
        let bits: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(text) => match text.parse::<u8>() {
                Ok(prefix) if prefix <= bits => prefix,
                _ => {
                    return Err(format!(
                        "'{value}' has prefix length '{text}'; it is 0 to {bits} for an \
                         IPv{} network",
                        if ip.is_ipv4() { 4 } else { 6 }
                    ));
                }
            },
        };
        let (first, last) = match ip {
            IpAddr::V4(v4) => {
                let (lo, hi) = span(u128::from(u32::from(v4)), prefix, 32);
                let v4 = |n: u128| {
                    IpAddr::V4(std::net::Ipv4Addr::from(u32::try_from(n).expect("32 bits")))
                };
                (v4(lo), v4(hi))
            }
            IpAddr::V6(v6) => {
                let (lo, hi) = span(u128::from(v6), prefix, 128);
                let v6 = |n: u128| IpAddr::V6(std::net::Ipv6Addr::from(n));
                (v6(lo), v6(hi))
            }
        };
        let text = if prefix == bits {
            first.to_string()
        } else {
            format!("{first}/{prefix}")
        };
        Ok(ServerNet { first, last, text })
    }

    /// Whether a connector's server IP (as stored: canonical, or empty)
    /// is in it.
    pub fn contains(&self, server_ip: &str) -> bool {
        server_ip.parse::<IpAddr>().is_ok_and(|ip| {
            ip.is_ipv4() == self.first.is_ipv4() && self.first <= ip && ip <= self.last
        })
    }

    /// The first and last address, as text (what the stores compare).
    pub fn bounds(&self) -> (String, String) {
        (self.first.to_string(), self.last.to_string())
    }

    /// The first and last address as `key`s.
    pub fn key_bounds(&self) -> (String, String) {
        (key(self.first), key(self.last))
    }
}

/// The network a partial IPv4 address such as `10.2.1` or `10.2.` means.
fn partial_ipv4(value: &str) -> Option<String> {
    let octets: Vec<&str> = value.trim_end_matches('.').split('.').collect();
    if octets.len() >= 4 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
        return None;
    }
    let mut full = octets.clone();
    full.resize(4, "0");
    Some(format!("{}/{}", full.join("."), 8 * octets.len()))
}

impl std::fmt::Display for ServerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The lowest and highest value of a `bits`-bit address under `prefix`.
fn span(address: u128, prefix: u8, bits: u8) -> (u128, u128) {
    let host_bits = u32::from(bits - prefix);
    let host_mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let host_mask = host_mask & (u128::MAX >> (128 - u32::from(bits)));
    (address & !host_mask, address | host_mask)
}

/// A text key whose order is the addresses' order, IPv4 before IPv6
/// (`4` or `6`, then the address in hex, fixed width); empty for text that
/// is no address. The embedded store compares server IPs by it.
pub fn key_of(server_ip: &str) -> String {
    server_ip.parse().map(key).unwrap_or_default()
}

fn key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("4{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("6{:032x}", u128::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_respects_octet_boundaries() {
        let net = ServerNet::parse("10.2.1.0/24").unwrap();
        assert!(net.contains("10.2.1.0") && net.contains("10.2.1.255"));
        assert!(!net.contains("10.2.13.9"), "a text prefix would match it");
        assert!(!net.contains("10.2.2.0") && !net.contains(""));
        assert_eq!(net.to_string(), "10.2.1.0/24");
        assert_eq!(
            ServerNet::parse("10.2.1.7/24").unwrap(),
            net,
            "host bits ignored"
        );
        let one = ServerNet::parse("10.2.1.7").unwrap();
        assert!(one.contains("10.2.1.7") && !one.contains("10.2.1.70"));
        assert_eq!(one.to_string(), "10.2.1.7");
        assert!(ServerNet::parse("0.0.0.0/0").unwrap().contains("255.1.2.3"));
    }

    #[test]
    fn ipv6_networks_and_families_stay_apart() {
        let net = ServerNet::parse("fd00:1::/64").unwrap();
        assert!(net.contains("fd00:1::7") && !net.contains("fd00:2::7"));
        assert!(!net.contains("10.0.0.1"));
        assert!(ServerNet::parse("::/0").unwrap().contains("::1"));
        assert!(!ServerNet::parse("0.0.0.0/0").unwrap().contains("::1"));
    }

    #[test]
    fn anything_else_is_refused_with_what_to_write() {
        let partial = ServerNet::parse("10.2.1").unwrap_err();
        assert!(partial.contains("the network 10.2.1.0/24"), "{partial}");
        assert!(ServerNet::parse("10.").unwrap_err().contains("10.0.0.0/8"));
        assert!(
            ServerNet::parse("web-1")
                .unwrap_err()
                .contains("10.2.1.0/24 for")
        );
        assert!(
            ServerNet::parse("10.2.1.0/33")
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(ServerNet::parse("fd00::/129").is_err());
        assert!(ServerNet::parse("10.2.1.0/").is_err());
    }

    #[test]
    fn keys_sort_as_addresses() {
        assert!(key_of("10.2.1.9") < key_of("10.2.13.0"));
        assert!(key_of("9.255.255.255") < key_of("10.0.0.0"));
        assert!(key_of("255.255.255.255") < key_of("::"));
        assert_eq!(key_of("not an ip"), "");
        let (lo, hi) = ServerNet::parse("10.2.1.0/24").unwrap().key_bounds();
        let k = key_of("10.2.1.77");
        assert!(lo <= k && k <= hi);
    }
}
