//! Turns a fetched body into UTF-8: BOM, then the HTTP charset, then `<meta>` (and the
//! XML declaration), then statistical detection. A declaration is only trusted when the
//! bytes actually decode under it, so a page that says UTF-8 but is GBK still comes out right.

use encoding_rs::{Encoding, UTF_8};

/// How many leading bytes are scanned for `<meta charset>`. The HTML standard says 1024;
/// Chinese pages often put a long `<title>`/keywords block first, so we look further.
const META_SCAN_BYTES: usize = 4096;

/// A body that legacy-declares its charset but is valid UTF-8 with at least this many
/// non-ASCII bytes is taken as UTF-8: legacy CJK text is practically never valid UTF-8
/// at that length, while mislabelled UTF-8 pages are common.
const UTF8_OVERRIDE_MIN_NON_ASCII: usize = 8;

/// The decoded body and how its encoding was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    /// The WHATWG name of the encoding used (`UTF-8`, `GBK`, `Big5`, ...).
    pub charset: &'static str,
    /// Where it came from: `bom`, `http`, `meta`, `xml`, `utf8` (valid UTF-8 overriding a
    /// wrong legacy declaration) or `detected`.
    pub source: &'static str,
    /// Labels that were declared but did not fit the bytes, e.g. `meta:utf-8`.
    pub rejected: Vec<String>,
    /// Whether malformed sequences were replaced by U+FFFD in the final decode.
    pub had_errors: bool,
}

/// The `charset` parameter of a Content-Type value, if any.
pub fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').trim())
    })
}

/// Decodes `body`. `http_content_type` is the response's Content-Type; `tld` (e.g. `cn`,
/// `tw`) steers detection the way a browser's locale would.
pub fn decode(body: &[u8], http_content_type: Option<&str>, tld: Option<&str>) -> Decoded {
    if let Some((enc, bom_len)) = Encoding::for_bom(body) {
        let (text, had_errors) = enc.decode_without_bom_handling(&body[bom_len..]);
        return Decoded { text: text.into_owned(), charset: enc.name(), source: "bom", rejected: vec![], had_errors };
    }
    let mut rejected = vec![];
    let declared = [
        ("http", http_content_type.and_then(charset_param).map(str::to_string)),
        ("meta", meta_charset(body)),
        ("xml", xml_encoding(body)),
    ];
    for (source, label) in declared {
        let Some(label) = label else { continue };
        let Some(enc) = Encoding::for_label(label.as_bytes()) else {
            rejected.push(format!("{source}:{label}"));
            continue;
        };
        // A page cannot really be UTF-16 once it has been parsed as ASCII-compatible
        // markup to find this label; the HTML standard maps it to UTF-8.
        let enc = if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE || enc == encoding_rs::REPLACEMENT {
            UTF_8
        } else {
            enc
        };
        if enc != UTF_8 && looks_like_utf8(body) {
            rejected.push(format!("{source}:{label}"));
            let text = std::str::from_utf8(body).expect("checked valid").to_string();
            return Decoded { text, charset: UTF_8.name(), source: "utf8", rejected, had_errors: false };
        }
        if let Some(text) = enc.decode_without_bom_handling_and_without_replacement(body) {
            return Decoded { text: text.into_owned(), charset: enc.name(), source, rejected, had_errors: false };
        }
        rejected.push(format!("{source}:{label}"));
    }
    let mut det = chardetng::EncodingDetector::new();
    det.feed(body, true);
    let enc = det.guess(tld.map(str::as_bytes), true);
    let (text, had_errors) = enc.decode_without_bom_handling(body);
    Decoded { text: text.into_owned(), charset: enc.name(), source: "detected", rejected, had_errors }
}

fn looks_like_utf8(body: &[u8]) -> bool {
    body.iter().filter(|b| **b >= 0x80).count() >= UTF8_OVERRIDE_MIN_NON_ASCII && std::str::from_utf8(body).is_ok()
}

/// The charset a `<meta charset>` or `<meta http-equiv=content-type content=...>` in the
/// head declares (a byte-level prescan: the real parse needs the encoding first).
pub fn meta_charset(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(META_SCAN_BYTES)];
    let mut i = 0;
    while let Some(pos) = find_ci(&head[i..], b"<meta") {
        let start = i + pos + 5;
        i = start;
        if head.get(start).is_some_and(|c| !(c.is_ascii_whitespace() || *c == b'/')) {
            continue;
        }
        let attrs = parse_attrs(&head[start..]);
        let get = |name: &str| attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        if let Some(cs) = get("charset") {
            if !cs.trim().is_empty() {
                return Some(cs.trim().to_string());
            }
        }
        if get("http-equiv").is_some_and(|v| v.trim().eq_ignore_ascii_case("content-type")) {
            if let Some(cs) = get("content").and_then(charset_param) {
                return Some(cs.to_string());
            }
        }
    }
    None
}

