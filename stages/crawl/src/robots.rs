//! robots.txt per RFC 9309: the group for our product token (else `*`), longest
//! matching rule wins, `allow` wins ties, `*` matches any run and a final `$` anchors.
//! `Crawl-delay` (not in RFC 9309, but widely used, notably by Chinese sites) is read
//! from the same group.

/// The rules that apply to us on one origin.
#[derive(Debug, Clone, Default)]
pub struct Robots {
    rules: Vec<(bool, String)>,
    /// Set when every path is refused because robots.txt could not be fetched.
    pub unreachable: Option<String>,
    /// `Crawl-delay` of our group, in seconds (the largest if several are given).
    pub crawl_delay: Option<f64>,
}

impl Robots {
    pub fn allow_all() -> Self {
        Robots::default()
    }

    pub fn disallow_all(reason: String) -> Self {
        Robots { rules: vec![(false, "/".into())], unreachable: Some(reason), crawl_delay: None }
    }

    /// Parses a robots.txt body and keeps the rules of the group(s) for `token`.
    pub fn parse(text: &str, token: &str) -> Self {
        let token = token.to_ascii_lowercase();
        // (agents, rules, crawl-delay) groups in file order.
        type Group = (Vec<String>, Vec<(bool, String)>, Option<f64>);
        let mut groups: Vec<Group> = vec![];
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push((vec![], vec![], None));
                        in_agents = true;
                    }
                    groups.last_mut().unwrap().0.push(v.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    // RFC 9309 leaves rules before any user-agent line outside every
                    // group; a site that writes `Disallow: /` first plainly means it
                    // for everyone, so they form an implicit `*` group (the polite reading).
                    if groups.is_empty() {
                        groups.push((vec!["*".into()], vec![], None));
                    }
                    if let Some(g) = groups.last_mut() {
                        // An empty disallow means "nothing is disallowed": no rule.
                        if !v.is_empty() {
                            g.1.push((k == "allow", normalise_pattern(v)));
                        }
                    }
                }
                "crawl-delay" => {
                    // A member of the group above, like a rule (so a user-agent line
                    // after it starts a new group, as the site meant).
                    in_agents = false;
                    let d = v.parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0);
                    if let (Some(g), Some(d)) = (groups.last_mut(), d) {
                        g.2 = Some(g.2.map_or(d, |old: f64| old.max(d)));
                    }
                }
                _ => {} // sitemap, ...: not group boundaries
            }
        }
        let want = if groups.iter().any(|(agents, _, _)| agents.iter().any(|a| a == &token)) { token.as_str() } else { "*" };
        let mine = || groups.iter().filter(|(agents, _, _)| agents.iter().any(|a| a == want));
        let rules = mine().flat_map(|(_, r, _)| r.iter().cloned()).collect();
        let crawl_delay = mine().filter_map(|(_, _, d)| *d).reduce(f64::max);
        Robots { rules, unreachable: None, crawl_delay }
    }

    /// Whether `path_and_query` (as it appears in the URL, percent-encoded) may be fetched.
    pub fn allowed(&self, path_and_query: &str) -> bool {
        let path = normalise_pattern(path_and_query);
        let mut best: Option<(usize, bool)> = None;
        for (allow, pat) in &self.rules {
            if matches(pat, &path) {
                let len = pat.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, a)| a)
    }
}

