//! Issue 14 points 4 and 6 through the real binary: a gzip-compressed JSONL line of
//! hundreds of MiB goes to `errors/` without being held in memory, and a truncated
//! `.jsonl.gz` of real poems keeps every complete line and records the damage.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use m6_pipeline::Dataset;
use m6_schemas::*;
use m6_tests::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `m6corpus ARGS` and returns (success, stderr, peak RSS of the child in KiB),
/// the peak taken from the kernel's accounting of the reaped child (wait4).
fn m6_with_peak_rss(args: &[&str]) -> (bool, String, u64) {
    let child = Command::new(bin()).args(args).env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet reaped (std's Child is not waited on).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, err, usage.ru_maxrss as u64)
}

#[test]
fn a_gzip_line_of_hundreds_of_mib_goes_to_errors_in_bounded_memory() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("big.jsonl.gz");
    let poems = poems(10);
    // 300 MiB of real text on one line, written in pieces: it compresses to a few
    // MiB, so only the reader can hold it whole.
    let huge_mib = 300;
    {
        let f = std::fs::File::create(&input).unwrap();
        let mut e = flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::fast());
        for p in &poems[..5] {
            writeln!(e, "{p}").unwrap();
        }
        let piece: String = poems.iter().flat_map(|p| p["text"].as_str().unwrap().chars()).filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect::<String>().repeat(64);
        e.write_all(b"{\"id\": \"huge\", \"text\": \"").unwrap();
        let mut written = 0usize;
        while written < huge_mib << 20 {
            e.write_all(piece.as_bytes()).unwrap();
            written += piece.len();
        }
        e.write_all(b"\"}\n").unwrap();
        for p in &poems[5..] {
            writeln!(e, "{p}").unwrap();
        }
        e.finish().unwrap().flush().unwrap();
    }
    let compressed = std::fs::metadata(&input).unwrap().len();
    assert!(compressed < 64 << 20, "the input is small on disk ({compressed} bytes)");
    let out = t.path().join("docs");
    let (ok, err, peak_kib) = m6_with_peak_rss(&["ingest", "--input", s(&input), "--output", s(&out), "--quiet"]);
    assert!(ok, "ingest failed: {err}");
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    let ids: Vec<&str> = docs.iter().map(|d| d.source_id.as_deref().unwrap()).collect();
    let want: Vec<String> = poems.iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, want, "every other line is ingested, in order");
    let errors: Vec<InputError> = Dataset::open(&out.join("errors")).unwrap().read_all().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.kind, "too_large");
    assert!(e.file.ends_with("big.jsonl.gz"), "{e:?}");
    assert!(e.location.starts_with("line 6 (offset "), "{e:?}");
    assert!(e.message.contains("max_record_mb=64"), "{e:?}");
    // The default cap is 64 MiB: the line (300 MiB) was never held, so the process
    // stays far below the line's size (a bound, not a timing: the figure is RSS).
    assert!(peak_kib < 200 << 10, "peak RSS {} MiB for a {huge_mib} MiB line", peak_kib >> 10);
    eprintln!("peak RSS {} MiB ingesting a {huge_mib} MiB line ({compressed} bytes compressed)", peak_kib >> 10);

    // A smaller cap, set in the config, bites on ordinary lines too and says so.
    let out2 = t.path().join("docs2");
    m6_ok(&["ingest", "--input", s(&input), "--output", s(&out2), "--quiet", "--set", "max_record_mb=1"]);
    assert_eq!(Dataset::open(&out2).unwrap().read_all::<Document>().unwrap().len(), 10);
    let bad = m6(&["ingest", "--input", s(&input), "--output", s(&t.path().join("x")), "--quiet", "--set", "max_record_mb=0"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("max_record_mb"));
}

#[test]
fn a_truncated_jsonl_gz_keeps_every_complete_line_and_records_the_damage() {
    let t = tempfile::tempdir().unwrap();
    let plain = poems_jsonl(&t.path().join("poems.jsonl"), 3000);
    let text = std::fs::read(&plain).unwrap();
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::default());
    e.write_all(&text).unwrap();
    let full = e.finish().unwrap();
    let cut_at = full.len() / 2;
    let input = t.path().join("in").join("cut.jsonl.gz");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    std::fs::write(&input, &full[..cut_at]).unwrap();
    // What decodes from the truncated file, independently of m6corpus.
    let mut decoded = vec![];
    let _ = flate2::read::MultiGzDecoder::new(&full[..cut_at]).read_to_end(&mut decoded);
    let complete = decoded.iter().filter(|&&b| b == b'\n').count();
    assert!(complete > 500 && complete < 3000, "{complete}");

    let out = t.path().join("docs");
    m6_ok(&["ingest", "--input", s(input.parent().unwrap()), "--output", s(&out), "--quiet"]);
    let docs: Vec<Document> = Dataset::open(&out).unwrap().read_all().unwrap();
    let want: Vec<String> = text.split(|&b| b == b'\n').take(complete).map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    let got: Vec<String> = docs.iter().map(|d| d.source_id.clone().unwrap()).collect();
    assert_eq!(got, want, "every complete line before the damage is kept");
    let errors: Vec<InputError> = Dataset::open(&out.join("errors")).unwrap().read_all().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.kind, "truncated", "{e:?}");
    assert!(e.file.ends_with("cut.jsonl.gz"), "{e:?}");
    assert_eq!(e.location, format!("offset {cut_at}"), "the damage is where the file ends");
    assert!(e.message.contains(&format!("kept the {complete} complete lines")), "{e:?}");
    let v = m6_ok(&["verify", s(&out)]);
    assert!(v.contains(": ok"), "{v}");

    // Corruption inside the stream (not at its end) is named as such.
    let mut bad = full.clone();
    let mid = bad.len() / 3;
    for b in &mut bad[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let input2 = t.path().join("in2").join("bad.jsonl.gz");
    std::fs::create_dir_all(input2.parent().unwrap()).unwrap();
    std::fs::write(&input2, &bad).unwrap();
    let out2 = t.path().join("docs2");
    m6_ok(&["ingest", "--input", s(&input2), "--output", s(&out2), "--quiet"]);
    let kept = Dataset::open(&out2).unwrap().read_all::<Document>().unwrap().len();
    let errors: Vec<InputError> = Dataset::open(&out2.join("errors")).unwrap().read_all().unwrap();
    assert!(kept > 0 && kept < 3000, "{kept}");
    assert!(errors.iter().any(|e| e.kind == "gzip" || e.kind == "json" || e.kind == "utf8"), "{errors:?}");
}
