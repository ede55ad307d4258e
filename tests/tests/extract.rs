//! End-to-end tests of `m6corpus extract` on real Debian Handbook pages (zh-CN and
//! zh-TW): main text without navigation, GBK/Big5 (declared right or wrong), broken
//! HTML, and figure image–caption pairs with image rows the way the crawler writes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use m6_pipeline::{BoxError, Dataset, Manifest, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::{Document, Kind, Page, Pair};
use m6_tests::{data_dir, m6_ok, strip_tags};

const HOST: &str = "http://handbook.test";

/// A stage with no input that writes the given page rows as one shard: how these tests
/// build `page` datasets through the real pipeline writer.
struct Fixture(Mutex<Option<Vec<Page>>>);

impl Stage for Fixture {
    fn name(&self) -> &'static str {
        "fixture"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &Fixture {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok(vec![Task { id: m6_schemas::content_id(&[b"fixture"]), inputs: vec![] }])
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, _: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let rows = self.0.lock().unwrap().take().unwrap_or_default();
        for chunk in rows.chunks(32) {
            out.write_rows(chunk)?;
        }
        Ok(())
    }
}

fn write_pages(dir: &Path, pages: Vec<Page>) {
    let opts = RunOptions { progress: false, threads: 1, ..RunOptions::default() };
    m6_pipeline::run_stage(&Fixture(Mutex::new(Some(pages))), &[], dir, &opts).unwrap();
}

fn page(url: &str, content_type: Option<&str>, body: Vec<u8>) -> Page {
    Page {
        id: Page::make_id(url, Some(&body)),
        url: url.to_string(),
        status: Some(200),
        headers: content_type.map(|c| vec![("content-type".to_string(), c.to_string())]).unwrap_or_default(),
        content_type: content_type.map(str::to_string),
        body: Some(body),
        fetch_time: 1_700_000_000_000,
        source: "debian-handbook".into(),
        ..Default::default()
    }
}

fn handbook(lang: &str) -> PathBuf {
    data_dir().join("debian-handbook").join(lang)
}

fn html_files(lang: &str) -> Vec<PathBuf> {
    m6_tests::walk(&handbook(lang)).into_iter().filter(|p| p.parent() == Some(&handbook(lang)) && p.extension().is_some_and(|e| e == "html")).collect()
}

fn run_extract(input: &Path, output: &Path) -> (Vec<Document>, Vec<Pair>, BTreeMap<String, u64>) {
    m6_ok(&["extract", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap(), "--threads", "2"]);
    let docs = Dataset::open(output).unwrap().read_all::<Document>().unwrap();
    let pairs = Dataset::open(&output.join("pairs")).unwrap().read_all::<Pair>().unwrap();
    let counts = Manifest::load(output).unwrap().runs.last().unwrap().counts.clone();
    (docs, pairs, counts)
}

/// Everything but whitespace, so layout differences do not matter.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The handbook's body paragraphs, read straight from the markup: the text of every
/// `<div class="para">` up to its first nested block.
fn body_paragraphs(html: &str) -> Vec<String> {
    let open = "<div class=\"para\">";
    let mut out = vec![];
    let mut rest = html;
    while let Some(p) = rest.find(open) {
        rest = &rest[p + open.len()..];
        let end = [rest.find("<div"), rest.find("</div>")].into_iter().flatten().min().unwrap_or(rest.len());
        let t = squash(&strip_tags(&rest[..end]));
        if !t.is_empty() {
            out.push(t);
        }
    }
    out
}

