//! End-to-end tests of `m6corpus crawl` against HTTP servers started here on
//! 127.0.0.1: politeness (robots.txt, Retry-After, opt-outs), safety (private
//! addresses, timeouts, caps, redirect loops), resume after SIGKILL, and a crawl of
//! the real Debian Handbook pages with their screenshots.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use m6_pipeline::{BoxError, Dataset, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::{Image, Kind, Page, Pair, Record};
use m6_tests::{bin, data_dir, m6, m6_ok, venv_python};
use serde_json::Value;

/// A stage with no input that writes each group of page rows as its own task (own
/// shard): rebuilds a crawl's page shards, task for task, through the real writer.
struct PageShards(Mutex<Vec<Vec<Page>>>);

impl Stage for PageShards {
    fn name(&self) -> &'static str {
        "fixture"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &PageShards {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.0.lock().unwrap().len()).map(|i| Task { id: m6_schemas::content_id(&[b"fixture", &i.to_le_bytes()]), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let n = self.0.lock().unwrap().len();
        let i = (0..n).find(|i| m6_schemas::content_id(&[b"fixture", &i.to_le_bytes()]) == task.id).ok_or("unknown task")?;
        let rows = std::mem::take(&mut self.0.lock().unwrap()[i]);
        out.write_rows(&rows)?;
        Ok(())
    }
}

/// What a test server answers.
enum Resp {
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Headers, then one byte of `body` per second.
    Drip(Vec<u8>),
    /// Chunked body without Content-Length (the cap must bite while streaming).
    Chunked(Vec<u8>),
    /// Wait until `release` is set, then close without answering.
    Stall(Arc<AtomicBool>),
}

fn ok(ct: &str, body: impl Into<Vec<u8>>) -> Resp {
    Resp::Full { status: 200, headers: vec![("Content-Type".into(), ct.into())], body: body.into() }
}

fn status(code: u16) -> Resp {
    Resp::Full { status: code, headers: vec![("Content-Type".into(), "text/html".into())], body: format!("<html><body>{code}</body></html>").into_bytes() }
}

type Handler = dyn Fn(&str, u32) -> Resp + Send + Sync;

/// A threaded HTTP/1.1 server counting, per path, requests received (with their
/// times) and responses written completely.
struct Server {
    ip: String,
    port: u16,
    received: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    completed: Arc<Mutex<HashMap<String, u32>>>,
    /// (path, User-Agent) of every request: which crawler process asked.
    agents: Arc<Mutex<Vec<(String, String)>>>,
}

impl Server {
    fn start(handler: impl Fn(&str, u32) -> Resp + Send + Sync + 'static) -> Server {
        Server::start_on("127.0.0.1", handler)
    }

    /// A server on another loopback address (Linux answers on all of 127.0.0.0/8):
    /// a distinct host, with its own registrable domain, for the crawler.
    fn start_on(ip: &str, handler: impl Fn(&str, u32) -> Resp + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Default::default();
        let completed: Arc<Mutex<HashMap<String, u32>>> = Default::default();
        let agents: Arc<Mutex<Vec<(String, String)>>> = Default::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, c, a) = (received.clone(), completed.clone(), agents.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (r, c, a, h) = (r.clone(), c.clone(), a.clone(), handler.clone());
                std::thread::spawn(move || serve_conn(conn, &r, &c, &a, &*h));
            }
        });
        Server { ip: ip.to_string(), port, received, completed, agents }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.received.lock().unwrap().get(path).map_or(0, Vec::len)
    }

    fn done(&self, path: &str) -> u32 {
        self.completed.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn serve_conn(conn: TcpStream, received: &Mutex<HashMap<String, Vec<Instant>>>, completed: &Mutex<HashMap<String, u32>>, agents: &Mutex<Vec<(String, String)>>, h: &Handler) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut agent = String::new();
        loop {
            let mut hl = String::new();
            if reader.read_line(&mut hl).unwrap_or(0) == 0 || hl == "\r\n" || hl == "\n" {
                break;
            }
            if let Some((k, v)) = hl.split_once(':') {
                if k.eq_ignore_ascii_case("user-agent") {
                    agent = v.trim().to_string();
                }
            }
        }
        agents.lock().unwrap().push((path.clone(), agent));
        let n = {
            let mut r = received.lock().unwrap();
            let v = r.entry(path.clone()).or_default();
            v.push(Instant::now());
            v.len() as u32
        };
        let written = match h(&path, n) {
            Resp::Full { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&body)).and_then(|_| conn.flush())
            }
            Resp::Chunked(body) => {
                let mut r = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
                for c in body.chunks(64 << 10) {
                    r = r.and_then(|_| conn.write_all(format!("{:x}\r\n", c.len()).as_bytes())).and_then(|_| conn.write_all(c)).and_then(|_| conn.write_all(b"\r\n"));
                    if r.is_err() {
                        break;
                    }
                }
                r.and_then(|_| conn.write_all(b"0\r\n\r\n"))
            }
            Resp::Drip(body) => {
                let mut r = conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
                for b in body {
                    r = r.and_then(|_| conn.write_all(&[b])).and_then(|_| conn.flush());
                    if r.is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                r
            }
            Resp::Stall(release) => {
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
        };
        if written.is_ok() {
            *completed.lock().unwrap().entry(path).or_default() += 1;
        }
        return; // Connection: close
    }
}

/// Rows of every shard of a dataset folder, in file then row order, via pyarrow;
/// bodies come back as `body_len`, `body_text` (HTML) and `png_wh` (PNG size).
fn rows(dir: &Path) -> Vec<Value> {
    let script = r#"
import glob, json, os, struct, sys
import pyarrow.parquet as pq
for f in sorted(glob.glob(os.path.join(sys.argv[1], 'part-*.parquet'))):
    for r in pq.read_table(f).to_pylist():
        body = r.pop('body', None)
        if body is None:
            body = r.pop('bytes', None)
        r['file'] = os.path.basename(f)
        r['body_len'] = None if body is None else len(body)
        ct = (r.get('content_type') or '')
        r['body_text'] = body.decode('utf-8', 'replace') if body is not None and 'html' in ct else None
        r['png_wh'] = list(struct.unpack('>II', body[16:24])) if body is not None and body[:8] == b'\x89PNG\r\n\x1a\n' else None
        r['headers'] = dict(r['headers']) if r.get('headers') is not None else None
        print(json.dumps(r, default=str, ensure_ascii=False))
"#;
    let out = Command::new(venv_python()).arg("-c").arg(script).arg(dir).output().unwrap();
    assert!(out.status.success(), "pyarrow read of {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn by_url<'a>(rows: &'a [Value], url: &str) -> &'a Value {
    let found: Vec<&Value> = rows.iter().filter(|r| r["url"] == url).collect();
    assert_eq!(found.len(), 1, "expected exactly one row for {url}, got {}: {rows:#?}", found.len());
    found[0]
}

fn seeds(dir: &Path, urls: &[String]) -> PathBuf {
    let p = dir.join("seeds.txt");
    std::fs::write(&p, urls.join("\n") + "\n").unwrap();
    p
}

/// Runs a crawl that must succeed, with test-friendly politeness settings.
fn crawl(seed: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["crawl", "--input", seed.to_str().unwrap(), "--output", out.to_str().unwrap(), "--quiet", "--set", "per_host_delay_ms=0", "--set", "backoff_base_ms=100"];
    args.extend_from_slice(extra);
    m6_ok(&args)
}

fn real_png() -> Vec<u8> {
    std::fs::read(data_dir().join("photos/coffee.png")).unwrap()
}

#[test]
fn robots_disallow_is_obeyed_and_fetched_once_per_host() {
    let srv = Server::start(|path, _| match path {
        "/robots.txt" => ok("text/plain", "User-agent: *\nDisallow: /private/\n\nUser-agent: m6corpus\nDisallow: /private/\nDisallow: /only-m6-blocked\n"),
        _ => ok("text/html; charset=utf-8", format!("<html><body><p>页面 {path}</p></body></html>")),
    });
    let t = tempfile::tempdir().unwrap();
    let urls: Vec<String> = ["/a.html", "/b.html", "/private/secret.html", "/only-m6-blocked", "/c.html"].iter().map(|p| srv.url(p)).collect();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private"]);
    let r = rows(&out);
    assert_eq!(r.len(), 5);
    for p in ["/a.html", "/b.html", "/c.html"] {
        let row = by_url(&r, &srv.url(p));
        assert_eq!(row["status"], 200);
        assert!(row["error_kind"].is_null());
        assert!(row["body_text"].as_str().unwrap().contains(&format!("页面 {p}")));
    }
    for p in ["/private/secret.html", "/only-m6-blocked"] {
        let row = by_url(&r, &srv.url(p));
        assert_eq!(row["error_kind"], "robots", "{row}");
        assert!(row["error"].as_str().unwrap().contains("robots.txt"), "{row}");
        assert_eq!(srv.hits(p), 0, "{p} must never be requested");
    }
    assert_eq!(srv.hits("/robots.txt"), 1, "robots.txt is fetched once per host");
}

#[test]
fn robots_5xx_disallows_everything_and_4xx_allows_everything() {
    let down = Server::start(|path, _| if path == "/robots.txt" { status(503) } else { ok("text/html", "<p>x</p>") });
    let missing = Server::start(|path, _| if path == "/robots.txt" { status(404) } else { ok("text/html", "<p>y</p>") });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &[down.url("/x.html"), missing.url("/y.html")]), &out, &["--allow-private", "--set", "max_retries=0"]);
    let r = rows(&out);
    assert_eq!(by_url(&r, &down.url("/x.html"))["error_kind"], "robots");
    assert_eq!(down.hits("/x.html"), 0);
    assert_eq!(by_url(&r, &missing.url("/y.html"))["status"], 200);
}

