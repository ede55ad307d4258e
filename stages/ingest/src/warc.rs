//! WARC files (Common Crawl's format: `.warc.gz` with one gzip member per record, or
//! plain `.warc`) into `page`: one row per `response` or `resource` record.
//!
//! A malformed record is reported with its byte offset (of the gzip member for
//! `.warc.gz`) and skipped; reading resumes at the next record, so one bad record
//! never costs the rest of the file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use m6_pipeline::{BoxError, TaskOutput};
use m6_schemas::Page;

use crate::{io_err, Batcher, Ctx};

/// The default cap on a record's block (ingest's `max_record_mb` sets it): it bounds
/// the memory one record takes.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// One parsed WARC record.
#[derive(Debug, Clone)]
pub struct WarcRecord {
    /// Where the record starts: file offset, or the gzip member's offset for `.warc.gz`.
    pub offset: u64,
    pub headers: Vec<(String, String)>,
    pub block: Vec<u8>,
}

impl WarcRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A position-tracking buffered reader, so offsets in errors are exact.
struct Tracked<R> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> BufRead for Tracked<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
        self.inner.consume(amt)
    }
}

/// Why a record could not be read.
#[derive(Debug)]
pub struct RecordError {
    pub offset: u64,
    pub kind: &'static str,
    pub message: String,
}

/// Reads one record from a plain WARC stream positioned at a record start (blank lines
/// before it are skipped). `Ok(None)` at the end of the stream.
fn read_record<R: BufRead>(r: &mut R, offset_of: &dyn Fn(&R) -> u64, max: u64) -> Result<Option<WarcRecord>, RecordError> {
    let mut line = Vec::new();
    let offset;
    loop {
        let at = offset_of(r);
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(|e| RecordError { offset: at, kind: "io", message: e.to_string() })?;
        if n == 0 {
            return Ok(None);
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        offset = at;
        break;
    }
    let bad = |kind: &'static str, message: String| RecordError { offset, kind, message };
    if !line.starts_with(b"WARC/") {
        return Err(bad("warc_header", format!("expected a `WARC/1.x` version line, found {:?}", String::from_utf8_lossy(&line[..line.len().min(40)]))));
    }
    let mut headers = vec![];
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(|e| bad("io", e.to_string()))?;
        if n == 0 {
            return Err(bad("truncated", "file ends inside the record headers".into()));
        }
        let l = line.trim_ascii_end();
        if l.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(l);
        let Some((k, v)) = text.split_once(':') else {
            return Err(bad("warc_header", format!("header line without a colon: {:?}", &text[..text.len().min(60)])));
        };
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len_text = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.clone())
        .ok_or_else(|| bad("warc_header", "no Content-Length".into()))?;
    let len: u64 = len_text.parse().map_err(|_| bad("warc_header", format!("Content-Length `{len_text}` is not a number")))?;
    if len > max {
        return Err(bad("too_large", format!("record block of {len} bytes exceeds the {max}-byte limit (max_record_mb)")));
    }
    let mut block = Vec::with_capacity(len as usize);
    r.take(len).read_to_end(&mut block).map_err(|e| bad("io", e.to_string()))?;
    if (block.len() as u64) < len {
        return Err(bad("truncated", format!("record block has {} of its {len} bytes", block.len())));
    }
    Ok(Some(WarcRecord { offset, headers, block }))
}

/// Reads every record of a WARC file, calling `f` with each record or error.
pub fn for_each_record(path: &std::path::Path, max: u64, mut f: impl FnMut(Result<WarcRecord, RecordError>) -> Result<(), BoxError>) -> Result<(), BoxError> {
    let file = File::open(path).map_err(io_err(path))?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut r = Tracked { inner: BufReader::with_capacity(1 << 20, file), pos: 0 };
    if !gz {
        loop {
            match read_record(&mut r, &|r: &Tracked<File>| r.pos, max) {
                Ok(Some(rec)) => f(Ok(rec))?,
                Ok(None) => return Ok(()),
                Err(e) => {
                    let at = e.offset;
                    f(Err(e))?;
                    resync_plain(&mut r, at).map_err(io_err(path))?;
                }
            }
        }
    }
    loop {
        if r.fill_buf().map_err(io_err(path))?.is_empty() {
            return Ok(());
        }
        let member_at = r.pos;
        // Decompress one member (= one record in Common Crawl's files), bounded.
        let mut member = Vec::new();
        let res = {
            let mut dec = flate2::bufread::GzDecoder::new(&mut r);
            (&mut dec).take(max + 64 * 1024).read_to_end(&mut member).and_then(|_| {
                // Past the bound: drain the member so reading continues after it.
                let mut extra = 0u64;
                let drained = io::copy(&mut dec, &mut io::sink())?;
                extra += drained;
                Ok(extra)
            })
        };
        match res {
            Ok(0) => {}
            Ok(_) => {
                f(Err(RecordError { offset: member_at, kind: "too_large", message: format!("gzip member decompresses past the {max}-byte limit (max_record_mb)") }))?;
                continue;
            }
            Err(e) => {
                f(Err(RecordError { offset: member_at, kind: "gzip", message: format!("corrupt gzip member: {e}") }))?;
                resync_gzip(&mut r, member_at).map_err(io_err(path))?;
                continue;
            }
        }
        let mut cur = io::Cursor::new(member);
        loop {
            match read_record(&mut cur, &|_| member_at, max) {
                Ok(Some(rec)) => f(Ok(rec))?,
                Ok(None) => break,
                Err(e) => {
                    f(Err(e))?;
                    break;
                }
            }
        }
    }
}

