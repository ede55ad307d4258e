//! Row structs for each dataset kind and their conversion to and from Arrow batches.
//! Stages that only pass rows through may work on batches directly; these are for
//! the many places where a row at a time is clearer.

use super::*;

/// One fetched response, fetch failure, or WARC response record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub id: String,
    pub url: String,
    pub final_url: Option<String>,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
    /// Milliseconds since the Unix epoch.
    pub fetch_time: i64,
    pub source: String,
    pub depth: u16,
    /// Set on failures: a short machine-readable kind (`timeout`, `robots`, `http_status`, ...).
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// Caption supplied with the URL by the seed list, if any.
    pub caption: Option<String>,
}

impl Page {
    /// The canonical id: blake3 of the requested URL and the body.
    pub fn make_id(url: &str, body: Option<&[u8]>) -> String {
        content_id(&[url.as_bytes(), body.unwrap_or_default()])
    }
}

impl Record for Page {
    const KIND: Kind = Kind::Page;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut url = StringBuilder::new();
        let mut final_url = StringBuilder::new();
        let mut status = UInt16Builder::new();
        let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut content_type = StringBuilder::new();
        let mut body = BinaryBuilder::new();
        let mut fetch_time = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut source = StringBuilder::new();
        let mut depth = UInt16Builder::new();
        let mut error_kind = StringBuilder::new();
        let mut error = StringBuilder::new();
        let mut caption = StringBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            url.append_value(&r.url);
            final_url.append_option(r.final_url.as_deref());
            status.append_option(r.status);
            for (k, v) in &r.headers {
                headers.keys().append_value(k);
                headers.values().append_value(v);
            }
            headers.append(true)?;
            content_type.append_option(r.content_type.as_deref());
            body.append_option(r.body.as_deref());
            fetch_time.append_value(r.fetch_time);
            source.append_value(&r.source);
            depth.append_value(r.depth);
            error_kind.append_option(r.error_kind.as_deref());
            error.append_option(r.error.as_deref());
            caption.append_option(r.caption.as_deref());
        }
        batch(
            Kind::Page,
            vec![
                Arc::new(id.finish()),
                Arc::new(url.finish()),
                Arc::new(final_url.finish()),
                Arc::new(status.finish()),
                Arc::new(headers.finish()),
                Arc::new(content_type.finish()),
                Arc::new(body.finish()),
                Arc::new(fetch_time.finish()),
                Arc::new(source.finish()),
                Arc::new(depth.finish()),
                Arc::new(error_kind.finish()),
                Arc::new(error.finish()),
                Arc::new(caption.finish()),
            ],
        )
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use page::*;
        let id: &Str = column(b, ID)?;
        let url: &Str = column(b, URL)?;
        let final_url: &Str = column(b, FINAL_URL)?;
        let status: &U16 = column(b, STATUS)?;
        let headers: &Map = column(b, HEADERS)?;
        let content_type: &Str = column(b, CONTENT_TYPE)?;
        let body: &Bin = column(b, BODY)?;
        let fetch_time: &Ts = column(b, FETCH_TIME)?;
        let source: &Str = column(b, SOURCE)?;
        let depth: &U16 = column(b, DEPTH)?;
        let error_kind: &Str = column(b, ERROR_KIND)?;
        let error: &Str = column(b, ERROR)?;
        let caption: &Str = column(b, CAPTION)?;
        let keys = headers
            .keys()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or(SchemaError::WrongType { column: HEADERS, expected: "map<utf8,utf8>".into(), found: headers.data_type().to_string() })?;
        let values = headers
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or(SchemaError::WrongType { column: HEADERS, expected: "map<utf8,utf8>".into(), found: headers.data_type().to_string() })?;
        let offsets = headers.value_offsets();
        (0..b.num_rows())
            .map(|i| {
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                Ok(Page {
                    id: get_req_str(id, i, ID)?,
                    url: get_req_str(url, i, URL)?,
                    final_url: opt_str(final_url, i),
                    status: status.is_valid(i).then(|| status.value(i)),
                    headers: (start..end).map(|j| (keys.value(j).to_string(), opt_str(values, j).unwrap_or_default())).collect(),
                    content_type: opt_str(content_type, i),
                    body: body.is_valid(i).then(|| body.value(i).to_vec()),
                    fetch_time: fetch_time.value(i),
                    source: get_req_str(source, i, SOURCE)?,
                    depth: depth.value(i),
                    error_kind: opt_str(error_kind, i),
                    error: opt_str(error, i),
                    caption: opt_str(caption, i),
                })
            })
            .collect()
    }
}

