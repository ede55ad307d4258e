//! The Arrow schemas of every dataset kind m6corpus reads or writes, defined once.
//!
//! Every other crate names columns through the constants here and converts rows
//! through the [`Record`] impls, so a schema change happens in exactly one place
//! and bumps that kind's version (which readers check before trusting a shard).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, Float32Array, Float32Builder, Float64Array,
    Float64Builder, Int32Builder, ListArray, ListBuilder, MapArray, MapBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMillisecondArray, TimestampMillisecondBuilder,
    UInt16Array, UInt16Builder, UInt32Array, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

mod records;
pub use records::*;
mod properties;
pub mod dedup_work;
pub use properties::{sample_keys, PropertiesError, SampleProperties};

/// Schema metadata keys written into every Parquet file, so a shard names its own kind.
pub const META_KIND: &str = "m6corpus.kind";
pub const META_VERSION: &str = "m6corpus.version";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("unknown dataset kind `{0}` (expected one of: page, document, image, pair, sample, duplicate, reject, error, signature)")]
    UnknownKind(String),
    #[error("column `{0}` is missing")]
    MissingColumn(&'static str),
    #[error("column `{column}` has type {found}, expected {expected}")]
    WrongType { column: &'static str, expected: String, found: String },
    #[error("null in non-nullable column `{column}` at row {row}")]
    UnexpectedNull { column: &'static str, row: usize },
    #[error("schema does not match {kind} v{version}: {detail}")]
    Mismatch { kind: Kind, version: u32, detail: String },
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// The kinds of dataset a stage can produce. The string form is what manifests store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Fetched HTTP responses (or WARC records), failures included.
    Page,
    /// Text documents.
    Document,
    /// Standalone images.
    Image,
    /// Image–caption pairs.
    Pair,
    /// Tokenized training samples.
    Sample,
    /// Audit rows for what dedup removed.
    Duplicate,
    /// Audit rows for what filter removed.
    Reject,
    /// Malformed input records that could not be ingested.
    Error,
    /// Dedup signatures of kept rows (`OUT/signatures`), for later `--against` runs.
    Signature,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Page,
        Kind::Document,
        Kind::Image,
        Kind::Pair,
        Kind::Sample,
        Kind::Duplicate,
        Kind::Reject,
        Kind::Error,
        Kind::Signature,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Page => "page",
            Kind::Document => "document",
            Kind::Image => "image",
            Kind::Pair => "pair",
            Kind::Sample => "sample",
            Kind::Duplicate => "duplicate",
            Kind::Reject => "reject",
            Kind::Error => "error",
            Kind::Signature => "signature",
        }
    }

    /// Bumped whenever the kind's columns change; readers refuse other versions, except
    /// the older ones [`Kind::older_versions`] lists (read and padded by [`Kind::upgrade`]).
    pub fn version(self) -> u32 {
        match self {
            Kind::Sample => sample::VERSION,
            Kind::Document => document::VERSION,
            Kind::Image => image::VERSION,
            Kind::Pair => pair::VERSION,
            _ => 1,
        }
    }

    /// Older versions of this kind that are still read, as (version, number of columns).
    /// A kind only keeps old versions readable when the newer one merely appended
    /// nullable columns: an old shard then reads as the new schema with those columns null.
    pub fn older_versions(self) -> &'static [(u32, usize)] {
        match self {
            Kind::Document => document::OLDER,
            Kind::Image => image::OLDER,
            Kind::Pair => pair::OLDER,
            _ => &[],
        }
    }

    /// True when a dataset manifest of this schema version can be read by this build.
    pub fn reads_version(self, v: u32) -> bool {
        v == self.version() || self.older_versions().iter().any(|(o, _)| *o == v)
    }

    /// Brings a batch read from an older-version shard (a prefix of today's columns) up to
    /// the current schema by appending null columns; a current batch is returned as is.
    pub fn upgrade(self, b: RecordBatch) -> Result<RecordBatch, SchemaError> {
        let schema = self.schema();
        if b.num_columns() == schema.fields().len() {
            return Ok(b);
        }
        let n = b.num_rows();
        let mut cols = b.columns().to_vec();
        for f in schema.fields().iter().skip(b.num_columns()) {
            if !f.is_nullable() {
                return Err(SchemaError::Mismatch { kind: self, version: self.version(), detail: format!("column `{}` is missing", f.name()) });
            }
            cols.push(arrow::array::new_null_array(f.data_type(), n));
        }
        Ok(RecordBatch::try_new(schema, cols)?)
    }

    /// The Arrow schema, with kind and version in its metadata.
    pub fn schema(self) -> SchemaRef {
        let fields = match self {
            Kind::Page => page::fields(),
            Kind::Document => document::fields(),
            Kind::Image => image::fields(),
            Kind::Pair => pair::fields(),
            Kind::Sample => sample::fields(),
            Kind::Duplicate => duplicate::fields(),
            Kind::Reject => reject::fields(),
            Kind::Error => error::fields(),
            Kind::Signature => signature::fields(),
        };
        let meta = HashMap::from([
            (META_KIND.to_string(), self.name().to_string()),
            (META_VERSION.to_string(), self.version().to_string()),
        ]);
        Arc::new(Schema::new_with_metadata(fields, meta))
    }

    /// The column that holds a row's main text, where the kind has one
    /// (used by stats for length distributions).
    pub fn text_column(self) -> Option<&'static str> {
        match self {
            Kind::Document => Some(document::TEXT),
            Kind::Pair => Some(pair::CAPTION),
            _ => None,
        }
    }

    /// Checks that `found` has exactly this kind's columns (names, types, nullability).
    /// Metadata is compared too when present, so a shard of another version is refused.
    /// A file of an older version listed in [`Kind::older_versions`] passes when its
    /// columns are that version's (the first columns of today's schema).
    pub fn check(self, found: &Schema) -> Result<(), SchemaError> {
        let expected = self.schema();
        let mismatch = |detail: String| SchemaError::Mismatch { kind: self, version: self.version(), detail };
        if let Some(k) = found.metadata().get(META_KIND) {
            if k != self.name() {
                return Err(mismatch(format!("file says kind `{k}`")));
            }
        }
        // How many columns the file's version has (today's count unless it is an older one).
        let mut columns = expected.fields().len();
        if let Some(v) = found.metadata().get(META_VERSION) {
            if v != &self.version().to_string() {
                match self.older_versions().iter().find(|(o, _)| &o.to_string() == v) {
                    Some((_, n)) => columns = *n,
                    None => return Err(mismatch(format!("file says version {v}"))),
                }
            }
        } else if let Some((_, n)) = self.older_versions().iter().find(|(_, n)| *n == found.fields().len()) {
            columns = *n;
        }
        if columns != found.fields().len() {
            return Err(mismatch(format!(
                "{} columns, expected {}: [{}]",
                found.fields().len(),
                columns,
                found.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        for (e, f) in expected.fields().iter().zip(found.fields()) {
            if e.name() != f.name() || !types_match(e.data_type(), f.data_type()) || e.is_nullable() != f.is_nullable() {
                return Err(mismatch(format!(
                    "column `{}` {}{} where `{}` {}{} was expected",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { " (nullable)" } else { "" },
                    e.name(),
                    e.data_type(),
                    if e.is_nullable() { " (nullable)" } else { "" },
                )));
            }
        }
        Ok(())
    }
}

/// Type equality that ignores the names Arrow writers give to nested child fields
/// (Parquet round trips may rename "item"/"entries"), but nothing else.
fn types_match(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y)) => types_match(x.data_type(), y.data_type()),
        (DataType::Map(x, _), DataType::Map(y, _)) => types_match(x.data_type(), y.data_type()),
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(f, g)| types_match(f.data_type(), g.data_type()))
        }
        (DataType::Timestamp(u1, _), DataType::Timestamp(u2, _)) => u1 == u2,
        _ => a == b,
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| SchemaError::UnknownKind(s.to_string()))
    }
}

