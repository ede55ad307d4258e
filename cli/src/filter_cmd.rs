//! `m6corpus lm ...`: train the fluency model on a document dataset, and score text
//! with it (to pick a `max_perplexity` threshold from real data).

use std::io::BufRead;
use std::path::PathBuf;

use m6_pipeline::Dataset;
use m6_schemas::{column, document, Kind, Str};

use m6_stage_filter::lm::{Counter, Model};
use m6_stage_filter::normalize::NormalizeConfig;

#[derive(Debug, clap::Subcommand)]
pub enum LmCommand {
    /// Train a character n-gram model (modified Kneser–Ney) on document datasets.
    Train {
        /// Document dataset folder(s) to learn from.
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        /// Model file to write.
        #[arg(long)]
        output: PathBuf,
        /// N-gram order (1..=6).
        #[arg(long, default_value_t = 5)]
        order: usize,
        /// Memory bound: at most this many n-grams of order >= 2 are held while
        /// counting (about 40 bytes each); rare ones are pruned beyond it.
        #[arg(long, default_value_t = 8_000_000)]
        max_ngrams: usize,
        /// Normalise text as the filter's defaults do before counting (use the same
        /// setting the filter's `[filter.normalize]` has, so scores match).
        #[arg(long)]
        normalize: bool,
        /// Convert traditional to simplified before counting (implies --normalize).
        #[arg(long)]
        t2s: bool,
        /// Stop after this many documents (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the perplexity of each line of a file (or stdin), or of each document of a dataset.
    Score {
        /// Model file written by `lm train`.
        #[arg(long)]
        model: PathBuf,
        /// A text file (one text per line), a document dataset folder, or `-` for stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl LmCommand {
    pub fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            LmCommand::Train { input, output, order, max_ngrams, normalize, t2s, limit, json } => {
                let norm = (normalize || t2s).then(|| NormalizeConfig { t2s, ..Default::default() });
                let mut counter = Counter::new(order, max_ngrams)?;
                let mut docs = 0u64;
                'outer: for dir in &input {
                    let ds = Dataset::open(dir)?;
                    if ds.kind() != Kind::Document {
                        return Err(format!("{}: lm train reads document datasets, this one is {}", dir.display(), ds.kind()).into());
                    }
                    for b in ds.batches(m6_pipeline::dataset::DEFAULT_BATCH_ROWS) {
                        let b = b?;
                        let texts: &Str = column(&b, document::TEXT).map_err(|e| format!("{}: {e}", dir.display()))?;
                        for i in 0..b.num_rows() {
                            match &norm {
                                Some(n) => counter.add_text(&n.apply(texts.value(i))),
                                None => counter.add_text(texts.value(i)),
                            }
                            docs += 1;
                            if limit > 0 && docs >= limit {
                                break 'outer;
                            }
                        }
                    }
                }
                let (chars, rounds) = (counter.chars, counter.pruned_rounds);
                let model = counter.finish()?;
                model.save(&output)?;
                let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
                if json {
                    let o = serde_json::json!({ "output": output, "order": order, "documents": docs, "symbols": chars, "ngrams": model.ngrams(), "pruning_rounds": rounds, "bytes": size });
                    println!("{o}");
                } else {
                    println!(
                        "{}: order {order}, {docs} documents, {chars} symbols, {} n-grams, {rounds} pruning rounds, {size} bytes",
                        output.display(),
                        model.ngrams()
                    );
                }
                Ok(())
            }
            LmCommand::Score { model, input, json } => {
                let m = Model::load(&model)?;
                if input.is_dir() {
                    let ds = Dataset::open(&input)?;
                    for b in ds.batches(m6_pipeline::dataset::DEFAULT_BATCH_ROWS) {
                        let b = b?;
                        let ids: &Str = column(&b, document::ID)?;
                        let texts: &Str = column(&b, document::TEXT)?;
                        for i in 0..b.num_rows() {
                            let ppl = m.perplexity(texts.value(i));
                            if json {
                                println!("{}", serde_json::json!({ "id": ids.value(i), "perplexity": ppl }));
                            } else {
                                println!("{ppl:.2}\t{}", ids.value(i));
                            }
                        }
                    }
                    return Ok(());
                }
                let reader = open_lines(&input)?;
                for line in reader.lines() {
                    let line = line?;
                    let ppl = m.perplexity(&line);
                    if json {
                        println!("{}", serde_json::json!({ "text": line, "perplexity": ppl }));
                    } else {
                        println!("{ppl:.2}\t{line}");
                    }
                }
                Ok(())
            }
        }
    }
}