/// One text document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    pub id: String,
    pub url: Option<String>,
    pub source: String,
    /// The id the document had in its input (e.g. a JSONL `id`), kept for tracing back.
    pub source_id: Option<String>,
    pub title: Option<String>,
    pub text: String,
    pub char_count: u32,
    /// A JSON object with whatever else the input carried.
    pub meta: Option<String>,
    /// The filter's scores (all `None` before the filter ran).
    pub scores: DocScores,
}

/// The per-document score columns (see [`crate::document::SCORES`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocScores {
    pub quality: Option<f32>,
    pub perplexity: Option<f32>,
    pub lang: Option<String>,
    pub lang_score: Option<f32>,
    pub spam_hits: Option<u32>,
    pub blocklist_hits: Option<u32>,
    pub pii_email: Option<u32>,
    pub pii_phone: Option<u32>,
    pub pii_id: Option<u32>,
    pub pii_card: Option<u32>,
    pub pii_ip: Option<u32>,
}

impl DocScores {
    /// Arrow arrays of the score columns for `rows`, in schema order.
    pub fn to_arrays(rows: &[&DocScores]) -> Vec<ArrayRef> {
        fn f32s(rows: &[&DocScores], g: impl Fn(&DocScores) -> Option<f32>) -> ArrayRef {
            Arc::new(Float32Array::from(rows.iter().map(|r| g(r)).collect::<Vec<_>>()))
        }
        fn u32s(rows: &[&DocScores], g: impl Fn(&DocScores) -> Option<u32>) -> ArrayRef {
            Arc::new(UInt32Array::from(rows.iter().map(|r| g(r)).collect::<Vec<_>>()))
        }
        vec![
            f32s(rows, |r| r.quality),
            f32s(rows, |r| r.perplexity),
            Arc::new(StringArray::from(rows.iter().map(|r| r.lang.as_deref()).collect::<Vec<_>>())),
            f32s(rows, |r| r.lang_score),
            u32s(rows, |r| r.spam_hits),
            u32s(rows, |r| r.blocklist_hits),
            u32s(rows, |r| r.pii_email),
            u32s(rows, |r| r.pii_phone),
            u32s(rows, |r| r.pii_id),
            u32s(rows, |r| r.pii_card),
            u32s(rows, |r| r.pii_ip),
        ]
    }

    /// Row `i` of a document batch's score columns.
    pub fn from_batch(b: &RecordBatch, i: usize) -> Result<DocScores, SchemaError> {
        use document::*;
        let f = |name: &'static str| -> Result<Option<f32>, SchemaError> {
            let a: &Float32Array = column(b, name)?;
            Ok(a.is_valid(i).then(|| a.value(i)))
        };
        let u = |name: &'static str| -> Result<Option<u32>, SchemaError> {
            let a: &UInt32Array = column(b, name)?;
            Ok(a.is_valid(i).then(|| a.value(i)))
        };
        let lang: &StringArray = column(b, LANG)?;
        Ok(DocScores {
            quality: f(QUALITY)?,
            perplexity: f(PERPLEXITY)?,
            lang: opt_str(lang, i),
            lang_score: f(LANG_SCORE)?,
            spam_hits: u(SPAM_HITS)?,
            blocklist_hits: u(BLOCKLIST_HITS)?,
            pii_email: u(PII_EMAIL)?,
            pii_phone: u(PII_PHONE)?,
            pii_id: u(PII_ID)?,
            pii_card: u(PII_CARD)?,
            pii_ip: u(PII_IP)?,
        })
    }
}

impl Document {
    /// Builds a document with its canonical id and character count filled in.
    pub fn new(source: &str, source_id: Option<String>, url: Option<String>, title: Option<String>, text: String, meta: Option<String>) -> Self {
        let id = Self::make_id(source, source_id.as_deref(), url.as_deref(), &text);
        let char_count = text.chars().count() as u32;
        Document { id, url, source: source.to_string(), source_id, title, text, char_count, meta, scores: DocScores::default() }
    }

    /// blake3 of source, source id, url and text.
    pub fn make_id(source: &str, source_id: Option<&str>, url: Option<&str>, text: &str) -> String {
        content_id(&[
            source.as_bytes(),
            source_id.unwrap_or_default().as_bytes(),
            url.unwrap_or_default().as_bytes(),
            text.as_bytes(),
        ])
    }
}

