//! Which URL an `<img>` shows: the largest `srcset` candidate (of the image and of
//! the `<source>`s of its `<picture>`), else the first lazy-loading attribute set,
//! else `src`.
//!
//! Shared word for word by the crawler (which downloads the image) and `extract`
//! (which pairs it with its caption by URL), so both pick the same URL; `extract`
//! includes this file by path, so it depends on std only.

/// Attributes lazy-loading scripts move the real URL into, in the order tried
/// (`data-src` and `data-original`: the common lazyload plugins; `data-actualsrc`:
/// Zhihu; `data-ks-lazyload`: Taobao/Tmall; `data-lazy-img`: JD; `data-lazyload`,
/// `data-lazy-src`, `data-echo`: others).
pub const LAZY_SRC: &[&str] = &["data-src", "data-original", "data-actualsrc", "data-lazy-src", "data-ks-lazyload", "data-lazy-img", "data-lazyload", "data-echo"];

/// Attributes holding a srcset, lazy ones first.
pub const SRCSET: &[&str] = &["data-srcset", "data-lazy-srcset", "srcset"];

/// `<source type>`s whose images the crawler can decode; a source of another type
/// (AVIF, JPEG XL, ...) is passed over for one it can.
const DECODABLE: &[&str] = &["image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp", "image/bmp"];

/// One srcset candidate: its URL and its width (`w`) or density (`x`) descriptor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub url: &'a str,
    pub width: Option<u32>,
    pub density: Option<f32>,
}

/// Parses a srcset per the HTML standard's algorithm: a URL runs to the next
/// whitespace (so URLs may contain commas), a URL ending in commas has no
/// descriptors, descriptors run to the next comma outside parentheses. Empty and
/// `data:` URLs are dropped, as are candidates with unparseable descriptors.
pub fn parse(srcset: &str) -> Vec<Candidate<'_>> {
    let mut out = vec![];
    let b = srcset.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let u0 = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut url = &srcset[u0..i];
        let mut descriptors = "";
        if url.ends_with(',') {
            url = url.trim_end_matches(',');
        } else {
            let d0 = i;
            let mut depth = 0u32;
            while i < b.len() {
                match b[i] {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    b',' if depth == 0 => break,
                    _ => {}
                }
                i += 1;
            }
            descriptors = &srcset[d0..i];
        }
        let (mut width, mut density, mut bad) = (None, None, false);
        for d in descriptors.split_ascii_whitespace() {
            let (num, unit) = d.split_at(d.len() - 1);
            match unit {
                "w" | "W" => match num.parse::<u32>() {
                    Ok(w) if w > 0 && width.is_none() && density.is_none() => width = Some(w),
                    _ => bad = true,
                },
                "x" | "X" => match num.parse::<f32>() {
                    Ok(x) if x.is_finite() && x > 0.0 && width.is_none() && density.is_none() => density = Some(x),
                    _ => bad = true,
                },
                "h" | "H" => {} // a future-compat height: ignored, as browsers do
                _ => bad = true,
            }
        }
        if !bad && !url.is_empty() && !is_data_uri(url) {
            out.push(Candidate { url, width, density });
        }
    }
    out
}

fn is_data_uri(u: &str) -> bool {
    u.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:"))
}

/// The largest candidate: by width when any candidate has one (those without are
/// passed over), else by density (none given means 1x). The first wins ties.
pub fn largest<'a>(cands: &[Candidate<'a>]) -> Option<&'a str> {
    let best = if cands.iter().any(|c| c.width.is_some()) {
        cands.iter().filter(|c| c.width.is_some()).fold(None, |b: Option<&Candidate>, c| if b.is_none_or(|b| c.width > b.width) { Some(c) } else { b })
    } else {
        cands.iter().fold(None, |b: Option<&Candidate>, c| if b.is_none_or(|b| c.density.unwrap_or(1.0) > b.density.unwrap_or(1.0)) { Some(c) } else { b })
    };
    best.map(|c| c.url)
}