/// After a bad plain record, skips to the next line that starts a record.
fn resync_plain(r: &mut Tracked<File>, bad_at: u64) -> io::Result<()> {
    // Start one byte past the bad record's start so its own version line is not found again.
    r.inner.seek(SeekFrom::Start(bad_at + 1))?;
    r.pos = bad_at + 1;
    let mut line = Vec::new();
    // Skip the rest of the current line first.
    r.read_until(b'\n', &mut line)?;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if buf.len() >= 5 && buf.starts_with(b"WARC/") {
            return Ok(());
        }
        if buf.len() < 5 {
            // Too little left in the buffer to tell: read the line and decide.
            line.clear();
            r.read_until(b'\n', &mut line)?;
            continue;
        }
        line.clear();
        r.read_until(b'\n', &mut line)?;
    }
}

/// After a corrupt gzip member, finds the next gzip header (1f 8b 08) past it.
fn resync_gzip(r: &mut Tracked<File>, bad_at: u64) -> io::Result<()> {
    let start = bad_at + 1;
    r.inner.seek(SeekFrom::Start(start))?;
    r.pos = start;
    let mut prev: [u8; 2] = [0, 0];
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        for (i, &b) in buf.iter().enumerate() {
            if prev == [0x1f, 0x8b] && b == 0x08 {
                // The magic began two bytes back: rewind to it.
                let found = r.pos + i as u64 - 2;
                r.inner.seek(SeekFrom::Start(found))?;
                r.pos = found;
                return Ok(());
            }
            prev = [prev[1], b];
        }
        let n = buf.len();
        r.consume(n);
    }
}

/// An HTTP response split into status, headers and (de-chunked, decompressed) body.
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// `max`: the most bytes a decompressed body may take (`max_record_mb`), so a small
/// compressed body cannot expand past what the record cap allows.
fn parse_http(block: &[u8], max: u64) -> Result<HttpResponse, String> {
    let head_end = find(block, b"\r\n\r\n").map(|i| (i, 4)).or_else(|| find(block, b"\n\n").map(|i| (i, 2))).ok_or("HTTP headers never end")?;
    let head = String::from_utf8_lossy(&block[..head_end.0]);
    let mut lines = head.lines();
    let status_line = lines.next().ok_or("empty HTTP response")?;
    if !status_line.starts_with("HTTP/") {
        return Err(format!("not an HTTP status line: {:?}", &status_line[..status_line.len().min(40)]));
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let mut body = block[head_end.0 + head_end.1..].to_vec();
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_ascii_lowercase());
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        if let Some(d) = dechunk(&body) {
            body = d;
        }
    }
    if let Some(enc) = get("content-encoding") {
        body = decode_content(&enc, body, max)?;
    }
    Ok(HttpResponse { status, headers, body })
}

