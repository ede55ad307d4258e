//! Records that are not UTF-8. Chinese text files are still often GBK (GB18030) or
//! Big5, as a Chinese Windows editor saves them, and Notepad's "Unicode" is UTF-16 with
//! a byte-order mark: all of them were error rows ("not UTF-8").
//!
//! `encoding = "auto"` (the default) reads a whole file (a `.txt` document, a caption
//! sidecar) by its byte-order mark, as UTF-8 when it is, and otherwise as the legacy
//! encoding a detector (chardetng, Firefox's) picks, when the file holds enough
//! non-ASCII text for the guess to be sound, the guess is a CJK multi-byte encoding,
//! and the file decodes without a malformed byte under it. A single-byte guess
//! (windows-1252, ...) is refused: such encodings read any bytes, so a GBK file with
//! one damaged byte, which the detector then no longer calls GBK, would be read as
//! Latin letters. Lines of a JSONL or captions file are not guessed one by one: they
//! are UTF-8, or the encoding set by name (`encoding = "gbk"`), which also reads short
//! files.

use encoding_rs::{Encoding, UTF_8};

/// How records that are not UTF-8 are read: `auto`, or an encoding by its WHATWG
/// label (`gbk`, `gb18030`, `big5`, `shift_jis`, `utf-8`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    Auto,
    Named(&'static Encoding),
}

/// Non-ASCII bytes from which `auto` trusts the detector: a short caption in GBK is
/// also valid Big5 and EUC-KR (an 8-byte "一堆硬币" reads as three other strings), while
/// a paragraph of Chinese is not mistaken.
pub(crate) const AUTO_MIN_NON_ASCII: usize = 64;

/// The guesses `auto` takes.
const AUTO_ENCODINGS: [&Encoding; 6] = [encoding_rs::GBK, encoding_rs::GB18030, encoding_rs::BIG5, encoding_rs::SHIFT_JIS, encoding_rs::EUC_JP, encoding_rs::EUC_KR];

impl Charset {
    pub fn parse(label: &str) -> Result<Charset, String> {
        if label.eq_ignore_ascii_case("auto") {
            return Ok(Charset::Auto);
        }
        match Encoding::for_label(label.trim().as_bytes()) {
            // Lines are split on the byte 0x0A, which UTF-16 uses inside characters.
            Some(e) if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE => Err(format!("encoding = {label:?}: UTF-16 files are read by their byte-order mark under \"auto\"")),
            Some(e) if e == encoding_rs::REPLACEMENT => Err(format!("encoding = {label:?} is not an encoding text can be read in")),
            Some(e) => Ok(Charset::Named(e)),
            None => Err(format!("encoding = {label:?}: not an encoding label (e.g. \"auto\", \"utf-8\", \"gbk\", \"big5\")")),
        }
    }
}

/// Decodes a whole file; returns the text and the encoding it was read in, or why it
/// could not be read.
pub(crate) fn decode_file(bytes: &[u8], cs: Charset) -> Result<(String, &'static Encoding), String> {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        return enc.decode_without_bom_handling_and_without_replacement(&bytes[bom..]).map(|t| (t.into_owned(), enc)).ok_or_else(|| format!("not valid {} after its byte-order mark", enc.name()));
    }
    let utf8_err = match std::str::from_utf8(bytes) {
        Ok(t) => return Ok((t.to_string(), UTF_8)),
        Err(e) => e,
    };
    let enc = match cs {
        Charset::Named(e) => e,
        Charset::Auto => {
            let non_ascii = bytes.iter().filter(|b| !b.is_ascii()).count();
            if non_ascii < AUTO_MIN_NON_ASCII {
                return Err(format!("not UTF-8 ({utf8_err}), and too little text ({non_ascii} non-ASCII bytes) to tell its encoding: set `encoding` (e.g. \"gbk\")"));
            }
            let mut det = chardetng::EncodingDetector::new();
            det.feed(bytes, true);
            let guess = det.guess(None, false);
            if !AUTO_ENCODINGS.contains(&guess) {
                return Err(format!("not UTF-8 ({utf8_err}), and it does not read as GBK, Big5 or another CJK encoding (it looks most like {}): set `encoding`", guess.name()));
            }
            guess
        }
    };
    if enc == UTF_8 {
        return Err(format!("not UTF-8: {utf8_err}"));
    }
    enc.decode_without_bom_handling_and_without_replacement(bytes).map(|t| (t.into_owned(), enc)).ok_or_else(|| match cs {
        Charset::Auto => format!("not UTF-8 ({utf8_err}), nor valid {}, the encoding it looks like: set `encoding`", enc.name()),
        Charset::Named(_) => format!("not UTF-8 ({utf8_err}), nor valid {} (`encoding`)", enc.name()),
    })
}