#[test]
fn retry_after_429_is_honoured() {
    let srv = Server::start(|path, n| match (path, n) {
        ("/limited.html", 1) => Resp::Full { status: 429, headers: vec![("Retry-After".into(), "2".into())], body: b"slow down".to_vec() },
        ("/flaky.html", 1) | ("/flaky.html", 2) => status(503),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &[srv.url("/limited.html"), srv.url("/flaky.html")]), &out, &["--allow-private"]);
    let r = rows(&out);
    let row = by_url(&r, &srv.url("/limited.html"));
    assert_eq!(row["status"], 200, "{row}");
    assert!(row["error_kind"].is_null());
    let times = srv.received.lock().unwrap()["/limited.html"].clone();
    assert_eq!(times.len(), 2, "one 429, then one retry");
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_secs(2), "the retry came {gap:?} after the 429, before Retry-After: 2");
    // 5xx without Retry-After: retried with backoff until it succeeds.
    assert_eq!(srv.hits("/flaky.html"), 3);
    assert_eq!(by_url(&r, &srv.url("/flaky.html"))["status"], 200);
}

#[test]
fn redirect_loop_and_chains_end_in_recorded_errors() {
    let srv = Server::start(|path, _| {
        let to = |loc: &str| Resp::Full { status: 302, headers: vec![("Location".into(), loc.into())], body: vec![] };
        match path {
            "/loop-a" => to("/loop-b"),
            "/loop-b" => to("/loop-a"),
            "/moved" => to("/target.html#frag"),
            p if p.starts_with("/chain/") => {
                let n: u32 = p[7..].parse().unwrap();
                to(&format!("/chain/{}", n + 1))
            }
            _ => ok("text/html", "<p>target</p>"),
        }
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &[srv.url("/loop-a"), srv.url("/moved"), srv.url("/chain/0")]), &out, &["--allow-private", "--set", "max_redirects=3"]);
    let r = rows(&out);
    let l = by_url(&r, &srv.url("/loop-a"));
    assert_eq!(l["error_kind"], "redirect_loop", "{l}");
    assert!(l["error"].as_str().unwrap().contains("/loop-b"));
    assert_eq!(srv.hits("/loop-a"), 1);
    let m = by_url(&r, &srv.url("/moved"));
    assert_eq!(m["status"], 200);
    assert_eq!(m["final_url"], srv.url("/target.html"));
    assert_eq!(by_url(&r, &srv.url("/chain/0"))["error_kind"], "too_many_redirects");
    assert_eq!(srv.hits("/chain/4"), 0, "at most 3 redirects are followed");
}

