//! Real test data for the filter's rule tests: Tang poems from chinese-poetry, the
//! Debian Handbook's zh-CN/zh-TW pages (prose paragraphs and `screen` listings), and
//! the scikit-image photos. `M6_DATA_DIR` overrides `<repo>/data`.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data"));
    assert!(d.join("chinese-poetry").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

/// Tang poems, in collection order, as `(title, text)` with one couplet per line.
pub fn poems(n: usize) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut k = 0;
    while out.len() < n {
        let f = data_dir().join(format!("chinese-poetry/dist/quantangshi/poet.tang.{k}.json"));
        let arr: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for p in arr {
            let text = p["paragraphs"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n");
            if !text.is_empty() {
                out.push((p["title"].as_str().unwrap_or("").to_string(), text));
            }
        }
        k += 1000;
    }
    out.truncate(n);
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&nbsp;", " ").replace("&amp;", "&")
}

/// Text of an HTML fragment: tags removed, common entities decoded, whitespace kept.
pub fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape(&out)
}

/// Inner HTML of every `<{tag} ...class="{class}"...>...</{tag}>` in a page.
fn blocks(html: &str, open: &str, close: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = html;
    while let Some(i) = rest.find(open) {
        let after = &rest[i..];
        let Some(gt) = after.find('>') else { break };
        let body = &after[gt + 1..];
        let Some(end) = body.find(close) else { break };
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

pub fn handbook_page(lang: &str, page: &str) -> String {
    std::fs::read_to_string(data_dir().join("debian-handbook").join(lang).join(page)).unwrap()
}

pub fn handbook_pages(lang: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir().join("debian-handbook").join(lang))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    v.sort();
    v
}

/// Prose paragraphs (`<div class="para">`, and `<p class=…>` titles/captions) of a page, as text, whitespace collapsed.
pub fn paragraphs(html: &str) -> Vec<String> {
    blocks(html, "<div class=\"para\"", "</div>")
        .into_iter()
        .chain(blocks(html, "<p ", "</p>"))
        .map(|p| strip_tags(&p).split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// `<pre class="screen">` and `programlisting` listings of a page, as text.
pub fn screens(html: &str) -> Vec<String> {
    blocks(html, "<pre class=\"screen\"", "</pre>").into_iter().chain(blocks(html, "<pre class=\"programlisting\"", "</pre>")).map(|s| strip_tags(&s)).collect()
}

pub fn photo(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join("photos").join(name)).unwrap()
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

pub fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(data);
    let mut crc_in = kind.to_vec();
    crc_in.extend_from_slice(data);
    v.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    v
}

/// A valid PNG header declaring `w` x `h` RGB pixels, followed by a tiny IDAT.
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend(chunk(b"IHDR", &ihdr));
    v.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
    v.extend(chunk(b"IEND", &[]));
    v
}
