//! Who the client is. Behind nginx every connection comes from the proxy, so logs that name
//! the TCP peer name nginx; `trusted_proxies` lets informd believe the `X-Forwarded-For`
//! those proxies add, and nobody else's (a client can send any header it likes).

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Default, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `trusted_proxies` entries (addresses or CIDR ranges). Refuses what is not one,
    /// and a range that covers every address, where a list of proxies was meant.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "trusted_proxies entry {entry:?} is not an IP address or a CIDR range \
                         (such as 127.0.0.1 or 10.0.0.0/8); set trusted_proxies \
                         (INFORMD_TRUSTED_PROXIES, comma-separated) to your proxies' addresses"
                    )
                })?;
            if net.prefix_len() == 0 {
                return Err(format!(
                    "trusted_proxies entry {entry:?} trusts every address, so any client could \
                     forge X-Forwarded-For; set trusted_proxies (INFORMD_TRUSTED_PROXIES) to \
                     your proxies' addresses only"
                ));
            }
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last
    /// address in `X-Forwarded-For` that is not a trusted proxy itself (the entries before
    /// it were written by the client and prove nothing).
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?.ip());
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let forwarded = headers
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) => {
                    client = canonical(address);
                    if !self.trusts(client) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Some(client)
    }
}

/// An IPv4 address as itself, not as `::ffff:a.b.c.d`.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A client address for the log: the address, or `-` when there is none.
pub fn display(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "-".to_string(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                // The tests' own constant addresses, all valid header text.
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        headers
    }

    fn peer(address: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(address.parse().ok()?, 40000))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() -> Result<(), String> {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()])?;
        let client = proxies.client(peer("203.0.113.9"), &forwarded(&["1.2.3.4"]));
        assert_eq!(client, "203.0.113.9".parse().ok());
        Ok(())
    }

    #[test]
    fn a_trusted_proxy_names_the_last_untrusted_hop() -> Result<(), String> {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "127.0.0.1".into()])?;
        // The client forged the first entry; the proxies appended the rest.
        let headers = forwarded(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(
            proxies.client(peer("127.0.0.1"), &headers),
            "198.51.100.7".parse().ok()
        );
        assert_eq!(
            proxies.client(peer("127.0.0.1"), &HeaderMap::new()),
            "127.0.0.1".parse().ok()
        );
        Ok(())
    }

    #[test]
    fn everything_and_garbage_are_refused() {
        assert!(TrustedProxies::parse(&["0.0.0.0/0".into()]).is_err());
        assert!(TrustedProxies::parse(&["::/0".into()]).is_err());
        assert!(TrustedProxies::parse(&["*".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.internal".into()]).is_err());
        assert!(TrustedProxies::parse(&["::1".into(), "192.168.0.0/16".into()]).is_ok());
    }
}