impl Record for Document {
    const KIND: Kind = Kind::Document;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut url = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut source_id = StringBuilder::new();
        let mut title = StringBuilder::new();
        let mut text = StringBuilder::new();
        let mut char_count = UInt32Builder::new();
        let mut meta = StringBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            url.append_option(r.url.as_deref());
            source.append_value(&r.source);
            source_id.append_option(r.source_id.as_deref());
            title.append_option(r.title.as_deref());
            text.append_value(&r.text);
            char_count.append_value(r.char_count);
            meta.append_option(r.meta.as_deref());
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(url.finish()),
            Arc::new(source.finish()),
            Arc::new(source_id.finish()),
            Arc::new(title.finish()),
            Arc::new(text.finish()),
            Arc::new(char_count.finish()),
            Arc::new(meta.finish()),
        ];
        cols.extend(DocScores::to_arrays(&rows.iter().map(|r| &r.scores).collect::<Vec<_>>()));
        batch(Kind::Document, cols)
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use document::*;
        let id: &Str = column(b, ID)?;
        let url: &Str = column(b, URL)?;
        let source: &Str = column(b, SOURCE)?;
        let source_id: &Str = column(b, SOURCE_ID)?;
        let title: &Str = column(b, TITLE)?;
        let text: &Str = column(b, TEXT)?;
        let char_count: &U32 = column(b, CHAR_COUNT)?;
        let meta: &Str = column(b, META)?;
        (0..b.num_rows())
            .map(|i| {
                Ok(Document {
                    id: get_req_str(id, i, ID)?,
                    url: opt_str(url, i),
                    source: get_req_str(source, i, SOURCE)?,
                    source_id: opt_str(source_id, i),
                    title: opt_str(title, i),
                    text: get_req_str(text, i, TEXT)?,
                    char_count: char_count.value(i),
                    meta: opt_str(meta, i),
                    scores: DocScores::from_batch(b, i)?,
                })
            })
            .collect()
    }
}

/// One encoded image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Image {
    pub id: String,
    pub url: Option<String>,
    pub page_url: Option<String>,
    pub source: String,
    pub source_id: Option<String>,
    pub bytes: Vec<u8>,
    /// Width and height as the file stores the picture, before any EXIF orientation:
    /// a phone photo turned by its orientation tag reads with the sides swapped. The
    /// rules that use them (pixel count, aspect, side limits) do not depend on which
    /// side is which; tokenize and dedup turn the picture upright.
    pub width: u32,
    pub height: u32,
    /// Lower-case format name: png, jpeg, gif, webp, bmp.
    pub format: String,
    /// Quality signals (all `None` until a filter measured them).
    pub signals: ImageSignals,
}

/// The per-image quality signal columns (see [`crate::image_signals`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImageSignals {
    pub sharpness: Option<f32>,
    pub entropy: Option<f32>,
    pub border: Option<f32>,
}

impl ImageSignals {
    /// Arrow arrays of the signal columns for `rows`, in schema order.
    pub fn to_arrays(rows: &[ImageSignals]) -> Vec<ArrayRef> {
        let f = |g: fn(&ImageSignals) -> Option<f32>| -> ArrayRef { Arc::new(Float32Array::from(rows.iter().map(g).collect::<Vec<_>>())) };
        vec![f(|r| r.sharpness), f(|r| r.entropy), f(|r| r.border)]
    }

    /// Row `i` of an image or pair batch's signal columns.
    pub fn from_batch(b: &RecordBatch, i: usize) -> Result<ImageSignals, SchemaError> {
        use crate::image_signals::*;
        let f = |name: &'static str| -> Result<Option<f32>, SchemaError> {
            let a: &Float32Array = column(b, name)?;
            Ok(a.is_valid(i).then(|| a.value(i)))
        };
        Ok(ImageSignals { sharpness: f(SHARPNESS)?, entropy: f(ENTROPY)?, border: f(BORDER)? })
    }
}

impl Image {
    /// blake3 of the encoded bytes.
    pub fn make_id(bytes: &[u8]) -> String {
        content_id(&[bytes])
    }
}

