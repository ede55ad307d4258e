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
#[error("refused: `{host}` resolves only to non-public addresses ({addrs}); pass --allow-private CIDR to crawl internal ranges (metadata endpoints are never allowed)")]
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
    match canonical(ip) {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

/// Cloud instance-metadata endpoints, refused whatever `--allow-private` says: a
/// crawler tricked into fetching them hands out the machine's credentials.
/// AWS/GCP/Azure/OpenStack 169.254.169.254, AWS ECS task metadata 169.254.170.2,
/// AWS IPv6 fd00:ec2::254, Alibaba Cloud 100.100.100.200, Azure's wire server 168.63.129.16.
pub const METADATA_ADDRESSES: [&str; 5] = ["169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"];

/// Whether `ip` (IPv4-mapped IPv6 included) is a cloud metadata endpoint.
pub fn is_metadata(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    METADATA_ADDRESSES.iter().any(|m| m.parse::<IpAddr>().is_ok_and(|m| m == ip))
}

/// IPv6 addresses that carry an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`) as that IPv4 address: they reach it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            v6.to_ipv4_mapped().map_or(ip, IpAddr::V4)
        }
        v4 => v4,
    }
}

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address) that `--allow-private` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an IP range (expected CIDR such as 127.0.0.0/8 or fd00::/8)"))?;
        let net = canonical(net);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
            None => max,
        };
        if len == 0 {
            return Err(format!("`{s}` opens every address; name the private ranges to allow"));
        }
        Ok(Cidr { net, len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.len as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.len as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Which addresses the crawler may connect to: public ones, plus the ranges
/// `--allow-private` names, never the metadata endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allowed: Vec<Cidr>,
}

impl AddressPolicy {
    /// Parses `allow_private` entries; `loopback` stands for 127.0.0.0/8 and ::1.
    pub fn parse(ranges: &[String]) -> Result<Self, String> {
        let mut allowed = vec![];
        for r in ranges.iter().flat_map(|r| r.split(',')).map(str::trim).filter(|r| !r.is_empty()) {
            if r.eq_ignore_ascii_case("loopback") {
                allowed.push("127.0.0.0/8".parse()?);
                allowed.push("::1/128".parse()?);
            } else {
                allowed.push(r.parse()?);
            }
        }
        Ok(AddressPolicy { allowed })
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_metadata(ip) && (!is_forbidden(ip) || self.allowed.iter().any(|c| c.contains(ip)))
    }
}

type DnsCache = Arc<Mutex<HashMap<String, (Instant, Vec<SocketAddr>)>>>;

/// The DNS resolver reqwest uses: the system resolver (its answers reused for
/// `ttl`, as getaddrinfo gives no TTL), minus forbidden addresses.
pub struct FilteringResolver {
    pub policy: Arc<AddressPolicy>,
    ttl: Duration,
    cache: DnsCache,
}

impl FilteringResolver {
    pub fn new(policy: AddressPolicy, ttl: Duration) -> Self {
        FilteringResolver { policy: Arc::new(policy), ttl, cache: Arc::default() }
    }

    /// Looks `host` up (or takes the cached answer) and keeps the permitted addresses.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        Self::lookup_with(self.policy.clone(), self.ttl, &self.cache, host.to_string()).await
    }

    async fn lookup_with(allow: Arc<AddressPolicy>, ttl: Duration, cache: &DnsCache, host: String) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
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

    fn keep_permitted(allow: Arc<AddressPolicy>, host: String, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let kept: Vec<SocketAddr> = addrs.iter().copied().filter(|a| allow.permits(a.ip())).collect();
        if kept.is_empty() {
            let list = addrs.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
            return Err(Box::new(PrivateAddress { host, addrs: list }));
        }
        Ok(kept)
    }
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow, ttl, cache) = (self.policy.clone(), self.ttl, self.cache.clone());
        let host = name.as_str().to_string();
        Box::pin(async move { Self::lookup_with(allow, ttl, &cache, host).await.map(|a| Box::new(a.into_iter()) as Addrs) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for bad in ["64:ff9b::7f00:1", "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "100.64.0.1", "::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1"] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad} must be refused");
        }
        for good in ["8.8.8.8", "151.101.1.1", "2001:4860:4860::8888"] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good} is public");
        }
    }

    #[test]
    fn allowed_ranges_never_open_metadata_endpoints() {
        let p = AddressPolicy::parse(&["127.0.0.0/8,10.1.0.0/16".into(), "169.254.0.0/16".into(), "fd00::/8".into(), "100.64.0.0/10".into()]).unwrap();
        for ok in ["127.0.0.1", "127.9.9.9", "10.1.2.3", "169.254.1.1", "fd00::1", "100.100.100.199", "8.8.8.8", "::ffff:10.1.0.1"] {
            assert!(p.permits(ok.parse().unwrap()), "{ok} is inside an allowed range or public");
        }
        for bad in ["10.2.0.1", "192.168.1.1", "::1", "169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"] {
            assert!(!p.permits(bad.parse().unwrap()), "{bad} must stay refused");
        }
        let strict = AddressPolicy::default();
        assert!(!strict.permits("127.0.0.1".parse().unwrap()) && strict.permits("151.101.1.1".parse().unwrap()));
        let lo = AddressPolicy::parse(&["loopback".into()]).unwrap();
        assert!(lo.permits("::1".parse().unwrap()) && lo.permits("127.0.0.2".parse().unwrap()) && !lo.permits("10.0.0.1".parse().unwrap()));
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.0/33", "localhost", "10.0.0/8"] {
            assert!(AddressPolicy::parse(&[bad.into()]).is_err(), "{bad} must be refused as a range");
        }
        assert_eq!("10.1.2.3/8".parse::<Cidr>().unwrap().to_string(), "10.1.2.3/8");
    }

    #[test]
    fn cached_answers_are_still_filtered() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let strict = FilteringResolver::new(AddressPolicy::default(), Duration::from_secs(60));
            // A cached answer pointing inside is refused on every use, not just the first.
            strict.cache.lock().unwrap().insert("inside.example".into(), (Instant::now(), vec!["10.0.0.1:0".parse().unwrap()]));
            for _ in 0..2 {
                let e = strict.lookup("inside.example").await.unwrap_err();
                assert!(e.to_string().contains(PRIVATE_MARK), "{e}");
            }
            strict.cache.lock().unwrap().insert("mixed.example".into(), (Instant::now(), vec!["10.0.0.1:0".parse().unwrap(), "8.8.8.8:0".parse().unwrap()]));
            assert_eq!(strict.lookup("mixed.example").await.unwrap(), vec!["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
            // A real lookup is cached; an expired entry is looked up again.
            let open = FilteringResolver::new(AddressPolicy::parse(&["loopback".into()]).unwrap(), Duration::from_secs(60));
            let first = open.lookup("localhost").await.unwrap();
            assert!(open.cache.lock().unwrap().contains_key("localhost"));
            assert_eq!(open.lookup("localhost").await.unwrap(), first);
            let none = FilteringResolver::new(AddressPolicy::parse(&["127.0.0.0/8".into(), "::1".into()]).unwrap(), Duration::ZERO);
            none.lookup("localhost").await.unwrap();
            assert!(none.cache.lock().unwrap().is_empty());
        });
    }
}
