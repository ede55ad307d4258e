//! Shard I/O through the runner: write/read round trips (property-tested), rollover
//! at the size limit, schema refusal by file name, and determinism across threads.

use std::path::PathBuf;

use m6_pipeline::{read_parquet, Dataset, OutputSpec, RunOptions, ShardLimits, Stage, Task, TaskOutput};
use m6_schemas::{content_id, Document, Kind, Record};
use proptest::prelude::*;

/// Writes `docs`, split into `tasks` tasks, through the real runner.
struct Docs {
    docs: Vec<Document>,
    tasks: usize,
}

impl Stage for Docs {
    fn name(&self) -> &'static str {
        "docs"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &Docs {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, m6_pipeline::BoxError> {
        Ok(OutputSpec::new(Kind::Document))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.tasks).map(|i| Task { id: content_id(&[&(i as u64).to_le_bytes()]), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), m6_pipeline::BoxError> {
        let i = (0..self.tasks).position(|i| content_id(&[&(i as u64).to_le_bytes()]) == task.id).unwrap();
        let mine: Vec<Document> = self.docs.iter().enumerate().filter(|(j, _)| j % self.tasks == i).map(|(_, d)| d.clone()).collect();
        for chunk in mine.chunks(7) {
            out.write_rows(chunk)?;
        }
        Ok(())
    }
}

fn opts(threads: usize) -> RunOptions {
    RunOptions { threads, progress: false, ..Default::default() }
}

fn doc_strategy() -> impl Strategy<Value = Document> {
    ("[a-z]{1,8}", proptest::option::of("[0-9]{1,6}"), proptest::option::of("\\PC{0,20}"), "\\PC{0,200}", proptest::option::of("\\{\"k\": [0-9]{1,3}\\}"))
        .prop_map(|(source, sid, title, text, meta)| Document::new(&source, sid, None, title, text, meta))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn documents_round_trip_through_shards(docs in proptest::collection::vec(doc_strategy(), 0..60), tasks in 1usize..4) {
        let t = tempfile::tempdir().unwrap();
        m6_pipeline::run_stage(&Docs { docs: docs.clone(), tasks }, &[], t.path(), &opts(2)).unwrap();
        let mut back: Vec<Document> = Dataset::open(t.path()).unwrap().read_all().unwrap();
        let mut want = docs.clone();
        back.sort_by(|a, b| a.id.cmp(&b.id));
        want.sort_by(|a, b| a.id.cmp(&b.id));
        prop_assert_eq!(back, want);
    }
}

fn real_like_docs(n: usize) -> Vec<Document> {
    // Varied, incompressible-enough text so that shard sizes are meaningful.
    (0..n)
        .map(|i| {
            let text: String = (0..400).map(|j| char::from_u32(0x4e00 + ((i * 7919 + j * 104_729) % 20_000) as u32).unwrap()).collect();
            Document::new("t", Some(i.to_string()), None, None, text, None)
        })
        .collect()
}

#[test]
fn shards_roll_over_at_the_size_limit_and_stay_readable() {
    let t = tempfile::tempdir().unwrap();
    let mut o = opts(1);
    o.limits = ShardLimits { shard_bytes: 64 << 10, row_group_bytes: 16 << 10, zstd_level: 3 };
    m6_pipeline::run_stage(&Docs { docs: real_like_docs(2000), tasks: 1 }, &[], t.path(), &o).unwrap();
    let ds = Dataset::open(t.path()).unwrap();
    assert!(ds.shards().len() > 5, "{} shards", ds.shards().len());
    assert_eq!(ds.rows(), 2000);
    let r = m6_pipeline::verify(t.path()).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
}

#[test]
fn output_is_byte_identical_whatever_the_thread_count() {
    let docs = real_like_docs(500);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    m6_pipeline::run_stage(&Docs { docs: docs.clone(), tasks: 5 }, &[], a.path(), &opts(1)).unwrap();
    m6_pipeline::run_stage(&Docs { docs, tasks: 5 }, &[], b.path(), &opts(2)).unwrap();
    let sa = Dataset::open(a.path()).unwrap().manifest().shards.clone();
    let sb = Dataset::open(b.path()).unwrap().manifest().shards.clone();
    assert_eq!(sa, sb);
}

#[test]
fn a_shard_of_another_kind_is_refused_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    m6_pipeline::run_stage(&Docs { docs: real_like_docs(3), tasks: 1 }, &[], t.path(), &opts(1)).unwrap();
    let ds = Dataset::open(t.path()).unwrap();
    let path = ds.shard_path(&ds.shards()[0]);
    let err = read_parquet(&path, Some(Kind::Page), 100).err().unwrap().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("page"), "{err}");
    // Rows of the right kind read back with their record type.
    let b = read_parquet(&path, Some(Kind::Document), 100).unwrap().next().unwrap().unwrap();
    assert_eq!(Document::from_batch(&b).unwrap().len(), 3);
}