fn get<'a>(attrs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// The URL an `<img>` shows, from its attributes and those of the `<source>`
/// elements of its `<picture>` (empty when it is not in one), or `None` when it
/// names none but `data:` URIs.
pub fn image_url<'a>(img: &[(&str, &'a str)], sources: &[Vec<(&str, &'a str)>]) -> Option<&'a str> {
    let mut cands = vec![];
    for s in sources {
        let decodable = get(s, "type").is_none_or(|t| t.is_empty() || DECODABLE.iter().any(|d| d.eq_ignore_ascii_case(t.split(';').next().unwrap_or("").trim())));
        if decodable {
            for a in SRCSET {
                cands.extend(get(s, a).map(parse).unwrap_or_default());
            }
        }
    }
    for a in SRCSET {
        cands.extend(get(img, a).map(parse).unwrap_or_default());
    }
    if let Some(u) = largest(&cands) {
        return Some(u);
    }
    LAZY_SRC.iter().chain(&["src"]).filter_map(|a| get(img, a)).find(|v| !v.is_empty() && !is_data_uri(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &str) -> Vec<(&str, Option<u32>, Option<f32>)> {
        parse(s).into_iter().map(|c| (c.url, c.width, c.density)).collect()
    }

    #[test]
    fn parses_candidates() {
        assert_eq!(urls("a.jpg 320w, b.jpg 1280w,c.jpg 640w"), vec![("a.jpg", Some(320), None), ("b.jpg", Some(1280), None), ("c.jpg", Some(640), None)]);
        assert_eq!(urls(" a.jpg, b.jpg 2x ,c.jpg 1.5x"), vec![("a.jpg", None, None), ("b.jpg", None, Some(2.0)), ("c.jpg", None, Some(1.5))]);
        // Commas inside a URL (image CDNs' resize parameters) do not split it.
        assert_eq!(urls("https://img.example.cn/p.jpg?x-oss-process=image/resize,w_800 800w, /q.jpg 400w"), vec![("https://img.example.cn/p.jpg?x-oss-process=image/resize,w_800", Some(800), None), ("/q.jpg", Some(400), None)]);
        // data: placeholders, bad descriptors and empties are dropped.
        assert_eq!(urls("data:image/gif;base64,R0lGOD 1x, ok.png 2x, bad.png 10q, two.png 1x 2x,,"), vec![("ok.png", None, Some(2.0))]);
        assert_eq!(urls("x.png 100w 50h"), vec![("x.png", Some(100), None)]);
        assert!(parse("").is_empty() && parse(" , ,").is_empty());
    }

    #[test]
    fn picks_the_largest() {
        assert_eq!(largest(&parse("s.jpg 320w, l.jpg 1280w, m.jpg 640w")), Some("l.jpg"));
        assert_eq!(largest(&parse("a.jpg, b.jpg 3x, c.jpg 2x")), Some("b.jpg"));
        assert_eq!(largest(&parse("a.jpg 0.5x, b.jpg")), Some("b.jpg"), "no descriptor is 1x");
        assert_eq!(largest(&parse("a.jpg 2x, b.jpg 500w")), Some("b.jpg"), "widths win over densities");
        assert_eq!(largest(&parse("a.jpg 500w, b.jpg 500w")), Some("a.jpg"));
        assert_eq!(largest(&[]), None);
    }

    #[test]
    fn img_and_picture() {
        let img = |a: &[(&'static str, &'static str)]| image_url(a, &[]);
        assert_eq!(img(&[("src", "small.jpg"), ("srcset", "small.jpg 1x, big.jpg 2x")]), Some("big.jpg"));
        assert_eq!(img(&[("src", "only.jpg")]), Some("only.jpg"));
        // Lazy loading: the placeholder in src loses to the real URL.
        assert_eq!(img(&[("src", "/grey.gif"), ("data-original", "/real.jpg")]), Some("/real.jpg"));
        assert_eq!(img(&[("src", "data:image/gif;base64,AAAA"), ("data-src", "/real.jpg")]), Some("/real.jpg"));
        assert_eq!(img(&[("SRC", "x.gif"), ("data-srcset", "a.jpg 200w, b.jpg 900w"), ("srcset", "data:image/gif;base64,AA 1x")]), Some("b.jpg"));
        assert_eq!(img(&[("data-ks-lazyload", "//img.alicdn.com/a.jpg"), ("src", "//g.alicdn.com/s.gif")]), Some("//img.alicdn.com/a.jpg"));
        assert_eq!(img(&[("src", " data:image/png;base64,AA"), ("srcset", "")]), None);
        assert_eq!(img(&[("alt", "x")]), None);
        // <picture>: the largest decodable candidate over its sources and the img.
        let sources = vec![
            vec![("type", "image/avif"), ("srcset", "huge.avif 2000w")],
            vec![("type", "image/webp"), ("media", "(min-width: 800px)"), ("srcset", "wide.webp 1600w, mid.webp 800w")],
            vec![("data-srcset", "lazy.jpg 1200w")],
        ];
        assert_eq!(image_url(&[("src", "fallback.jpg"), ("srcset", "fallback.jpg 600w")], &sources), Some("wide.webp"));
        assert_eq!(image_url(&[("src", "fallback.jpg")], &sources[..1]), Some("fallback.jpg"), "an undecodable source alone falls back to src");
    }
}
