//! Round trips, training determinism and vocab.txt on real Chinese text: Tang poems
//! (traditional characters) and Debian Handbook pages (simplified and traditional).

use std::path::PathBuf;

use m6_tokenizer::normalizer::NormalizerConfig;
use m6_tokenizer::pretokenizer::PreTokenizerConfig;
use m6_tokenizer::{Tokenizer, TokenizerConfig, TrainerConfig, WordCounter};

fn data() -> PathBuf {
    let d = std::env::var_os("M6_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
    assert!(d.join("chinese-poetry").is_dir(), "{} has no sample data: run `make data`", d.display());
    d
}

/// Poems of one Tang file, each as its lines joined by newlines.
fn poems(file: &str) -> Vec<String> {
    let p = data().join("chinese-poetry/dist/quantangshi").join(file);
    let v: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v.iter()
        .map(|p| {
            let lines: Vec<&str> = p["paragraphs"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
            format!("{}\n{}", p["title"].as_str().unwrap_or(""), lines.join("\n"))
        })
        .collect()
}

/// The visible text of Handbook pages: tags dropped, entities for <>& decoded.
fn handbook(lang: &str, n: usize) -> Vec<String> {
    let dir = data().join("debian-handbook").join(lang);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "html")).collect();
    files.sort();
    files
        .iter()
        .take(n)
        .map(|f| {
            let html = std::fs::read_to_string(f).unwrap();
            let mut out = String::new();
            let mut in_tag = false;
            for c in html.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    _ if !in_tag => out.push(c),
                    _ => {}
                }
            }
            out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        })
        .collect()
}

fn train(texts: &[String], config: TokenizerConfig, vocab_size: usize) -> Tokenizer {
    let counting = Tokenizer::new(config.clone(), m6_tokenizer::WordPiece::new(m6_tokenizer::trainer::reserved_tokens(), "[UNK]").unwrap()).unwrap();
    let mut c = WordCounter::default();
    // Two halves, to exercise merging counts from several batches.
    let (a, b) = texts.split_at(texts.len() / 2);
    c.add_texts(&counting, a);
    c.add_texts(&counting, b);
    Tokenizer::new(config, c.train(&TrainerConfig { vocab_size, ..Default::default() }).unwrap()).unwrap()
}

/// What decode(encode(text)) must give: the normalised text with every character the
/// vocabulary lacks replaced by [UNK].
fn expected(tok: &Tokenizer, text: &str) -> String {
    tok.normalize(text).chars().map(|c| if tok.model().id(&c.to_string()).is_some() { c.to_string() } else { "[UNK]".to_string() }).collect()
}

fn corpus() -> Vec<String> {
    let mut t = poems("poet.tang.0.json");
    t.extend(handbook("zh-CN", 12));
    t.extend(handbook("zh-TW", 6));
    t
}

#[test]
fn round_trip_on_real_chinese_text() {
    let texts = corpus();
    let tok = train(&texts, TokenizerConfig::default(), 30_000);
    let sp = tok.specials();
    assert_eq!((sp.pad, sp.unk, sp.cls, sp.sep, sp.mask, sp.img, sp.img_end), (0, 1, 2, 3, 4, Some(5), Some(6)));
    let mut tokens = 0;
    for t in &texts {
        let e = tok.encode(t, false);
        assert_eq!(e.unk, 0, "training text has no unknown character");
        assert_eq!(tok.decode(&e.ids, false), tok.normalize(t));
        tokens += e.ids.len();
    }
    // Merges made multi-character pieces: fewer tokens than characters.
    let chars: usize = texts.iter().map(|t| tok.normalize(t).chars().count()).sum();
    assert!(tokens < chars * 9 / 10, "{tokens} tokens for {chars} chars");
    // Held-out poems: exact round trip except for unknown characters, one [UNK] each.
    let held_out = poems("poet.tang.1000.json");
    let mut unk = 0;
    for t in &held_out {
        let e = tok.encode(t, false);
        unk += e.unk;
        assert_eq!(tok.decode(&e.ids, false), expected(&tok, t));
    }
    assert!(unk > 0, "held-out poems use some characters the training poems did not");
    // [CLS]/[SEP] added by the post-processor are dropped by decode unless asked for.
    let line = texts[0].lines().nth(1).unwrap();
    let e = tok.encode(line, true);
    assert_eq!((e.ids[0], *e.ids.last().unwrap()), (2, 3));
    let norm = tok.normalize(line);
    assert_eq!(tok.decode(&e.ids, false), norm);
    assert_eq!(tok.decode(&e.ids, true), format!("[CLS]{norm}[SEP]"));
}

