//! Main-content extraction from one decoded HTML page: the DOM (html5ever, so broken
//! markup still parses) is flattened into text blocks, boilerplate is removed by tag,
//! by class/id and by link and text density, and each content `<img>` gets its best caption.

use ego_tree::NodeRef;
use m6_text::is_cjk;
use scraper::{ElementRef, Html, Node};
use url::Url;

/// Knobs of the extraction; the stage config fills them.
#[derive(Debug, Clone)]
pub struct Params {
    /// A block with at least this many non-space characters and low link density is content.
    pub min_block_chars: usize,
    /// A block (or a link list) with more link text than this share is navigation.
    pub max_link_density: f64,
    /// Images declared smaller than this on either side are skipped as pixels/icons.
    pub min_image_side: u32,
    /// Short blocks are kept when a content block is at most this many blocks away.
    pub neighbour_window: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { min_block_chars: 20, max_link_density: 0.5, min_image_side: 32, neighbour_window: 3 }
    }
}

/// What one page yields.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub title: Option<String>,
    /// Content blocks separated by blank lines.
    pub text: String,
    pub lang: Option<String>,
    pub images: Vec<ImageRef>,
    /// Images seen but not kept, by reason (`tiny`, `no_caption`, `data_uri`, `outside_content`, `no_src`).
    pub skipped_images: Vec<&'static str>,
    pub blocks_total: usize,
    pub blocks_kept: usize,
}

/// A content image and its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// Absolute URL (resolved against `<base>` or the page URL).
    pub url: String,
    pub caption: String,
    /// `figcaption`, `figure_title`, `alt`, `title` or `nearby`.
    pub origin: &'static str,
}

/// Deepest element nesting walked; a walk frame is a few hundred bytes, so this stays
/// far inside a 2 MiB worker stack.
const MAX_DEPTH: usize = 1000;

/// Elements whose whole subtree is never content.
const DROP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "head", "nav", "footer", "aside", "form", "iframe", "svg", "math",
    "button", "select", "textarea", "input", "object", "embed", "canvas", "audio", "video", "map", "dialog", "menu",
    "label",
];

/// Elements that start a new text block.
const BLOCK_TAGS: &[&str] = &[
    "address", "article", "blockquote", "body", "center", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "li", "main", "ol", "p",
    "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul", "caption", "html", "legend",
];

/// class/id parts (split on space, `-`, `_`) that mark boilerplate wherever they appear
/// inside a part (`docnav`, `topmenu`, `comment-list`, ...).
const HARD_SUBSTR: &[&str] = &[
    "nav", "menu", "footer", "breadcrumb", "crumb", "comment", "copyright", "advert", "sponsor", "share", "social",
    "banner", "masthead", "pagination", "cookie", "popup", "modal", "subscribe", "login", "signup", "toolbar",
];
/// class/id parts that mark boilerplate only as whole parts (`ad` but not `head`).
const HARD_EXACT: &[&str] = &["ad", "ads", "adv", "advs", "gg", "guanggao", "header", "foot", "logo", "toc", "tags", "tag", "hidden"];
/// class/id parts of side boxes: dropped only when they are mostly links (a DocBook
/// "sidebar" note is prose; a site's sidebar is a link list).
const SOFT: &[&str] = &["sidebar", "side", "aside", "related", "recommend", "widget", "extra", "rail", "hot", "rank"];

/// Short lines that are boilerplate whatever their markup.
const BOILER_TEXT: &[&str] = &["©", "版权所有", "版權所有", "copyright", "all rights reserved", "icp备", "icp證", "icp证", "公网安备", "免责声明"];

/// Parts of figure-like containers whose caption/title child describes the image.
const FIGURE_PARTS: &[&str] = &["figure", "fig", "caption", "image", "img", "photo", "pic", "picture", "thumb", "media", "mediaobject"];
/// Parts of a caption element's class inside a figure container.
const CAPTION_PARTS: &[&str] = &["caption", "title", "desc", "description", "figcaption", "txt", "text"];
/// alt/title values that say nothing about the image.
const GENERIC_ALT: &[&str] = &["image", "img", "photo", "picture", "pic", "图片", "圖片", "图像", "圖像", "照片", "logo", "icon", "banner", "untitled", "null", "undefined", "spacer", "blank"];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mark {
    None,
    Soft,
    Hard,
}