impl Record for Image {
    const KIND: Kind = Kind::Image;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut url = StringBuilder::new();
        let mut page_url = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut source_id = StringBuilder::new();
        let mut bytes = BinaryBuilder::new();
        let mut width = UInt32Builder::new();
        let mut height = UInt32Builder::new();
        let mut format = StringBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            url.append_option(r.url.as_deref());
            page_url.append_option(r.page_url.as_deref());
            source.append_value(&r.source);
            source_id.append_option(r.source_id.as_deref());
            bytes.append_value(&r.bytes);
            width.append_value(r.width);
            height.append_value(r.height);
            format.append_value(&r.format);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(url.finish()),
            Arc::new(page_url.finish()),
            Arc::new(source.finish()),
            Arc::new(source_id.finish()),
            Arc::new(bytes.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
            Arc::new(format.finish()),
        ];
        cols.extend(ImageSignals::to_arrays(&rows.iter().map(|r| r.signals).collect::<Vec<_>>()));
        batch(Kind::Image, cols)
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use image::*;
        let id: &Str = column(b, ID)?;
        let url: &Str = column(b, URL)?;
        let page_url: &Str = column(b, PAGE_URL)?;
        let source: &Str = column(b, SOURCE)?;
        let source_id: &Str = column(b, SOURCE_ID)?;
        let bytes: &Bin = column(b, BYTES)?;
        let width: &U32 = column(b, WIDTH)?;
        let height: &U32 = column(b, HEIGHT)?;
        let format: &Str = column(b, FORMAT)?;
        (0..b.num_rows())
            .map(|i| {
                Ok(Image {
                    id: get_req_str(id, i, ID)?,
                    url: opt_str(url, i),
                    page_url: opt_str(page_url, i),
                    source: get_req_str(source, i, SOURCE)?,
                    source_id: opt_str(source_id, i),
                    bytes: bytes.value(i).to_vec(),
                    width: width.value(i),
                    height: height.value(i),
                    format: get_req_str(format, i, FORMAT)?,
                    signals: ImageSignals::from_batch(b, i)?,
                })
            })
            .collect()
    }
}

/// One image–caption pair.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pair {
    pub id: String,
    pub image_id: String,
    pub image_bytes: Vec<u8>,
    /// As stored, before EXIF orientation (see [`Image::width`]).
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub caption: String,
    /// Where the caption came from: `alt`, `title`, `figcaption`, `nearby`, `sidecar`, `seed`, ...
    pub caption_origin: String,
    /// The page the image was found on.
    pub url: Option<String>,
    pub image_url: Option<String>,
    pub source: String,
    pub source_id: Option<String>,
    /// The image's quality signals (all `None` until a filter measured them).
    pub signals: ImageSignals,
}

impl Pair {
    /// blake3 of image id, caption and page url.
    pub fn make_id(image_id: &str, caption: &str, url: Option<&str>) -> String {
        content_id(&[image_id.as_bytes(), caption.as_bytes(), url.unwrap_or_default().as_bytes()])
    }
}

impl Record for Pair {
    const KIND: Kind = Kind::Pair;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut image_id = StringBuilder::new();
        let mut image_bytes = BinaryBuilder::new();
        let mut width = UInt32Builder::new();
        let mut height = UInt32Builder::new();
        let mut format = StringBuilder::new();
        let mut caption = StringBuilder::new();
        let mut caption_origin = StringBuilder::new();
        let mut url = StringBuilder::new();
        let mut image_url = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut source_id = StringBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            image_id.append_value(&r.image_id);
            image_bytes.append_value(&r.image_bytes);
            width.append_value(r.width);
            height.append_value(r.height);
            format.append_value(&r.format);
            caption.append_value(&r.caption);
            caption_origin.append_value(&r.caption_origin);
            url.append_option(r.url.as_deref());
            image_url.append_option(r.image_url.as_deref());
            source.append_value(&r.source);
            source_id.append_option(r.source_id.as_deref());
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(image_id.finish()),
            Arc::new(image_bytes.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
            Arc::new(format.finish()),
            Arc::new(caption.finish()),
            Arc::new(caption_origin.finish()),
            Arc::new(url.finish()),
            Arc::new(image_url.finish()),
            Arc::new(source.finish()),
            Arc::new(source_id.finish()),
        ];
        cols.extend(ImageSignals::to_arrays(&rows.iter().map(|r| r.signals).collect::<Vec<_>>()));
        batch(Kind::Pair, cols)
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use pair::*;
        let id: &Str = column(b, ID)?;
        let image_id: &Str = column(b, IMAGE_ID)?;
        let image_bytes: &Bin = column(b, IMAGE_BYTES)?;
        let width: &U32 = column(b, WIDTH)?;
        let height: &U32 = column(b, HEIGHT)?;
        let format: &Str = column(b, FORMAT)?;
        let caption: &Str = column(b, CAPTION)?;
        let caption_origin: &Str = column(b, CAPTION_ORIGIN)?;
        let url: &Str = column(b, URL)?;
        let image_url: &Str = column(b, IMAGE_URL)?;
        let source: &Str = column(b, SOURCE)?;
        let source_id: &Str = column(b, SOURCE_ID)?;
        (0..b.num_rows())
            .map(|i| {
                Ok(Pair {
                    id: get_req_str(id, i, ID)?,
                    image_id: get_req_str(image_id, i, IMAGE_ID)?,
                    image_bytes: image_bytes.value(i).to_vec(),
                    width: width.value(i),
                    height: height.value(i),
                    format: get_req_str(format, i, FORMAT)?,
                    caption: get_req_str(caption, i, CAPTION)?,
                    caption_origin: get_req_str(caption_origin, i, CAPTION_ORIGIN)?,
                    url: opt_str(url, i),
                    image_url: opt_str(image_url, i),
                    source: get_req_str(source, i, SOURCE)?,
                    source_id: opt_str(source_id, i),
                    signals: ImageSignals::from_batch(b, i)?,
                })
            })
            .collect()
    }
}

