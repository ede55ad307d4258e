//! `m6corpus lm ...`: train the fluency model on a document dataset, and score text
//! with it (to pick a `max_perplexity` threshold from real data).

use std::io::BufRead;
use std::path::PathBuf;

use m6_pipeline::Dataset;
use m6_schemas::{column, document, Kind, Str};

use crate::lm::{Counter, Model};
use crate::normalize::NormalizeConfig;

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
    },
    /// Print the perplexity of each line of a file (or stdin), or of each document of a dataset.
    Score {
        /// Model file written by `lm train`.
        #[arg(long)]
        model: PathBuf,
        /// A text file (one text per line), a document dataset folder, or `-` for stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
    },
}

impl LmCommand {
    pub fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        match self {
            LmCommand::Train { input, output, order, max_ngrams, normalize, t2s, limit } => {
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
                println!(
                    "{}: order {order}, {docs} documents, {chars} symbols, {} n-grams, {rounds} pruning rounds, {size} bytes",
                    output.display(),
                    model.ngrams()
                );
                Ok(())
            }
            LmCommand::Score { model, input } => {
                let m = Model::load(&model)?;
                if input.is_dir() {
                    let ds = Dataset::open(&input)?;
                    for b in ds.batches(m6_pipeline::dataset::DEFAULT_BATCH_ROWS) {
                        let b = b?;
                        let ids: &Str = column(&b, document::ID)?;
                        let texts: &Str = column(&b, document::TEXT)?;
                        for i in 0..b.num_rows() {
                            println!("{:.2}\t{}", m.perplexity(texts.value(i)), ids.value(i));
                        }
                    }
                    return Ok(());
                }
                let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
                    Box::new(std::io::stdin().lock())
                } else {
                    Box::new(std::io::BufReader::new(std::fs::File::open(&input).map_err(|e| format!("{}: {e}", input.display()))?))
                };
                for line in reader.lines() {
                    let line = line?;
                    println!("{:.2}\t{line}", m.perplexity(&line));
                }
                Ok(())
            }
        }
    }
}