/// A row type of one dataset kind, convertible to and from Arrow batches.
pub trait Record: Sized {
    const KIND: Kind;
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError>;
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, SchemaError>;
}

/// Ids are blake3 of canonical content: the parts are length-prefixed so that
/// ("ab","c") and ("a","bc") never collide. Lower-case hex, 64 characters.
pub fn content_id(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex().to_string()
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn headers_type() -> DataType {
    // Built from the builder itself so the schema and the arrays always agree.
    let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    b.finish().data_type().clone()
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// `page`: one fetched response (or fetch failure), or one WARC response record.
pub mod page {
    use super::*;
    pub const ID: &str = "id";
    pub const URL: &str = "url";
    pub const FINAL_URL: &str = "final_url";
    pub const STATUS: &str = "status";
    pub const HEADERS: &str = "headers";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const BODY: &str = "body";
    pub const FETCH_TIME: &str = "fetch_time";
    pub const SOURCE: &str = "source";
    pub const DEPTH: &str = "depth";
    pub const ERROR_KIND: &str = "error_kind";
    pub const ERROR: &str = "error";
    pub const CAPTION: &str = "caption";

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(URL, false),
            utf8(FINAL_URL, true),
            Field::new(STATUS, DataType::UInt16, true),
            Field::new(HEADERS, headers_type(), false),
            utf8(CONTENT_TYPE, true),
            Field::new(BODY, DataType::Binary, true),
            Field::new(FETCH_TIME, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            utf8(SOURCE, false),
            Field::new(DEPTH, DataType::UInt16, false),
            utf8(ERROR_KIND, true),
            utf8(ERROR, true),
            utf8(CAPTION, true),
        ]
    }
}

/// `document`: one text document, with the filter's per-document scores.
///
/// Version 2 appended the score columns (all nullable: null where no filter ran, or
/// where the filter ran without that model). Version-1 shards (eight columns) are still
/// read, with the score columns null.
pub mod document {
    use super::*;
    pub const VERSION: u32 = 2;
    pub(crate) const OLDER: &[(u32, usize)] = &[(1, 8)];
    pub const ID: &str = "id";
    pub const URL: &str = "url";
    pub const SOURCE: &str = "source";
    pub const SOURCE_ID: &str = "source_id";
    pub const TITLE: &str = "title";
    pub const TEXT: &str = "text";
    pub const CHAR_COUNT: &str = "char_count";
    pub const META: &str = "meta";
    /// Quality classifier score in [0, 1]: probability that the text resembles the
    /// positive (reference) set of `m6corpus quality train`.
    pub const QUALITY: &str = "quality";
    /// Per-character perplexity under the filter's character n-gram LM.
    pub const PERPLEXITY: &str = "perplexity";
    /// Language code (ISO 639-1 where one exists, `yue` for Cantonese, `und` when unknown).
    pub const LANG: &str = "lang";
    /// Confidence of `lang` in [0, 1].
    pub const LANG_SCORE: &str = "lang_score";
    /// Spam-phrase hits.
    pub const SPAM_HITS: &str = "spam_hits";
    /// Block-list hits.
    pub const BLOCKLIST_HITS: &str = "blocklist_hits";
    /// PII replaced by placeholders, per kind.
    pub const PII_EMAIL: &str = "pii_email";
    pub const PII_PHONE: &str = "pii_phone";
    pub const PII_ID: &str = "pii_id";
    pub const PII_CARD: &str = "pii_card";
    pub const PII_IP: &str = "pii_ip";
    /// The score columns, in schema order.
    pub const SCORES: &[&str] = &[QUALITY, PERPLEXITY, LANG, LANG_SCORE, SPAM_HITS, BLOCKLIST_HITS, PII_EMAIL, PII_PHONE, PII_ID, PII_CARD, PII_IP];

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(URL, true),
            utf8(SOURCE, false),
            utf8(SOURCE_ID, true),
            utf8(TITLE, true),
            utf8(TEXT, false),
            Field::new(CHAR_COUNT, DataType::UInt32, false),
            utf8(META, true),
            // Version 2: scores.
            Field::new(QUALITY, DataType::Float32, true),
            Field::new(PERPLEXITY, DataType::Float32, true),
            utf8(LANG, true),
            Field::new(LANG_SCORE, DataType::Float32, true),
            Field::new(SPAM_HITS, DataType::UInt32, true),
            Field::new(BLOCKLIST_HITS, DataType::UInt32, true),
            Field::new(PII_EMAIL, DataType::UInt32, true),
            Field::new(PII_PHONE, DataType::UInt32, true),
            Field::new(PII_ID, DataType::UInt32, true),
            Field::new(PII_CARD, DataType::UInt32, true),
            Field::new(PII_IP, DataType::UInt32, true),
        ]
    }
}