/// The body of a response whose `Content-Encoding` is `enc` (a list, applied in order),
/// decoded: gzip, deflate, br and zstd, as crawlers ask for them. A body that does not
/// decode is kept as it is only when it already reads as text (some WARC writers store
/// the decoded body under the original header); otherwise the record is an error: a
/// body that did not decode (br and zstd never did) was kept compressed as the page
/// body, without a word, for extract to read as HTML. A body that decodes to more than
/// `max` bytes is an error, read no further than one byte past it.
fn decode_content(enc: &str, mut body: Vec<u8>, max: u64) -> Result<Vec<u8>, String> {
    // One byte past the cap tells a body of exactly `max` bytes from a longer one.
    let cap = max.saturating_add(1);
    for coding in enc.split(',').map(str::trim).rev().filter(|c| !c.is_empty() && *c != "identity") {
        let mut out = vec![];
        let r = match coding {
            "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&body[..]).take(cap).read_to_end(&mut out),
            // HTTP's "deflate" is zlib-wrapped; some servers send raw deflate.
            "deflate" => flate2::read::ZlibDecoder::new(&body[..]).take(cap).read_to_end(&mut out).or_else(|_| {
                out.clear();
                flate2::read::DeflateDecoder::new(&body[..]).take(cap).read_to_end(&mut out)
            }),
            "br" => brotli_decompressor::Decompressor::new(&body[..], 1 << 16).take(cap).read_to_end(&mut out),
            "zstd" => zstd::stream::read::Decoder::new(&body[..]).and_then(|d| d.take(cap).read_to_end(&mut out)),
            other => Err(io::Error::other(format!("unknown content-encoding {other:?}"))),
        };
        match r {
            Ok(_) if out.len() as u64 > max => return Err(format!("body decompresses ({coding}) past {max} bytes (max_record_mb)")),
            Ok(_) => body = out,
            Err(_) if looks_decoded(&body) => return Ok(body),
            Err(e) => return Err(format!("body does not decode as its content-encoding {coding}: {e}")),
        }
    }
    Ok(body)
}

/// Whether a body that failed to decode is text already: valid UTF-8 in its first
/// 4 KB (up to a character cut at the end), or markup.
fn looks_decoded(body: &[u8]) -> bool {
    let head = &body[..body.len().min(4096)];
    let utf8 = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    utf8 || head.trim_ascii_start().first() == Some(&b'<')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![];
    loop {
        let nl = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..nl]).ok()?.split(';').next()?.trim().to_string();
        let size = usize::from_str_radix(&size_text, 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..)?;
    }
}

fn parse_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())
}

