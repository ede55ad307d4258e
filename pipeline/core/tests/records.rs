//! Property test: every `Record` kind survives the real write/read path — rows written
//! by a stage through `TaskOutput::write_rows` (Parquet shards, commit, manifest) and
//! read back with `Dataset::read_all` — unchanged, whatever the values (empty and
//! absent optionals, empty lists and bytes, any Unicode, extreme numbers) and however
//! the rows are split over tasks and batches.

use std::fmt::Debug;
use std::path::PathBuf;

use m6_pipeline::{Dataset, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::{content_id, DocScores, Document, Duplicate, Image, InputError, Kind, Page, Pair, Record, Reject, Sample, Signature};
use proptest::option::of;
use proptest::prelude::*;

/// Writes `rows` of one kind, split round-robin over `tasks` tasks, in batches of `batch`.
struct Rows<R> {
    rows: Vec<R>,
    tasks: usize,
    batch: usize,
}

fn task_id(i: usize) -> String {
    content_id(&[&(i as u64).to_le_bytes()])
}

impl<R: Record + Clone + Send + Sync> Stage for Rows<R> {
    fn name(&self) -> &'static str {
        "rows"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl<R: Record + Clone + Send + Sync> m6_pipeline::StageRun for &Rows<R> {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, m6_pipeline::BoxError> {
        Ok(OutputSpec::new(R::KIND))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.tasks).map(|i| Task { id: task_id(i), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), m6_pipeline::BoxError> {
        let i = (0..self.tasks).position(|i| task_id(i) == task.id).unwrap();
        let mine: Vec<R> = self.rows.iter().skip(i).step_by(self.tasks).cloned().collect();
        for chunk in mine.chunks(self.batch) {
            out.write_rows(chunk)?;
        }
        Ok(())
    }
}

/// Writes and reads back; compares as multisets (task order is the runner's business).
fn round_trip<R: Record + Clone + Send + Sync + PartialEq + Debug>(rows: Vec<R>, tasks: usize, batch: usize) -> Result<(), TestCaseError> {
    let t = tempfile::tempdir().unwrap();
    let opts = RunOptions { threads: 2, progress: false, ..Default::default() };
    m6_pipeline::run_stage(&Rows { rows: rows.clone(), tasks, batch }, &[], t.path(), &opts).unwrap();
    let back: Vec<R> = Dataset::open(t.path()).unwrap().read_all().unwrap();
    let key = |r: &R| format!("{r:?}");
    let (mut back, mut want) = (back, rows);
    back.sort_by_key(key);
    want.sort_by_key(key);
    prop_assert_eq!(back, want);
    Ok(())
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode (incl. the empty string), with CJK and full-width forms likely.
    prop_oneof!["\\PC{0,30}", "[床前明月光國學ＡＢ１，。 \n\t]{0,20}", Just(String::new())]
}
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..64)
}
/// Finite floats (NaN never equals itself, so it cannot round-trip by `==`).
fn f32s() -> impl Strategy<Value = f32> {
    prop_oneof![any::<f32>().prop_filter("finite", |x| x.is_finite()), Just(0.0f32), Just(f32::MAX), Just(f32::MIN_POSITIVE)]
}
fn f64s() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>().prop_filter("finite", |x| x.is_finite()), Just(-0.0f64), Just(f64::MAX), Just(f64::INFINITY)]
}

fn page() -> impl Strategy<Value = Page> {
    (
        (text(), text(), of(text()), of(any::<u16>()), proptest::collection::vec((text(), text()), 0..4), of(text())),
        (of(bytes()), any::<i64>(), text(), any::<u16>(), of(text()), of(text()), of(text())),
    )
        .prop_map(|((id, url, final_url, status, headers, content_type), (body, fetch_time, source, depth, error_kind, error, caption))| Page {
            id,
            url,
            final_url,
            status,
            headers,
            content_type,
            body,
            fetch_time,
            source,
            depth,
            error_kind,
            error,
            caption,
        })
}

