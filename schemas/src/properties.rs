//! Typed manifest `properties`: what a stage records about a dataset for its readers.
//! A sample dataset's ids and image geometry are a contract between tokenize (which
//! writes them) and the trainer and inspect (which read them); reading a key that is
//! missing or of the wrong type is an error naming the dataset, never a default that
//! would silently train with a wrong id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

/// The property keys of a sample dataset (the manifest's JSON names).
pub mod sample_keys {
    pub const TOKENIZER: &str = "tokenizer";
    pub const TOKENIZER_BLAKE3: &str = "tokenizer_blake3";
    pub const VOCAB_SIZE: &str = "vocab_size";
    pub const PAD_ID: &str = "pad_id";
    pub const UNK_ID: &str = "unk_id";
    pub const CLS_ID: &str = "cls_id";
    pub const SEP_ID: &str = "sep_id";
    pub const MASK_ID: &str = "mask_id";
    pub const IMG_ID: &str = "img_id";
    pub const IMG_END_ID: &str = "img_end_id";
    pub const MAX_LEN: &str = "max_len";
    pub const ADD_CLS: &str = "add_cls";
    pub const PACK: &str = "pack";
    pub const IMAGE_SIZE: &str = "image_size";
    pub const PATCH_SIZE: &str = "patch_size";
    pub const GRID: &str = "grid";
    pub const PATCH_BYTES: &str = "patch_bytes";
    pub const PATCH_LAYOUT: &str = "patch_layout";
    pub const IMAGE_ENCODING: &str = "image_encoding";
    pub const IMAGE_QUALITY: &str = "image_quality";
    pub const TEXT_LAYOUT: &str = "text_layout";
    pub const IMAGE_TEXT_LAYOUT: &str = "image_text_layout";
}

/// A dataset's properties do not hold what its readers need.
#[derive(Debug, Error)]
#[error("{}: manifest property `{key}` {problem}", dataset.display())]
pub struct PropertiesError {
    pub dataset: PathBuf,
    pub key: &'static str,
    pub problem: String,
}

/// What tokenize records about a sample dataset (manifest `properties`).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleProperties {
    /// The tokenizer file, in the dataset folder.
    pub tokenizer: String,
    pub tokenizer_blake3: String,
    pub vocab_size: u64,
    pub pad_id: u32,
    pub unk_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    pub mask_id: u32,
    /// `None` (JSON null) for vocabularies without image markers (e.g. BERT-Chinese's);
    /// such a dataset holds text samples only.
    pub img_id: Option<u32>,
    pub img_end_id: Option<u32>,
    /// The longest sample in ids (image patches not counted).
    pub max_len: u64,
    pub add_cls: bool,
    pub pack: bool,
    pub image_size: u32,
    pub patch_size: u32,
    pub grid: u32,
    pub patch_bytes: u64,
    pub patch_layout: String,
    /// `raw` or `jpeg`.
    pub image_encoding: String,
    /// JPEG quality; recorded only with `image_encoding = "jpeg"`.
    pub image_quality: Option<u8>,
    pub text_layout: String,
    pub image_text_layout: String,
}

