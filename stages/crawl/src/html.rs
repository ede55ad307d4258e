//! A small, forgiving HTML tag scanner: just what the crawler needs from a page
//! (links to follow, the images it shows, `<base href>`, robots meta), never a full DOM.

/// What a page tells the crawler.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageLinks {
    pub base: Option<String>,
    /// `<a href>` and `<area href>`, minus `rel=nofollow`, in document order.
    pub links: Vec<String>,
    /// The URL each `<img>` shows, in document order: the largest `srcset` candidate
    /// (with its `<picture>`'s `<source>`s), else a lazy-loading attribute, else
    /// `src` (see [`crate::srcset::image_url`]).
    pub images: Vec<String>,
    /// Lower-cased directives of `<meta name="robots">` and `<meta name="<our token>">`.
    pub robots: Vec<String>,
}

fn find_ci(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from >= hay.len() {
        return None;
    }
    // Jump between occurrences of the first byte ('<' or '-' here: no case to fold).
    let first = needle[0];
    let mut at = from;
    while let Some(p) = memchr(first, &hay[at..]) {
        let start = at + p;
        if hay.len() - start < needle.len() {
            return None;
        }
        if hay[start..start + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &rest[1..e];
            let ch = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ if ent.starts_with("#x") || ent.starts_with("#X") => u32::from_str_radix(&ent[2..], 16).ok().and_then(char::from_u32),
                _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            ch.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The tags the scanner reads; every other tag is skipped without allocating.
#[derive(Clone, Copy, PartialEq)]
enum Tag {
    A,
    Base,
    Meta,
    Picture,
    Source,
    Img,
    /// script, style, textarea, title: raw text up to the closing tag.
    RawText,
    Other,
}

fn tag_of(name: &[u8]) -> Tag {
    let is = |t: &[u8]| name.eq_ignore_ascii_case(t);
    match name.len() {
        1 if is(b"a") => Tag::A,
        3 if is(b"img") => Tag::Img,
        4 if is(b"area") => Tag::A,
        4 if is(b"base") => Tag::Base,
        4 if is(b"meta") => Tag::Meta,
        6 if is(b"source") => Tag::Source,
        6 if is(b"script") => Tag::RawText,
        5 if is(b"style") || is(b"title") => Tag::RawText,
        7 if is(b"picture") => Tag::Picture,
        8 if is(b"textarea") => Tag::RawText,
        _ => Tag::Other,
    }
}

fn text(v: &[u8]) -> String {
    decode_entities(String::from_utf8_lossy(v).trim())
}

/// Scans `html` (any ASCII-compatible encoding) for links, images and robots meta.
pub fn scan(html: &[u8], token: &str) -> PageLinks {
    let mut out = PageLinks::default();
    let n = html.len();
    let mut i = 0;
    // The attributes of the `<source>`s of the `<picture>` we are in, if any.
    let mut picture: Option<Vec<Vec<(String, String)>>> = None;
    // The current tag's attributes as (name, raw value) slices of `html`.
    let mut attrs: Vec<(&[u8], &[u8])> = Vec::with_capacity(16);
    while let Some(lt) = memchr(b'<', &html[i..]).map(|p| p + i) {
        i = lt + 1;
        if html[i..].starts_with(b"!--") {
            i = find_ci(html, i + 3, b"-->").map(|e| e + 3).unwrap_or(n);
            continue;
        }
        if i < n && (html[i] == b'/' || html[i] == b'!' || html[i] == b'?') {
            if html[i..].len() >= 8 && html[i..i + 8].eq_ignore_ascii_case(b"/picture") {
                picture = None;
            }
            i = memchr(b'>', &html[i..]).map(|p| p + i + 1).unwrap_or(n);
            continue;
        }
        let name_start = i;
        while i < n && (html[i].is_ascii_alphanumeric() || html[i] == b'-') {
            i += 1;
        }
        if i == name_start {
            continue; // a stray '<' in text
        }
        let name = &html[name_start..i];
        let tag = tag_of(name);
        attrs.clear();
        loop {
            while i < n && (html[i].is_ascii_whitespace() || html[i] == b'/') {
                i += 1;
            }
            if i >= n || html[i] == b'>' {
                i = (i + 1).min(n);
                break;
            }
            let a0 = i;
            while i < n && !html[i].is_ascii_whitespace() && !matches!(html[i], b'=' | b'>' | b'/') {
                i += 1;
            }
            let aname = &html[a0..i];
            while i < n && html[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value: &[u8] = b"";
            if i < n && html[i] == b'=' {
                i += 1;
                while i < n && html[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < n && (html[i] == b'"' || html[i] == b'\'') {
                    let q = html[i];
                    let v0 = i + 1;
                    let end = memchr(q, &html[v0..]).map(|p| p + v0).unwrap_or(n);
                    value = &html[v0..end];
                    i = (end + 1).min(n);
                } else {
                    let v0 = i;
                    while i < n && !html[i].is_ascii_whitespace() && html[i] != b'>' {
                        i += 1;
                    }
                    value = &html[v0..i];
                }
            }
            if aname.is_empty() {
                i += 1;
                continue;
            }
            if tag != Tag::Other {
                attrs.push((aname, value));
            }
        }
        let get = |k: &str| attrs.iter().find(|(a, _)| a.eq_ignore_ascii_case(k.as_bytes())).map(|(_, v)| text(v));
        match tag {
            Tag::A => {
                let nofollow = get("rel").is_some_and(|r| r.to_ascii_lowercase().split_whitespace().any(|t| t == "nofollow"));
                if let Some(h) = get("href").filter(|h| !h.is_empty() && !nofollow) {
                    out.links.push(h);
                }
            }
            Tag::Picture => picture = Some(vec![]),
            Tag::Source => {
                if let Some(p) = picture.as_mut() {
                    p.push(owned(&attrs));
                }
            }
            Tag::Img => {
                let img = owned(&attrs);
                let sources: Vec<Vec<(&str, &str)>> = picture.as_deref().unwrap_or_default().iter().map(|s| borrow(s)).collect();
                if let Some(u) = crate::srcset::image_url(&borrow(&img), &sources) {
                    out.images.push(u.to_string());
                }
                // A picture has one img; its sources are spent.
                picture = None;
            }
            Tag::Base => {
                if out.base.is_none() {
                    out.base = get("href").filter(|h| !h.is_empty());
                }
            }
            Tag::Meta => {
                let who = get("name").map(|w| w.to_ascii_lowercase());
                if who.as_deref() == Some("robots") || who.as_deref() == Some(&token.to_ascii_lowercase()) {
                    if let Some(c) = get("content") {
                        out.robots.extend(c.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()));
                    }
                }
            }
            Tag::RawText => {
                // Raw text: a '<' inside is not a tag.
                let mut close = Vec::with_capacity(name.len() + 2);
                close.extend_from_slice(b"</");
                close.extend_from_slice(name);
                i = find_ci(html, i, &close).unwrap_or(n);
            }
            Tag::Other => {}
        }
    }
    out
}

fn owned(attrs: &[(&[u8], &[u8])]) -> Vec<(String, String)> {
    attrs.iter().map(|(k, v)| (String::from_utf8_lossy(k).to_ascii_lowercase(), text(v))).collect()
}

fn borrow(a: &[(String, String)]) -> Vec<(&str, &str)> {
    a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn memchr(c: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links_images_and_meta() {
        let html = br#"<!DOCTYPE html><html><head><BASE HREF="http://h/x/"><meta name="Robots" content="NoIndex, nofollow">
        <script>var s = "<a href='/no'>";</script><!-- <a href="/commented"> --></head>
        <body><a href="a.html?x=1&amp;y=2">A</a> <a rel="nofollow" href="/skip">S</a> <A HREF=/unquoted>U</A>
        <img alt="x" src='img/1.png'><img src="data:image/png;base64,AAA"> 1 < 2 <area href="/map"></body>"#;
        let p = scan(html, "m6corpus");
        assert_eq!(p.base.as_deref(), Some("http://h/x/"));
        assert_eq!(p.links, vec!["a.html?x=1&y=2", "/unquoted", "/map"]);
        assert_eq!(p.images, vec!["img/1.png"]);
        assert_eq!(p.robots, vec!["noindex", "nofollow"]);
    }

    #[test]
    fn srcset_picture_and_lazy_images() {
        let html = br#"<img src="s.png" srcset="s.png 1x, l.png 2x">
        <picture><source type="image/avif" srcset="p.avif 1600w"><source srcset="p-800.jpg 800w, p-1600.jpg 1600w" media="(min-width: 600px)"><img src="p.jpg" alt="x"></picture>
        <img src="data:image/gif;base64,R0lGOD" data-original="/lazy.jpg"> <img data-srcset="a.jpg 300w, b.jpg 900w" src="/grey.gif">
        <video><source src="/v.mp4"></video><img src="plain.png"> <img srcset="data:image/gif;base64,AA">"#;
        assert_eq!(scan(html, "m6corpus").images, vec!["l.png", "p-1600.jpg", "/lazy.jpg", "b.jpg", "plain.png"]);
        // Sources outside a picture, or of a closed one, do not apply to a later img.
        let html = br#"<picture><source srcset="x.jpg 999w"></picture><img src="after.png"><source srcset="y.jpg 999w"><img src="z.png">"#;
        assert_eq!(scan(html, "m6corpus").images, vec!["after.png", "z.png"]);
    }

    #[test]
    fn broken_html_does_not_panic() {
        for h in [&b"<a href=\"/x"[..], b"<", b"<img src=", b"<!-- never closed", b"<a href='/y'", b"<meta name=robots content=noai>"] {
            let _ = scan(h, "m6corpus");
        }
        assert_eq!(scan(b"<meta name=robots content=noai>", "m6corpus").robots, vec!["noai"]);
    }
}