/// `m6corpus quality ...`: the fastText-style classifier of `m6_quality`.
#[derive(Debug, clap::Subcommand)]
pub enum QualityCommand {
    /// Train on positive (reference) and negative document datasets; report accuracy on
    /// a held-out split.
    Train {
        /// Document datasets of the kind of text to keep (e.g. curated prose).
        #[arg(long, required = true, num_args = 1..)]
        positive: Vec<PathBuf>,
        /// Document datasets of the kind of text to drop (boilerplate, spam, junk).
        #[arg(long, required = true, num_args = 1..)]
        negative: Vec<PathBuf>,
        /// Model file to write.
        #[arg(long)]
        output: PathBuf,
        /// Share of documents held out for the accuracy report (chosen by document id,
        /// so the split does not depend on order). 0 trains on everything.
        #[arg(long, default_value_t = 0.1)]
        holdout: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 0.5)]
        lr: f32,
        #[arg(long, default_value_t = 16)]
        dim: usize,
        #[arg(long, default_value_t = 1 << 19)]
        buckets: usize,
        /// Character n-gram lengths, MIN..=MAX (0 0 for none).
        #[arg(long, default_value_t = 1)]
        char_min: usize,
        #[arg(long, default_value_t = 3)]
        char_max: usize,
        /// Longest jieba word n-gram (0: no word features).
        #[arg(long, default_value_t = 2)]
        word_ngrams: usize,
        /// Featurise only the first this many characters of a document (0: all).
        #[arg(long, default_value_t = 5000)]
        max_chars: usize,
        /// At most this many documents per class are read (memory bound: the training
        /// set is held as feature ids, about 15 bytes per character).
        #[arg(long, default_value_t = 500_000)]
        max_docs: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accuracy of a model on labelled document datasets.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, required = true, num_args = 1..)]
        positive: Vec<PathBuf>,
        #[arg(long, required = true, num_args = 1..)]
        negative: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the language (`lang`, `lang_score` as the filter records them) of each line
    /// of a file (or stdin), or of each document of a dataset.
    Lang {
        /// A text file (one text per line), a document dataset folder, or `-` for stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the score of each line of a file (or stdin), or of each document of a dataset.
    Score {
        #[arg(long)]
        model: PathBuf,
        /// A text file (one text per line), a document dataset folder, or `-` for stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// Print one JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// Every (id, text) of document datasets, up to `max` documents.
fn read_docs(dirs: &[PathBuf], max: usize, mut f: impl FnMut(&str, &str)) -> Result<usize, BoxErr> {
    let mut n = 0;
    for dir in dirs {
        let ds = Dataset::open(dir)?;
        if ds.kind() != Kind::Document {
            return Err(format!("{}: quality reads document datasets, this one is {}", dir.display(), ds.kind()).into());
        }
        for b in ds.batches(m6_pipeline::dataset::DEFAULT_BATCH_ROWS) {
            let b = b?;
            let ids: &Str = column(&b, document::ID).map_err(|e| format!("{}: {e}", dir.display()))?;
            let texts: &Str = column(&b, document::TEXT).map_err(|e| format!("{}: {e}", dir.display()))?;
            for i in 0..b.num_rows() {
                if n >= max {
                    return Ok(n);
                }
                f(ids.value(i), texts.value(i));
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Held out when the id's hash falls below the share.
fn held_out(id: &str, share: f64) -> bool {
    let h = blake3::hash(id.as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
    (x as f64 / u64::MAX as f64) < share
}

fn eval_json(e: &m6_quality::Eval) -> serde_json::Value {
    serde_json::json!({"examples": e.examples, "accuracy": e.accuracy, "precision": e.precision, "recall": e.recall, "log_loss": e.log_loss})
}

impl QualityCommand {
    pub fn run(self) -> Result<(), BoxErr> {
        match self {
            QualityCommand::Train { positive, negative, output, holdout, seed, epochs, lr, dim, buckets, char_min, char_max, word_ngrams, max_chars, max_docs, json } => {
                if !(0.0..1.0).contains(&holdout) {
                    return Err(format!("--holdout {holdout}: must be in [0, 1)").into());
                }
                let params = m6_quality::Params { dim, buckets, char_min, char_max, word_ngrams, max_chars, epochs, lr, seed };
                params.validate()?;
                let feat = m6_quality::Featurizer::new(&params);
                let t0 = std::time::Instant::now();
                let (mut train, mut test) = (vec![], vec![]);
                let mut bytes = 0usize;
                for (dirs, label) in [(&positive, true), (&negative, false)] {
                    read_docs(dirs, max_docs, |id, text| {
                        let mut v = vec![];
                        feat.features(text, &mut v);
                        bytes += text.len();
                        let ex = m6_quality::Example { features: v, positive: label };
                        if held_out(id, holdout) {
                            test.push(ex);
                        } else {
                            train.push(ex);
                        }
                    })?;
                }
                let featurize_s = t0.elapsed().as_secs_f64();
                let t1 = std::time::Instant::now();
                let model = m6_quality::Model::train(params, &train)?;
                let train_s = t1.elapsed().as_secs_f64();
                model.save(&output)?;
                let train_eval = model.evaluate(&train);
                let test_eval = model.evaluate(&test);
                let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
                let report = serde_json::json!({
                    "model": output.display().to_string(),
                    "bytes": size,
                    "train_docs": train.len(),
                    "heldout_docs": test.len(),
                    "positive_docs": train.iter().chain(&test).filter(|e| e.positive).count(),
                    "negative_docs": train.iter().chain(&test).filter(|e| !e.positive).count(),
                    "text_bytes": bytes,
                    "featurize_seconds": featurize_s,
                    "train_seconds": train_s,
                    "train": eval_json(&train_eval),
                    "heldout": eval_json(&test_eval),
                });
                if json {
                    println!("{report}");
                } else {
                    println!(
                        "{}: {} train / {} held-out documents, held-out accuracy {:.4} (precision {:.4}, recall {:.4}), train accuracy {:.4}, {size} bytes, {:.1}s featurise + {:.1}s train",
                        output.display(),
                        train.len(),
                        test.len(),
                        test_eval.accuracy,
                        test_eval.precision,
                        test_eval.recall,
                        train_eval.accuracy,
                        featurize_s,
                        train_s
                    );
                }
                Ok(())
            }
            QualityCommand::Eval { model, positive, negative, json } => {
                let m = m6_quality::Model::load(&model)?;
                let mut ex = vec![];
                let t0 = std::time::Instant::now();
                let mut bytes = 0usize;
                for (dirs, label) in [(&positive, true), (&negative, false)] {
                    read_docs(dirs, usize::MAX, |_, text| {
                        let mut v = vec![];
                        m.featurizer().features(text, &mut v);
                        bytes += text.len();
                        ex.push(m6_quality::Example { features: v, positive: label });
                    })?;
                }
                let e = m.evaluate(&ex);
                let secs = t0.elapsed().as_secs_f64();
                let mut j = eval_json(&e);
                j["seconds"] = secs.into();
                j["text_bytes"] = bytes.into();
                if json {
                    println!("{j}");
                } else {
                    println!("{} documents: accuracy {:.4}, precision {:.4}, recall {:.4}, log loss {:.4} ({secs:.2}s)", e.examples, e.accuracy, e.precision, e.recall, e.log_loss);
                }
                Ok(())
            }
            QualityCommand::Lang { input, json } => {
                let show = |t: &str, id: Option<&str>| {
                    let l = m6_stage_filter::langid::identify(t);
                    if json {
                        let mut o = serde_json::json!({ "lang": l.lang, "lang_score": l.score });
                        match id {
                            Some(id) => o["id"] = id.into(),
                            None => o["text"] = t.into(),
                        }
                        println!("{o}");
                    } else {
                        println!("{}\t{:.4}\t{}", l.lang, l.score, id.unwrap_or(""));
                    }
                };
                if input.is_dir() {
                    read_docs(&[input], usize::MAX, |id, text| show(text, Some(id)))?;
                    return Ok(());
                }
                let reader = open_lines(&input)?;
                for line in reader.lines() {
                    let line = line?;
                    show(&line, None);
                }
                Ok(())
            }
            QualityCommand::Score { model, input, json } => {
                let m = m6_quality::Model::load(&model)?;
                if input.is_dir() {
                    read_docs(&[input], usize::MAX, |id, text| {
                        let q = m.score(text);
                        if json {
                            println!("{}", serde_json::json!({ "id": id, "quality": q }));
                        } else {
                            println!("{q:.4}\t{id}");
                        }
                    })?;
                    return Ok(());
                }
                let reader = open_lines(&input)?;
                for line in reader.lines() {
                    let line = line?;
                    let q = m.score(&line);
                    if json {
                        println!("{}", serde_json::json!({ "text": line, "quality": q }));
                    } else {
                        println!("{q:.4}\t{line}");
                    }
                }
                Ok(())
            }
        }
    }
}

/// Lines of a text file, or of standard input for `-` (the scoring commands' line mode).
fn open_lines(input: &std::path::Path) -> Result<Box<dyn BufRead>, String> {
    Ok(if input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(input).map_err(|e| format!("{}: {e}", input.display()))?))
    })
}