/// Decodes one line of a JSONL or captions file: UTF-8, else the named encoding.
pub(crate) fn decode_line(bytes: &[u8], cs: Charset) -> Result<std::borrow::Cow<'_, str>, String> {
    match std::str::from_utf8(bytes) {
        Ok(t) => Ok(std::borrow::Cow::Borrowed(t)),
        Err(e) => match cs {
            Charset::Named(enc) if enc != UTF_8 => enc.decode_without_bom_handling_and_without_replacement(bytes).ok_or_else(|| format!("invalid UTF-8 ({e}), nor valid {} (`encoding`)", enc.name())),
            _ => Err(format!("invalid UTF-8: {e} (for a GBK or Big5 file, set `encoding`)")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(enc: &'static Encoding, s: &str) -> Vec<u8> {
        let (b, _, bad) = enc.encode(s);
        assert!(!bad);
        b.into_owned()
    }

    const PARAGRAPH: &str = "第一章 总则。本法所称的数据，是指任何以电子或者其他方式对信息的记录。数据处理，包括数据的收集、存储、使用、加工、传输、提供、公开等。";

    #[test]
    fn auto_reads_bom_utf8_and_long_legacy_text_and_refuses_short_guesses() {
        let gbk = encode(encoding_rs::GBK, PARAGRAPH);
        let (t, e) = decode_file(&gbk, Charset::Auto).unwrap();
        assert_eq!((t.as_str(), e), (PARAGRAPH, encoding_rs::GBK));
        let trad = "資料處理，包括資料的收集、儲存、使用、加工、傳輸、提供、公開等。本法所稱的資料，是指任何以電子或者其他方式對資訊的記錄。";
        let big5 = encode(encoding_rs::BIG5, trad);
        assert_eq!(decode_file(&big5, Charset::Auto).unwrap(), (trad.to_string(), encoding_rs::BIG5));
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(PARAGRAPH.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(decode_file(&utf16, Charset::Auto).unwrap().0, PARAGRAPH);
        assert_eq!(decode_file(PARAGRAPH.as_bytes(), Charset::Auto).unwrap().1, UTF_8);
        // "一堆硬币" in GBK: also valid Big5 and EUC-KR, so not guessed.
        let short = [0xD2, 0xBB, 0xB6, 0xD1, 0xD3, 0xB2, 0xB1, 0xD2];
        assert!(decode_file(&short, Charset::Auto).unwrap_err().contains("set `encoding`"));
        assert_eq!(decode_file(&short, Charset::parse("gbk").unwrap()).unwrap().0, "一堆硬币");
        assert!(decode_file(&short, Charset::parse("utf-8").unwrap()).unwrap_err().starts_with("not UTF-8"));
        // A damaged byte: an error, never replacement characters or a single-byte
        // reading of the whole file.
        let mut bad = gbk.clone();
        bad.extend_from_slice(&[0x81, 0x0A]);
        assert!(decode_file(&bad, Charset::Auto).is_err());
        assert!(decode_file(&bad, Charset::parse("gbk").unwrap()).is_err());
    }

    #[test]
    fn lines_are_utf8_or_the_named_encoding() {
        let gbk = encode(encoding_rs::GBK, "{\"text\": \"月亮\"}");
        assert!(decode_line(&gbk, Charset::Auto).unwrap_err().contains("set `encoding`"));
        assert_eq!(decode_line(&gbk, Charset::parse("GBK").unwrap()).unwrap(), "{\"text\": \"月亮\"}");
        assert_eq!(decode_line("月亮".as_bytes(), Charset::parse("big5").unwrap()).unwrap(), "月亮");
        assert!(Charset::parse("utf-16le").is_err() && Charset::parse("klingon").is_err() && Charset::parse("replacement").is_err());
    }
}