impl SampleProperties {
    /// The manifest form (the same keys and JSON values tokenize always wrote).
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        use sample_keys::*;
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put(TOKENIZER, self.tokenizer.clone().into());
        put(TOKENIZER_BLAKE3, self.tokenizer_blake3.clone().into());
        put(VOCAB_SIZE, self.vocab_size.into());
        put(PAD_ID, self.pad_id.into());
        put(UNK_ID, self.unk_id.into());
        put(CLS_ID, self.cls_id.into());
        put(SEP_ID, self.sep_id.into());
        put(MASK_ID, self.mask_id.into());
        put(IMG_ID, self.img_id.into());
        put(IMG_END_ID, self.img_end_id.into());
        put(MAX_LEN, self.max_len.into());
        put(ADD_CLS, self.add_cls.into());
        put(PACK, self.pack.into());
        put(IMAGE_SIZE, self.image_size.into());
        put(PATCH_SIZE, self.patch_size.into());
        put(GRID, self.grid.into());
        put(PATCH_BYTES, self.patch_bytes.into());
        put(PATCH_LAYOUT, self.patch_layout.clone().into());
        put(IMAGE_ENCODING, self.image_encoding.clone().into());
        if let Some(q) = self.image_quality {
            put(IMAGE_QUALITY, q.into());
        }
        put(TEXT_LAYOUT, self.text_layout.clone().into());
        put(IMAGE_TEXT_LAYOUT, self.image_text_layout.clone().into());
        m
    }

    /// Reads the properties of the dataset at `dataset` (for the error message). Every
    /// key tokenize always writes must be there with its type; keys this version does
    /// not know are ignored (a newer tokenize may add some).
    pub fn from_map(dataset: &Path, props: &BTreeMap<String, Value>) -> Result<Self, PropertiesError> {
        use sample_keys::*;
        let fail = |key: &'static str, problem: String| PropertiesError { dataset: dataset.to_path_buf(), key, problem };
        let get = |key: &'static str| props.get(key).ok_or_else(|| fail(key, "is missing (was the dataset made by `m6corpus tokenize`?)".into()));
        let uint = |key: &'static str, v: &Value, max: u64| -> Result<u64, PropertiesError> {
            match v.as_u64() {
                Some(n) if n <= max => Ok(n),
                Some(n) => Err(fail(key, format!("is {n}, more than {max}"))),
                None => Err(fail(key, format!("is {v}, expected a non-negative integer"))),
            }
        };
        let u64_ = |key: &'static str| uint(key, get(key)?, u64::MAX);
        let u32_ = |key: &'static str| Ok::<_, PropertiesError>(uint(key, get(key)?, u32::MAX as u64)? as u32);
        let opt_u32 = |key: &'static str| -> Result<Option<u32>, PropertiesError> {
            match get(key)? {
                Value::Null => Ok(None),
                v => Ok(Some(uint(key, v, u32::MAX as u64)? as u32)),
            }
        };
        let string = |key: &'static str| -> Result<String, PropertiesError> {
            let v = get(key)?;
            v.as_str().map(str::to_string).ok_or_else(|| fail(key, format!("is {v}, expected a string")))
        };
        let boolean = |key: &'static str| -> Result<bool, PropertiesError> {
            let v = get(key)?;
            v.as_bool().ok_or_else(|| fail(key, format!("is {v}, expected true or false")))
        };
        let image_quality = match props.get(IMAGE_QUALITY) {
            None => None,
            Some(v) => Some(uint(IMAGE_QUALITY, v, u8::MAX as u64)? as u8),
        };
        Ok(SampleProperties {
            tokenizer: string(TOKENIZER)?,
            tokenizer_blake3: string(TOKENIZER_BLAKE3)?,
            vocab_size: u64_(VOCAB_SIZE)?,
            pad_id: u32_(PAD_ID)?,
            unk_id: u32_(UNK_ID)?,
            cls_id: u32_(CLS_ID)?,
            sep_id: u32_(SEP_ID)?,
            mask_id: u32_(MASK_ID)?,
            img_id: opt_u32(IMG_ID)?,
            img_end_id: opt_u32(IMG_END_ID)?,
            max_len: u64_(MAX_LEN)?,
            add_cls: boolean(ADD_CLS)?,
            pack: boolean(PACK)?,
            image_size: u32_(IMAGE_SIZE)?,
            patch_size: u32_(PATCH_SIZE)?,
            grid: u32_(GRID)?,
            patch_bytes: u64_(PATCH_BYTES)?,
            patch_layout: string(PATCH_LAYOUT)?,
            image_encoding: string(IMAGE_ENCODING)?,
            image_quality,
            text_layout: string(TEXT_LAYOUT)?,
            image_text_layout: string(IMAGE_TEXT_LAYOUT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> SampleProperties {
        SampleProperties {
            tokenizer: "tokenizer.json".into(),
            tokenizer_blake3: "ab".repeat(32),
            vocab_size: 8000,
            pad_id: 0,
            unk_id: 1,
            cls_id: 2,
            sep_id: 3,
            mask_id: 4,
            img_id: Some(5),
            img_end_id: Some(6),
            max_len: 512,
            add_cls: true,
            pack: true,
            image_size: 224,
            patch_size: 16,
            grid: 14,
            patch_bytes: 150_528,
            patch_layout: "patch-major RGB".into(),
            image_encoding: "jpeg".into(),
            image_quality: Some(90),
            text_layout: "t".into(),
            image_text_layout: "i".into(),
        }
    }

    #[test]
    fn round_trips_and_names_bad_keys_and_the_dataset() {
        let p = example();
        let dir = Path::new("corpus/samples");
        assert_eq!(SampleProperties::from_map(dir, &p.to_map()).unwrap(), p);
        let text_only = SampleProperties { img_id: None, img_end_id: None, image_encoding: "raw".into(), image_quality: None, ..example() };
        let m = text_only.to_map();
        assert_eq!(m[sample_keys::IMG_ID], Value::Null);
        assert!(!m.contains_key(sample_keys::IMAGE_QUALITY));
        assert_eq!(SampleProperties::from_map(dir, &m).unwrap(), text_only);
        // A renamed, a missing and a wrongly typed key: errors naming key and dataset.
        for (edit, key, says) in [
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                let v = m.remove("pad_id").unwrap();
                m.insert("padding_id".into(), v);
            }) as Box<dyn Fn(&mut BTreeMap<String, Value>)>, "pad_id", "is missing"),
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                m.remove("mask_id");
            }), "mask_id", "is missing"),
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                m.insert("vocab_size".into(), "8000".into());
            }), "vocab_size", "expected a non-negative integer"),
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                m.insert("sep_id".into(), (-3).into());
            }), "sep_id", "expected a non-negative integer"),
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                m.insert("cls_id".into(), (u64::from(u32::MAX) + 1).into());
            }), "cls_id", "more than"),
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                m.insert("pack".into(), 1.into());
            }), "pack", "expected true or false"),
            (Box::new(|m: &mut BTreeMap<String, Value>| {
                m.insert("image_encoding".into(), Value::Null);
            }), "image_encoding", "expected a string"),
        ] {
            let mut m = p.to_map();
            edit(&mut m);
            let e = SampleProperties::from_map(dir, &m).unwrap_err();
            assert_eq!(e.key, key);
            let msg = e.to_string();
            assert!(msg.starts_with("corpus/samples: manifest property `") && msg.contains(key) && msg.contains(says), "{msg}");
        }
    }
}