#[derive(Debug, Default)]
struct Block {
    text: String,
    chars: usize,
    link_chars: usize,
    heading: bool,
    pre: bool,
    boiler: bool,
}

struct Walker<'p> {
    params: &'p Params,
    base: Option<Url>,
    blocks: Vec<Block>,
    cur: Block,
    /// Whether the last thing appended to `cur` was whitespace not yet written.
    pending_space: bool,
    pending_newline: bool,
    images: Vec<(ImageRef, usize, bool)>,
    skipped: Vec<&'static str>,
}

/// Extracts title, main text and captioned images from decoded HTML.
/// `page_url` resolves relative image URLs.
pub fn extract(html: &str, page_url: Option<&str>, params: &Params) -> Extracted {
    let doc = Html::parse_document(html);
    let root = doc.root_element();
    let page = page_url.and_then(|u| Url::parse(u).ok());
    let base = base_href(&doc, page.as_ref()).or(page);
    let title = first_element(root, "title")
        .map(|t| normalize(&t.text().collect::<String>()))
        .filter(|t| !t.is_empty())
        .or_else(|| first_element(root, "h1").map(|t| normalize(&t.text().collect::<String>())).filter(|t| !t.is_empty()));
    let lang = root.value().attr("lang").or_else(|| root.value().attr("xml:lang")).map(|l| l.trim().to_string()).filter(|l| !l.is_empty());

    let mut w = Walker { params, base, blocks: vec![], cur: Block::default(), pending_space: false, pending_newline: false, images: vec![], skipped: vec![] };
    w.walk(*root, 0, false, false);
    w.flush();
    let Walker { blocks, images, mut skipped, .. } = w;

    let keep = classify(&blocks, params);
    let mut text = String::new();
    for (b, k) in blocks.iter().zip(&keep) {
        if *k {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&b.text);
        }
    }
    // Images count as content when they sit inside the span of kept blocks (or in a
    // kept block); logos in page headers and footers fall outside it.
    let first = keep.iter().position(|k| *k);
    let last = keep.iter().rposition(|k| *k);
    let mut kept_images = vec![];
    for (img, pos, inside) in images {
        let ok = match (first, last) {
            (Some(f), Some(l)) if inside => keep[pos.min(keep.len() - 1)] || (pos > f && pos <= l),
            // Between blocks: after the start of the content and at most right after its
            // end; a captioned figure may also lead the content (its caption is the first block).
            (Some(f), Some(l)) => (pos > f || (pos == f && matches!(img.origin, "figcaption" | "figure_title"))) && pos <= l + 1,
            _ => false,
        };
        if ok {
            kept_images.push(img);
        } else {
            skipped.push("outside_content");
        }
    }
    Extracted { title, text, lang, images: kept_images, skipped_images: skipped, blocks_total: blocks.len(), blocks_kept: keep.iter().filter(|k| **k).count() }
}

/// The absolute http(s) URLs of every `<a href>` on the page, fragments removed,
/// de-duplicated in page order: what the crawler follows.
pub fn links(html: &str, base_url: &str) -> Vec<String> {
    let doc = Html::parse_document(html);
    let page = Url::parse(base_url).ok();
    let base = base_href(&doc, page.as_ref()).or(page);
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for n in doc.tree.root().descendants() {
        let Some(e) = n.value().as_element() else { continue };
        if e.name() != "a" && e.name() != "area" {
            continue;
        }
        let Some(href) = e.attr("href") else { continue };
        if let Some(u) = resolve(base.as_ref(), href) {
            if seen.insert(u.clone()) {
                out.push(u);
            }
        }
    }
    out
}