/// One tokenized training sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub id: String,
    /// [`sample::TASK_TEXT`] or [`sample::TASK_IMAGE_TEXT`].
    pub task: String,
    pub input_ids: Vec<i32>,
    pub length: u32,
    /// uint8 patches in the layout the tokenizer file documents; only for image tasks.
    pub image_patches: Option<Vec<u8>>,
    /// Ids of the input rows this sample was packed from.
    pub source_ids: Vec<String>,
}

impl Record for Sample {
    const KIND: Kind = Kind::Sample;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut task = StringBuilder::new();
        let mut input_ids = ListBuilder::new(Int32Builder::new());
        let mut length = UInt32Builder::new();
        let mut image_patches = BinaryBuilder::new();
        let mut source_ids = ListBuilder::new(StringBuilder::new());
        for r in rows {
            id.append_value(&r.id);
            task.append_value(&r.task);
            input_ids.values().append_slice(&r.input_ids);
            input_ids.append(true);
            length.append_value(r.length);
            image_patches.append_option(r.image_patches.as_deref());
            for s in &r.source_ids {
                source_ids.values().append_value(s);
            }
            source_ids.append(true);
        }
        batch(
            Kind::Sample,
            vec![
                Arc::new(id.finish()),
                Arc::new(task.finish()),
                Arc::new(input_ids.finish()),
                Arc::new(length.finish()),
                Arc::new(image_patches.finish()),
                Arc::new(source_ids.finish()),
            ],
        )
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use sample::*;
        let id: &Str = column(b, ID)?;
        let task: &Str = column(b, TASK)?;
        let input_ids: &List = column(b, INPUT_IDS)?;
        let length: &U32 = column(b, LENGTH)?;
        let image_patches: &Bin = column(b, IMAGE_PATCHES)?;
        let source_ids: &List = column(b, SOURCE_IDS)?;
        let ids_values = input_ids
            .values()
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .ok_or(SchemaError::WrongType { column: INPUT_IDS, expected: "list<int32>".into(), found: input_ids.data_type().to_string() })?;
        let src_values = source_ids
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or(SchemaError::WrongType { column: SOURCE_IDS, expected: "list<utf8>".into(), found: source_ids.data_type().to_string() })?;
        let io = input_ids.value_offsets();
        let so = source_ids.value_offsets();
        (0..b.num_rows())
            .map(|i| {
                Ok(Sample {
                    id: get_req_str(id, i, ID)?,
                    task: get_req_str(task, i, TASK)?,
                    input_ids: ids_values.values()[io[i] as usize..io[i + 1] as usize].to_vec(),
                    length: length.value(i),
                    image_patches: image_patches.is_valid(i).then(|| image_patches.value(i).to_vec()),
                    source_ids: (so[i] as usize..so[i + 1] as usize).map(|j| src_values.value(j).to_string()).collect(),
                })
            })
            .collect()
    }
}

/// One row removed by dedup.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Duplicate {
    pub id: String,
    pub source_id: Option<String>,
    pub source: String,
    pub cluster_id: String,
    pub kept_id: String,
    /// Estimated similarity to the kept row (1.0 for exact duplicates).
    pub similarity: f32,
    /// `exact_text`, `near_text`, `exact_image`, `near_image`, ...
    pub reason: String,
}