/// The per-image quality signal columns, appended to `image` and `pair` in their
/// version 2 (nullable Float32: null where no filter measured them). Measured on the grey
/// picture with the longer side at most 256 px (`m6_imaging::quality`).
pub mod image_signals {
    /// Variance of the 4-neighbour Laplacian, grey levels²: blurred or upscaled pictures score low.
    pub const SHARPNESS: &str = "sharpness";
    /// Entropy of the 256-bin grey histogram, bits (0–8): flat or posterised pictures score low.
    pub const ENTROPY: &str = "entropy";
    /// Share of the area that is flat border (letterbox bars, padding), 0–1.
    pub const BORDER: &str = "border";
    /// The signal columns, in schema order.
    pub const ALL: &[&str] = &[SHARPNESS, ENTROPY, BORDER];

    pub(crate) fn fields() -> Vec<arrow::datatypes::Field> {
        ALL.iter().map(|n| arrow::datatypes::Field::new(*n, arrow::datatypes::DataType::Float32, true)).collect()
    }
}

/// `image`: one encoded image with its decoded size.
///
/// Version 2 appended the quality signal columns ([`image_signals`]); version-1 shards
/// (nine columns) are still read, with the signals null.
pub mod image {
    use super::*;
    pub const VERSION: u32 = 2;
    pub(crate) const OLDER: &[(u32, usize)] = &[(1, 9)];
    pub use super::image_signals::{BORDER, ENTROPY, SHARPNESS};
    pub const ID: &str = "id";
    pub const URL: &str = "url";
    pub const PAGE_URL: &str = "page_url";
    pub const SOURCE: &str = "source";
    pub const SOURCE_ID: &str = "source_id";
    pub const BYTES: &str = "bytes";
    pub const WIDTH: &str = "width";
    pub const HEIGHT: &str = "height";
    pub const FORMAT: &str = "format";

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(URL, true),
            utf8(PAGE_URL, true),
            utf8(SOURCE, false),
            utf8(SOURCE_ID, true),
            Field::new(BYTES, DataType::Binary, false),
            Field::new(WIDTH, DataType::UInt32, false),
            Field::new(HEIGHT, DataType::UInt32, false),
            utf8(FORMAT, false),
        ]
        .into_iter()
        .chain(image_signals::fields())
        .collect()
    }
}

