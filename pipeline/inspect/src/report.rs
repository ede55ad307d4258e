//! `m6corpus report`: the statistics of one or more datasets as a single HTML page
//! with inline SVG charts (hand-written, no scripts, fonts or other external assets),
//! so the file can be mailed, archived or opened offline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use m6_pipeline::Dataset;

use crate::stats::{human_bytes, stats, Count, Distribution, Rate, Stats};
use crate::Error;

/// Distributions of sizes; every other distribution `stats` gives is a filter score.
const SIZE_MEASURES: &[&str] = &["chars", "caption_chars", "tokens", "width", "height", "pixels"];

/// Bars shown in a category chart; the rest are summarised in a note.
const MAX_BARS: usize = 30;
/// Shards drawn one bar each; more are drawn as a histogram of sizes.
const MAX_SHARD_BARS: usize = 80;
const WIDTH: f64 = 820.0;
const BAR: &str = "#3b6ea8";
const BAR2: &str = "#c0504d";

/// Writes one self-contained HTML page describing the datasets in `dirs` to `out`.
pub fn report(dirs: &[PathBuf], out: &Path) -> Result<(), Error> {
    let mut all = vec![];
    for d in dirs {
        let s = stats(d)?;
        let ds = Dataset::open(d)?;
        let shards: Vec<(String, u64, u64)> = ds.shards().iter().map(|s| (s.file.clone(), s.bytes, s.rows)).collect();
        all.push((s, shards));
    }
    let html = render(&all);
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).map_err(|e| Error::Io { path: tmp.clone(), source: e })?;
    std::fs::rename(&tmp, out).map_err(|e| Error::Io { path: out.to_path_buf(), source: e })?;
    Ok(())
}

pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// Short number for axis labels: 1234567 -> 1.2M.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Horizontal bars, one per labelled value (largest scale = the largest value).
fn hbar_chart(items: &[(String, f64)], value_label: &dyn Fn(f64) -> String, color: &str) -> String {
    let shown = &items[..items.len().min(MAX_BARS)];
    let label_w = 230.0;
    let value_w = 130.0;
    let row = 22.0;
    let plot_w = WIDTH - label_w - value_w;
    let h = row * shown.len().max(1) as f64 + 10.0;
    let max = shown.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" font-family="sans-serif" font-size="12">"#);
    if shown.is_empty() {
        let _ = write!(s, r##"<text x="10" y="20" fill="#666">no rows</text>"##);
    }
    for (i, (label, v)) in shown.iter().enumerate() {
        let y = 5.0 + i as f64 * row;
        let w = if max > 0.0 { (v / max) * plot_w } else { 0.0 };
        let _ = write!(
            s,
            r##"<text x="{lx}" y="{ty}" text-anchor="end">{l}</text><rect x="{label_w}" y="{ry}" width="{w:.1}" height="{bh}" fill="{color}"><title>{full}: {vl}</title></rect><text x="{vx:.1}" y="{ty}" fill="#333">{vl}</text>"##,
            lx = label_w - 6.0,
            ty = y + 15.0,
            l = esc(&truncate(if label.is_empty() { "(empty)" } else { label }, 32)),
            ry = y + 3.0,
            bh = row - 6.0,
            full = esc(label),
            vl = esc(&value_label(*v)),
            vx = label_w + w + 6.0,
        );
    }
    s.push_str("</svg>");
    if items.len() > shown.len() {
        let rest: f64 = items[shown.len()..].iter().map(|(_, v)| v).sum();
        let _ = write!(s, r#"<p class="note">{} more not shown ({} in all)</p>"#, items.len() - shown.len(), esc(&value_label(rest)));
    }
    s
}

/// Vertical bars (a histogram): `bars` are (tooltip, value); x labels under the
/// first, middle and last bar.
fn vbar_chart(bars: &[(String, f64)], x_labels: &[(usize, String)], x_title: &str, y_title: &str) -> String {
    let (ml, mr, mt, mb) = (60.0, 20.0, 12.0, 44.0);
    let h = 250.0;
    let plot_w = WIDTH - ml - mr;
    let plot_h = h - mt - mb;
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let n = bars.len().max(1) as f64;
    let bw = plot_w / n;
    let mut s = String::new();
    let _ = write!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" font-family="sans-serif" font-size="11">"#);
    // Grid lines and y labels at 0, 50% and 100% of the tallest bar.
    for f in [0.0, 0.5, 1.0] {
        let y = mt + plot_h * (1.0 - f);
        let _ = write!(
            s,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" fill="#333">{l}</text>"##,
            x2 = ml + plot_w,
            tx = ml - 5.0,
            ty = y + 4.0,
            l = short(max * f),
        );
    }
    for (i, (tip, v)) in bars.iter().enumerate() {
        let bh = if max > 0.0 { v / max * plot_h } else { 0.0 };
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{bh:.1}" fill="{BAR}"><title>{t}</title></rect>"#,
            x = ml + i as f64 * bw + bw * 0.08,
            y = mt + plot_h - bh,
            w = (bw * 0.84).max(0.5),
            t = esc(tip),
        );
    }
    for (i, l) in x_labels {
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{y}" text-anchor="middle" fill="#333">{l}</text>"##,
            x = ml + (*i as f64 + 0.5) * bw,
            y = mt + plot_h + 15.0,
            l = esc(l),
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{ml}" y1="{yb}" x2="{x2}" y2="{yb}" stroke="#333"/><text x="{cx}" y="{h2}" text-anchor="middle" fill="#333">{xt}</text><text x="12" y="{cy}" text-anchor="middle" fill="#333" transform="rotate(-90 12 {cy})">{yt}</text></svg>"##,
        yb = mt + plot_h,
        x2 = ml + plot_w,
        cx = ml + plot_w / 2.0,
        h2 = h - 6.0,
        xt = esc(x_title),
        cy = mt + plot_h / 2.0,
        yt = esc(y_title),
    );
    s
}

fn histogram_chart(d: &Distribution, fmt: &dyn Fn(u64) -> String) -> String {
    let bars: Vec<(String, f64)> = d
        .histogram
        .iter()
        .map(|b| {
            let range = if b.lo == b.hi { fmt(b.lo) } else { format!("{}–{}", fmt(b.lo), fmt(b.hi)) };
            (format!("{range}: {} rows", b.count), b.count as f64)
        })
        .collect();
    let n = d.histogram.len();
    let mut labels = vec![];
    if n > 0 {
        labels.push((0, fmt(d.histogram[0].lo)));
        if n > 2 {
            labels.push((n / 2, fmt(d.histogram[n / 2].lo)));
        }
        let last = &d.histogram[n - 1];
        let tail = d.p99.is_some_and(|p| last.lo > p);
        labels.push((n - 1, if tail { format!("> {}", fmt(last.lo - 1)) } else { fmt(last.lo) }));
    }
    vbar_chart(&bars, &labels, &d.unit, "rows")
}

fn counts_items(v: &[Count]) -> Vec<(String, f64)> {
    v.iter().map(|c| (c.name.clone(), c.count as f64)).collect()
}

fn count_fmt(total: u64) -> impl Fn(f64) -> String {
    move |v: f64| if total > 0 { format!("{} ({})", v as u64, pct(v / total as f64)) } else { format!("{}", v as u64) }
}

fn section(o: &mut String, id: &str, title: &str, body: &str) {
    let _ = write!(o, r#"<section class="chart" id="{}"><h3>{}</h3>{body}</section>"#, esc(id), esc(title));
}

fn rates_chart(v: &[Rate]) -> String {
    if v.iter().all(|r| r.rate.is_some()) {
        let items: Vec<(String, f64)> = v.iter().map(|r| (r.name.clone(), r.rate.unwrap_or(0.0))).collect();
        hbar_chart(&items, &|x| pct(x), BAR2)
    } else {
        let items: Vec<(String, f64)> = v.iter().map(|r| (r.name.clone(), r.duplicates as f64)).collect();
        hbar_chart(&items, &|x| format!("{}", x as u64), BAR2)
    }
}

fn dataset_html(o: &mut String, idx: usize, s: &Stats, shards: &[(String, u64, u64)]) {
    let id = |name: &str| format!("d{idx}-{name}");
    let _ = write!(o, r#"<h2 id="d{idx}">{} <span class="kind">{} dataset</span></h2>"#, esc(&s.dir.display().to_string()), s.kind);

    // Summary cards: the numbers a reader wants first.
    let mut cards: Vec<(String, String)> = vec![
        ("rows".into(), s.rows.to_string()),
        ("shards".into(), s.shards.to_string()),
        ("bytes".into(), format!("{} ({})", human_bytes(s.bytes), s.bytes)),
    ];
    if let Some(d) = s.distributions.first() {
        cards.push((format!("median {}", d.name), format!("{} {}", d.p50.map(|v| v.to_string()).unwrap_or("-".into()), d.unit)));
    }
    if let Some(r) = &s.rejects {
        cards.push(("rejected".into(), format!("{}{}", r.rows, r.rate.map(|x| format!(" ({})", pct(x))).unwrap_or_default())));
    }
    if let Some(d) = &s.duplicates {
        cards.push(("duplicates".into(), format!("{}{}", d.rows, d.rate.map(|x| format!(" ({})", pct(x))).unwrap_or_default())));
    }
    if let Some(e) = &s.errors {
        cards.push(("malformed input".into(), e.rows.to_string()));
    }
    if let Some(p) = &s.pages {
        cards.push(("fetch failures".into(), format!("{} ({})", p.failed, pct(if s.rows > 0 { p.failed as f64 / s.rows as f64 } else { 0.0 }))));
    }
    if let Some(x) = &s.samples {
        cards.push(("tokens".into(), x.tokens.to_string()));
        cards.push(("[UNK] rate".into(), pct(x.unk_rate)));
        if let Some(c) = x.vocab_coverage {
            cards.push(("vocabulary coverage".into(), pct(c)));
        }
    }
    o.push_str(r#"<div class="cards">"#);
    for (k, v) in &cards {
        let _ = write!(o, r#"<div class="card"><div class="v">{}</div><div class="k">{}</div></div>"#, esc(v), esc(k));
    }
    o.push_str("</div>");

    for d in &s.distributions {
        let mut body = histogram_chart(d, &|v| v.to_string());
        let _ = write!(
            body,
            r#"<table class="q"><tr><th>count</th><th>mean</th><th>p0</th><th>p10</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr><tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>"#,
            d.count,
            d.mean,
            q(d.p0),
            q(d.p10),
            q(d.p50),
            q(d.p90),
            q(d.p99),
            q(d.max)
        );
        if !d.exact {
            body.push_str(r#"<p class="note">quantiles from a bounded-memory sketch, within 0.05%</p>"#);
        }
        // The filter's score columns are not lengths: say so, so a reader of the report
        // knows the chart is the one to pick a threshold from.
        let what = if SIZE_MEASURES.contains(&d.name.as_str()) { "Length distribution" } else { "Score distribution" };
        section(o, &id(&format!("len-{}", d.name)), &format!("{what}: {} ({})", d.name, d.unit), &body);
    }
    if !s.sources.is_empty() {
        section(o, &id("sources"), "Rows per source", &hbar_chart(&counts_items(&s.sources), &count_fmt(s.rows), BAR));
    }
    if !s.formats.is_empty() {
        section(o, &id("formats"), "Rows per image format", &hbar_chart(&counts_items(&s.formats), &count_fmt(s.rows), BAR));
    }
    if !s.languages.is_empty() {
        section(o, &id("lang"), "Rows per language (lang)", &hbar_chart(&counts_items(&s.languages), &count_fmt(s.rows), BAR));
    }
    // Shard sizes: one bar per shard while that stays readable.
    let shard_body = if shards.len() <= MAX_SHARD_BARS {
        let bars: Vec<(String, f64)> = shards.iter().map(|(f, b, r)| (format!("{f}: {} ({r} rows)", human_bytes(*b)), *b as f64)).collect();
        let labels: Vec<(usize, String)> = if shards.is_empty() { vec![] } else { vec![(0, "1".into()), (shards.len() - 1, shards.len().to_string())] };
        vbar_chart(&bars, &labels, "shard (manifest order)", "bytes")
    } else {
        histogram_chart(&s.shard_bytes, &|v| human_bytes(v))
    };
    section(o, &id("shards"), &format!("Shard sizes ({} shards, {})", s.shards, human_bytes(s.bytes)), &shard_body);

    if let Some(p) = &s.pages {
        section(o, &id("status"), "HTTP status codes", &hbar_chart(&counts_items(&p.status), &count_fmt(s.rows), BAR));
        if !p.error_kinds.is_empty() {
            section(o, &id("errors"), "Fetch failures by error kind", &hbar_chart(&counts_items(&p.error_kinds), &count_fmt(s.rows), BAR2));
        }
    }
    if let Some(x) = &s.samples {
        let mut body = hbar_chart(&counts_items(&x.tasks), &count_fmt(s.rows), BAR);
        let _ = write!(
            body,
            r#"<p>{} tokens, {:.1} per sample; [UNK] (id {}) {} = {}; {} distinct ids{}</p>"#,
            x.tokens,
            x.tokens_per_sample,
            x.unk_id,
            x.unk_tokens,
            pct(x.unk_rate),
            x.distinct_ids,
            match (x.vocab_size, x.vocab_coverage) {
                (Some(v), Some(c)) => format!(" of {v} ({} coverage)", pct(c)),
                _ => String::new(),
            }
        );
        section(o, &id("tasks"), "Samples per task", &body);
    }
    if let Some(r) = &s.rejects {
        let items: Vec<(String, f64)> = r.rules.iter().map(|x| (x.rule.clone(), x.count as f64)).collect();
        let mut body = hbar_chart(&items, &count_fmt(r.rows), BAR2);
        body.push_str(r#"<table><tr><th>rule</th><th>rows</th><th>mean value</th><th>threshold</th><th>examples</th></tr>"#);
        for x in &r.rules {
            let thr = if x.threshold_min == x.threshold_max { format!("{}", x.threshold_min) } else { format!("{} – {}", x.threshold_min, x.threshold_max) };
            let ex: Vec<String> = x.snippets.iter().map(|s| esc(s)).collect();
            let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td class=\"ex\">{}</td></tr>", esc(&x.rule), x.count, x.mean_value, esc(&thr), ex.join("<br>"));
        }
        body.push_str("</table>");
        let title = format!("Drop reasons ({}: {} rows{})", r.dataset, r.rows, r.rate.map(|x| format!(", {} of the input", pct(x))).unwrap_or_default());
        section(o, &id("rejects"), &title, &body);
    }
    if let Some(d) = &s.duplicates {
        let what = if d.by_source.iter().all(|r| r.rate.is_some()) { "rate" } else { "count" };
        let title = format!("Duplicate {what} per source ({}: {} rows{})", d.dataset, d.rows, d.rate.map(|x| format!(", {} of the input", pct(x))).unwrap_or_default());
        section(o, &id("dup-source"), &title, &rates_chart(&d.by_source));
        section(o, &id("dup-reason"), &format!("Duplicate {what} per reason"), &rates_chart(&d.by_reason));
    }
    if let Some(e) = &s.errors {
        let mut body = hbar_chart(&counts_items(&e.kinds), &count_fmt(e.rows), BAR2);
        for x in &e.examples {
            let _ = write!(body, r#"<p class="ex">{}</p>"#, esc(x));
        }
        section(o, &id("malformed"), &format!("Malformed input ({}: {} records)", e.dataset, e.rows), &body);
    }
    if !s.sides.is_empty() {
        o.push_str(r#"<h3>Side datasets</h3><table><tr><th>name</th><th>kind</th><th>rows</th><th>shards</th><th>bytes</th></tr>"#);
        for x in &s.sides {
            let _ = write!(o, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&x.name), x.kind, x.rows, x.shards, human_bytes(x.bytes));
        }
        o.push_str("</table>");
    }
    if !s.runs.is_empty() {
        o.push_str(r#"<h3>Runs</h3><table><tr><th>stage</th><th>started</th><th>slice</th><th>tasks run</th><th>skipped</th><th>threads</th><th>rows in</th><th>rows out</th><th>seconds</th><th>rows/s</th></tr>"#);
        for r in &s.runs {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.0}</td></tr>",
                esc(&r.stage),
                esc(&r.started_at),
                r.task_index,
                r.task_count,
                r.tasks_run,
                r.tasks_skipped,
                r.threads,
                r.rows_in,
                r.rows_out,
                r.seconds,
                r.rows_per_s
            );
        }
        o.push_str("</table>");
    }
}

fn q(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:24px auto;color:#222;padding:0 12px}\
h1{font-size:24px}h2{border-bottom:2px solid #3b6ea8;padding-bottom:4px;margin-top:40px;font-size:20px;word-break:break-all}\
h3{font-size:15px;margin:22px 0 6px}.kind{font-weight:normal;color:#666;font-size:14px}\
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#f3f6fa;border-radius:6px;padding:8px 14px;min-width:110px}\
.card .v{font-size:18px;font-weight:bold}.card .k{color:#555;font-size:12px}\
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}\
td:first-child,th:first-child{text-align:left}.ex{text-align:left;color:#444;font-size:12px}.note{color:#777;font-size:12px}\
nav a{margin-right:12px}";

fn render(all: &[(Stats, Vec<(String, u64, u64)>)]) -> String {
    let mut o = String::new();
    o.push_str("<!DOCTYPE html><html lang=\"zh\"><head><meta charset=\"utf-8\"><title>m6corpus report</title>");
    let _ = write!(o, "<style>{STYLE}</style></head><body><h1>m6corpus dataset report</h1><nav>");
    for (i, (s, _)) in all.iter().enumerate() {
        let _ = write!(o, r##"<a href="#d{i}">{} ({})</a>"##, esc(&s.dir.display().to_string()), s.kind);
    }
    o.push_str("</nav>");
    if all.len() > 1 {
        let items: Vec<(String, f64)> = all.iter().map(|(s, _)| (format!("{} ({})", s.dir.display(), s.kind), s.rows as f64)).collect();
        let mut body = hbar_chart(&items, &|v| format!("{}", v as u64), BAR);
        body.push_str("<table><tr><th>dataset</th><th>kind</th><th>rows</th><th>shards</th><th>bytes</th></tr>");
        for (s, _) in all {
            let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&s.dir.display().to_string()), s.kind, s.rows, s.shards, human_bytes(s.bytes));
        }
        body.push_str("</table>");
        section(&mut o, "overview", "Rows per dataset", &body);
    }
    for (i, (s, shards)) in all.iter().enumerate() {
        dataset_html(&mut o, i, s, shards);
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn hbar_chart_draws_one_bar_per_item_up_to_the_cap() {
        let items: Vec<(String, f64)> = (0..40).map(|i| (format!("s{i}"), (40 - i) as f64)).collect();
        let svg = hbar_chart(&items, &|v| format!("{v}"), BAR);
        assert_eq!(svg.matches("<rect").count(), MAX_BARS);
        assert!(svg.contains("10 more not shown"));
    }
}
