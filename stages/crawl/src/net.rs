//! Keeps the crawler out of internal networks: addresses are checked after DNS
//! resolution (a public name pointing inside is caught too), and IP-literal URLs directly.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Words of the [`PrivateAddress`] message that identify it in a flattened error chain.
pub const PRIVATE_MARK: &str = "resolves only to non-public addresses";

/// A host whose every address is private, loopback, link-local, multicast or unspecified.
#[derive(Debug, thiserror::Error)]
#[error("refused: `{host}` resolves only to non-public addresses ({addrs}); pass --allow-private to crawl internal hosts")]
pub struct PrivateAddress {
    pub host: String,
    pub addrs: String,
}

/// A name that could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of `{host}` failed: {source}")]
pub struct DnsFailure {
    pub host: String,
    pub source: std::io::Error,
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // carrier-grade NAT 100.64/10
        || o[0] >= 240 // reserved
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_forbidden(v4);
    }
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
}

/// Whether the crawler must not connect to `ip` without `--allow-private`.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

type DnsCache = Arc<Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>>;

/// The DNS resolver reqwest uses: the system resolver (its answers reused for
/// `ttl`, as getaddrinfo gives no TTL), minus forbidden addresses.
pub struct FilteringResolver {
    pub allow_private: bool,
    ttl: Duration,
    cache: DnsCache,
}

impl FilteringResolver {
    pub fn new(allow_private: bool, ttl: Duration) -> Self {
        FilteringResolver { allow_private, ttl, cache: Arc::default() }
    }

    /// Looks `host` up (or takes the cached answer) and keeps the permitted addresses.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        Self::lookup_with(self.allow_private, self.ttl, &self.cache, host.to_string()).await
    }

    async fn lookup_with(allow: bool, ttl: Duration, cache: &DnsCache, host: String) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let hit = cache.lock().unwrap().get(&host).filter(|(at, _)| at.elapsed() < ttl).map(|(_, a)| a.clone());
        let addrs = match hit {
            Some(a) => a,
            None => {
                let looked = tokio::net::lookup_host((host.as_str(), 0)).await.map(|a| a.collect::<Vec<SocketAddr>>());
                match looked {
                    Ok(a) => {
                        if !ttl.is_zero() {
                            let mut c = cache.lock().unwrap();
                            // A crawl meets millions of hosts: drop stale answers as the map grows.
                            if c.len() >= 4096 {
                                c.retain(|_, (at, _)| at.elapsed() < ttl);
                            }
                            c.insert(host.clone(), (Instant::now(), a.clone()));
                        }
                        a
                    }
                    Err(source) => return Err(Box::new(DnsFailure { host, source })),
                }
            }
        };
        Self::keep_permitted(allow, host, addrs)
    }

    fn keep_permitted(allow: bool, host: String, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let kept: Vec<SocketAddr> = if allow { addrs.clone() } else { addrs.iter().copied().filter(|a| !is_forbidden(a.ip())).collect() };
        if kept.is_empty() {
            let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
            return Err(Box::new(PrivateAddress { host, addrs: list }));
        }
        Ok(kept)
    }
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow, ttl, cache) = (self.allow_private, self.ttl, self.cache.clone());
        let host = name.as_str().to_string();
        Box::pin(async move { Self::lookup_with(allow, ttl, &cache, host).await.map(|a| Box::new(a.into_iter()) as Addrs) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for bad in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "100.64.0.1", "::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1"] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad} must be refused");
        }
        for good in ["8.8.8.8", "151.101.1.1", "2001:4860:4860::8888"] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good} is public");
        }
    }

    #[test]
    fn cached_answers_are_still_filtered() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let strict = FilteringResolver::new(false, Duration::from_secs(60));
            // A cached answer pointing inside is refused on every use, not just the first.
            strict.cache.lock().unwrap().insert("inside.example".into(), (Instant::now(), vec!["10.0.0.1:0".parse().unwrap()]));
            for _ in 0..2 {
                let e = strict.lookup("inside.example").await.unwrap_err();
                assert!(e.to_string().contains(PRIVATE_MARK), "{e}");
            }
            strict.cache.lock().unwrap().insert("mixed.example".into(), (Instant::now(), vec!["10.0.0.1:0".parse().unwrap(), "8.8.8.8:0".parse().unwrap()]));
            assert_eq!(strict.lookup("mixed.example").await.unwrap(), vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
            // A real lookup is cached; an expired entry is looked up again.
            let open = FilteringResolver::new(true, Duration::from_secs(60));
            let first = open.lookup("localhost").await.unwrap();
            assert!(open.cache.lock().unwrap().contains_key("localhost"));
            assert_eq!(open.lookup("localhost").await.unwrap(), first);
            let none = FilteringResolver::new(true, Duration::ZERO);
            none.lookup("localhost").await.unwrap();
            assert!(none.cache.lock().unwrap().is_empty());
        });
    }
}