#[test]
fn normalisation_options_round_trip() {
    let texts = corpus();
    let config = TokenizerConfig {
        normalizer: NormalizerConfig { lowercase: true, traditional_to_simplified: true, ..Default::default() },
        pre_tokenizer: PreTokenizerConfig::Jieba { hmm: false, user_dict: vec!["自由软件 10 n".into()] },
    };
    let tok = train(&texts, config, 8_000);
    let tw = handbook("zh-TW", 6);
    for t in &tw {
        let n = tok.normalize(t);
        assert!(!n.contains('體') && !n.contains("Debian"), "simplified and lower-cased");
        assert_eq!(tok.decode(&tok.encode(t, false).ids, false), expected(&tok, t));
    }
    // The JSON form keeps the settings; the reloaded tokenizer encodes identically.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tok.json");
    tok.save(&p).unwrap();
    let back = Tokenizer::load(&p).unwrap();
    assert_eq!(back.config(), tok.config());
    for t in &tw {
        assert_eq!(back.encode(t, false), tok.encode(t, false));
    }
}

#[test]
fn training_twice_gives_the_same_vocabulary() {
    let texts = corpus();
    let a = train(&texts, TokenizerConfig::default(), 6_000);
    // Different batch split and thread count: counts are sums, the result must not move.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let b = pool.install(|| {
        let config = TokenizerConfig::default();
        let counting = Tokenizer::new(config.clone(), m6_tokenizer::WordPiece::new(m6_tokenizer::trainer::reserved_tokens(), "[UNK]").unwrap()).unwrap();
        let mut c = WordCounter::default();
        for t in texts.chunks(7) {
            c.add_texts(&counting, t);
        }
        Tokenizer::new(config, c.train(&TrainerConfig { vocab_size: 6_000, ..Default::default() }).unwrap()).unwrap()
    });
    assert!(a.vocab_size() > 1_000 && a.vocab_size() <= 6_000);
    assert_eq!(a.model().tokens(), b.model().tokens());
    assert_eq!(a.model().vocab_txt(), b.model().vocab_txt());
}

#[test]
fn vocab_txt_round_trips() {
    let texts = corpus();
    let tok = train(&texts, TokenizerConfig::default(), 5_000);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vocab.txt");
    tok.save(&p).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), tok.vocab_size());
    assert!(text.starts_with("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n[IMG]\n[/IMG]\n[unused0]\n"));
    assert!(text.contains("\n<U+0020>\n") && text.contains("\n<U+000A>\n"), "whitespace tokens are escaped");
    let back = Tokenizer::load(&p).unwrap();
    assert_eq!(back.model().tokens(), tok.model().tokens());
    let p2 = dir.path().join("again.txt");
    back.save(&p2).unwrap();
    assert_eq!(std::fs::read(&p2).unwrap(), text.as_bytes());
    for t in texts.iter().take(50) {
        assert_eq!(back.encode(t, false), tok.encode(t, false));
    }
    // A foreign BERT-style vocabulary (other special ids, no image markers) loads too.
    let bert = dir.path().join("bert.txt");
    let mut lines = vec!["[PAD]".to_string()];
    lines.extend((1..100).map(|i| format!("[unused{i}]")));
    lines.extend(["[UNK]", "[CLS]", "[SEP]", "[MASK]", "床", "前", "明", "月", "光", "##光", "明月"].map(String::from));
    std::fs::write(&bert, lines.join("\n") + "\n").unwrap();
    let b = Tokenizer::load(&bert).unwrap();
    let sp = b.specials();
    assert_eq!((sp.unk, sp.cls, sp.sep, sp.img), (100, 101, 102, None));
    let e = b.encode("床前明月光 x", false);
    assert_eq!(b.decode(&e.ids, false), "床前明月光[UNK][UNK]");
}

#[test]
fn batch_encoding_matches_one_by_one() {
    let texts = corpus();
    let tok = train(&texts, TokenizerConfig::default(), 4_000);
    let batch = tok.encode_batch(&texts, true);
    for (t, e) in texts.iter().zip(&batch) {
        assert_eq!(&tok.encode(t, true), e);
    }
}
