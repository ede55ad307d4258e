//! Personal information in kept text, replaced by placeholders: e-mail addresses
//! (`<EMAIL>`), mainland mobile and landline numbers (`<PHONE>`), resident identity
//! card numbers (`<ID>`), bank card numbers (`<CARD>`) and IPv4/IPv6 addresses (`<IP>`).
//!
//! Numbers are validated, not just shaped, so that order numbers, timestamps and
//! version strings survive:
//! - resident ID (GB 11643-1999): 6-digit region (first digit 1–8), a real birth date
//!   from 1900 on, 3-digit sequence, and the ISO 7064 MOD 11-2 check character;
//! - bank card: 13–19 digits (optionally grouped by spaces or dashes) starting 3–6
//!   (the card networks' IIN ranges) whose Luhn checksum holds;
//! - mobile: 11 digits `1[3-9]xxxxxxxxx` (optionally `+86`, optionally split 3-4-4);
//!   landline: area code `0xx`/`0xxx` in parentheses or followed by `-`, then 7–8 digits;
//! - IPv4: four dotted octets ≤ 255 not inside a longer dotted run (so `1.2.3.4.5`
//!   version strings stay); IPv6: what `std::net::Ipv6Addr` parses, with ≥ 2 colons.
//!
//! Every number kind must stand alone: a digit (or a letter, for IDs and cards) right
//! before or after the candidate rejects it. Spans are chosen longest-first where kinds
//! overlap (an ID number contains phone-like runs).

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `[filter.normalize.pii]`: which kinds are replaced. `normalize.pii = false` (or
/// `true`) sets every kind at once. Default: all on.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PiiConfig {
    pub email: bool,
    pub phone: bool,
    pub id: bool,
    pub card: bool,
    pub ip: bool,
}

impl Default for PiiConfig {
    fn default() -> Self {
        PiiConfig::all(true)
    }
}

impl PiiConfig {
    pub fn all(on: bool) -> Self {
        PiiConfig { email: on, phone: on, id: on, card: on, ip: on }
    }
    pub fn any(&self) -> bool {
        self.email || self.phone || self.id || self.card || self.ip
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PiiTable {
    email: bool,
    phone: bool,
    id: bool,
    card: bool,
    ip: bool,
}

impl Default for PiiTable {
    fn default() -> Self {
        PiiTable { email: true, phone: true, id: true, card: true, ip: true }
    }
}

impl<'de> Deserialize<'de> for PiiConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            All(bool),
            Kinds(PiiTable),
        }
        Ok(match Either::deserialize(d).map_err(|_| serde::de::Error::custom("normalize.pii: expected true, false or a table of email, phone, id, card, ip = true/false"))? {
            Either::All(b) => PiiConfig::all(b),
            Either::Kinds(t) => PiiConfig { email: t.email, phone: t.phone, id: t.id, card: t.card, ip: t.ip },
        })
    }
}

/// Replacements made in one text, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PiiCounts {
    pub email: u32,
    pub phone: u32,
    pub id: u32,
    pub card: u32,
    pub ip: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PiiKind {
    Email,
    Phone,
    Id,
    Card,
    Ip,
}

impl PiiKind {
    fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "<EMAIL>",
            PiiKind::Phone => "<PHONE>",
            PiiKind::Id => "<ID>",
            PiiKind::Card => "<CARD>",
            PiiKind::Ip => "<IP>",
        }
    }
}

struct Patterns {
    email: Regex,
    mobile: Regex,
    landline: Regex,
    id: Regex,
    card: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}").unwrap(),
        mobile: Regex::new(r"(?:\+86[- ]?|86-)?1[3-9][0-9](?:[0-9]{8}|[- ][0-9]{4}[- ][0-9]{4})").unwrap(),
        landline: Regex::new(r"(?:\+86[- ]?)?(?:\(0[1-9][0-9]{1,2}\)[- ]?|（0[1-9][0-9]{1,2}）|0[1-9][0-9]{1,2}-)[2-9][0-9]{6,7}(?:-[0-9]{1,5})?").unwrap(),
        id: Regex::new(r"[1-8][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]").unwrap(),
        card: Regex::new(r"[3-6][0-9]{3}(?:[ -]?[0-9]{4}){2,3}(?:[ -]?[0-9]{1,3})?|[3-6][0-9]{12,18}").unwrap(),
        ipv4: Regex::new(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])").unwrap(),
        ipv6: Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}").unwrap(),
    })
}

/// ISO 7064 MOD 11-2 check of an 18-character resident ID number.
pub fn id_checksum_ok(id: &str) -> bool {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17].iter().zip(W).map(|(d, w)| (d - b'0') as u32 * w).sum();
    CHECK[(sum % 11) as usize] == b[17].to_ascii_uppercase()
}