fn resolve(base: Option<&Url>, href: &str) -> Option<String> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') {
        return None;
    }
    let mut u = match base {
        Some(b) => b.join(href).ok()?,
        None => Url::parse(href).ok()?,
    };
    if u.scheme() != "http" && u.scheme() != "https" {
        return None;
    }
    u.set_fragment(None);
    Some(u.to_string())
}

fn base_href(doc: &Html, page: Option<&Url>) -> Option<Url> {
    let b = first_element(doc.root_element(), "base")?.value().attr("href")?;
    match page {
        Some(p) => p.join(b.trim()).ok(),
        None => Url::parse(b.trim()).ok(),
    }
}

fn first_element<'a>(root: ElementRef<'a>, name: &str) -> Option<ElementRef<'a>> {
    root.descendants().filter_map(ElementRef::wrap).find(|e| e.value().name() == name)
}

/// Lower-cased class and id parts of an element.
fn parts(e: &scraper::node::Element) -> Vec<String> {
    let mut out = vec![];
    for v in [e.attr("class"), e.attr("id")].into_iter().flatten() {
        for tok in v.split_ascii_whitespace() {
            let tok = tok.to_ascii_lowercase();
            for p in tok.split(['-', '_']) {
                if !p.is_empty() {
                    out.push(p.to_string());
                }
            }
        }
    }
    out
}

fn mark_of(e: &scraper::node::Element) -> Mark {
    let name = e.name();
    if name == "html" || name == "body" {
        return Mark::None;
    }
    if e.attr("hidden").is_some() || e.attr("aria-hidden").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Mark::Hard;
    }
    if let Some(style) = e.attr("style") {
        let s: String = style.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        if s.contains("display:none") || s.contains("visibility:hidden") {
            return Mark::Hard;
        }
    }
    // Class names mark blocks only: inline markup inside prose (`span.guimenu`,
    // `code.command`) is content whatever it is called.
    if !BLOCK_TAGS.contains(&name) && name != "ins" {
        return Mark::None;
    }
    let ps = parts(e);
    if ps.iter().any(|p| HARD_EXACT.contains(&p.as_str()) || HARD_SUBSTR.iter().any(|h| p.contains(h))) {
        return Mark::Hard;
    }
    if ps.iter().any(|p| SOFT.contains(&p.as_str())) {
        return Mark::Soft;
    }
    Mark::None
}

/// Collapses whitespace; a line break between two CJK characters ([`m6_text::is_cjk`])
/// disappears (Chinese has no spaces, and the break is only source formatting).
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut ws = false;
    let mut nl = false;
    for c in s.chars() {
        if c.is_whitespace() {
            ws = true;
            nl |= c == '\n' || c == '\r';
            continue;
        }
        if ws && !out.is_empty() {
            let prev = out.chars().next_back().unwrap();
            if !(nl && is_cjk(prev) && is_cjk(c)) {
                out.push(' ');
            }
        }
        ws = false;
        nl = false;
        out.push(c);
    }
    out
}

fn count_chars(s: &str) -> usize {
    s.chars().filter(|c| !c.is_whitespace()).count()
}

impl<'p> Walker<'p> {
    #[inline(never)]
    fn flush(&mut self) {
        let mut b = std::mem::take(&mut self.cur);
        self.pending_space = false;
        self.pending_newline = false;
        if b.pre {
            b.text = b.text.trim_end().trim_start_matches('\n').to_string();
        } else {
            b.text = b.text.trim().to_string();
        }
        if !b.text.is_empty() {
            b.chars = count_chars(&b.text);
            self.blocks.push(b);
        }
    }

