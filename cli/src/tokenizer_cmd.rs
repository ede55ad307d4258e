//! `m6corpus tokenizer ...`: train a vocabulary from document datasets, inspect
//! encodings, convert between tokenizer.json and vocab.txt, and dump image patches.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use m6_tokenizer::normalizer::NormalizerConfig;
use m6_tokenizer::pretokenizer::{read_user_dict, PreTokenizerConfig};
use m6_tokenizer::tokenizer::{Tokenizer, TokenizerConfig};
use m6_tokenizer::trainer::{train_from_datasets, TrainerConfig};
use m6_tokenizer::wordpiece::escape;
use m6_tokenizer::ImageConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, clap::Subcommand)]
pub enum TokenizerCommand {
    /// Train a WordPiece vocabulary from document datasets (deterministic).
    Train {
        /// A `document` dataset folder (repeatable).
        #[arg(long, required = true)]
        input: Vec<PathBuf>,
        /// Where to write it: `*.json` keeps the normalizer/jieba settings, anything else is a BERT-style vocab.txt.
        #[arg(long)]
        output: PathBuf,
        /// Vocabulary size including the 100 reserved ids.
        #[arg(long, default_value_t = 21128)]
        vocab_size: usize,
        /// Minimum count of a pair to be merged.
        #[arg(long, default_value_t = 2)]
        min_frequency: u64,
        /// Lower-case text before training (and encoding).
        #[arg(long)]
        lowercase: bool,
        /// Convert traditional to simplified characters (OpenCC table).
        #[arg(long)]
        traditional_to_simplified: bool,
        /// Turn off jieba's HMM for unknown words.
        #[arg(long)]
        no_hmm: bool,
        /// jieba user dictionary (`word [freq] [tag]` per line), embedded in a .json output.
        #[arg(long)]
        user_dict: Vec<PathBuf>,
        /// Threads for counting (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Encode text (--text, or each line of stdin) and print ids (or tokens).
    Encode {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        text: Option<String>,
        /// Print tokens (whitespace tokens as <U+XXXX>) instead of ids.
        #[arg(long)]
        tokens: bool,
        /// Add [CLS] ... [SEP].
        #[arg(long)]
        special: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decode ids (--ids "1 2 3", or each line of stdin) back to text.
    Decode {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        ids: Option<String>,
        /// Keep special tokens ([CLS], [SEP], ...) in the text.
        #[arg(long)]
        keep_special: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a tokenizer file as tokenizer.json (`*.json`) or vocab.txt.
    Export {
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Preprocess one image into patches (raw uint8 bytes in the documented layout).
    Patches {
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 224)]
        image_size: u32,
        #[arg(long, default_value_t = 16)]
        patch_size: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl TokenizerCommand {
    pub fn run(self) -> Result<(), BoxError> {
        match self {
            TokenizerCommand::Train { input, output, vocab_size, min_frequency, lowercase, traditional_to_simplified, no_hmm, user_dict, threads, json } => {
                let mut lines = vec![];
                for p in &user_dict {
                    lines.extend(read_user_dict(p)?);
                }
                let config = TokenizerConfig {
                    normalizer: NormalizerConfig { lowercase, traditional_to_simplified, ..Default::default() },
                    pre_tokenizer: PreTokenizerConfig::Jieba { hmm: !no_hmm, user_dict: lines },
                };
                let is_json = output.extension().is_some_and(|e| e == "json");
                if !is_json && config != TokenizerConfig::default() {
                    return Err(format!(
                        "{}: a vocab.txt cannot record --lowercase/--traditional-to-simplified/--no-hmm/--user-dict; write a .json tokenizer file",
                        output.display()
                    )
                    .into());
                }
                let cfg = TrainerConfig { vocab_size, min_frequency, ..Default::default() };
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
                let tok = pool.install(|| train_from_datasets(&input, config, &cfg, m6_pipeline::dataset::DEFAULT_BATCH_ROWS))?;
                tok.save(&output)?;
                wrote(&output, tok.vocab_size(), json);
                Ok(())
            }
            TokenizerCommand::Encode { tokenizer, text, tokens, special, json } => {
                let tok = Tokenizer::load(&tokenizer)?;
                let out = std::io::stdout();
                let mut out = out.lock();
                let mut one = |t: &str| -> std::io::Result<()> {
                    let e = tok.encode(t, special);
                    if json {
                        // One JSON object per input line: ids always, tokens unescaped.
                        let mut o = serde_json::json!({ "ids": e.ids });
                        if tokens {
                            o["tokens"] = e.ids.iter().map(|&i| tok.model().token(i).unwrap_or(m6_tokenizer::UNK)).collect();
                        }
                        return writeln!(out, "{o}");
                    }
                    let line: Vec<String> = if tokens {
                        e.ids.iter().map(|&i| escape(tok.model().token(i).unwrap_or(m6_tokenizer::UNK))).collect()
                    } else {
                        e.ids.iter().map(u32::to_string).collect()
                    };
                    writeln!(out, "{}", line.join(" "))
                };
                match text {
                    Some(t) => one(&t)?,
                    None => {
                        for l in std::io::stdin().lock().lines() {
                            one(&l?)?;
                        }
                    }
                }
                Ok(())
            }
            TokenizerCommand::Decode { tokenizer, ids, keep_special, json } => {
                let tok = Tokenizer::load(&tokenizer)?;
                let one = |l: &str| -> Result<String, BoxError> {
                    let ids = l
                        .split(|c: char| c.is_whitespace() || c == ',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse::<u32>().map_err(|e| format!("`{s}` is not a token id: {e}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    let text = tok.decode(&ids, keep_special);
                    Ok(if json { serde_json::json!({ "text": text }).to_string() } else { text })
                };
                match ids {
                    Some(l) => println!("{}", one(&l)?),
                    None => {
                        for l in std::io::stdin().lock().lines() {
                            println!("{}", one(&l?)?);
                        }
                    }
                }
                Ok(())
            }
            TokenizerCommand::Export { tokenizer, output, json } => {
                let tok = Tokenizer::load(&tokenizer)?;
                tok.save(&output)?;
                wrote(&output, tok.vocab_size(), json);
                Ok(())
            }
            TokenizerCommand::Patches { image, output, image_size, patch_size, json } => {
                let cfg = ImageConfig { image_size, patch_size };
                let bytes = std::fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
                let patches = cfg.preprocess(&bytes).map_err(|e| format!("{}: {e}", image.display()))?;
                std::fs::write(&output, &patches).map_err(|e| format!("{}: {e}", output.display()))?;
                if json {
                    println!("{}", serde_json::json!({ "output": output, "bytes": patches.len(), "grid": cfg.grid(), "patch_size": patch_size }));
                } else {
                    println!("wrote {} ({} bytes: {}x{} patches of {}x{}x3)", output.display(), patches.len(), cfg.grid(), cfg.grid(), patch_size, patch_size);
                }
                Ok(())
            }
        }
    }
}

fn wrote(output: &std::path::Path, vocab_size: usize, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "output": output, "vocab_size": vocab_size }));
    } else {
        println!("wrote {} ({} tokens)", output.display(), vocab_size);
    }
}