/// The `<title>` text.
fn title_of(html: &str) -> String {
    let start = html.find("<title").unwrap();
    let start = start + html[start..].find('>').unwrap() + 1;
    let end = start + html[start..].find("</title>").unwrap();
    // Whitespace (the handbook uses U+00A0 in titles) collapsed, as extract does.
    strip_tags(&html[start..end]).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Texts of table-of-contents entries that point to other pages (whose text is not on this page).
fn toc_entries_elsewhere(html: &str, file: &str) -> Vec<String> {
    let Some(s) = html.find("<div class=\"toc\">") else { return vec![] };
    let toc = &html[s..s + html[s..].find("</div>").unwrap()];
    toc.split("<a href=\"")
        .skip(1)
        .filter(|a| !a.starts_with(file))
        .map(|a| squash(&strip_tags(&a[a.find('>').unwrap() + 1..a.find("</a>").unwrap()])))
        .collect()
}

/// Blank lines inside the page's `<pre>` blocks.
fn pre_blank_lines(html: &str) -> usize {
    html.split("<pre").skip(1).map(|p| p[..p.find("</pre>").unwrap_or(p.len())].matches("\n\n").count()).sum()
}

const NAV: &[&str] = &["上一页", "下一页", "起始页", "上一级", "Download the ebook"];

#[test]
fn handbook_pages_keep_body_paragraphs_and_drop_navigation() {
    let tmp = tempfile::tempdir().unwrap();
    let files = html_files("zh-CN");
    assert!(files.len() > 100, "expected the whole zh-CN handbook, found {}", files.len());
    let mut originals = BTreeMap::new();
    let pages = files
        .iter()
        .map(|f| {
            let url = format!("{HOST}/zh-CN/{}", f.file_name().unwrap().to_string_lossy());
            let body = std::fs::read(f).unwrap();
            originals.insert(url.clone(), (f.file_name().unwrap().to_string_lossy().into_owned(), String::from_utf8(body.clone()).unwrap()));
            page(&url, Some("text/html; charset=UTF-8"), body)
        })
        .collect();
    write_pages(&tmp.path().join("pages"), pages);
    let (docs, _, counts) = run_extract(&tmp.path().join("pages"), &tmp.path().join("docs"));
    assert_eq!(docs.len(), files.len(), "{counts:?}");
    let (mut paras, mut nav_checked, mut toc_checked) = (0, 0, 0);
    for d in &docs {
        let (file, html) = &originals[d.url.as_deref().unwrap()];
        let text = squash(&d.text);
        assert_eq!(d.title.as_deref(), Some(title_of(html).as_str()), "{file}");
        for p in body_paragraphs(html) {
            assert!(text.contains(&p), "{file}: body paragraph missing from the extracted text:\n{p}\n---\n{}", d.text);
            paras += 1;
        }
        for n in NAV {
            if html.contains(n) {
                assert!(!d.text.contains(n), "{file}: navigation text {n:?} leaked into:\n{}", d.text);
                nav_checked += 1;
            }
        }
        for t in toc_entries_elsewhere(html, file) {
            // A short entry such as "序" (preface) is also part of ordinary words (程序,
            // "program", in the licence text on index.html), so it counts as leaked only
            // when it stands as a line of its own.
            let leaked = if t.chars().count() >= 4 { text.contains(&t) } else { d.text.lines().any(|l| squash(l) == t) };
            assert!(!leaked, "{file}: table-of-contents entry {t:?} leaked into:\n{}", d.text);
            toc_checked += 1;
        }
        let meta: serde_json::Value = serde_json::from_str(d.meta.as_deref().unwrap()).unwrap();
        assert_eq!((meta["charset"].as_str(), meta["charset_source"].as_str()), (Some("UTF-8"), Some("http")));
        // Blank lines only where a <pre> block has them itself (config file examples).
        assert!(d.text.matches("\n\n\n").count() <= pre_blank_lines(html), "{file}: stray blank lines in:\n{:?}", d.text);
        assert!(!d.text.starts_with(char::is_whitespace), "{file}");
    }
    assert!(paras > 2000 && nav_checked > 200 && toc_checked > 100, "checks ran: {paras} paragraphs, {nav_checked} nav, {toc_checked} toc");
}

/// `iconv -f UTF-8 -t <enc>`; U+00A0 (not in GBK or Big5) is written as `&#160;` first,
/// which the HTML parser turns back into the same character. `None` if a character has
/// no mapping in `enc`.
fn iconv(html: &str, enc: &str) -> Option<Vec<u8>> {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), html.replace('\u{a0}', "&#160;")).unwrap();
    let out = Command::new("iconv").args(["-f", "UTF-8", "-t", enc]).arg(tmp.path()).output().expect("iconv runs");
    out.status.success().then_some(out.stdout)
}

