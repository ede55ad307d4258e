//! Writes a `page` dataset for the extract benchmark: every `*.html` file directly in the
//! given folders, repeated `--repeat` times (each copy under its own URL), as a crawler
//! would have stored them. Usage: bench_pages OUT_DIR REPEAT DIR...

use std::path::{Path, PathBuf};

use m6_pipeline::{BoxError, OutputSpec, RunOptions, Stage, Task, TaskOutput};
use m6_schemas::{Kind, Page};

/// One task per repeat, so the dataset has several shards and extract can use every core.
struct Pages {
    files: Vec<(String, Vec<u8>)>,
    repeat: usize,
}

fn rep_id(r: usize) -> String {
    m6_schemas::content_id(&[format!("rep{r}").as_bytes()])
}

impl Stage for Pages {
    fn name(&self) -> &'static str {
        "bench-pages"
    }
    fn start<'a>(&'a self, _: &m6_pipeline::RunContext<'a>) -> std::result::Result<Box<dyn m6_pipeline::StageRun + 'a>, m6_pipeline::BoxError> {
        Ok(Box::new(self))
    }
}
impl m6_pipeline::StageRun for &Pages {
    fn outputs(&self, _: &[Kind]) -> Result<OutputSpec, BoxError> {
        Ok(OutputSpec::new(Kind::Page))
    }
    fn plan(&mut self, _: &[PathBuf]) -> m6_pipeline::Result<Vec<Task>> {
        Ok((0..self.repeat).map(|r| Task { id: rep_id(r), inputs: vec![] }).collect())
    }
    fn process(&self, _ctx: &m6_pipeline::RunContext, task: &Task, out: &mut TaskOutput) -> Result<(), BoxError> {
        let r = (0..self.repeat).find(|r| task.id == rep_id(*r)).ok_or("unknown task")?;
        let mut rows = vec![];
        for (name, body) in &self.files {
            let url = format!("http://handbook.test/{name}?copy={r}");
            rows.push(Page {
                id: Page::make_id(&url, Some(body)),
                url,
                status: Some(200),
                content_type: Some("text/html".into()),
                body: Some(body.clone()),
                source: "debian-handbook".into(),
                ..Default::default()
            });
            if rows.len() == 64 {
                out.write_rows(&rows)?;
                rows.clear();
            }
        }
        out.write_rows(&rows)?;
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: bench_pages OUT_DIR REPEAT DIR...".into());
    }
    let repeat: usize = args[2].parse()?;
    let mut files = vec![];
    for d in &args[3..] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(d)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "html")).collect();
        names.sort();
        for p in names {
            let lang = Path::new(d).file_name().unwrap().to_string_lossy().into_owned();
            files.push((format!("{lang}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p)?));
        }
    }
    let opts = RunOptions { progress: false, ..RunOptions::default() };
    m6_pipeline::run_stage(&Pages { files, repeat }, &[], Path::new(&args[1]), &opts)?;
    Ok(())
}