/// Percent-encodes non-ASCII bytes and upper-cases existing escapes, so a pattern
/// written in raw UTF-8 and a URL path percent-encoded by the url crate compare equal.
fn normalise_pattern(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            out.push('%');
            out.push(b[i + 1].to_ascii_uppercase() as char);
            out.push(b[i + 2].to_ascii_uppercase() as char);
            i += 3;
        } else if c >= 0x80 {
            out.push_str(&format!("%{c:02X}"));
            i += 1;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

/// Pattern match from the start of `path`: `*` matches any run, a final `$` the end.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let first = parts[0];
    if !path.starts_with(first) {
        return false;
    }
    if parts.len() == 1 {
        return !anchored || path.len() == first.len();
    }
    let mut pos = first.len();
    let last = parts[parts.len() - 1];
    for mid in &parts[1..parts.len() - 1] {
        match path[pos..].find(mid) {
            Some(i) => pos += i + mid.len(),
            None => return false,
        }
    }
    if anchored {
        path.len() >= pos + last.len() && path.ends_with(last)
    } else {
        path[pos..].contains(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_match_and_ties() {
        let r = Robots::parse("User-agent: *\nDisallow: /private\nAllow: /private/open\nDisallow: /a\nAllow: /a\n", "m6corpus");
        assert!(!r.allowed("/private/x"));
        assert!(r.allowed("/private/open/x"));
        assert!(r.allowed("/a/b"), "allow wins an equal-length tie");
        assert!(r.allowed("/public"));
    }

    #[test]
    fn our_group_beats_star_and_groups_merge() {
        let txt = "User-agent: *\nDisallow: /\n\nUser-agent: M6Corpus\nUser-agent: other\nDisallow: /secret\n\nuser-agent: m6corpus\ndisallow: /also\n";
        let r = Robots::parse(txt, "m6corpus");
        assert!(r.allowed("/index.html"));
        assert!(!r.allowed("/secret/1"));
        assert!(!r.allowed("/also"));
        let other = Robots::parse(txt, "somebot");
        assert!(!other.allowed("/index.html"));
    }

    #[test]
    fn wildcards_and_anchor() {
        let r = Robots::parse("user-agent: *\ndisallow: /*.gif$\ndisallow: /x/*/y\nallow: /x/ok*/y\n", "m6corpus");
        assert!(!r.allowed("/img/a.gif"));
        assert!(r.allowed("/img/a.gif?v=1"));
        assert!(!r.allowed("/x/1/y/2"));
        assert!(r.allowed("/x/okay/y"));
        assert!(r.allowed("/x/y"));
    }

    #[test]
    fn crawl_delay_of_our_group() {
        let txt = "User-agent: *\nCrawl-delay: 10\nDisallow: /x\n\nUser-agent: m6corpus\nCrawl-delay: 1.5\nDisallow: /y\n";
        assert_eq!(Robots::parse(txt, "m6corpus").crawl_delay, Some(1.5));
        assert_eq!(Robots::parse(txt, "otherbot").crawl_delay, Some(10.0));
        // Before the rules, after them, repeated (the largest wins), junk ignored.
        assert_eq!(Robots::parse("user-agent: m6corpus\ncrawl-delay: 2\ndisallow: /a\ncrawl-delay: 3\n", "m6corpus").crawl_delay, Some(3.0));
        assert_eq!(Robots::parse("user-agent: *\ncrawl-delay: soon\ncrawl-delay: -1\ncrawl-delay: inf\n", "m6corpus").crawl_delay, None);
        assert_eq!(Robots::parse("user-agent: *\ndisallow: /\n", "m6corpus").crawl_delay, None);
        // Our group without a Crawl-delay does not inherit the `*` one.
        assert_eq!(Robots::parse("user-agent: *\ncrawl-delay: 5\n\nuser-agent: m6corpus\nallow: /\n", "m6corpus").crawl_delay, None);
    }

    #[test]
    fn rules_before_any_user_agent_apply_to_everyone() {
        let r = Robots::parse("Disallow: /\n# a long tail of comments\n", "m6corpus");
        assert!(!r.allowed("/index.html"));
        // Our own group still wins over them.
        let r = Robots::parse("\u{feff}Disallow: /\n\nUser-agent: m6corpus\nAllow: /\n", "m6corpus");
        assert!(r.allowed("/index.html"));
    }

    #[test]
    fn empty_disallow_and_encoding() {
        let r = Robots::parse("user-agent: *\ndisallow:\n", "m6corpus");
        assert!(r.allowed("/anything"));
        let r = Robots::parse("user-agent: *\ndisallow: /中文\n", "m6corpus");
        assert!(!r.allowed("/%e4%b8%ad%e6%96%87/page"));
        assert!(Robots::parse("", "m6corpus").allowed("/"));
        assert!(!Robots::disallow_all("503".into()).allowed("/x"));
    }
}