impl Record for Duplicate {
    const KIND: Kind = Kind::Duplicate;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut source_id = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut cluster_id = StringBuilder::new();
        let mut kept_id = StringBuilder::new();
        let mut similarity = Float32Builder::new();
        let mut reason = StringBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            source_id.append_option(r.source_id.as_deref());
            source.append_value(&r.source);
            cluster_id.append_value(&r.cluster_id);
            kept_id.append_value(&r.kept_id);
            similarity.append_value(r.similarity);
            reason.append_value(&r.reason);
        }
        batch(
            Kind::Duplicate,
            vec![
                Arc::new(id.finish()),
                Arc::new(source_id.finish()),
                Arc::new(source.finish()),
                Arc::new(cluster_id.finish()),
                Arc::new(kept_id.finish()),
                Arc::new(similarity.finish()),
                Arc::new(reason.finish()),
            ],
        )
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use duplicate::*;
        let id: &Str = column(b, ID)?;
        let source_id: &Str = column(b, SOURCE_ID)?;
        let source: &Str = column(b, SOURCE)?;
        let cluster_id: &Str = column(b, CLUSTER_ID)?;
        let kept_id: &Str = column(b, KEPT_ID)?;
        let similarity: &F32 = column(b, SIMILARITY)?;
        let reason: &Str = column(b, REASON)?;
        (0..b.num_rows())
            .map(|i| {
                Ok(Duplicate {
                    id: get_req_str(id, i, ID)?,
                    source_id: opt_str(source_id, i),
                    source: get_req_str(source, i, SOURCE)?,
                    cluster_id: get_req_str(cluster_id, i, CLUSTER_ID)?,
                    kept_id: get_req_str(kept_id, i, KEPT_ID)?,
                    similarity: similarity.value(i),
                    reason: get_req_str(reason, i, REASON)?,
                })
            })
            .collect()
    }
}

/// Dedup's signature of one kept row (see [`crate::signature`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signature {
    pub id: String,
    pub size: u32,
    pub signature: Vec<u8>,
}

impl Record for Signature {
    const KIND: Kind = Kind::Signature;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut size = UInt32Builder::new();
        let mut sig = BinaryBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            size.append_value(r.size);
            sig.append_value(&r.signature);
        }
        batch(Kind::Signature, vec![Arc::new(id.finish()), Arc::new(size.finish()), Arc::new(sig.finish())])
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use signature::*;
        let id: &Str = column(b, ID)?;
        let size: &U32 = column(b, SIZE)?;
        let sig: &Bin = column(b, SIGNATURE)?;
        (0..b.num_rows())
            .map(|i| Ok(Signature { id: get_req_str(id, i, ID)?, size: size.value(i), signature: sig.value(i).to_vec() }))
            .collect()
    }
}

/// One row removed by filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reject {
    pub id: String,
    pub source_id: Option<String>,
    pub source: String,
    pub rule: String,
    pub value: f64,
    pub threshold: f64,
    /// The start of the rejected text (or the caption), so users can judge the rule.
    pub snippet: Option<String>,
}

impl Record for Reject {
    const KIND: Kind = Kind::Reject;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut id = StringBuilder::new();
        let mut source_id = StringBuilder::new();
        let mut source = StringBuilder::new();
        let mut rule = StringBuilder::new();
        let mut value = Float64Builder::new();
        let mut threshold = Float64Builder::new();
        let mut snippet = StringBuilder::new();
        for r in rows {
            id.append_value(&r.id);
            source_id.append_option(r.source_id.as_deref());
            source.append_value(&r.source);
            rule.append_value(&r.rule);
            value.append_value(r.value);
            threshold.append_value(r.threshold);
            snippet.append_option(r.snippet.as_deref());
        }
        batch(
            Kind::Reject,
            vec![
                Arc::new(id.finish()),
                Arc::new(source_id.finish()),
                Arc::new(source.finish()),
                Arc::new(rule.finish()),
                Arc::new(value.finish()),
                Arc::new(threshold.finish()),
                Arc::new(snippet.finish()),
            ],
        )
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use reject::*;
        let id: &Str = column(b, ID)?;
        let source_id: &Str = column(b, SOURCE_ID)?;
        let source: &Str = column(b, SOURCE)?;
        let rule: &Str = column(b, RULE)?;
        let value: &F64 = column(b, VALUE)?;
        let threshold: &F64 = column(b, THRESHOLD)?;
        let snippet: &Str = column(b, SNIPPET)?;
        (0..b.num_rows())
            .map(|i| {
                Ok(Reject {
                    id: get_req_str(id, i, ID)?,
                    source_id: opt_str(source_id, i),
                    source: get_req_str(source, i, SOURCE)?,
                    rule: get_req_str(rule, i, RULE)?,
                    value: value.value(i),
                    threshold: threshold.value(i),
                    snippet: opt_str(snippet, i),
                })
            })
            .collect()
    }
}