/// `encoding="..."` of a leading `<?xml ...?>` declaration (XHTML pages).
pub fn xml_encoding(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(b"<?xml")?;
    let end = find_ci(&rest[..rest.len().min(256)], b"?>")?;
    parse_attrs(&rest[..end]).into_iter().find(|(k, _)| k.eq_ignore_ascii_case("encoding")).map(|(_, v)| v)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// Attributes of a tag, from just after its name up to `>` (tolerant: unquoted values,
/// missing values, stray slashes).
fn parse_attrs(s: &[u8]) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut i = 0;
    let n = s.len();
    while i < n {
        while i < n && (s[i].is_ascii_whitespace() || s[i] == b'/') {
            i += 1;
        }
        if i >= n || s[i] == b'>' {
            break;
        }
        let ks = i;
        while i < n && !s[i].is_ascii_whitespace() && s[i] != b'=' && s[i] != b'>' && s[i] != b'/' {
            i += 1;
        }
        let key = String::from_utf8_lossy(&s[ks..i]).into_owned();
        while i < n && s[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < n && s[i] == b'=' {
            i += 1;
            while i < n && s[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < n && (s[i] == b'"' || s[i] == b'\'') {
                let q = s[i];
                i += 1;
                let vs = i;
                while i < n && s[i] != q {
                    i += 1;
                }
                value = String::from_utf8_lossy(&s[vs..i]).into_owned();
                i += 1;
            } else {
                let vs = i;
                while i < n && !s[i].is_ascii_whitespace() && s[i] != b'>' {
                    i += 1;
                }
                value = String::from_utf8_lossy(&s[vs..i]).into_owned();
            }
        }
        if key.is_empty() {
            i += 1;
        } else {
            out.push((key, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbk(s: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(s).0.into_owned()
    }

    const ZH: &str = "中文网页的字符集检测必须正确，否则文本会变成乱码。";

    #[test]
    fn http_header_wins_when_it_fits() {
        let body = gbk(&format!("<html><head><title>{ZH}</title></head></html>"));
        let d = decode(&body, Some("text/html; charset=GB2312"), None);
        assert_eq!((d.charset, d.source), ("GBK", "http"));
        assert!(d.text.contains(ZH));
    }

    #[test]
    fn meta_charset_forms() {
        assert_eq!(meta_charset(b"<html><head><meta charset=gbk>").as_deref(), Some("gbk"));
        assert_eq!(meta_charset(b"<META HTTP-EQUIV='Content-Type' CONTENT='text/html; charset=big5'/>").as_deref(), Some("big5"));
        assert_eq!(meta_charset(b"<meta name=x content=y><meta charset=\"utf-8\">").as_deref(), Some("utf-8"));
        assert_eq!(meta_charset(b"<metadata charset=gbk>"), None);
        assert_eq!(xml_encoding(b"<?xml version=\"1.0\" encoding=\"GB18030\"?><html>").as_deref(), Some("GB18030"));
    }

    #[test]
    fn wrong_meta_utf8_on_gbk_bytes_falls_back_to_detection() {
        let body = gbk(&format!("<html><head><meta charset=\"utf-8\"><title>{ZH}</title></head><body><p>{ZH}{ZH}</p></body></html>"));
        let d = decode(&body, Some("text/html"), Some("cn"));
        assert_eq!((d.charset, d.source), ("GBK", "detected"));
        assert_eq!(d.rejected, vec!["meta:utf-8".to_string()]);
        assert!(d.text.contains(ZH) && !d.had_errors);
    }

    #[test]
    fn legacy_label_on_utf8_bytes_is_overridden() {
        let body = format!("<meta charset=gb2312><p>{ZH}</p>").into_bytes();
        let d = decode(&body, None, None);
        assert_eq!((d.charset, d.source), ("UTF-8", "utf8"));
        assert!(d.text.contains(ZH));
    }

    #[test]
    fn bom_and_big5_detection() {
        let mut body = vec![0xEF, 0xBB, 0xBF];
        body.extend_from_slice(ZH.as_bytes());
        let d = decode(&body, Some("text/html; charset=gbk"), None);
        assert_eq!((d.charset, d.source, d.text.as_str()), ("UTF-8", "bom", ZH));
        let tw = "繁體中文的網頁通常使用大五碼編碼，擷取時必須正確轉換為統一碼。";
        let big5 = encoding_rs::BIG5.encode(&format!("<html><body><p>{tw}</p></body></html>")).0.into_owned();
        let d = decode(&big5, Some("text/html"), None);
        assert_eq!((d.charset, d.source), ("Big5", "detected"));
        assert!(d.text.contains(tw));
    }

    #[test]
    fn unknown_label_is_skipped() {
        let d = decode(b"<meta charset=klingon><p>hello</p>", Some("text/html; charset=\"x-nonsense\""), None);
        assert_eq!(d.rejected, vec!["http:x-nonsense".to_string(), "meta:klingon".to_string()]);
        assert_eq!(d.source, "detected");
    }
}