/// `pair`: an image with its caption and where the caption came from.
///
/// Version 2 appended the image's quality signal columns ([`image_signals`]);
/// version-1 shards (twelve columns) are still read, with the signals null.
pub mod pair {
    use super::*;
    pub const VERSION: u32 = 2;
    pub(crate) const OLDER: &[(u32, usize)] = &[(1, 12)];
    pub use super::image_signals::{BORDER, ENTROPY, SHARPNESS};
    pub const ID: &str = "id";
    pub const IMAGE_ID: &str = "image_id";
    pub const IMAGE_BYTES: &str = "image_bytes";
    pub const WIDTH: &str = "width";
    pub const HEIGHT: &str = "height";
    pub const FORMAT: &str = "format";
    pub const CAPTION: &str = "caption";
    pub const CAPTION_ORIGIN: &str = "caption_origin";
    pub const URL: &str = "url";
    pub const IMAGE_URL: &str = "image_url";
    pub const SOURCE: &str = "source";
    pub const SOURCE_ID: &str = "source_id";

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(IMAGE_ID, false),
            Field::new(IMAGE_BYTES, DataType::Binary, false),
            Field::new(WIDTH, DataType::UInt32, false),
            Field::new(HEIGHT, DataType::UInt32, false),
            utf8(FORMAT, false),
            utf8(CAPTION, false),
            utf8(CAPTION_ORIGIN, false),
            utf8(URL, true),
            utf8(IMAGE_URL, true),
            utf8(SOURCE, false),
            utf8(SOURCE_ID, true),
        ]
        .into_iter()
        .chain(image_signals::fields())
        .collect()
    }
}

/// `sample`: one training-ready sample. The layout of `image_patches` and the
/// meaning of ids are described by the tokenizer file named in the manifest.
pub mod sample {
    use super::*;
    pub const VERSION: u32 = 1;
    pub const ID: &str = "id";
    pub const TASK: &str = "task";
    pub const INPUT_IDS: &str = "input_ids";
    pub const LENGTH: &str = "length";
    pub const IMAGE_PATCHES: &str = "image_patches";
    pub const SOURCE_IDS: &str = "source_ids";