fn declare(html: &str, charset: &str) -> String {
    html.replacen("encoding=\"UTF-8\"", &format!("encoding=\"{charset}\""), 1).replacen("charset=UTF-8", &format!("charset={charset}"), 1)
}

#[test]
fn gbk_and_big5_pages_extract_to_the_same_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pages = vec![];
    // (url of the UTF-8 original, url of the variant, expected charset, expected source)
    let mut expect = vec![];
    for (lang, enc, name) in [("zh-CN", "GBK", "GBK"), ("zh-TW", "BIG5", "Big5")] {
        let mut used = 0;
        for f in html_files(lang) {
            if used == 3 {
                break;
            }
            let orig = std::fs::read_to_string(&f).unwrap();
            let Some(_) = iconv(&orig, enc) else { continue };
            used += 1;
            let file = f.file_name().unwrap().to_string_lossy().into_owned();
            let base = format!("{HOST}/{lang}/{file}");
            pages.push(page(&base, Some("text/html; charset=UTF-8"), orig.clone().into_bytes()));
            // Declared correctly in <meta> (and the XML declaration), no charset in the header.
            let right = iconv(&declare(&orig, enc), enc).unwrap();
            pages.push(page(&format!("{base}?meta"), Some("text/html"), right.clone()));
            expect.push((base.clone(), format!("{base}?meta"), name, "meta"));
            // Declared in the HTTP header only, with the page's <meta> still saying UTF-8.
            let wrong = iconv(&orig, enc).unwrap();
            pages.push(page(&format!("{base}?header"), Some(&format!("text/html; charset={enc}")), wrong.clone()));
            expect.push((base.clone(), format!("{base}?header"), name, "http"));
            // <meta> says UTF-8 but the bytes are not: caught, then detected.
            pages.push(page(&format!("{base}?wrong"), Some("text/html"), wrong));
            expect.push((base.clone(), format!("{base}?wrong"), name, "detected"));
        }
        assert_eq!(used, 3, "not enough {lang} pages convert to {enc}");
    }
    write_pages(&tmp.path().join("pages"), pages);
    let (docs, _, counts) = run_extract(&tmp.path().join("pages"), &tmp.path().join("docs"));
    let by_url: BTreeMap<&str, &Document> = docs.iter().map(|d| (d.url.as_deref().unwrap(), d)).collect();
    for (orig, variant, charset, source) in &expect {
        let (o, v) = (by_url[orig.as_str()], by_url[variant.as_str()]);
        assert!(o.text.chars().count() > 200);
        assert_eq!(v.text, o.text, "{variant}");
        assert_eq!(v.title, o.title, "{variant}");
        let meta: serde_json::Value = serde_json::from_str(v.meta.as_deref().unwrap()).unwrap();
        assert_eq!((meta["charset"].as_str().unwrap(), meta["charset_source"].as_str().unwrap()), (*charset, *source), "{variant}: {meta}");
        assert_eq!(meta["decode_errors"], false);
    }
    assert_eq!(counts.get("charset.gbk"), Some(&9), "{counts:?}");
    assert_eq!(counts.get("charset.big5"), Some(&9), "{counts:?}");
}