#[test]
fn a_stage_writing_the_wrong_kind_fails_and_commits_nothing() {
    struct Wrong;
    impl Stage for Wrong {
        fn name(&self) -> &'static str {
            "wrong"
        }
        fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
            Ok(Box::new(self))
        }
    }
    impl m6_pipeline::StageRun for &Wrong {
        fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, m6_pipeline::BoxError> {
            Ok(OutputSpec::new(Kind::Page))
        }
        fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
            Ok(vec![Task { id: "0".repeat(64), inputs: vec![] }])
        }
        fn process(&self, _ctx: &m6_pipeline::RunContext, _: &Task, out: &mut TaskOutput) -> Result<(), m6_pipeline::BoxError> {
            out.write_rows(&real_like_docs(1))?;
            Ok(())
        }
    }
    let t = tempfile::tempdir().unwrap();
    let err = m6_pipeline::run_stage(&Wrong, &[], t.path(), &opts(1)).unwrap_err().to_string();
    assert!(err.contains("document") || err.contains("page"), "{err}");
    assert_eq!(Dataset::open(t.path()).unwrap().shards().len(), 0);
    let files: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n.ends_with(".parquet")).collect();
    assert!(files.is_empty(), "{files:?}");
}

/// A process killed inside a manifest write leaves `.manifest.json.PID.tmp` (main or
/// side dataset) or `._plan.json.PID.tmp`, and one killed inside a commit leaves
/// `_commits/.TASK.json.PID.tmp`; the rerun removes them (found by the kill -9 tests of
/// tests/scale.rs), so a killed-and-rerun dataset holds exactly the files of an
/// uninterrupted one.
#[test]
fn a_rerun_removes_manifest_temporaries_a_killed_writer_left() {
    struct WithSide(Docs);
    impl Stage for WithSide {
        fn name(&self) -> &'static str {
            "docs"
        }
        fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
            Ok(Box::new(self))
        }
    }
    impl m6_pipeline::StageRun for &WithSide {
        fn outputs(&self, k: &[Kind]) -> Result<OutputSpec, m6_pipeline::BoxError> {
            Ok((&self.0).outputs(k)?.with_side("rejects", Kind::Reject))
        }
        fn plan(&mut self, i: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
            m6_pipeline::StageRun::plan(&mut &self.0, i)
        }
        fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), m6_pipeline::BoxError> {
            (&self.0).process(_ctx, task, out)
        }
    }
    let stage = WithSide(Docs { docs: real_like_docs(20), tasks: 2 });
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    m6_pipeline::run_stage(&stage, &[], &out, &opts(1)).unwrap();
    // One task killed between writing its commit record and renaming it into place:
    // its record is missing (the task is redone) and the temporary stays behind.
    let task = content_id(&[&0u64.to_le_bytes()]);
    let record = out.join("_commits").join(format!("{task}.json"));
    let record_tmp = out.join("_commits").join(format!(".{task}.json.999999.tmp"));
    std::fs::rename(&record, &record_tmp).unwrap();
    let planted = [out.join(".manifest.json.999999.tmp"), out.join("._plan.json.999999.tmp"), out.join("rejects/.manifest.json.999999.tmp"), record_tmp];
    for p in &planted {
        std::fs::write(p, b"{\"half\": ").unwrap();
    }
    // Not a temporary of a file written under the lock: left alone.
    let other = out.join(".notes.999999.tmp");
    std::fs::write(&other, b"x").unwrap();
    m6_pipeline::run_stage(&stage, &[], &out, &opts(1)).unwrap();
    for p in &planted {
        assert!(!p.exists(), "{} survived the rerun", p.display());
    }
    assert!(other.exists());
    assert!(record.exists(), "the task whose record was lost is committed again");
    assert_eq!(Dataset::open(&out).unwrap().read_all::<Document>().unwrap().len(), 20);
}

/// Wide rows are read in batches of at most `BATCH_BYTES` (one row at least); a read of
/// the narrow columns alone keeps whole batches.
#[test]
fn wide_rows_come_in_batches_of_bounded_bytes() {
    use m6_pipeline::dataset::BATCH_BYTES;
    use m6_schemas::{Image, ImageSignals};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.parquet");
    // 150 rows of 100 KB (incompressible bytes, as JPEG bodies are) and 10 of 5 MB.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect()
    };
    let rows = |n: usize, size: usize, noise: &mut dyn FnMut(usize) -> Vec<u8>| -> Vec<Image> {
        (0..n)
            .map(|i| Image { id: format!("{size}-{i}"), url: None, page_url: None, source: "t".into(), source_id: None, bytes: noise(size), width: 1, height: 1, format: "jpeg".into(), signals: ImageSignals::default() })
            .collect()
    };
    for (n, size, file) in [(150usize, 100_000usize, "a"), (10, 5_000_000, "b")] {
        let p = path.with_file_name(format!("{file}.parquet"));
        let batch = Image::to_batch(&rows(n, size, &mut noise)).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let sizes: Vec<usize> = read_parquet(&p, Some(Kind::Image), 4096).unwrap().map(|b| b.unwrap().num_rows()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), n, "{file}");
        let most = (BATCH_BYTES as usize / size).max(1);
        assert!(sizes.iter().all(|&s| s <= most) && sizes.len() >= n / most, "{file}: batches of {sizes:?} rows, at most {most} wanted");
        let narrow: Vec<usize> = m6_pipeline::read_parquet_columns(&p, Some(Kind::Image), 4096, Some(&["id", "width"])).unwrap().map(|b| b.unwrap().num_rows()).collect();
        assert_eq!(narrow, vec![n], "{file}: the id and width columns alone fit one batch");
    }
}