/// A birth date that exists (month lengths, leap years).
fn real_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// The Luhn check over the digits of `s` (separators skipped).
pub fn luhn_ok(s: &str) -> bool {
    let digits: Vec<u32> = s.bytes().filter(u8::is_ascii_digit).map(|b| (b - b'0') as u32).collect();
    if digits.len() < 13 || digits.len() > 19 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d })
        .sum();
    sum % 10 == 0
}

fn before(text: &str, start: usize) -> Option<char> {
    text[..start].chars().next_back()
}
fn after(text: &str, end: usize) -> Option<char> {
    text[end..].chars().next()
}

/// True when the span stands alone: no digit (and, when `alnum`, no ASCII letter) touches it.
fn isolated(text: &str, s: usize, e: usize, alnum: bool) -> bool {
    let bad = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || (alnum && (c.is_ascii_alphabetic() || c == '_')));
    !bad(before(text, s)) && !bad(after(text, e))
}

/// Replaces the configured kinds of PII; the text is borrowed back when nothing matched.
pub fn redact<'t>(text: &'t str, cfg: &PiiConfig) -> (Cow<'t, str>, PiiCounts) {
    let mut spans: Vec<(usize, usize, PiiKind)> = vec![];
    let has_digit = text.bytes().any(|b| b.is_ascii_digit());
    let p = patterns();
    if cfg.email && text.contains('@') {
        spans.extend(p.email.find_iter(text).map(|m| (m.start(), m.end(), PiiKind::Email)));
    }
    if has_digit {
        if cfg.id {
            for m in p.id.find_iter(text) {
                let s = m.as_str();
                let (y, mo, d) = (s[6..10].parse().unwrap_or(0), s[10..12].parse().unwrap_or(0), s[12..14].parse().unwrap_or(0));
                if isolated(text, m.start(), m.end(), true) && real_date(y, mo, d) && id_checksum_ok(s) {
                    spans.push((m.start(), m.end(), PiiKind::Id));
                }
            }
        }
        if cfg.card {
            for m in p.card.find_iter(text) {
                if isolated(text, m.start(), m.end(), true) && luhn_ok(m.as_str()) {
                    spans.push((m.start(), m.end(), PiiKind::Card));
                }
            }
        }
        if cfg.phone {
            for re in [&p.mobile, &p.landline] {
                for m in re.find_iter(text) {
                    if isolated(text, m.start(), m.end(), false) {
                        spans.push((m.start(), m.end(), PiiKind::Phone));
                    }
                }
            }
        }
        if cfg.ip && text.contains('.') {
            for m in p.ipv4.find_iter(text) {
                let dotted = |c: Option<char>, next: Option<char>| c == Some('.') && next.is_some_and(|n| n.is_ascii_digit());
                let (s, e) = (m.start(), m.end());
                let prev2 = text[..s].chars().rev().nth(1);
                if isolated(text, s, e, true) && !dotted(before(text, s), prev2) && !dotted(after(text, e), text[e..].chars().nth(1)) {
                    spans.push((s, e, PiiKind::Ip));
                }
            }
        }
    }
    if cfg.ip && text.contains("::") || (cfg.ip && text.matches(':').nth(3).is_some()) {
        for m in p.ipv6.find_iter(text) {
            let s = m.as_str();
            let hex_groups = s.split(':').filter(|g| !g.is_empty()).count();
            if hex_groups >= 1 && s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok() && isolated(text, m.start(), m.end(), true) {
                // Not a clock (`12:30:45` does not parse) nor a C++ path (letters beyond f break the match).
                spans.push((m.start(), m.end(), PiiKind::Ip));
            }
        }
    }
    let mut counts = PiiCounts::default();
    if spans.is_empty() {
        return (Cow::Borrowed(text), counts);
    }
    // Longest first among overlapping candidates, then by position.
    spans.sort_by(|a, b| a.0.cmp(&b.0).then((b.1 - b.0).cmp(&(a.1 - a.0))));
    let mut chosen: Vec<(usize, usize, PiiKind)> = vec![];
    for sp in spans {
        match chosen.last_mut() {
            Some(last) if sp.0 < last.1 => {
                if sp.1 - sp.0 > last.1 - last.0 {
                    *last = sp;
                }
            }
            _ => chosen.push(sp),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, k) in chosen {
        out.push_str(&text[at..s]);
        out.push_str(k.placeholder());
        at = e;
        match k {
            PiiKind::Email => counts.email += 1,
            PiiKind::Phone => counts.phone += 1,
            PiiKind::Id => counts.id += 1,
            PiiKind::Card => counts.card += 1,
            PiiKind::Ip => counts.ip += 1,
        }
    }
    out.push_str(&text[at..]);
    (Cow::Owned(out), counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        // GB 11643-1999's worked example.
        assert!(id_checksum_ok("11010519491231002X"));
        assert!(!id_checksum_ok("110105194912310021"));
        assert!(luhn_ok("4111 1111 1111 1111"));
        assert!(!luhn_ok("4111 1111 1111 1112"));
    }
}