#[test]
fn broken_html_still_extracts() {
    let tmp = tempfile::tempdir().unwrap();
    let f = handbook("zh-CN").join("sect.apt-frontends.html");
    let html = std::fs::read_to_string(&f).unwrap();
    // Every </div> of the body gone (nothing closed), then cut in the middle of a tag: two thirds
    // in, right after `<div cl` of a paragraph.
    // (Only from the first paragraph on: an unclosed page banner would, as in a browser,
    // swallow the whole page.)
    let marker = "<div class=\"para\"";
    let p0 = html.find(marker).unwrap();
    let unclosed = format!("{}{}", &html[..p0], html[p0..].replace("</div>", ""));
    let in_unclosed: Vec<usize> = unclosed.match_indices(marker).map(|(i, _)| i).collect();
    let in_html: Vec<usize> = html.match_indices(marker).map(|(i, _)| i).collect();
    assert_eq!(in_unclosed.len(), in_html.len());
    let k = in_unclosed.len() * 2 / 3;
    let truncated = &unclosed[..in_unclosed[k] + 7];
    // The paragraphs wholly before the cut, read from the intact page.
    let expected = body_paragraphs(&html[..in_html[k]]);
    assert!(expected.len() >= 5);
    let url = format!("{HOST}/zh-CN/broken.html");
    write_pages(&tmp.path().join("pages"), vec![page(&url, Some("text/html"), truncated.as_bytes().to_vec())]);
    let (docs, _, _) = run_extract(&tmp.path().join("pages"), &tmp.path().join("docs"));
    assert_eq!(docs.len(), 1);
    let text = squash(&docs[0].text);
    for p in &expected {
        assert!(text.contains(p), "paragraph lost in broken HTML:\n{p}");
    }
    for n in NAV {
        assert!(!docs[0].text.contains(n), "{n}");
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()))
}

#[test]
fn handbook_figures_become_captioned_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = handbook("zh-CN");
    let mut pages = vec![];
    // (page url, image url, caption) read from the markup.
    let mut expected = vec![];
    let mut missing = 0;
    let mut figure_page = 0;
    for f in html_files("zh-CN") {
        let mut html = std::fs::read_to_string(&f).unwrap();
        if !html.contains("class=\"figure\"") {
            continue;
        }
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        let url = format!("{HOST}/zh-CN/{file}");
        figure_page += 1;
        // Tiny images at the end of the first paragraph: a 22 px icon (no declared size) and a 5x6 dot
        // declared as such; neither may become a pair.
        let first_para = html.find("<div class=\"para\">").unwrap();
        let first_para = first_para + html[first_para..].find("</div>").unwrap();
        html.insert_str(first_para, "<img src=\"Common_Content/images/stock-go-back.png\" alt=\"返回上一节的图标\" /><img src=\"Common_Content/images/dot.png\" width=\"5\" height=\"6\" alt=\"分隔用的小圆点\" />");
        let mut images = vec![];
        for fig in html.split("<div class=\"figure\">").skip(1) {
            let title_at = fig.find("<p class=\"title\">").unwrap();
            let title = &fig[title_at..];
            let title = strip_tags(&title[..title.find("</p>").unwrap()]);
            let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(title.starts_with("图 "), "{title}");
            let caption = title.split_once(". ").unwrap().1.to_string();
            for src in fig[..title_at].split("src=\"").skip(1) {
                let src = &src[..src.find('"').unwrap()];
                let image_url = format!("{HOST}/zh-CN/{src}");
                expected.push((url.clone(), image_url.clone(), caption.clone()));
                images.push((image_url, dir.join(src)));
            }
        }
        pages.push(page(&url, Some("text/html; charset=UTF-8"), html.into_bytes()));
        // The crawler writes a page's images right after it; the banner logos too.
        for logo in ["image_left.png", "image_right.png", "stock-go-back.png", "dot.png"] {
            let u = format!("{HOST}/zh-CN/Common_Content/images/{logo}");
            pages.push(page(&u, Some("image/png"), std::fs::read(dir.join("Common_Content/images").join(logo)).unwrap()));
        }
        for (i, (u, path)) in images.into_iter().enumerate() {
            // Every fourth page's first image was never fetched: counted, not lost silently.
            if i == 0 && figure_page % 4 == 0 {
                expected.retain(|e| e.1 != u || e.0 != url);
                missing += 1;
                continue;
            }
            pages.push(page(&u, Some("image/png"), std::fs::read(path).unwrap()));
        }
    }
    assert!(expected.len() >= 30, "{}", expected.len());
    write_pages(&tmp.path().join("pages"), pages);
    let (_, pairs, counts) = run_extract(&tmp.path().join("pages"), &tmp.path().join("docs"));
    let got: Vec<(String, String, String)> = pairs.iter().map(|p| (p.url.clone().unwrap(), p.image_url.clone().unwrap(), p.caption.clone())).collect();
    let mut want = expected.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
    for p in &pairs {
        assert_eq!(p.caption_origin, "figure_title", "{}", p.caption);
        assert_eq!(p.format, "png");
        assert_eq!((p.width, p.height), png_size(&p.image_bytes));
        let file = p.image_url.as_deref().unwrap().strip_prefix(&format!("{HOST}/zh-CN/")).unwrap();
        assert_eq!(p.image_bytes, std::fs::read(dir.join(file)).unwrap());
        assert_eq!(p.image_id, m6_schemas::Image::make_id(&p.image_bytes));
    }
    assert!(missing > 0);
    assert_eq!(counts.get("pair.image_missing").copied().unwrap_or(0), missing as u64, "{counts:?}");
    let figure_pages = pairs.iter().map(|p| p.url.clone()).collect::<std::collections::BTreeSet<_>>().len() as u64;
    assert!(figure_pages >= 15);
    assert!(counts.get("pair.skipped.tiny").copied().unwrap_or(0) >= figure_pages, "{counts:?}");
    assert!(counts.get("pair.skipped.tiny_decoded").copied().unwrap_or(0) >= figure_pages, "{counts:?}");
    assert!(counts.get("pair.skipped.outside_content").copied().unwrap_or(0) >= 2 * figure_pages, "{counts:?}");
}

