//! Seed lists, streamed: plain text (one URL per line, optional TAB caption), CSV with
//! a `url[,caption]` header, or Parquet with `url` and optional `caption` columns.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow::array::{Array, LargeStringArray, StringArray};
use m6_schemas::page;

/// One entry of a seed list; `place` names the file and line/row for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    pub url: String,
    pub caption: Option<String>,
    pub place: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> SeedError {
    SeedError::Bad { path: path.display().to_string(), msg: msg.to_string() }
}

/// A seed, or an entry that is not a usable seed (recorded as a failure, never dropped).
pub type SeedItem = Result<Seed, (String, String)>;

pub fn open(path: &Path, batch_rows: usize) -> Result<Box<dyn Iterator<Item = SeedItem> + Send>, SeedError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let label = path.display().to_string();
    match ext.as_str() {
        "parquet" => {
            let reader = m6_pipeline::read_parquet(path, None, batch_rows).map_err(|e| bad(path, e))?;
            let mut row = 0u64;
            let p = path.to_path_buf();
            Ok(Box::new(reader.flat_map(move |b| {
                let items: Vec<SeedItem> = match b {
                    Err(e) => vec![Err((format!("{}#batch", p.display()), format!("{}: unreadable seed batch: {e}", p.display())))],
                    Ok(b) => {
                        let urls = strings(&b, page::URL);
                        let caps = strings(&b, page::CAPTION);
                        match urls {
                            None => vec![Err((p.display().to_string(), format!("{}: Parquet seed list has no string `{}` column", p.display(), page::URL)))],
                            Some(urls) => urls
                                .into_iter()
                                .enumerate()
                                .map(|(i, u)| {
                                    row += 1;
                                    let place = format!("{} row {}", p.display(), row);
                                    let caption = caps.as_ref().and_then(|c| c[i].clone()).filter(|c| !c.is_empty());
                                    match u {
                                        Some(url) => Ok(Seed { url, caption, place }),
                                        None => Err((place.clone(), format!("{place}: null url"))),
                                    }
                                })
                                .collect(),
                        }
                    }
                };
                items
            })))
        }
        "csv" | "tsv" => {
            let delim = if ext == "tsv" { b'\t' } else { b',' };
            let mut rdr = csv::ReaderBuilder::new().delimiter(delim).flexible(true).from_path(path).map_err(|e| bad(path, e))?;
            let headers = rdr.headers().map_err(|e| bad(path, e))?.clone();
            let find = |n: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(n));
            let ucol = find(page::URL).ok_or_else(|| bad(path, format!("CSV seed list has no `{}` column in its header ({})", page::URL, headers.iter().collect::<Vec<_>>().join(","))))?;
            let ccol = find(page::CAPTION);
            Ok(Box::new(rdr.into_records().enumerate().map(move |(i, r)| {
                let place = format!("{label} line {}", i + 2);
                match r {
                    Err(e) => Err((place.clone(), format!("{place}: {e}"))),
                    Ok(rec) => match rec.get(ucol).map(str::trim).filter(|u| !u.is_empty()) {
                        None => Err((place.clone(), format!("{place}: empty url"))),
                        Some(u) => Ok(Seed {
                            url: u.to_string(),
                            caption: ccol.and_then(|c| rec.get(c)).map(str::trim).filter(|c| !c.is_empty()).map(str::to_string),
                            place,
                        }),
                    },
                }
            })))
        }
        _ => {
            let f = File::open(path).map_err(|e| bad(path, e))?;
            Ok(Box::new(BufReader::new(f).lines().enumerate().filter_map(move |(i, line)| {
                let place = format!("{label} line {}", i + 1);
                match line {
                    Err(e) => Some(Err((place.clone(), format!("{place}: {e}")))),
                    Ok(l) => text_line(&l, place).map(Ok),
                }
            })))
        }
    }
}

/// One line of a plain-text seed list: `URL[<TAB>caption]`; blank lines and `#`
/// comments are not seeds.
pub fn text_line(l: &str, place: String) -> Option<Seed> {
    let l = l.trim_end_matches(['\n', '\r']);
    if l.trim().is_empty() || l.trim_start().starts_with('#') {
        return None;
    }
    let (u, c) = match l.split_once('\t') {
        Some((u, c)) => (u, Some(c.trim().to_string()).filter(|c| !c.is_empty())),
        None => (l, None),
    };
    Some(Seed { url: u.trim().to_string(), caption: c, place })
}

pub(crate) fn strings(b: &arrow::array::RecordBatch, name: &str) -> Option<Vec<Option<String>>> {
    let col = b.column_by_name(name)?;
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return Some((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect());
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
        return Some((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_csv() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("s.txt");
        std::fs::write(&t, "# comment\nhttp://a/1\n\nhttp://a/2\t一只猫\n").unwrap();
        let s: Vec<_> = open(&t, 16).unwrap().collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].as_ref().unwrap().caption.as_deref(), Some("一只猫"));
        assert!(s[1].as_ref().unwrap().place.ends_with("line 4"));
        let c = d.path().join("s.csv");
        std::fs::write(&c, "caption,URL\n\"猫, 狗\",http://a/x.png\n,\n").unwrap();
        let s: Vec<_> = open(&c, 16).unwrap().collect();
        assert_eq!(s[0].as_ref().unwrap(), &Seed { url: "http://a/x.png".into(), caption: Some("猫, 狗".into()), place: format!("{} line 2", c.display()) });
        assert!(s[1].is_err());
        let nc = d.path().join("n.csv");
        std::fs::write(&nc, "link\nhttp://a\n").unwrap();
        assert!(open(&nc, 16).err().unwrap().to_string().contains("no `url` column"));
    }
}
