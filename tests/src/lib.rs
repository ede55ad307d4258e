//! Helpers for the end-to-end tests in `tests/tests/`: they run the real `m6corpus`
//! binary (built by `make test` before the tests) on real data fetched by `make data`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The release `m6corpus` binary; `M6CORPUS_BIN` overrides.
pub fn bin() -> PathBuf {
    let p = std::env::var_os("M6CORPUS_BIN").map(PathBuf::from).unwrap_or_else(|| repo().join("target/release/m6corpus"));
    assert!(p.is_file(), "{} is missing: build it with `cargo build --release --bins` (make test does)", p.display());
    p
}

/// Where `make data` put the real sample data; `M6_DATA_DIR` overrides.
pub fn data_dir() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("data"));
    assert!(d.join("chinese-poetry").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

/// Makes `dir` (and its parents) and copies the named photos of `data/photos` into it.
pub fn photo_folder(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let photos = data_dir().join("photos");
    for name in names {
        std::fs::copy(photos.join(name), dir.join(name)).unwrap();
    }
}

/// The project's Python venv (made by `make venv`), for pyarrow checks.
pub fn venv_python() -> PathBuf {
    let v = std::env::var_os("M6_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    let py = v.join("bin/python");
    assert!(py.is_file(), "{} is missing: run `make venv`", py.display());
    py
}

/// Runs `m6corpus ARGS` and returns its output, whatever the exit code.
pub fn m6(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env("RUST_LOG", "warn").output().expect("m6corpus runs")
}

/// Runs `m6corpus ARGS`, panicking with its stderr unless it succeeds; returns stdout.
pub fn m6_ok(args: &[&str]) -> String {
    let out = m6(args);
    assert!(
        out.status.success(),
        "m6corpus {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSONL file of real poems (one `{id, title, author, text}` per line), taken in file
/// order from the chinese-poetry package: the first `n` poems of the Tang collection.
pub fn poems_jsonl(dest: &Path, n: usize) -> PathBuf {
    let poems = poems(n);
    let mut out = String::new();
    for p in &poems {
        out.push_str(&serde_json::to_string(p).unwrap());
        out.push('\n');
    }
    std::fs::write(dest, out).unwrap();
    dest.to_path_buf()
}

/// The first `n` Tang poems as JSON objects `{id, title, author, text}`.
pub fn poems(n: usize) -> Vec<serde_json::Value> {
    let dir = data_dir().join("chinese-poetry/dist/quantangshi");
    let mut files: Vec<PathBuf> = walk(&dir).into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("poet.tang")).collect();
    files.sort_by_key(|p| {
        // poet.tang.12000.json -> 12000, so files come in collection order.
        p.file_stem().unwrap().to_string_lossy().rsplit('.').next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
    });
    let mut out = vec![];
    for f in files {
        let arr: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for p in arr {
            let text: String = p["paragraphs"].as_array().map(|a| a.iter().filter_map(|l| l.as_str()).collect::<Vec<_>>().join("\n")).unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            out.push(serde_json::json!({"id": p["id"], "title": p["title"], "author": p["author"], "text": text}));
            if out.len() == n {
                return out;
            }
        }
    }
    out
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Text of an HTML fragment: tags removed and the entities the handbook uses decoded.
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
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#160;", "\u{a0}").replace("&amp;", "&")
}