#[test]
fn failed_and_non_html_rows_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let f = handbook("zh-CN").join("foreword.html");
    let html = std::fs::read(&f).unwrap();
    let mut failed = page(&format!("{HOST}/404.html"), Some("text/html"), b"<html><body><p>Not Found</p></body></html>".to_vec());
    failed.status = Some(404);
    failed.error_kind = Some("http_status".into());
    failed.error = Some("404 Not Found".into());
    let timeout = Page { error_kind: Some("timeout".into()), body: None, ..page(&format!("{HOST}/slow.html"), None, vec![]) };
    let css = page(&format!("{HOST}/zh-CN/Common_Content/css/default.css"), Some("text/css"), std::fs::read(handbook("zh-CN").join("Common_Content/css/default.css")).unwrap());
    // No content type at all: sniffed as HTML from its doctype.
    let sniffed = page(&format!("{HOST}/zh-CN/foreword.html"), None, html);
    write_pages(&tmp.path().join("pages"), vec![failed, timeout, css, sniffed]);
    let (docs, pairs, counts) = run_extract(&tmp.path().join("pages"), &tmp.path().join("docs"));
    assert_eq!(docs.len(), 1);
    assert!(pairs.is_empty());
    assert_eq!(counts.get("skipped.error"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("skipped.non_html"), Some(&1), "{counts:?}");
    // A rerun over the same input is a no-op (resume) and the output is unchanged.
    let before = std::fs::read(tmp.path().join("docs/manifest.json")).unwrap();
    m6_ok(&["extract", "--input", tmp.path().join("pages").to_str().unwrap(), "--output", tmp.path().join("docs").to_str().unwrap()]);
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.path().join("docs/manifest.json")).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(after["shards"], before["shards"]);
}