pub(crate) fn ingest(ctx: &Ctx, out: &mut TaskOutput) -> Result<(), BoxError> {
    let mut batch = Batcher::<Page>::new(ctx.cfg.batch_rows.min(512));
    let size = std::fs::metadata(ctx.path).map_err(io_err(ctx.path))?.len();
    out.count_in(0, size);
    for_each_record(ctx.path, ctx.cfg.max_record_bytes() as u64, |rec| {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => return ctx.error(out, format!("offset {}", e.offset), e.kind, e.message),
        };
        let kind = rec.header("WARC-Type").unwrap_or("").to_ascii_lowercase();
        if kind != "response" && kind != "resource" {
            out.counters.bump(&format!("warc.skipped.{}", if kind.is_empty() { "untyped" } else { &kind }), 1);
            return Ok(());
        }
        out.count_in(1, 0);
        let Some(url) = rec.header("WARC-Target-URI").map(|u| u.trim_matches(|c| c == '<' || c == '>').to_string()) else {
            return ctx.error(out, format!("offset {}", rec.offset), "warc_header", "record has no WARC-Target-URI".into());
        };
        let fetch_time = rec.header("WARC-Date").and_then(parse_date).unwrap_or(0);
        // A response record holds an HTTP message; a resource record holds the bare body.
        let (status, headers, content_type, body) = if kind == "response" {
            match parse_http(&rec.block, ctx.cfg.max_record_bytes() as u64) {
                Ok(http) => {
                    let content_type = http.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
                    (Some(http.status), http.headers, content_type, http.body)
                }
                Err(msg) => return ctx.error(out, format!("offset {}", rec.offset), "http", msg),
            }
        } else {
            (None, vec![], rec.header("Content-Type").map(str::to_string), rec.block)
        };
        let page = Page {
            id: Page::make_id(&url, Some(&body)),
            url: url.clone(),
            final_url: Some(url),
            status,
            headers,
            content_type,
            body: Some(body),
            fetch_time,
            source: ctx.source.clone(),
            depth: 0,
            error_kind: None,
            error: None,
            caption: None,
        };
        let n = page.body.as_ref().map_or(0, Vec::len);
        batch.push(page, n, out)
    })?;
    batch.flush(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn record(kind: &str, url: &str, block: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-03-01T12:00:00Z\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
            block.len()
        )
        .into_bytes();
        r.extend_from_slice(block);
        r.extend_from_slice(b"\r\n\r\n");
        r
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn read_all(path: &std::path::Path) -> (Vec<WarcRecord>, Vec<RecordError>) {
        let (mut ok, mut bad) = (vec![], vec![]);
        for_each_record(path, MAX_RECORD_BYTES, |r| {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => bad.push(e),
            }
            Ok(())
        })
        .unwrap();
        (ok, bad)
    }

    #[test]
    fn gzip_members_with_a_corrupt_one_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.warc.gz");
        let http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>\xe4\xbd\xa0\xe5\xa5\xbd</p>";
        let good1 = gz(&record("response", "http://a/1", http));
        let mut bad = gz(&record("response", "http://a/2", http));
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad[mid + 1] ^= 0xff;
        let good2 = gz(&record("response", "http://a/3", http));
        let mut all = good1.clone();
        all.extend_from_slice(&bad);
        all.extend_from_slice(&good2);
        std::fs::write(&p, &all).unwrap();
        let (ok, errs) = read_all(&p);
        assert_eq!(ok.iter().map(|r| r.header("WARC-Target-URI").unwrap()).collect::<Vec<_>>(), ["http://a/1", "http://a/3"]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].offset, good1.len() as u64);
    }

    #[test]
    fn plain_warc_with_a_bad_length_resyncs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.warc");
        let http = b"HTTP/1.1 404 Not Found\r\n\r\nnope";
        let mut all = record("response", "http://a/1", http);
        let bad_at = all.len();
        all.extend_from_slice(b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: twelve\r\n\r\nxxxxxxxxxxxx\r\n\r\n");
        all.extend_from_slice(&record("response", "http://a/3", http));
        std::fs::write(&p, &all).unwrap();
        let (ok, errs) = read_all(&p);
        assert_eq!(ok.len(), 2);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].offset, bad_at as u64);
        assert!(errs[0].message.contains("twelve"));
    }

    #[test]
    fn br_zstd_and_raw_deflate_bodies_are_decoded_and_undecodable_ones_are_errors() {
        let html = "<html><body><p>一个被压缩的网页。</p></body></html>".repeat(20);
        let response = |enc: &str, body: &[u8]| {
            let mut b = format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: {enc}\r\n\r\n").into_bytes();
            b.extend_from_slice(body);
            b
        };
        let mut br = vec![];
        brotli::BrotliCompress(&mut html.as_bytes(), &mut br, &Default::default()).unwrap();
        let zst = zstd::stream::encode_all(html.as_bytes(), 3).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(vec![], flate2::Compression::default());
        raw.write_all(html.as_bytes()).unwrap();
        let raw = raw.finish().unwrap();
        for (enc, body) in [("br", &br), ("zstd", &zst), ("deflate", &raw), ("gzip, br", &{
            let mut b = vec![];
            brotli::BrotliCompress(&mut &gz(html.as_bytes())[..], &mut b, &Default::default()).unwrap();
            b
        })] {
            assert_eq!(parse_http(&response(enc, body), MAX_RECORD_BYTES).unwrap().body, html.as_bytes(), "{enc}");
        }
        // Stored decoded under its original header (GBK markup included): kept as it is.
        let gbk = encoding_rs::GBK.encode(&html).0.into_owned();
        assert_eq!(parse_http(&response("gzip", &gbk), MAX_RECORD_BYTES).unwrap().body, gbk);
        // Compressed and cut, or an encoding nobody decodes: an error, not binary noise.
        let cut = gz(html.as_bytes());
        let e = parse_http(&response("gzip", &cut[..cut.len() / 2]), MAX_RECORD_BYTES).err().unwrap();
        assert!(e.contains("does not decode as its content-encoding gzip"), "{e}");
        assert!(parse_http(&response("compress", &zst), MAX_RECORD_BYTES).is_err());
        // The cap is the configured one (max_record_mb), not the default: a body that
        // decodes to exactly the cap is kept, one byte more is refused.
        let n = html.len() as u64;
        assert_eq!(parse_http(&response("zstd", &zst), n).unwrap().body, html.as_bytes());
        let e = parse_http(&response("zstd", &zst), n - 1).err().unwrap();
        assert!(e.contains(&format!("past {} bytes (max_record_mb)", n - 1)), "{e}");
    }

    #[test]
    fn http_chunked_and_gzip_bodies_are_decoded() {
        let body = b"\xe5\xba\x8a\xe5\x89\x8d\xe6\x98\x8e\xe6\x9c\x88\xe5\x85\x89";
        let gzbody = gz(body);
        let mut chunked = format!("{:x}\r\n", gzbody.len()).into_bytes();
        chunked.extend_from_slice(&gzbody);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut block = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
        block.extend_from_slice(&chunked);
        let r = parse_http(&block, MAX_RECORD_BYTES).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body);
    }
}