/// One malformed input record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputError {
    pub file: String,
    /// `line N`, `offset N`, or `row N`.
    pub location: String,
    pub kind: String,
    pub message: String,
}

impl Record for InputError {
    const KIND: Kind = Kind::Error;

    fn to_batch(rows: &[Self]) -> Result<RecordBatch, SchemaError> {
        let mut file = StringBuilder::new();
        let mut location = StringBuilder::new();
        let mut kind = StringBuilder::new();
        let mut message = StringBuilder::new();
        for r in rows {
            file.append_value(&r.file);
            location.append_value(&r.location);
            kind.append_value(&r.kind);
            message.append_value(&r.message);
        }
        batch(
            Kind::Error,
            vec![Arc::new(file.finish()), Arc::new(location.finish()), Arc::new(kind.finish()), Arc::new(message.finish())],
        )
    }

    fn from_batch(b: &RecordBatch) -> Result<Vec<Self>, SchemaError> {
        use self::error::*;
        let file: &Str = column(b, FILE)?;
        let location: &Str = column(b, LOCATION)?;
        let kind: &Str = column(b, KIND)?;
        let message: &Str = column(b, MESSAGE)?;
        (0..b.num_rows())
            .map(|i| {
                Ok(InputError {
                    file: get_req_str(file, i, FILE)?,
                    location: get_req_str(location, i, LOCATION)?,
                    kind: get_req_str(kind, i, KIND)?,
                    message: get_req_str(message, i, MESSAGE)?,
                })
            })
            .collect()
    }
}