#[test]
fn a_server_dripping_one_byte_a_second_hits_the_timeout() {
    let srv = Server::start(|path, _| match path {
        "/drip.html" => Resp::Drip(vec![b'x'; 60]),
        _ => ok("text/html", "<p>fine</p>"),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(
        &seeds(t.path(), &[srv.url("/drip.html"), srv.url("/fine.html")]),
        &out,
        &["--allow-private", "--set", "total_timeout_ms=2500", "--set", "read_timeout_ms=2000"],
    );
    let r = rows(&out);
    let d = by_url(&r, &srv.url("/drip.html"));
    assert_eq!(d["error_kind"], "timeout", "{d}");
    assert!(d["error"].as_str().unwrap().contains("drip.html"));
    assert!(d["body_len"].is_null());
    assert_eq!(srv.done("/drip.html"), 0, "the drip was abandoned, not read to the end");
    assert_eq!(by_url(&r, &srv.url("/fine.html"))["status"], 200);
}

#[test]
fn oversized_bodies_are_cut_at_the_cap() {
    // Larger than loopback socket buffers, so an aborted stream is visible server-side.
    let big = vec![b'a'; 32 << 20];
    let (b1, b2) = (big.clone(), big);
    let srv = Server::start(move |path, _| match path {
        "/declared.html" => ok("text/html", b1.clone()),
        "/streamed.html" => Resp::Chunked(b2.clone()),
        _ => ok("text/html", vec![b'b'; 999_000]),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(
        &seeds(t.path(), &[srv.url("/declared.html"), srv.url("/streamed.html"), srv.url("/small.html")]),
        &out,
        &["--allow-private", "--set", "max_body_bytes=1000000"],
    );
    let r = rows(&out);
    for p in ["/declared.html", "/streamed.html"] {
        let row = by_url(&r, &srv.url(p));
        assert_eq!(row["error_kind"], "too_large", "{row}");
        assert!(row["body_len"].is_null());
        assert!(row["error"].as_str().unwrap().contains("max_body_bytes=1000000"));
    }
    assert!(by_url(&r, &srv.url("/streamed.html"))["error"].as_str().unwrap().contains("aborted after"));
    assert_eq!(srv.done("/streamed.html"), 0, "the stream was aborted, not drained");
    assert_eq!(by_url(&r, &srv.url("/small.html"))["body_len"], 999_000);
}

#[test]
fn opt_outs_compression_and_sniffing() {
    let page = "<html><head><title>压缩</title></head><body><p>这是一个经过 gzip 压缩的页面。</p></body></html>".repeat(20);
    let gz = {
        let mut c = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
        c.wait_with_output().unwrap().stdout
    };
    let png = real_png();
    let srv = Server::start(move |path, _| match path {
        "/noai.html" => Resp::Full { status: 200, headers: vec![("Content-Type".into(), "text/html".into()), ("X-Robots-Tag".into(), "noai".into())], body: b"<p>secret</p>".to_vec() },
        "/other-bot.html" => Resp::Full { status: 200, headers: vec![("Content-Type".into(), "text/html".into()), ("X-Robots-Tag".into(), "googlebot: noindex".into())], body: b"<p>ok</p>".to_vec() },
        "/meta.html" => ok("text/html", "<html><head><meta name=\"robots\" content=\"noindex, nofollow\"></head><body>hidden</body></html>"),
        "/gz.html" => Resp::Full { status: 200, headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into()), ("Content-Encoding".into(), "gzip".into())], body: gz.clone() },
        "/no-type" => Resp::Full { status: 200, headers: vec![], body: b"<!DOCTYPE html><html><body>untyped</body></html>".to_vec() },
        "/lying.png" => ok("text/html", png.clone()),
        _ => status(404),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    let urls: Vec<String> = ["/noai.html", "/other-bot.html", "/meta.html", "/gz.html", "/no-type", "/lying.png"].iter().map(|p| srv.url(p)).collect();
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private"]);
    let r = rows(&out);
    for p in ["/noai.html", "/meta.html"] {
        let row = by_url(&r, &srv.url(p));
        assert_eq!(row["error_kind"], "opt_out", "{row}");
        assert!(row["body_len"].is_null(), "an opted-out body is not kept");
    }
    assert!(by_url(&r, &srv.url("/other-bot.html"))["error_kind"].is_null(), "another crawler's X-Robots-Tag does not apply");
    let gzrow = by_url(&r, &srv.url("/gz.html"));
    assert_eq!(gzrow["body_text"].as_str().unwrap(), page, "gzip is decoded");
    assert_eq!(by_url(&r, &srv.url("/no-type"))["content_type"], "text/html");
    let lying = by_url(&r, &srv.url("/lying.png"));
    assert_eq!(lying["content_type"], "image/png");
    let imgs = rows(&out.join("images"));
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0]["url"], srv.url("/lying.png"));
}

#[test]
fn image_seeds_with_captions_and_image_404s_are_recorded() {
    let png = real_png();
    let jpg = std::fs::read(data_dir().join("photos/rocket.jpg")).unwrap();
    let srv = Server::start(move |path, _| match path {
        "/coffee.png" => ok("image/png", png.clone()),
        "/rocket.jpg" => ok("image/jpeg", jpg.clone()),
        "/gallery.html" => ok("text/html", "<html><body><img src=\"coffee.png\" alt=\"咖啡\"><p>图库</p><img src=\"/missing.png\"><img src=\"/not-an-image.png\"></body></html>"),
        "/not-an-image.png" => ok("text/html", "<html>soft 404</html>"),
        _ => status(404),
    });
    let t = tempfile::tempdir().unwrap();
    // The img2dataset shape: CSV with url and caption; and the same as Parquet.
    let csv = t.path().join("seeds.csv");
    std::fs::write(&csv, format!("url,caption\n{},\"一杯咖啡, 放在桌上\"\n{},火箭发射\n{},\n{},丢失的图片\nnot a url,坏的\n", srv.url("/coffee.png"), srv.url("/rocket.jpg"), srv.url("/gallery.html"), srv.url("/gone.png"))).unwrap();
    let out = t.path().join("pages");
    crawl(&csv, &out, &["--allow-private", "--resize-max-side", "256"]);
    let r = rows(&out);
    assert_eq!(by_url(&r, &srv.url("/coffee.png"))["caption"], "一杯咖啡, 放在桌上");
    assert_eq!(by_url(&r, &srv.url("/rocket.jpg"))["caption"], "火箭发射");
    let gone = by_url(&r, &srv.url("/gone.png"));
    assert_eq!((gone["status"].as_u64(), gone["error_kind"].as_str()), (Some(404), Some("http_status")));
    assert_eq!(gone["caption"], "丢失的图片");
    let bad = by_url(&r, "not a url");
    assert_eq!(bad["error_kind"], "invalid_url");
    assert!(bad["error"].as_str().unwrap().contains("line 6"), "{bad}");
    // The gallery's own images follow it directly; coffee.png was already a seed.
    let pos = r.iter().position(|x| x["url"] == srv.url("/gallery.html")).unwrap();
    assert_eq!(r[pos + 1]["url"], srv.url("/missing.png"));
    assert_eq!((r[pos + 1]["status"].as_u64(), r[pos + 1]["error_kind"].as_str()), (Some(404), Some("http_status")));
    assert_eq!(r[pos + 2]["url"], srv.url("/not-an-image.png"));
    assert_eq!(r[pos + 2]["error_kind"], "not_image");
    assert_eq!(srv.hits("/coffee.png"), 1, "an image is fetched once even when a page embeds a seed image");
    // Images fitted into 256 pixels with the aspect ratio kept (coffee.png is
    // 600x400, rocket.jpg 640x427: both come out 256 wide, about 171 high).
    let imgs = rows(&out.join("images"));
    assert_eq!(imgs.len(), 2);
    let fits = |i: &Value, w0: u64, h0: u64| {
        let (w, h) = (i["width"].as_u64().unwrap(), i["height"].as_u64().unwrap());
        assert_eq!(w.max(h), 256, "{i}");
        assert!((h as f64 - (w * h0) as f64 / w0 as f64).abs() <= 1.0, "{w}x{h} does not keep {w0}x{h0}");
    };
    let coffee = imgs.iter().find(|i| i["url"] == srv.url("/coffee.png")).unwrap();
    let orig = real_png();
    let (w0, h0) = (u32::from_be_bytes(orig[16..20].try_into().unwrap()) as u64, u32::from_be_bytes(orig[20..24].try_into().unwrap()) as u64);
    fits(coffee, w0, h0);
    assert_eq!(coffee["format"], "png");
    assert_eq!(coffee["png_wh"], serde_json::json!([coffee["width"], coffee["height"]]), "the stored bytes are the resized image");
    let rocket = imgs.iter().find(|i| i["url"] == srv.url("/rocket.jpg")).unwrap();
    assert_eq!(rocket["format"], "jpeg");
    fits(rocket, 640, 427);

    // Parquet seeds (url, caption) give the same rows for the same URLs.
    let pq = t.path().join("seeds.parquet");
    let py = format!(
        "import pyarrow as pa, pyarrow.parquet as pq; pq.write_table(pa.table({{'url': ['{}', '{}'], 'caption': ['火箭', None]}}), '{}')",
        srv.url("/rocket.jpg"),
        srv.url("/gone.png"),
        pq.display()
    );
    assert!(Command::new(venv_python()).arg("-c").arg(py).status().unwrap().success());
    let out2 = t.path().join("pages2");
    crawl(&pq, &out2, &["--allow-private"]);
    let r2 = rows(&out2);
    assert_eq!(by_url(&r2, &srv.url("/rocket.jpg"))["caption"], "火箭");
    let orig_rocket = &rows(&out2.join("images"))[0];
    assert_eq!((orig_rocket["width"].as_u64(), orig_rocket["height"].as_u64()), (Some(640), Some(427)), "without --resize-max-side the original is kept");
}

#[test]
fn loopback_is_refused_without_allow_private() {
    let srv = Server::start(|_, _| ok("text/html", "<p>internal</p>"));
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    let by_name = format!("http://localhost:{}/admin", srv.port);
    crawl(&seeds(t.path(), &[srv.url("/admin"), by_name.clone(), format!("http://[::1]:{}/x", srv.port)]), &out, &[]);
    let r = rows(&out);
    assert_eq!(r.len(), 3);
    for row in &r {
        assert_eq!(row["error_kind"], "private_address", "{row}");
        let msg = row["error"].as_str().unwrap();
        assert!(msg.contains("--allow-private") && msg.contains("refused"), "{msg}");
    }
    assert!(by_url(&r, &by_name)["error"].as_str().unwrap().contains("localhost"), "the name, resolved to loopback, is refused");
    assert_eq!(srv.received.lock().unwrap().len(), 0, "nothing reached the internal server, not even robots.txt");
}

/// Runs the crawler with `args` until it requests `stall` (which the server holds
/// open), then SIGKILLs it and lets the server answer again. With one request at a
/// time, everything before the stalled page has been answered; the crawler gets a
/// moment to journal those answers first.
fn kill_at_stall(args: &[String], srv: &Server, stall: &str, release: &AtomicBool) {
    let mut child = Command::new(bin()).args(args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while srv.hits(stall) == 0 {
        if let Ok(Some(st)) = child.try_wait() {
            let mut e = String::new();
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            panic!("crawl ended ({st}) before reaching {stall}: {e}");
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "the crawl never reached {stall}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    release.store(true, Ordering::SeqCst);
}

#[test]
fn a_crawl_killed_mid_way_resumes_and_fetches_every_page_once() {
    // 10 seed pages, each linking to two more pages and embedding one image: 40 URLs.
    let release = Arc::new(AtomicBool::new(false));
    let stall_path = "/q/5-a.html";
    let rel = release.clone();
    let png = real_png();
    let srv = Server::start(move |path, n| {
        if path == stall_path && n == 1 {
            return Resp::Stall(rel.clone());
        }
        if path.starts_with("/img/") {
            return ok("image/png", png.clone());
        }
        if let Some(i) = path.strip_prefix("/p/").and_then(|s| s.strip_suffix(".html")) {
            return ok("text/html", format!("<html><body><p>第{i}页</p><a href=\"/q/{i}-a.html\">a</a> <a href=\"../q/{i}-b.html#x\">b</a><img src=\"/img/{i}.png\"></body></html>"));
        }
        ok("text/html", format!("<html><body><p>{path}</p><a href=\"/p/0.html\">home</a></body></html>"))
    });
    let t = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..10).map(|i| srv.url(&format!("/p/{i}.html"))).collect();
    let seed = seeds(t.path(), &urls);
    let out = t.path().join("pages");
    let args = |o: &Path| -> Vec<String> {
        ["crawl", "--input", seed.to_str().unwrap(), "--output", o.to_str().unwrap(), "--quiet", "--allow-private", "--max-depth", "1", "--set", "per_host_delay_ms=0", "--set", "round_size=3", "--set", "per_host_concurrency=1", "--set", "concurrency=1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    kill_at_stall(&args(&out), &srv, stall_path, &release);
    let before: usize = srv.completed.lock().unwrap().iter().filter(|(p, _)| p.as_str() != "/robots.txt").map(|(_, n)| *n as usize).sum();
    assert!(before > 10, "the kill should land mid-way (after {before} pages)");
    assert!(std::fs::read_dir(out.join("_commits")).unwrap().count() > 0, "some rounds were committed before the kill");

    let a = args(&out);
    m6_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut paths: Vec<String> = (0..10).flat_map(|i| [format!("/p/{i}.html"), format!("/q/{i}-a.html"), format!("/q/{i}-b.html"), format!("/img/{i}.png")]).collect();
    paths.sort();
    for p in &paths {
        assert_eq!(srv.done(p), 1, "{p} answered {} times overall", srv.done(p));
        let expect = if p == stall_path { 2 } else { 1 };
        assert_eq!(srv.hits(p), expect, "{p} requested {} times", srv.hits(p));
    }
    let r = rows(&out);
    let mut got: Vec<String> = r.iter().map(|x| x["url"].as_str().unwrap().trim_start_matches(&srv.url("")).to_string()).collect();
    got.sort();
    assert_eq!(got, paths, "one row per URL, none lost, none twice");
    assert!(r.iter().all(|x| x["error_kind"].is_null()), "{r:#?}");
    assert_eq!(rows(&out.join("images")).len(), 10);
    // Every image row directly follows its page in the same shard.
    for i in 0..10 {
        let pos = r.iter().position(|x| x["url"] == srv.url(&format!("/p/{i}.html"))).unwrap();
        assert_eq!(r[pos + 1]["url"], srv.url(&format!("/img/{i}.png")));
        assert_eq!(r[pos + 1]["file"], r[pos]["file"]);
    }
    let v = m6(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // The resumed run took the robots.txt rules the killed one had fetched.
    assert_eq!(srv.hits("/robots.txt"), 1, "robots.txt is fetched once per host overall, kill and resume included");
    // A finished crawl run again fetches nothing.
    let before = srv.received.lock().unwrap().values().map(Vec::len).sum::<usize>();
    m6_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(srv.received.lock().unwrap().values().map(Vec::len).sum::<usize>(), before);
}

#[test]
fn crawls_the_real_debian_handbook_with_its_screenshots() {
    let root = data_dir().join("debian-handbook/zh-CN");
    let root2 = root.clone();
    let srv = Server::start(move |path, _| {
        let rel = path.split('?').next().unwrap().trim_start_matches('/');
        let rel = if rel.is_empty() { "index.html" } else { rel };
        let p = root2.join(rel);
        if rel.contains("..") || !p.is_file() {
            return status(404);
        }
        let ct = match p.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("png") => "image/png",
            Some("css") => "text/css",
            _ => "application/octet-stream",
        };
        ok(ct, std::fs::read(&p).unwrap())
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &[srv.url("/index.html")]), &out, &["--allow-private", "--max-depth", "2", "--set", "concurrency=8", "--set", "per_host_concurrency=8"]);
    let r = rows(&out);
    let html: Vec<&Value> = r.iter().filter(|x| x["content_type"].as_str().is_some_and(|c| c.starts_with("text/html"))).collect();
    assert!(html.len() >= 30, "only {} HTML pages crawled", html.len());
    let mut urls: Vec<&str> = r.iter().map(|x| x["url"].as_str().unwrap()).collect();
    urls.sort();
    let n = urls.len();
    urls.dedup();
    assert_eq!(urls.len(), n, "no URL fetched twice");
    for p in html.iter() {
        assert_eq!(p["status"], 200);
        let file = root.join(p["url"].as_str().unwrap().trim_start_matches(&srv.url("/")));
        assert_eq!(p["body_len"].as_u64().unwrap(), std::fs::metadata(&file).unwrap().len(), "{}", file.display());
    }
    // Screenshots: every image row has the PNG's own size; its page row follows the
    // page that embeds it, in the same shard.
    let imgs = rows(&out.join("images"));
    assert!(imgs.len() >= 10, "only {} images", imgs.len());
    for i in &imgs {
        if i["format"] == "png" {
            assert_eq!(serde_json::json!([i["width"], i["height"]]), i["png_wh"], "{}", i["url"]);
        }
        let url = i["url"].as_str().unwrap();
        let page_url = i["page_url"].as_str().unwrap();
        let pos = r.iter().position(|x| x["url"] == url).unwrap();
        let owner = r[..pos].iter().rposition(|x| x["content_type"].as_str().is_some_and(|c| c.starts_with("text/html"))).unwrap();
        assert_eq!(r[owner]["url"], page_url);
        assert_eq!(r[owner]["file"], r[pos]["file"]);
        let name = url.rsplit('/').next().unwrap();
        assert!(r[owner]["body_text"].as_str().unwrap().contains(name), "{page_url} does not embed {name}");
    }
    assert!(imgs.iter().any(|i| i["url"].as_str().unwrap().contains("/images/")), "the chapter screenshots are among the images");
    let v = m6(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // Each image is stored once, in its `images` row: its page row keeps no body, and
    // its id (made from the URL and the fetched bytes) is the image row's source_id.
    let pages = Dataset::open(&out).unwrap();
    let images: Vec<Image> = Dataset::open(&out.join("images")).unwrap().read_all().unwrap();
    let shards: Vec<Vec<Page>> = pages.shards().iter().map(|s| pages.read_shard(s, 1024).unwrap().flat_map(|b| Page::from_batch(&b.unwrap()).unwrap()).collect()).collect();
    let all: Vec<&Page> = shards.iter().flatten().collect();
    let bodies: std::collections::HashSet<&[u8]> = all.iter().filter_map(|p| p.body.as_deref()).collect();
    for i in &images {
        assert!(!bodies.contains(&i.bytes[..]), "{:?}: its bytes are also a page body", i.url);
        let p = all.iter().find(|p| p.url.as_str() == i.url.as_deref().unwrap()).unwrap();
        assert!(p.body.is_none() && p.error_kind.is_none() && p.content_type.as_deref().is_some_and(|c| c.starts_with("image/")), "{}", p.url);
        assert_eq!(Some(&p.id), i.source_id.as_ref(), "{}", p.url);
        assert_eq!(p.id, Page::make_id(&p.url, Some(&i.bytes)), "{}: the page id is made from the fetched bytes", p.url);
    }
    // extract takes the figures' bytes from `images` and makes the pairs it made when
    // the page rows held the bytes too: the same page shards with the bytes put back.
    let restored: Vec<Vec<Page>> = shards
        .into_iter()
        .map(|rows| {
            rows.into_iter()
                .map(|mut p| {
                    if let Some(i) = images.iter().find(|i| i.source_id.as_deref() == Some(p.id.as_str())) {
                        p.body = Some(i.bytes.clone());
                    }
                    p
                })
                .collect()
        })
        .collect();
    let before = t.path().join("pages-with-bodies");
    m6_pipeline::run_stage(&PageShards(Mutex::new(restored)), &[], &before, &RunOptions { progress: false, threads: 1, ..RunOptions::default() }).unwrap();
    let pairs_of = |input: &Path, output: &Path| -> Vec<Pair> {
        m6_ok(&["extract", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap(), "--quiet"]);
        let mut v: Vec<Pair> = Dataset::open(&output.join("pairs")).unwrap().read_all().unwrap();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let now = pairs_of(&out, &t.path().join("web"));
    let then = pairs_of(&before, &t.path().join("web-before"));
    assert!(now.len() >= 10, "only {} figure pairs", now.len());
    assert_eq!(now.len(), then.len());
    assert!(now == then, "extract of the crawl makes other pairs than with the bytes in the page rows");
    assert!(now.iter().all(|p| images.iter().any(|i| i.bytes == p.image_bytes && i.url == p.image_url)));
}

#[test]
fn robots_rules_are_reused_by_later_runs_until_their_max_age() {
    let srv = Server::start(|path, _| match path {
        "/robots.txt" => ok("text/plain", "User-agent: *\nDisallow: /private/\n"),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    let run = |name: &str, paths: &[&str], extra: &[&str]| {
        let f = t.path().join(name);
        std::fs::write(&f, paths.iter().map(|p| srv.url(p)).collect::<Vec<_>>().join("\n") + "\n").unwrap();
        let mut args = vec!["--allow-private"];
        args.extend_from_slice(extra);
        crawl(&f, &out, &args);
    };
    run("a.txt", &["/a.html", "/private/a.html"], &[]);
    assert_eq!(srv.hits("/robots.txt"), 1);
    // Another seed list into the same output: the rules persisted by the first run apply.
    run("b.txt", &["/b.html", "/private/b.html"], &[]);
    assert_eq!(srv.hits("/robots.txt"), 1, "a later run reuses robots.txt fetched within robots_max_age_s");
    assert_eq!(srv.hits("/private/b.html"), 0, "and still obeys it");
    // Past the max age the rules are fetched again.
    std::thread::sleep(Duration::from_millis(1100));
    run("c.txt", &["/c.html"], &["--set", "robots_max_age_s=1"]);
    assert_eq!(srv.hits("/robots.txt"), 2, "rules older than robots_max_age_s are fetched again");
    let r = rows(&out);
    assert_eq!(by_url(&r, &srv.url("/private/b.html"))["error_kind"], "robots");
    assert_eq!(by_url(&r, &srv.url("/c.html"))["status"], 200);
}

/// Arrival times of every request but robots.txt, sorted.
fn page_arrivals(srv: &Server) -> Vec<Instant> {
    let mut t: Vec<Instant> = srv.received.lock().unwrap().iter().filter(|(p, _)| p.as_str() != "/robots.txt").flat_map(|(_, v)| v.clone()).collect();
    t.sort();
    t
}

#[test]
fn crawl_delay_spaces_requests_to_a_host_up_to_the_cap() {
    let slow = Server::start(|path, _| match path {
        "/robots.txt" => ok("text/plain", "User-agent: *\nCrawl-delay: 30\n\nUser-agent: m6corpus\nCrawl-delay: 1\nDisallow: /private/\n"),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let hostile = Server::start(|path, _| match path {
        "/robots.txt" => ok("text/plain", "User-agent: *\nCrawl-delay: 86400\n"),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let t = tempfile::tempdir().unwrap();
    let n = 5;
    let mut urls: Vec<String> = (0..n).map(|i| slow.url(&format!("/p{i}.html"))).collect();
    urls.extend((0..n).map(|i| hostile.url(&format!("/h{i}.html"))));
    let out = t.path().join("pages");
    let t0 = Instant::now();
    // per_host_delay_ms=0 (set by `crawl`) and 4 requests per host allowed at once:
    // only Crawl-delay spaces them.
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private", "--set", "per_host_concurrency=4", "--set", "max_crawl_delay_ms=300"]);
    let took = t0.elapsed();
    let r = rows(&out);
    assert!(r.iter().all(|x| x["status"] == 200), "{r:#?}");
    // max_crawl_delay_ms=300 caps both delays: our group's 1 s and the hostile 1 day.
    for (srv, name) in [(&slow, "slow"), (&hostile, "hostile")] {
        let at = page_arrivals(srv);
        assert_eq!(at.len(), n, "{name}");
        for w in at.windows(2) {
            let gap = w[1] - w[0];
            // The server stamps a request when its thread gets to it, so under load two
            // stamps can sit closer than the crawler spaced the sends (288 ms was seen on
            // the loaded 2-core machine); 250 ms still tells the 300 ms cap from no delay.
            assert!(gap >= Duration::from_millis(250) && gap < Duration::from_millis(900), "{name}: requests {gap:?} apart, expected the capped delay of 300 ms");
        }
    }
    assert!(took < Duration::from_secs(20), "a hostile Crawl-delay stalled the crawl ({took:?})");

    // Uncapped (the default cap is 30 s), our group's Crawl-delay: 1 applies, not `*`'s 30.
    let slow2 = Server::start(|path, _| match path {
        "/robots.txt" => ok("text/plain", "User-agent: *\nCrawl-delay: 30\n\nUser-agent: m6corpus\nCrawl-delay: 1\n"),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let urls: Vec<String> = (0..n).map(|i| slow2.url(&format!("/q{i}.html"))).collect();
    let out2 = t.path().join("pages2");
    let t0 = Instant::now();
    crawl(&seeds(t.path(), &urls), &out2, &["--allow-private", "--set", "per_host_concurrency=4"]);
    let took = t0.elapsed();
    let at = page_arrivals(&slow2);
    assert_eq!(at.len(), n);
    for w in at.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(900), "requests {:?} apart under Crawl-delay: 1", w[1] - w[0]);
    }
    assert!(at[n - 1] - at[0] >= Duration::from_secs(n as u64 - 1));
    assert!(took >= Duration::from_secs(n as u64 - 1) && took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn srcset_picture_and_lazy_images_are_downloaded_and_paired() {
    let png = real_png();
    let para = "长江是中国第一大河，全长六千三百多公里，流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏和上海，最后注入东海。";
    let page = format!(
        r#"<html><head><title>图片</title></head><body><article><p>{para}</p>
<figure><img src="/img/s-320.png" srcset="/img/s-320.png 320w, /img/s-1280.png 1280w, /img/s-640.png 640w" alt="三峡"><figcaption>长江三峡的夜景</figcaption></figure>
<p>{para}</p>
<figure><picture><source type="image/avif" srcset="/img/p.avif 2000w"><source media="(min-width: 800px)" srcset="/img/p-800.png 800w, /img/p-1600.png 1600w"><img src="/img/p.png"></picture><figcaption>黄山的日出云海</figcaption></figure>
<p>{para}</p>
<figure><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-original="/img/lazy.png"><figcaption>西湖的断桥残雪</figcaption></figure>
<figure><img src="/img/grey.gif" data-srcset="/img/d-1x.png 1x, /img/d-2x.png 2x"><figcaption>桂林山水的倒影</figcaption></figure>
<p>{para}</p></article></body></html>"#
    );
    let srv = Server::start(move |path, _| match path {
        "/page.html" => ok("text/html; charset=utf-8", page.clone()),
        p if p.starts_with("/img/") && p.ends_with(".png") => ok("image/png", png.clone()),
        _ => status(404),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &[srv.url("/page.html")]), &out, &["--allow-private"]);
    let chosen = ["/img/s-1280.png", "/img/p-1600.png", "/img/lazy.png", "/img/d-2x.png"];
    let mut got: Vec<String> = rows(&out.join("images")).iter().map(|i| i["url"].as_str().unwrap().to_string()).collect();
    got.sort();
    let mut want: Vec<String> = chosen.iter().map(|p| srv.url(p)).collect();
    want.sort();
    assert_eq!(got, want, "the largest srcset/<picture> candidate or the lazy-loaded URL of each image");
    for p in chosen {
        assert_eq!(srv.hits(p), 1, "{p}");
    }
    for p in ["/img/s-320.png", "/img/s-640.png", "/img/p.avif", "/img/p-800.png", "/img/p.png", "/img/grey.gif", "/img/d-1x.png"] {
        assert_eq!(srv.hits(p), 0, "{p} is not the image's best URL and must not be fetched");
    }
    // extract pairs each caption with the image the crawler downloaded (same choice of URL).
    let docs = t.path().join("docs");
    m6_ok(&["extract", "--input", out.to_str().unwrap(), "--output", docs.to_str().unwrap()]);
    let mut pairs: Vec<(String, String)> =
        rows(&docs.join("pairs")).iter().map(|p| (p["image_url"].as_str().unwrap().trim_start_matches(&srv.url("")).to_string(), p["caption"].as_str().unwrap().to_string())).collect();
    pairs.sort();
    let mut expect: Vec<(String, String)> = [("/img/s-1280.png", "长江三峡的夜景"), ("/img/p-1600.png", "黄山的日出云海"), ("/img/lazy.png", "西湖的断桥残雪"), ("/img/d-2x.png", "桂林山水的倒影")]
        .iter()
        .map(|(u, c)| (u.to_string(), c.to_string()))
        .collect();
    expect.sort();
    assert_eq!(pairs, expect);
}

#[test]
fn pages_showing_an_image_an_earlier_round_or_crawl_stored_still_get_their_pairs() {
    // Every page shows one photo, each page with its own caption. The photo is fetched and
    // stored once, with the first page's round; the pages of later rounds, of a run
    // resumed after SIGKILL and of a later crawl into the same output must still pair
    // their captions with it (extract reads the rounds their shards refer to).
    let release = Arc::new(AtomicBool::new(false));
    let stall_path = "/p/2.html";
    let rel = release.clone();
    let png = real_png();
    let para = "长江是中国第一大河，全长六千三百多公里，流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏和上海，最后注入东海。";
    let srv = Server::start(move |path, n| {
        if path == stall_path && n == 1 {
            return Resp::Stall(rel.clone());
        }
        // The photo is served through a redirect, as CDNs do.
        if path == "/img/photo.png" {
            return Resp::Full { status: 302, headers: vec![("Location".into(), "/cdn/photo.png".into())], body: vec![] };
        }
        if path == "/cdn/photo.png" {
            return ok("image/png", png.clone());
        }
        let i = path.trim_start_matches("/p/").trim_end_matches(".html");
        // Pages from round 1 on also show a photo the server has lost (404): its
        // failure is written in another round than the stored photo.
        let gone = if i == "0" { String::new() } else { format!("<figure><img src=\"/img/gone.png\"><figcaption>第{i}页的另一张照片</figcaption></figure><p>{para}</p>") };
        ok("text/html", format!("<html><body><article><p>{para}</p><figure><img src=\"/img/photo.png\"><figcaption>第{i}页的咖啡照片</figcaption></figure><p>{para}</p>{gone}</article></body></html>"))
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    let args = |seed: &Path| -> Vec<String> {
        ["crawl", "--input", seed.to_str().unwrap(), "--output", out.to_str().unwrap(), "--quiet", "--allow-private", "--max-depth", "0", "--set", "per_host_delay_ms=0", "--set", "round_size=1", "--set", "rounds_in_flight=1", "--set", "concurrency=1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let first = seeds(t.path(), &(0..4).map(|i| srv.url(&format!("/p/{i}.html"))).collect::<Vec<_>>());
    kill_at_stall(&args(&first), &srv, stall_path, &release);
    // Rounds 0 and 1 were committed before the kill: the resumed run starts at round 2.
    let states: Vec<_> = m6_tests::walk(&out.join("_crawl")).into_iter().filter_map(|p| p.file_name().unwrap().to_str().unwrap().strip_prefix("state-").map(str::to_string)).collect();
    assert_eq!(states, ["00000002.json"], "the kill landed in round 2");
    m6_ok(&args(&first).iter().map(String::as_str).collect::<Vec<_>>());
    // A later crawl from another seed list: its page's photo is in the done-set.
    let later_dir = t.path().join("later");
    std::fs::create_dir_all(&later_dir).unwrap();
    let later = seeds(&later_dir, &[srv.url("/p/4.html")]);
    m6_ok(&args(&later).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(srv.hits("/cdn/photo.png"), 1, "the photo is fetched once");
    assert_eq!(rows(&out.join("images")).len(), 1, "and stored once");

    let docs = t.path().join("docs");
    let report = m6_ok(&["extract", "--input", out.to_str().unwrap(), "--output", docs.to_str().unwrap(), "--json"]);
    let mut got: Vec<(String, String, String)> = rows(&docs.join("pairs"))
        .iter()
        .map(|p| (p["url"].as_str().unwrap().trim_start_matches(&srv.url("")).to_string(), p["caption"].as_str().unwrap().to_string(), p["image_url"].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    // Each pair names the URL the photo came from (after the redirect), whichever
    // round fetched it.
    let want: Vec<(String, String, String)> = (0..5).map(|i| (format!("/p/{i}.html"), format!("第{i}页的咖啡照片"), srv.url("/cdn/photo.png"))).collect();
    assert_eq!(got, want, "one pair per page");
    // The lost photo was requested once; each page's caption for it is counted as a
    // failed image, whichever round's fetch failed, not as missing.
    assert_eq!(srv.hits("/img/gone.png"), 1);
    let counts = &serde_json::from_str::<Value>(report.trim().lines().last().unwrap()).unwrap()["counts"];
    assert_eq!(counts["pair.image_failed"], 4, "{counts}");
    assert!(counts.get("pair.image_missing").is_none(), "{counts}");
}

#[test]
fn a_slow_page_holds_back_its_round_commit_not_the_fetching_of_later_rounds() {
    let srv = Server::start(|path, _| {
        if path == "/slow.html" {
            std::thread::sleep(Duration::from_secs(3));
        }
        ok("text/html", format!("<p>{path}</p>"))
    });
    let t = tempfile::tempdir().unwrap();
    // Rounds of 2: [slow, f1], [f2, f3], [f4, f5], [f6, f7] are in flight together
    // (rounds_in_flight=4); f8.. are selected once the first round is written.
    let mut urls = vec![srv.url("/slow.html")];
    urls.extend((1..=9).map(|i| srv.url(&format!("/f{i}.html"))));
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private", "--set", "round_size=2", "--set", "rounds_in_flight=4", "--set", "per_host_concurrency=4"]);
    let r = rows(&out);
    assert_eq!(r.len(), 10);
    assert!(r.iter().all(|x| x["status"] == 200));
    let arrived = |p: &str| srv.received.lock().unwrap()[p][0];
    let slow = arrived("/slow.html");
    for i in 2..=7 {
        let at = arrived(&format!("/f{i}.html"));
        assert!(at < slow + Duration::from_secs(2), "/f{i}.html was requested {:?} after the slow page: later rounds waited for it", at.saturating_duration_since(slow));
    }
    // Each round's rows are its own shard, in seed order whatever order the answers came in.
    for pair in urls.chunks(2) {
        let pos = r.iter().position(|x| x["url"] == pair[0]).unwrap();
        assert_eq!(r[pos + 1]["url"], pair[1]);
        assert_eq!(r[pos + 1]["file"], r[pos]["file"]);
    }
}

#[test]
fn an_image_several_pages_show_follows_the_first_of_them_whichever_fetched_it() {
    // Every page shows the logo; the first seed answers last, so a later page's fetch
    // reaches the logo first. Its rows must still follow the first page (write order,
    // not fetch order), in that page's round shard, fetched once.
    let png = real_png();
    let srv = Server::start(move |path, _| match path {
        "/logo.png" => ok("image/png", png.clone()),
        "/a.html" => {
            std::thread::sleep(Duration::from_millis(1500));
            ok("text/html", "<html><body><img src=\"logo.png\"><p>甲</p></body></html>")
        }
        p => ok("text/html", format!("<html><body><img src=\"/logo.png\"><p>{p}</p></body></html>")),
    });
    let t = tempfile::tempdir().unwrap();
    let urls: Vec<String> = ["/a.html", "/b.html", "/c.html", "/d.html"].iter().map(|p| srv.url(p)).collect();
    let out = t.path().join("pages");
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private", "--set", "round_size=2", "--set", "rounds_in_flight=2", "--set", "per_host_concurrency=4", "--set", "per_host_delay_ms=0"]);
    assert_eq!(srv.hits("/logo.png"), 1, "the logo is fetched once");
    let got = srv.received.lock().unwrap().clone();
    assert!(got["/logo.png"][0] < got["/a.html"][0] + Duration::from_millis(1000), "the logo was fetched for a later page, before the first page answered");
    let r = rows(&out);
    assert_eq!(r.len(), 5);
    let a = r.iter().position(|x| x["url"] == srv.url("/a.html")).unwrap();
    assert_eq!(r[a + 1]["url"], srv.url("/logo.png"), "{r:#?}");
    assert_eq!((r[a + 1]["file"].as_str(), r[a + 1]["depth"].as_u64()), (r[a]["file"].as_str(), Some(1)));
    let imgs = rows(&out.join("images"));
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0]["page_url"], srv.url("/a.html"));
}

#[test]
fn a_robots_txt_over_the_body_cap_is_read_up_to_500_kib_and_obeyed() {
    // 20 MiB, over the default max_body_bytes (16 MiB), with the rule on its first line.
    let mut big = b"Disallow: /\n".to_vec();
    while big.len() < 20 << 20 {
        big.extend_from_slice(b"# a very long robots.txt: comments, sitemaps, rules for other agents ...\n");
    }
    let srv = Server::start(move |path, _| match path {
        "/robots.txt" => ok("text/plain", big.clone()),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    // A robots.txt served with `X-Robots-Tag: noindex` (kept out of search engines)
    // still has rules.
    let tagged = Server::start(|path, _| match path {
        "/robots.txt" => Resp::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into()), ("X-Robots-Tag".into(), "noindex".into())],
            body: b"User-agent: *\nDisallow: /private/\n".to_vec(),
        },
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("pages");
    let urls = vec![srv.url("/a.html"), srv.url("/b/c.html"), tagged.url("/private/x.html"), tagged.url("/open.html")];
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private"]);
    let r = rows(&out);
    for p in ["/a.html", "/b/c.html"] {
        let row = by_url(&r, &srv.url(p));
        assert_eq!(row["error_kind"], "robots", "{row}");
        assert_eq!(srv.hits(p), 0, "{p} was fetched despite `Disallow: /`");
    }
    assert_eq!(srv.hits("/robots.txt"), 1);
    assert_eq!(srv.done("/robots.txt"), 0, "only the head of the 20 MiB robots.txt was read");
    assert_eq!(by_url(&r, &tagged.url("/private/x.html"))["error_kind"], "robots");
    assert_eq!(tagged.hits("/private/x.html"), 0);
    assert_eq!(by_url(&r, &tagged.url("/open.html"))["status"], 200);
}

#[test]
fn allow_private_opens_only_the_named_ranges_and_never_metadata_endpoints() {
    let srv = Server::start(|path, _| ok("text/html", format!("<p>{path}</p>")));
    let t = tempfile::tempdir().unwrap();
    let page = srv.url("/x.html");
    // A range that does not hold loopback does not open it.
    let out = t.path().join("a");
    crawl(&seeds(t.path(), std::slice::from_ref(&page)), &out, &["--allow-private", "10.0.0.0/8"]);
    let row = by_url(&rows(&out), &page).clone();
    assert_eq!(row["error_kind"], "private_address", "{row}");
    assert!(row["error"].as_str().unwrap().contains("--allow-private"), "{row}");
    assert_eq!(srv.received.lock().unwrap().len(), 0);
    // Naming it does.
    let out = t.path().join("b");
    crawl(&seeds(t.path(), std::slice::from_ref(&page)), &out, &["--allow-private", "127.0.0.0/8"]);
    assert_eq!(by_url(&rows(&out), &page)["status"], 200);
    // Metadata endpoints stay refused inside allowed ranges, before any connection.
    let out = t.path().join("c");
    let meta = ["http://169.254.169.254/latest/meta-data/iam/", "http://[fd00:ec2::254]/latest/meta-data/", "http://100.100.100.200/latest/meta-data/"];
    let urls: Vec<String> = meta.iter().map(|s| s.to_string()).collect();
    crawl(&seeds(t.path(), &urls), &out, &["--allow-private", "169.254.0.0/16,fd00::/8", "--allow-private", "100.64.0.0/10", "--set", "connect_timeout_ms=500"]);
    let r = rows(&out);
    for u in meta {
        let row = by_url(&r, u);
        assert_eq!(row["error_kind"], "private_address", "{row}");
        assert!(row["error"].as_str().unwrap().contains("metadata"), "{row}");
    }
    // The old boolean and a range opening everything are refused, naming the setting.
    let seed = seeds(t.path(), std::slice::from_ref(&page));
    for bad in [vec!["--set", "allow_private=true"], vec!["--allow-private", "0.0.0.0/0"], vec!["--allow-private", "localhost"]] {
        let mut args = vec!["crawl", "--input", seed.to_str().unwrap(), "--output", t.path().join("d").to_str().unwrap().to_string().leak(), "--quiet"];
        args.extend(bad.iter().copied());
        let o = m6(&args);
        assert!(!o.status.success(), "{bad:?} was accepted");
        assert!(String::from_utf8_lossy(&o.stderr).contains("allow_private"), "{bad:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Six hosts (servers on 127.0.0.1 … 127.0.0.6), each with six seed pages linking to
/// one more page and to a disallowed one.
fn six_hosts() -> Vec<Server> {
    (1..=6)
        .map(|i| {
            Server::start_on(&format!("127.0.0.{i}"), move |path, _| match path {
                "/robots.txt" => ok("text/plain", "User-agent: *\nDisallow: /private/\n"),
                p if p.starts_with("/p/") => ok("text/html", format!("<html><body><p>主机{i} {p}</p><a href=\"/q{p}\">更多</a> <a href=\"/private/x.html\">内部</a></body></html>")),
                p => ok("text/html", format!("<html><body><p>主机{i} {p}</p></body></html>")),
            })
        })
        .collect()
}

/// Two overlapping seed files over the six hosts: pages 0-3 in a.txt, 2-5 in b.txt.
fn six_host_seeds(dir: &Path, servers: &[Server]) -> PathBuf {
    let d = dir.join("seeds");
    std::fs::create_dir_all(&d).unwrap();
    for (name, range) in [("a.txt", 0..4), ("b.txt", 2..6)] {
        let mut lines = vec![];
        for j in range {
            for s in servers {
                lines.push(s.url(&format!("/p/{j}.html")));
            }
        }
        std::fs::write(d.join(name), lines.join("\n") + "\n").unwrap();
    }
    d
}

fn crawl_process(seeds: &Path, out: &Path, index: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["crawl", "--input", seeds.to_str().unwrap(), "--output", out.to_str().unwrap(), "--quiet", "--task-index", &index.to_string(), "--task-count", "3"])
        .args(["--allow-private", "127.0.0.0/8", "--user-agent", &format!("m6test/{index}"), "--max-depth", "1", "--set", "host_partitions=12"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Every host was fetched by one process only, robots.txt once per host, every
/// page once, and the output holds one row per URL. After a kill (`exact` false), a
/// response the killed process received but had not yet journaled is fetched again
/// by the rerun: twice is allowed then, for pages and robots.txt, never in the output.
fn check_six_host_crawl(servers: &[Server], out: &Path, exact: bool) -> std::collections::BTreeSet<String> {
    let most = if exact { 1 } else { 2 };
    let mut used = std::collections::BTreeSet::new();
    for s in servers {
        let agents: std::collections::BTreeSet<String> = s.agents.lock().unwrap().iter().map(|(_, a)| a.clone()).collect();
        assert_eq!(agents.len(), 1, "{} was crawled by {agents:?}", s.ip);
        used.extend(agents);
        let robots = s.hits("/robots.txt");
        assert!((1..=most).contains(&robots), "robots.txt of {} fetched {robots} times", s.ip);
        for j in 0..6 {
            for p in [format!("/p/{j}.html"), format!("/q/p/{j}.html")] {
                assert!((1..=most).contains(&(s.done(&p) as usize)), "{}{p} answered {} times", s.ip, s.done(&p));
            }
        }
        assert_eq!(s.hits("/private/x.html"), 0);
    }
    let r = rows(out);
    let mut urls: Vec<&str> = r.iter().map(|x| x["url"].as_str().unwrap()).collect();
    urls.sort();
    let n = urls.len();
    urls.dedup();
    assert_eq!(urls.len(), n, "a URL has two rows");
    // 6 hosts x (6 seed pages + 6 linked pages + 1 disallowed link).
    assert_eq!(n, 6 * 13, "{urls:#?}");
    assert_eq!(r.iter().filter(|x| x["error_kind"] == "robots").count(), 6);
    assert!(r.iter().filter(|x| x["error_kind"] != "robots").all(|x| x["status"] == 200), "{r:#?}");
    let v = m6(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    used
}

#[test]
fn three_processes_crawl_six_hosts_each_host_by_one_process() {
    let servers = six_hosts();
    let t = tempfile::tempdir().unwrap();
    let seeds = six_host_seeds(t.path(), &servers);
    let out = t.path().join("pages");
    let children: Vec<_> = (0..3).map(|i| crawl_process(&seeds, &out, i, &["--set", "per_host_delay_ms=0"]).spawn().unwrap()).collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "process {i}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let used = check_six_host_crawl(&servers, &out, true);
    assert!(used.len() >= 2, "the hosts should spread over the processes: {used:?}");
    // Run again, every process: nothing is fetched.
    let before: usize = servers.iter().map(|s| s.agents.lock().unwrap().len()).sum();
    for i in 0..3 {
        let o = crawl_process(&seeds, &out, i, &[]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(servers.iter().map(|s| s.agents.lock().unwrap().len()).sum::<usize>(), before);
    // A new seed list into the same output (a new plan, so new tasks): URLs fetched by
    // the first crawl are not fetched again, the new one of each host is.
    let mut lines: Vec<String> = servers.iter().map(|s| s.url("/p/1.html")).collect();
    lines.extend(servers.iter().map(|s| s.url("/new.html")));
    std::fs::write(seeds.join("c.txt"), lines.join("\n") + "\n").unwrap();
    for i in 0..3 {
        let o = crawl_process(&seeds, &out, i, &["--set", "per_host_delay_ms=0"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for s in &servers {
        assert_eq!(s.hits("/new.html"), 1);
        assert_eq!(s.hits("/p/1.html"), 1, "{} fetched again by a later crawl into the same output", s.ip);
        assert_eq!(s.hits("/robots.txt"), 1, "the first crawl's robots.txt answers are reused");
    }
    let r = rows(&out);
    assert_eq!(r.len(), 6 * 14, "one row per URL across both crawls");
}

#[test]
fn one_of_three_crawl_processes_killed_and_rerun_loses_and_doubles_nothing() {
    let servers = six_hosts();
    let t = tempfile::tempdir().unwrap();
    let seeds = six_host_seeds(t.path(), &servers);
    let out = t.path().join("pages");
    // Slow enough (a host's 12 pages take over 2 s) for the kill to land mid-crawl.
    let slow = ["--set", "per_host_delay_ms=200", "--set", "round_size=2", "--set", "per_host_concurrency=1"];
    let mut children: Vec<_> = (0..3).map(|i| crawl_process(&seeds, &out, i, &slow).spawn().unwrap()).collect();
    // Kill the first process seen fetching a page, a moment after.
    let t0 = Instant::now();
    let victim = loop {
        let seen = servers.iter().flat_map(|s| s.agents.lock().unwrap().iter().filter(|(p, _)| p.starts_with("/q/")).map(|(_, a)| a.clone()).collect::<Vec<_>>()).next();
        if let Some(a) = seen {
            break a.trim_start_matches("m6test/").parse::<usize>().unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no process reached a linked page");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(300));
    children[victim].kill().unwrap();
    children[victim].wait().unwrap();
    for (i, c) in children.into_iter().enumerate() {
        if i != victim {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "process {i}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
    let unanswered = servers.iter().any(|s| (0..6).any(|j| s.done(&format!("/q/p/{j}.html")) == 0));
    assert!(unanswered, "the kill should land before process {victim} finished");
    let o = crawl_process(&seeds, &out, victim, &slow).output().unwrap();
    assert!(o.status.success(), "rerun of {victim}: {}", String::from_utf8_lossy(&o.stderr));
    check_six_host_crawl(&servers, &out, false);
}

/// One crawl stage object run into two outputs (issue 13: a stage object runs any
/// number of times): the second output's robots log holds the rules its own crawl
/// relied on, although the first run had fetched them into the object's fetcher.
#[test]
fn one_crawl_object_run_into_two_outputs_logs_robots_in_each() {
    use m6_pipeline::StageFactory;
    let srv = Server::start(|path, _| match path {
        "/robots.txt" => ok("text/plain", "User-agent: *\nDisallow: /private/\n"),
        _ => ok("text/html", format!("<p>{path}</p>")),
    });
    let t = tempfile::tempdir().unwrap();
    let cfg = m6_stage_crawl::CrawlConfig { per_host_delay_ms: 0, backoff_base_ms: 100, allow_private: vec!["127.0.0.0/8".into()], ..Default::default() };
    let stage = m6_stage_crawl::CrawlFactory::build(cfg).unwrap();
    let opts = RunOptions { progress: false, threads: 1, ..RunOptions::default() };
    for (name, page) in [("one", "/a.html"), ("two", "/b.html")] {
        let seed_dir = t.path().join(format!("seeds-{name}"));
        std::fs::create_dir_all(&seed_dir).unwrap();
        let seed = seeds(&seed_dir, &[srv.url(page), srv.url("/private/x.html")]);
        let out = t.path().join(name);
        m6_pipeline::run_stage(stage.as_ref(), &[seed], &out, &opts).unwrap();
        let r = rows(&out);
        assert_eq!(by_url(&r, &srv.url(page))["status"], 200);
        assert_eq!(by_url(&r, &srv.url("/private/x.html"))["error_kind"], "robots");
        let log: String = std::fs::read_dir(out.join("_crawl")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("robots-")).map(|e| std::fs::read_to_string(e.path()).unwrap()).collect();
        assert!(log.contains("Disallow: /private/"), "{name}: the robots answer is in this output's log: {log:?}");
    }
    assert_eq!(srv.hits("/robots.txt"), 2, "each run fetches (and logs) the rules of its own output");
}