    #[inline(never)]
    fn push_text(&mut self, t: &str, in_link: bool, in_pre: bool) {
        if in_pre {
            self.cur.pre = true;
            if self.pending_space && !self.cur.text.is_empty() {
                self.cur.text.push(' ');
            }
            self.pending_space = false;
            self.cur.text.push_str(t);
        } else {
            let starts_ws = t.starts_with(char::is_whitespace);
            let starts_nl = t.trim_start_matches([' ', '\t']).starts_with(['\n', '\r']);
            let n = normalize(t);
            if n.is_empty() {
                if !t.is_empty() {
                    self.pending_space = true;
                    self.pending_newline |= t.contains('\n');
                }
                return;
            }
            if (self.pending_space || starts_ws) && !self.cur.text.is_empty() && !self.cur.text.ends_with(['\n', ' ']) {
                let prev = self.cur.text.chars().next_back().unwrap();
                let next = n.chars().next().unwrap();
                if !((self.pending_newline || starts_nl) && is_cjk(prev) && is_cjk(next)) {
                    self.cur.text.push(' ');
                }
            }
            self.cur.text.push_str(&n);
            self.pending_space = t.ends_with(char::is_whitespace);
            self.pending_newline = self.pending_space && t.trim_end_matches([' ', '\t']).ends_with(['\n', '\r']);
        }
        if in_link {
            self.cur.link_chars += count_chars(t);
        }
    }

    /// Walks `node`'s subtree. Unclosed tags nest deeply (every unclosed `<div>` is one
    /// level); beyond MAX_DEPTH the rest is ignored rather than risking the stack.
    fn walk(&mut self, node: NodeRef<'_, Node>, depth: usize, in_link: bool, in_pre: bool) {
        if depth > MAX_DEPTH {
            return;
        }
        match node.value() {
            Node::Text(t) => self.push_text(t, in_link, in_pre),
            Node::Element(e) => {
                let name = e.name();
                if DROP_TAGS.contains(&name) {
                    return;
                }
                // A page header is boilerplate; an article's own <header> holds its title.
                if name == "header" && !node.ancestors().any(|a| a.value().as_element().is_some_and(|p| p.name() == "article" || p.name() == "main")) {
                    return;
                }
                let mark = mark_of(e);
                if mark == Mark::Hard {
                    return;
                }
                match name {
                    "br" => {
                        if in_pre {
                            self.cur.text.push('\n');
                        } else {
                            let t = self.cur.text.trim_end().len();
                            self.cur.text.truncate(t);
                            if !self.cur.text.is_empty() {
                                self.cur.text.push('\n');
                            }
                            self.pending_space = false;
                        }
                        return;
                    }
                    "img" => {
                        self.image(node, e);
                        return;
                    }
                    "td" | "th" => self.pending_space = true,
                    _ => {}
                }
                let block = BLOCK_TAGS.contains(&name);
                if block {
                    self.flush();
                }
                let start = self.blocks.len();
                // A link whose visible text is the URL itself is a citation inside prose
                // (handbook notes end with "→ https://…"), not navigation: it does not
                // count towards link density.
                let anchor = name == "a" && e.attr("href").is_some() && !is_cited_url(node);
                let pre = in_pre || name == "pre" || name == "textarea";
                for c in node.children() {
                    self.walk(c, depth + 1, in_link || anchor, pre);
                }
                if block {
                    self.flush();
                    if matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6") {
                        for b in &mut self.blocks[start..] {
                            b.heading = true;
                        }
                    }
                    // Link lists (menus, tag clouds, "related" boxes) and soft-marked side
                    // boxes that are mostly links go as a whole.
                    // Sentences that cite another section are prose, whatever their links.
                    let (chars, links) = self.blocks[start..]
                        .iter()
                        .fold((0, 0), |(c, l), b| (c + b.chars, l + if is_sentence_with_xref(b) { 0 } else { b.link_chars }));
                    let ld = if chars == 0 { 0.0 } else { links as f64 / chars as f64 };
                    let multi = self.blocks.len() - start >= 3;
                    if (mark == Mark::Soft && ld > self.params.max_link_density / 2.0) || (multi && ld > self.params.max_link_density) {
                        for b in &mut self.blocks[start..] {
                            b.boiler = true;
                        }
                    }
                } else if name == "td" || name == "th" {
                    self.pending_space = true;
                }
            }
            Node::Document | Node::Fragment => {
                for c in node.children() {
                    self.walk(c, depth + 1, in_link, in_pre);
                }
            }
            _ => {}
        }
    }

    #[inline(never)]
    fn image(&mut self, node: NodeRef<'_, Node>, e: &scraper::node::Element) {
        let declared = |a: &str| e.attr(a).and_then(|v| {
            let v = v.trim();
            if v.ends_with('%') {
                return None;
            }
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u32>().ok()
        });
        if declared("width").is_some_and(|w| w < self.params.min_image_side) || declared("height").is_some_and(|h| h < self.params.min_image_side) {
            self.skipped.push("tiny");
            return;
        }
        // The `<source>`s of an enclosing `<picture>` offer candidates too.
        let sources: Vec<Vec<(&str, &str)>> = match node.parent().and_then(|p| p.value().as_element().map(|pe| (p, pe))) {
            Some((p, pe)) if pe.name() == "picture" => {
                p.children().filter_map(|c| c.value().as_element()).filter(|se| se.name() == "source").map(|se| se.attrs().collect()).collect()
            }
            _ => vec![],
        };
        let attrs: Vec<(&str, &str)> = e.attrs().collect();
        let src = crate::srcset::image_url(&attrs, &sources);
        let Some(src) = src else {
            self.skipped.push(if e.attr("src").is_some_and(|s| s.trim().starts_with("data:")) { "data_uri" } else { "no_src" });
            return;
        };
        let Some(url) = resolve(self.base.as_ref(), src) else {
            self.skipped.push("no_src");
            return;
        };
        match caption(node, e) {
            Some((caption, origin)) => {
                // Inside the block being built, or between two blocks.
                let pos = self.blocks.len();
                let inside = !self.cur.text.trim().is_empty();
                self.images.push((ImageRef { url, caption, origin }, pos, inside));
            }
            None => self.skipped.push("no_caption"),
        }
    }
}