fn get_req_str(a: &StringArray, i: usize, column: &'static str) -> Result<String, SchemaError> {
    req_str(a, i, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<R: Record + PartialEq + std::fmt::Debug + Clone>(rows: Vec<R>) {
        let b = R::to_batch(&rows).unwrap();
        R::KIND.check(&b.schema()).unwrap();
        assert_eq!(R::from_batch(&b).unwrap(), rows);
    }

    #[test]
    fn every_kind_round_trips_in_memory() {
        round_trip(vec![
            Page {
                id: Page::make_id("http://a/", Some(b"x")),
                url: "http://a/".into(),
                final_url: Some("http://a/b".into()),
                status: Some(200),
                headers: vec![("content-type".into(), "text/html".into()), ("x".into(), "y".into())],
                content_type: Some("text/html".into()),
                body: Some(b"x".to_vec()),
                fetch_time: 1_700_000_000_000,
                source: "seed".into(),
                depth: 1,
                ..Default::default()
            },
            Page { url: "http://b/".into(), error_kind: Some("timeout".into()), source: "s".into(), ..Default::default() },
        ]);
        let mut scored = Document::new("poetry", Some("8".into()), None, None, "疑是地上霜".into(), None);
        scored.scores = DocScores { quality: Some(0.75), lang: Some("zh".into()), lang_score: Some(0.99), pii_phone: Some(2), ..Default::default() };
        round_trip(vec![Document::new("poetry", Some("7".into()), None, Some("靜夜思".into()), "床前明月光".into(), Some("{}".into())), scored]);
        round_trip(vec![Image { id: "i".into(), bytes: vec![1, 2], width: 3, height: 4, format: "png".into(), source: "s".into(), ..Default::default() }]);
        round_trip(vec![Pair { id: "p".into(), caption: "图 3.1".into(), caption_origin: "figcaption".into(), ..Default::default() }]);
        let signals = ImageSignals { sharpness: Some(812.5), entropy: Some(7.25), border: Some(0.0) };
        round_trip(vec![Image { id: "j".into(), format: "jpeg".into(), source: "s".into(), signals, ..Default::default() }]);
        round_trip(vec![Pair { id: "q".into(), caption: "猫".into(), caption_origin: "alt".into(), signals, ..Default::default() }]);
        round_trip(vec![
            Sample { id: "s".into(), task: "text".into(), input_ids: vec![1, 2, 3], length: 3, image_patches: None, source_ids: vec!["a".into(), "b".into()] },
            Sample { id: "t".into(), task: "image_text".into(), input_ids: vec![], length: 0, image_patches: Some(vec![0; 12]), source_ids: vec![] },
        ]);
        round_trip(vec![Duplicate { id: "d".into(), similarity: 0.9, reason: "near_text".into(), ..Default::default() }]);
        round_trip(vec![Signature { id: "s".into(), size: 7, signature: vec![1, 2, 3, 255] }]);
        round_trip(vec![Reject { id: "r".into(), rule: "min_chars".into(), value: 3.0, threshold: 5.0, ..Default::default() }]);
        round_trip(vec![InputError { file: "a.jsonl".into(), location: "line 3".into(), kind: "json".into(), message: "eof".into() }]);
    }

    #[test]
    fn check_refuses_other_kinds_and_versions() {
        let doc = Kind::Document.schema();
        assert!(Kind::Document.check(&doc).is_ok());
        let err = Kind::Page.check(&doc).unwrap_err().to_string();
        assert!(err.contains("page"), "{err}");
        let mut meta = doc.metadata().clone();
        meta.insert(META_VERSION.into(), "99".into());
        let other = Schema::new_with_metadata(doc.fields().clone(), meta);
        assert!(Kind::Document.check(&other).unwrap_err().to_string().contains("version 99"));
    }

    #[test]
    fn version_1_documents_read_with_null_scores() {
        let v2 = Document::to_batch(&[Document::new("s", None, None, None, "床前明月光".into(), None)]).unwrap();
        let mut meta = v2.schema().metadata().clone();
        meta.insert(META_VERSION.into(), "1".into());
        let v1_schema = Arc::new(Schema::new_with_metadata(v2.schema().fields()[..8].to_vec(), meta));
        let v1 = RecordBatch::try_new(v1_schema.clone(), v2.columns()[..8].to_vec()).unwrap();
        Kind::Document.check(&v1_schema).unwrap();
        assert!(Kind::Document.reads_version(1) && Kind::Document.reads_version(2) && !Kind::Document.reads_version(3));
        let up = Kind::Document.upgrade(v1).unwrap();
        Kind::Document.check(&up.schema()).unwrap();
        assert_eq!(up.schema().metadata().get(META_VERSION).map(String::as_str), Some("2"));
        let back = Document::from_batch(&up).unwrap();
        assert_eq!(back[0].scores, DocScores::default());
        assert_eq!(back[0].text, "床前明月光");
        // A v1-labelled file with v2's columns, or a truncated v2 file, is refused.
        let mut m1 = v2.schema().metadata().clone();
        m1.insert(META_VERSION.into(), "1".into());
        assert!(Kind::Document.check(&Schema::new_with_metadata(v2.schema().fields().clone(), m1)).is_err());
        assert!(Kind::Document.check(&Schema::new_with_metadata(v2.schema().fields()[..9].to_vec(), v2.schema().metadata().clone())).is_err());
    }

    #[test]
    fn version_1_images_and_pairs_read_with_null_signals() {
        let img = Image { id: "i".into(), bytes: vec![1], width: 80, height: 90, format: "png".into(), source: "s".into(), ..Default::default() };
        let pair = Pair { id: "p".into(), image_id: "i".into(), caption: "猫".into(), caption_origin: "alt".into(), source: "s".into(), ..Default::default() };
        for (kind, v2, n) in [(Kind::Image, Image::to_batch(&[img.clone()]).unwrap(), 9), (Kind::Pair, Pair::to_batch(&[pair.clone()]).unwrap(), 12)] {
            assert_eq!(v2.num_columns(), n + 3);
            let mut meta = v2.schema().metadata().clone();
            meta.insert(META_VERSION.into(), "1".into());
            let v1_schema = Arc::new(Schema::new_with_metadata(v2.schema().fields()[..n].to_vec(), meta));
            kind.check(&v1_schema).unwrap();
            assert!(kind.reads_version(1) && kind.reads_version(2) && !kind.reads_version(3));
            let up = kind.upgrade(RecordBatch::try_new(v1_schema, v2.columns()[..n].to_vec()).unwrap()).unwrap();
            kind.check(&up.schema()).unwrap();
            assert_eq!(ImageSignals::from_batch(&up, 0).unwrap(), ImageSignals::default());
            // An unlabelled file with the old column count reads too; one column short does not.
            let bare = Schema::new(v2.schema().fields()[..n].to_vec());
            kind.check(&bare).unwrap();
            assert!(kind.check(&Schema::new(v2.schema().fields()[..n + 1].to_vec())).is_err());
        }
        assert_eq!(Image::from_batch(&Kind::Image.upgrade(Image::to_batch(&[img.clone()]).unwrap()).unwrap()).unwrap(), vec![img]);
    }

    #[test]
    fn ids_are_unambiguous() {
        assert_ne!(content_id(&[b"ab", b"c"]), content_id(&[b"a", b"bc"]));
        assert_eq!(content_id(&[b"x"]).len(), 64);
    }
}