fn scores() -> impl Strategy<Value = DocScores> {
    (
        (of(f32s()), of(f32s()), of(text()), of(f32s())),
        (of(any::<u32>()), of(any::<u32>()), of(any::<u32>()), of(any::<u32>()), of(any::<u32>()), of(any::<u32>()), of(any::<u32>())),
    )
        .prop_map(|((quality, perplexity, lang, lang_score), (spam_hits, blocklist_hits, pii_email, pii_phone, pii_id, pii_card, pii_ip))| DocScores {
            quality,
            perplexity,
            lang,
            lang_score,
            spam_hits,
            blocklist_hits,
            pii_email,
            pii_phone,
            pii_id,
            pii_card,
            pii_ip,
        })
}

fn document() -> impl Strategy<Value = Document> {
    (text(), of(text()), text(), of(text()), of(text()), text(), any::<u32>(), of(text()), scores()).prop_map(
        |(id, url, source, source_id, title, text, char_count, meta, scores)| Document { id, url, source, source_id, title, text, char_count, meta, scores },
    )
}

fn image() -> impl Strategy<Value = Image> {
    (text(), of(text()), of(text()), text(), of(text()), bytes(), any::<u32>(), any::<u32>(), text())
        .prop_map(|(id, url, page_url, source, source_id, bytes, width, height, format)| Image { id, url, page_url, source, source_id, bytes, width, height, format, signals: Default::default() })
}

fn pair() -> impl Strategy<Value = Pair> {
    ((text(), text(), bytes(), any::<u32>(), any::<u32>(), text()), (text(), text(), of(text()), of(text()), text(), of(text()))).prop_map(
        |((id, image_id, image_bytes, width, height, format), (caption, caption_origin, url, image_url, source, source_id))| Pair {
            id,
            image_id,
            image_bytes,
            width,
            height,
            format,
            caption,
            caption_origin,
            url,
            image_url,
            source,
            source_id,
            signals: Default::default(),
        },
    )
}

fn sample() -> impl Strategy<Value = Sample> {
    (text(), text(), proptest::collection::vec(any::<i32>(), 0..40), any::<u32>(), of(bytes()), proptest::collection::vec(text(), 0..4))
        .prop_map(|(id, task, input_ids, length, image_patches, source_ids)| Sample { id, task, input_ids, length, image_patches, source_ids })
}

fn duplicate() -> impl Strategy<Value = Duplicate> {
    (text(), of(text()), text(), text(), text(), f32s(), text())
        .prop_map(|(id, source_id, source, cluster_id, kept_id, similarity, reason)| Duplicate { id, source_id, source, cluster_id, kept_id, similarity, reason })
}

fn signature() -> impl Strategy<Value = Signature> {
    (text(), any::<u32>(), bytes()).prop_map(|(id, size, signature)| Signature { id, size, signature })
}

fn reject() -> impl Strategy<Value = Reject> {
    (text(), of(text()), text(), text(), f64s(), f64s(), of(text()))
        .prop_map(|(id, source_id, source, rule, value, threshold, snippet)| Reject { id, source_id, source, rule, value, threshold, snippet })
}

fn input_error() -> impl Strategy<Value = InputError> {
    (text(), text(), text(), text()).prop_map(|(file, location, kind, message)| InputError { file, location, kind, message })
}

fn rows<S: Strategy>(s: S) -> impl Strategy<Value = (Vec<S::Value>, usize, usize)> {
    (proptest::collection::vec(s, 0..24), 1usize..4, 1usize..9)
}

proptest! {
    // Each case runs the real runner (temp folder, shards, commit): few cases, many rows.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn pages((r, t, b) in rows(page())) { round_trip(r, t, b)?; }
    #[test]
    fn documents((r, t, b) in rows(document())) { round_trip(r, t, b)?; }
    #[test]
    fn images((r, t, b) in rows(image())) { round_trip(r, t, b)?; }
    #[test]
    fn pairs((r, t, b) in rows(pair())) { round_trip(r, t, b)?; }
    #[test]
    fn samples((r, t, b) in rows(sample())) { round_trip(r, t, b)?; }
    #[test]
    fn duplicates((r, t, b) in rows(duplicate())) { round_trip(r, t, b)?; }
    #[test]
    fn signatures((r, t, b) in rows(signature())) { round_trip(r, t, b)?; }
    #[test]
    fn rejects((r, t, b) in rows(reject())) { round_trip(r, t, b)?; }
    #[test]
    fn input_errors((r, t, b) in rows(input_error())) { round_trip(r, t, b)?; }
}