/// The text of an element, normalized, skipping scripts and styles.
fn element_text(n: NodeRef<'_, Node>) -> String {
    let mut s = String::new();
    for d in n.descendants() {
        if let Node::Text(t) = d.value() {
            let hidden = d.ancestors().take_while(|a| *a != n).any(|a| a.value().as_element().is_some_and(|e| matches!(e.name(), "script" | "style" | "noscript")));
            if !hidden {
                s.push_str(t);
            }
        }
    }
    normalize(&s)
}

/// Drops a leading "图 3.1." / "圖 2-4：" / "Figure 5." label: it numbers the figure
/// in its book, it does not describe the image.
pub fn strip_figure_label(s: &str) -> &str {
    for p in ["图", "圖", "Figure", "figure", "Fig.", "fig.", "Fig", "表"] {
        if let Some(rest) = s.strip_prefix(p) {
            let rest = rest.trim_start();
            let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(rest.len());
            if num_end == 0 || !rest[..num_end].starts_with(|c: char| c.is_ascii_digit()) {
                return s;
            }
            let out = rest[num_end..].trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '：' | '、' | '.' | '。'));
            return if out.is_empty() { s } else { out };
        }
    }
    s
}

fn useful_alt(v: &str) -> Option<String> {
    let v = normalize(v);
    let lower = v.to_lowercase();
    let n = v.chars().count();
    let filename = [".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".svg"].iter().any(|x| lower.ends_with(x)) || lower.contains('/');
    if n < 2 || n > 500 || filename || GENERIC_ALT.contains(&lower.as_str()) {
        return None;
    }
    Some(v)
}

fn caption_ok(s: &str) -> bool {
    let n = count_chars(s);
    (2..=300).contains(&n)
}

/// The best caption of an `<img>`: figcaption, a figure's title/caption element, alt,
/// title, then nearby text.
fn caption(img: NodeRef<'_, Node>, e: &scraper::node::Element) -> Option<(String, &'static str)> {
    // Figure containers up to four levels up.
    for anc in img.ancestors().take(4) {
        let Some(ae) = anc.value().as_element() else { break };
        let figure_like = ae.name() == "figure" || parts(ae).iter().any(|p| FIGURE_PARTS.contains(&p.as_str()));
        if !figure_like {
            continue;
        }
        for d in anc.descendants() {
            let Some(de) = d.value().as_element() else { continue };
            if d.descendants().any(|x| x == img) {
                continue;
            }
            let origin = if de.name() == "figcaption" {
                "figcaption"
            } else if parts(de).iter().any(|p| CAPTION_PARTS.contains(&p.as_str())) {
                "figure_title"
            } else {
                continue;
            };
            let t = element_text(d);
            let t = strip_figure_label(&t);
            if caption_ok(t) {
                return Some((t.to_string(), origin));
            }
        }
    }
    if let Some(a) = e.attr("alt").and_then(useful_alt) {
        return Some((a, "alt"));
    }
    if let Some(t) = e.attr("title").and_then(useful_alt) {
        return Some((t, "title"));
    }
    // Nearby text: the enclosing block when it is short, else the short block right after it.
    let block = img.ancestors().take(3).find(|a| a.value().as_element().is_some_and(|x| BLOCK_TAGS.contains(&x.name())))?;
    let imgs_in = block.descendants().filter(|d| d.value().as_element().is_some_and(|x| x.name() == "img")).count();
    if imgs_in == 1 {
        let t = element_text(block);
        if caption_ok(&t) && count_chars(&t) <= 200 {
            return Some((strip_figure_label(&t).to_string(), "nearby"));
        }
    }
    let next = block.next_siblings().find(|s| s.value().is_element())?;
    let t = element_text(next);
    (caption_ok(&t) && count_chars(&t) <= 120).then(|| (strip_figure_label(&t).to_string(), "nearby"))
}

fn is_boiler_text(b: &Block) -> bool {
    if b.chars > 200 {
        return false;
    }
    let lower = b.text.to_lowercase();
    BOILER_TEXT.iter().any(|p| lower.contains(p))
}

/// A sentence that is mostly a cross-reference ("升级过程会在<a>第 6.7 节 “…”</a>描述。")
/// is prose: it has words of its own around the link and ends like a sentence, which
/// menu entries and breadcrumbs do not.
fn is_sentence_with_xref(b: &Block) -> bool {
    b.chars >= b.link_chars + 2 && b.text.trim_end().ends_with(['。', '！', '？', '；', '.', '!', '?', ';'])
}

/// Decides which blocks are content: long, link-poor blocks are; headings are unless
/// they are links; short blocks only next to content (list items, captions, short
/// paragraphs inside an article), never alone in a sea of navigation.
fn classify(blocks: &[Block], p: &Params) -> Vec<bool> {
    let boiler: Vec<bool> = blocks
        .iter()
        .map(|b| b.boiler || (b.chars > 0 && b.link_chars as f64 / b.chars as f64 > p.max_link_density && !is_sentence_with_xref(b)) || is_boiler_text(b))
        .collect();
    let dense: Vec<bool> = blocks
        .iter()
        .zip(&boiler)
        .map(|(b, bo)| !bo && b.chars >= p.min_block_chars && (b.link_chars as f64) / (b.chars as f64) <= p.max_link_density * 0.66)
        .collect();
    // Distances are counted over non-boilerplate blocks only, so a navigation list
    // between two paragraphs does not separate them.
    let live: Vec<usize> = (0..blocks.len()).filter(|i| !boiler[*i]).collect();
    // Between the first and the last content block, short blocks are the article's own
    // list items, table cells and short lines; outside it they must be near content.
    let first = dense.iter().position(|d| *d);
    let last = dense.iter().rposition(|d| *d);
    let inside = |i: usize| matches!((first, last), (Some(f), Some(l)) if f <= i && i <= l);
    let mut keep = vec![false; blocks.len()];
    for (k, &i) in live.iter().enumerate() {
        if inside(i) {
            keep[i] = true;
            continue;
        }
        if dense[i] {
            keep[i] = true;
            continue;
        }
        let lo = k.saturating_sub(p.neighbour_window);
        let hi = (k + p.neighbour_window + 1).min(live.len());
        let near = live[lo..hi].iter().any(|j| dense[*j]);
        // A heading counts when content follows it, wherever that is.
        let heading_before_content = blocks[i].heading && live[k + 1..].iter().take(p.neighbour_window * 2).any(|j| dense[*j]);
        keep[i] = near || heading_before_content || (blocks[i].pre && near);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(html: &str) -> Extracted {
        extract(html, Some("https://example.cn/a/page.html"), &Params::default())
    }

    const P1: &str = "长江是中国第一大河，全长约六千三百公里，流经青海、西藏、四川、云南等十一个省级行政区。";
    const P2: &str = "长江流域面积约一百八十万平方公里，占中国陆地面积的五分之一，是中华文明的重要发源地之一。";

    #[test]
    fn drops_navigation_footer_and_comments() {
        let html = format!(
            r#"<html><head><title>长江 - 百科</title><script>var x = "脚本内容不应出现";</script><style>.a{{}}</style></head><body>
            <div class="top-menu"><a href="/">首页</a> <a href="/news">新闻</a> <a href="/bbs">论坛</a></div>
            <ul><li><a href="/1">热门文章一</a></li><li><a href="/2">热门文章二</a></li><li><a href="/3">热门文章三</a></li><li><a href="/4">热门文章四</a></li></ul>
            <div id="content"><h1>长江</h1><p>{P1}</p><p>{P2}</p></div>
            <div id="comments"><p>网友评论：这篇文章写得非常好，我学到了很多关于长江的知识，谢谢作者！</p></div>
            <div class="share-box">分享到：微博 微信</div>
            <p>Copyright © 2024 某某网站 版权所有 京ICP备12345678号</p>
            <footer><p>关于我们 联系我们 这里是很长的页脚文字用于测试页脚是否被删除掉了吗</p></footer>
            </body></html>"#
        );
        let e = ex(&html);
        assert_eq!(e.title.as_deref(), Some("长江 - 百科"));
        assert_eq!(e.text, format!("长江\n\n{P1}\n\n{P2}"));
    }

    #[test]
    fn paragraphs_br_pre_and_cjk_line_breaks() {
        let html = format!("<body><div class=article><p>{P1}</p><p>第一行<br>第二行\n接着写的内容在源码里换行了，但是中文之间不应该出现空格。</p><pre>fn main() {{\n    println!(\"hi\");\n}}</pre><p>{P2}</p></div></body>");
        let e = ex(&html);
        let paras: Vec<&str> = e.text.split("\n\n").collect();
        assert_eq!(paras[1], "第一行\n第二行接着写的内容在源码里换行了，但是中文之间不应该出现空格。");
        assert_eq!(paras[2], "fn main() {\n    println!(\"hi\");\n}");
        assert_eq!(paras.len(), 4);
    }

    #[test]
    fn broken_html_still_extracts() {
        let html = format!("<html><body><div><p>{P1}<p>{P2}<div><b>未闭合的标签<i>继续</div></body");
        let e = ex(&html);
        assert!(e.text.contains(P1) && e.text.contains(P2), "{}", e.text);
        let truncated = format!("<html><body><p>{P1}</p><p>{P2}</p><p class=\"x");
        assert!(ex(&truncated).text.contains(P2));
    }

    #[test]
    fn captions_by_priority_and_tiny_images() {
        let html = format!(
            r#"<body><article><p>{P1}</p>
            <figure><img src="/img/a.jpg" alt="替代文字"><figcaption>长江三峡的夜景</figcaption></figure>
            <div class="figure"><div class="mediaobject"><img src="b.png" alt="Debian 面板"></div><p class="title"><strong>图 9.5. Webmin 面板</strong></p></div>
            <p><img src="c.png" alt="江边的渔船"></p>
            <p><img src="d.png" title="黄鹤楼远眺"></p>
            <p><img src="e.png" alt="img.png"> 武汉长江大桥建成于一九五七年</p>
            <p><img src="f.png"></p><p>图 3. 宜昌的葛洲坝</p>
            <img src="pixel.gif" width="1" height="1" alt="跟踪像素">
            <img src="data:image/png;base64,AAAA" alt="内嵌图片">
            <p>{P2}</p></article></body>"#
        );
        let e = ex(&html);
        let got: Vec<(&str, &str, &str)> = e.images.iter().map(|i| (i.url.as_str(), i.caption.as_str(), i.origin)).collect();
        assert_eq!(
            got,
            vec![
                ("https://example.cn/img/a.jpg", "长江三峡的夜景", "figcaption"),
                ("https://example.cn/a/b.png", "Webmin 面板", "figure_title"),
                ("https://example.cn/a/c.png", "江边的渔船", "alt"),
                ("https://example.cn/a/d.png", "黄鹤楼远眺", "title"),
                ("https://example.cn/a/e.png", "武汉长江大桥建成于一九五七年", "nearby"),
                ("https://example.cn/a/f.png", "宜昌的葛洲坝", "nearby"),
            ]
        );
        assert_eq!(e.skipped_images, vec!["tiny", "data_uri"]);
    }

    #[test]
    fn logo_outside_content_is_not_a_pair() {
        let html = format!(r#"<body><p id="title"><a href="/"><img src="logo.png" alt="网站标志"></a></p><div><p>{P1}</p><p>{P2}</p></div></body>"#);
        let e = ex(&html);
        assert!(e.images.is_empty());
        assert_eq!(e.skipped_images, vec!["outside_content"]);
    }

    #[test]
    fn sidebar_prose_kept_link_sidebar_dropped() {
        let html = format!(
            r#"<body><p>{P1}</p><div class="sidebar"><p>提示：长江的水量在夏季最大，航运条件也最好，游客应当提前规划行程。</p></div>
            <div class="sidebar"><a href="/x">链接一号文章标题</a><a href="/y">链接二号文章标题</a> 更多</div><p>{P2}</p></body>"#
        );
        let e = ex(&html);
        assert!(e.text.contains("提示：长江的水量"));
        assert!(!e.text.contains("链接一号"));
    }

    #[test]
    fn cross_reference_sentence_kept_nav_line_dropped() {
        let html = format!(
            r#"<body><p>{P1}</p><p>升级过程会在 <a href="u.html">第 6.7 节 “升级至下个稳定发行版”</a> 描述。</p>
            <p>上一页 <a href="p.html">3.2. 如何迁移到新的系统</a></p><p>{P2}</p></body>"#
        );
        let e = ex(&html);
        assert!(e.text.contains("升级过程会在 第 6.7 节 “升级至下个稳定发行版” 描述。"), "{}", e.text);
        assert!(!e.text.contains("如何迁移"), "{}", e.text);
    }

    #[test]
    fn links_are_absolute_and_unique() {
        let html = r##"<base href="https://b.cn/dir/"><a href="x.html#top">x</a><a href="x.html">x</a><a href="mailto:a@b">m</a><a href="#f">f</a><a href="//c.cn/y">y</a>"##;
        assert_eq!(links(html, "https://a.cn/"), vec!["https://b.cn/dir/x.html".to_string(), "https://c.cn/y".to_string()]);
    }

    #[test]
    fn figure_labels() {
        assert_eq!(strip_figure_label("图 3.1. Debian 与 OS X"), "Debian 与 OS X");
        assert_eq!(strip_figure_label("圖 2-4：網路"), "網路");
        assert_eq!(strip_figure_label("图书馆"), "图书馆");
        assert_eq!(strip_figure_label("Figure 5"), "Figure 5");
    }
}

/// True when an anchor's visible text is a URL (a citation, not a navigation link).
fn is_cited_url(node: NodeRef<'_, Node>) -> bool {
    ElementRef::wrap(node).is_some_and(|el| {
        let text: String = el.text().collect();
        let t = text.trim();
        t.starts_with("http://") || t.starts_with("https://") || t.starts_with("www.")
    })
}