    /// `task` values.
    pub const TASK_TEXT: &str = "text";
    pub const TASK_IMAGE_TEXT: &str = "image_text";

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(TASK, false),
            Field::new(INPUT_IDS, list_of(DataType::Int32), false),
            Field::new(LENGTH, DataType::UInt32, false),
            Field::new(IMAGE_PATCHES, DataType::Binary, true),
            Field::new(SOURCE_IDS, list_of(DataType::Utf8), false),
        ]
    }
}

/// `duplicate`: one row removed by dedup, and the row kept in its place.
pub mod duplicate {
    use super::*;
    pub const ID: &str = "id";
    pub const SOURCE_ID: &str = "source_id";
    pub const SOURCE: &str = "source";
    pub const CLUSTER_ID: &str = "cluster_id";
    pub const KEPT_ID: &str = "kept_id";
    pub const SIMILARITY: &str = "similarity";
    pub const REASON: &str = "reason";

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(SOURCE_ID, true),
            utf8(SOURCE, false),
            utf8(CLUSTER_ID, false),
            utf8(KEPT_ID, false),
            Field::new(SIMILARITY, DataType::Float32, false),
            utf8(REASON, false),
        ]
    }
}

/// `reject`: one row removed by filter, with the rule and the measured value.
pub mod reject {
    use super::*;
    pub const ID: &str = "id";
    pub const SOURCE_ID: &str = "source_id";
    pub const SOURCE: &str = "source";
    pub const RULE: &str = "rule";
    pub const VALUE: &str = "value";
    pub const THRESHOLD: &str = "threshold";
    pub const SNIPPET: &str = "snippet";

    pub(crate) fn fields() -> Vec<Field> {
        vec![
            utf8(ID, false),
            utf8(SOURCE_ID, true),
            utf8(SOURCE, false),
            utf8(RULE, false),
            Field::new(VALUE, DataType::Float64, false),
            Field::new(THRESHOLD, DataType::Float64, false),
            utf8(SNIPPET, true),
        ]
    }
}

/// `error`: one malformed input record, with where it was.
pub mod error {
    use super::*;
    pub const FILE: &str = "file";
    pub const LOCATION: &str = "location";
    pub const KIND: &str = "kind";
    pub const MESSAGE: &str = "message";

    pub(crate) fn fields() -> Vec<Field> {
        vec![utf8(FILE, false), utf8(LOCATION, false), utf8(KIND, false), utf8(MESSAGE, false)]
    }
}

/// `signature`: what dedup needs to recognise a kept row again without its content:
/// the row's id, its size (characters or pixels) and the fixed-size signature bytes
/// (text: exact hash + MinHash values; images and pairs: exact key + pHash + flags),
/// whose layout the manifest's `dedup.signing` property names.
pub mod signature {
    use super::*;
    pub const ID: &str = "id";
    pub const SIZE: &str = "size";
    pub const SIGNATURE: &str = "signature";

    pub(crate) fn fields() -> Vec<Field> {
        vec![utf8(ID, false), Field::new(SIZE, DataType::UInt32, false), Field::new(SIGNATURE, DataType::Binary, false)]
    }
}

// ---- column access helpers shared by the Record impls (and by stages that work columnar) ----

/// Looks up a column by name and downcasts it, with an error naming the column.
pub fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a T, SchemaError> {
    let col = batch.column_by_name(name).ok_or(SchemaError::MissingColumn(name))?;
    col.as_any().downcast_ref::<T>().ok_or_else(|| SchemaError::WrongType {
        column: name,
        expected: std::any::type_name::<T>().rsplit("::").next().unwrap_or("?").to_string(),
        found: col.data_type().to_string(),
    })
}

pub type Str = StringArray;
pub type Bin = BinaryArray;
pub type U32 = UInt32Array;
pub type U16 = UInt16Array;
pub type F32 = Float32Array;
pub type F64 = Float64Array;
pub type List = ListArray;
pub type Map = MapArray;
pub type Ts = TimestampMillisecondArray;

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_string())
}

fn req_str(a: &StringArray, i: usize, column: &'static str) -> Result<String, SchemaError> {
    if a.is_valid(i) {
        Ok(a.value(i).to_string())
    } else {
        Err(SchemaError::UnexpectedNull { column, row: i })
    }
}

fn batch(kind: Kind, columns: Vec<ArrayRef>) -> Result<RecordBatch, SchemaError> {
    Ok(RecordBatch::try_new(kind.schema(), columns)?)
}

