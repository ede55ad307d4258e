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
    hay[from..].windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|p| p + from)
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

fn borrow(a: &[(String, String)]) -> Vec<(&str, &str)> {
    a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Scans `html` (any ASCII-compatible encoding) for links, images and robots meta.
pub fn scan(html: &[u8], token: &str) -> PageLinks {
    let mut out = PageLinks::default();
    let n = html.len();
    let mut i = 0;
    // The attributes of the `<source>`s of the `<picture>` we are in, if any.
    let mut picture: Option<Vec<Vec<(String, String)>>> = None;
    while let Some(lt) = html[i..].iter().position(|&c| c == b'<').map(|p| p + i) {
        i = lt + 1;
        if html[i..].starts_with(b"!--") {
            i = find_ci(html, i + 3, b"-->").map(|e| e + 3).unwrap_or(n);
            continue;
        }
        if html[i..].len() >= 8 && html[i..i + 8].eq_ignore_ascii_case(b"/picture") {
            picture = None;
        }
        if i < n && (html[i] == b'/' || html[i] == b'!' || html[i] == b'?') {
            i = html[i..].iter().position(|&c| c == b'>').map(|p| p + i + 1).unwrap_or(n);
            continue;
        }
        let name_start = i;
        while i < n && (html[i].is_ascii_alphanumeric() || html[i] == b'-') {
            i += 1;
        }
        if i == name_start {
            continue; // a stray '<' in text
        }
        let name = String::from_utf8_lossy(&html[name_start..i]).to_ascii_lowercase();
        let mut attrs: Vec<(String, String)> = vec![];
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
            let aname = String::from_utf8_lossy(&html[a0..i]).to_ascii_lowercase();
            while i < n && html[i].is_ascii_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < n && html[i] == b'=' {
                i += 1;
                while i < n && html[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < n && (html[i] == b'"' || html[i] == b'\'') {
                    let q = html[i];
                    let v0 = i + 1;
                    let end = html[v0..].iter().position(|&c| c == q).map(|p| p + v0).unwrap_or(n);
                    value = String::from_utf8_lossy(&html[v0..end]).into_owned();
                    i = (end + 1).min(n);
                } else {
                    let v0 = i;
                    while i < n && !html[i].is_ascii_whitespace() && html[i] != b'>' {
                        i += 1;
                    }
                    value = String::from_utf8_lossy(&html[v0..i]).into_owned();
                }
            }
            if aname.is_empty() {
                i += 1;
                continue;
            }
            attrs.push((aname, decode_entities(value.trim())));
        }
        let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
        match name.as_str() {
            "a" | "area" => {
                let nofollow = get("rel").is_some_and(|r| r.to_ascii_lowercase().split_whitespace().any(|t| t == "nofollow"));
                if let Some(h) = get("href").filter(|h| !h.is_empty() && !nofollow) {
                    out.links.push(h.to_string());
                }
            }
            "picture" => picture = Some(vec![]),
            "source" => {
                if let Some(p) = picture.as_mut() {
                    p.push(attrs.clone());
                }
            }
            "img" => {
                let sources: Vec<Vec<(&str, &str)>> = picture.as_deref().unwrap_or_default().iter().map(|s| borrow(s)).collect();
                if let Some(u) = crate::srcset::image_url(&borrow(&attrs), &sources) {
                    out.images.push(u.to_string());
                }
                // A picture has one img; its sources are spent.
                picture = None;
            }
            "base" => {
                if out.base.is_none() {
                    out.base = get("href").filter(|h| !h.is_empty()).map(str::to_string);
                }
            }
            "meta" => {
                let who = get("name").map(str::to_ascii_lowercase);
                if who.as_deref() == Some("robots") || who.as_deref() == Some(&token.to_ascii_lowercase()) {
                    if let Some(c) = get("content") {
                        out.robots.extend(c.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()));
                    }
                }
            }
            "script" | "style" | "textarea" | "title" => {
                // Raw text: a '<' inside is not a tag.
                let close = format!("</{name}");
                i = find_ci(html, i, close.as_bytes()).unwrap_or(n);
            }
            _ => {}
        }
    }
    out
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
