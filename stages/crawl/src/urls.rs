//! URL normalisation and the de-duplication key: two spellings of one resource
//! (case, default port, dot segments, fragment, optionally query order) get one key.

use url::Url;

/// Parses `raw` (absolute, or relative to `base`) into its normal form; only http(s).
pub fn normalise(raw: &str, base: Option<&Url>, sort_query: bool) -> Result<Url, String> {
    let raw = raw.trim();
    // The url crate lower-cases scheme and host, drops default ports and resolves
    // dot segments while parsing; what is left is fragment and query order.
    let mut u = match base {
        Some(b) => b.join(raw),
        None => Url::parse(raw),
    }
    .map_err(|e| format!("invalid URL `{raw}`: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("unsupported scheme `{}` in `{raw}` (only http and https are crawled)", u.scheme()));
    }
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(format!("URL `{raw}` has no host"));
    }
    u.set_fragment(None);
    if u.query() == Some("") {
        u.set_query(None);
    }
    if sort_query {
        if let Some(q) = u.query() {
            let mut parts: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
            parts.sort();
            let joined = parts.join("&");
            u.set_query(if joined.is_empty() { None } else { Some(&joined) });
        }
    }
    Ok(u)
}

/// blake3 of the normalised URL, truncated to 128 bits: the done-set and frontier key.
pub fn key(u: &Url) -> u128 {
    key_of(u.as_str())
}

/// [`key`] of a URL already normalised and written out (an image row's `url`).
pub fn key_of(normalised: &str) -> u128 {
    let h = blake3::hash(normalised.as_bytes());
    u128::from_le_bytes(h.as_bytes()[..16].try_into().unwrap())
}

/// `scheme://host:port`, the unit robots.txt, politeness and limits apply to.
pub fn origin(u: &Url) -> String {
    format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or(""), u.port_or_known_default().unwrap_or(0))
}

/// Whether `host` is `domain` or one of its sub-domains.
pub fn in_domain(host: &str, domain: &str) -> bool {
    let domain = domain.trim().trim_start_matches('.').to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms_agree() {
        let a = normalise("HTTP://Example.COM:80/a/./b/../c?x=1#frag", None, false).unwrap();
        assert_eq!(a.as_str(), "http://example.com/a/c?x=1");
        let b = normalise("https://example.com:443/?", None, false).unwrap();
        assert_eq!(b.as_str(), "https://example.com/");
        let s = normalise("http://e.com/p?b=2&a=1", None, true).unwrap();
        assert_eq!(s.as_str(), "http://e.com/p?a=1&b=2");
        let ns = normalise("http://e.com/p?b=2&a=1", None, false).unwrap();
        assert_eq!(ns.as_str(), "http://e.com/p?b=2&a=1");
        assert_eq!(key(&a), key(&normalise("http://example.com/a/c?x=1", None, false).unwrap()));
        assert_ne!(key(&a), key(&normalise("http://example.com/a/c?x=2", None, false).unwrap()));
    }

    #[test]
    fn relative_and_rejected() {
        let base = Url::parse("http://h.org/dir/page.html").unwrap();
        assert_eq!(normalise("../img/x.png", Some(&base), false).unwrap().as_str(), "http://h.org/img/x.png");
        assert!(normalise("mailto:a@b.c", None, false).unwrap_err().contains("unsupported scheme"));
        assert!(normalise("javascript:void(0)", Some(&base), false).is_err());
        assert!(normalise("not a url", None, false).is_err());
    }

    #[test]
    fn domains() {
        assert!(in_domain("www.debian.org", "debian.org"));
        assert!(in_domain("debian.org", ".Debian.org"));
        assert!(!in_domain("notdebian.org", "debian.org"));
    }
}
