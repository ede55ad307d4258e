//! `m6corpus sql`: DataFusion over datasets. Each table is built from exactly the
//! shard files its manifest lists (never a directory listing), so temporary or
//! uncommitted files a running or killed stage left beside them are never read, and
//! the shards of every table a query scans are checked against their checksums first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::prelude::SessionContext;
use m6_pipeline::Dataset;

use crate::Error;

fn table_err(table: &str, dir: &Path, msg: impl ToString) -> Error {
    Error::Table { table: table.to_string(), dir: dir.to_path_buf(), msg: msg.to_string() }
}

/// A table over the shards `ds`'s manifest lists.
async fn provider(ctx: &SessionContext, table: &str, ds: &Dataset) -> Result<Arc<dyn TableProvider>, Error> {
    let dir = ds.dir();
    if ds.shards().is_empty() {
        // A listing table needs at least one file; an empty dataset is an empty table.
        let t = MemTable::try_new(ds.kind().schema(), vec![vec![]]).map_err(|e| table_err(table, dir, e))?;
        return Ok(Arc::new(t));
    }
    let mut urls = vec![];
    for s in ds.shards() {
        let path = ds.shard_path(s);
        let abs = std::path::absolute(&path).map_err(|e| table_err(table, &path, e))?;
        // Built from a URL rather than parsed from a string, so a `*` or `?` in the
        // folder name is never taken for a glob.
        let url = url::Url::from_file_path(&abs).map_err(|_| table_err(table, &abs, "not a valid file path"))?;
        urls.push(ListingTableUrl::try_new(url, None).map_err(|e| table_err(table, &abs, e))?);
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await
        .map_err(|e| table_err(table, dir, e))?;
    let t = ListingTable::try_new(config).map_err(|e| table_err(table, dir, e))?;
    Ok(Arc::new(t))
}

/// Registers `name` for a dataset and `name_<side>` for each of its side datasets
/// (unless a table of that name is given explicitly).
/// Returns the dataset behind each registered table name.
async fn register(ctx: &SessionContext, tables: &[(String, PathBuf)]) -> Result<Vec<(String, Dataset)>, Error> {
    let mut registered = vec![];
    let explicit: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    for (name, dir) in tables {
        if name.is_empty() {
            return Err(table_err(name, dir, "empty table name"));
        }
        let ds = Dataset::open(dir).map_err(|e| table_err(name, dir, e))?;
        let t = provider(ctx, name, &ds).await?;
        ctx.register_table(name.as_str(), t).map_err(|e| table_err(name, dir, e))?;
        registered.push((name.clone(), ds.clone()));
        for side in ds.manifest().sides.keys() {
            let sname = format!("{name}_{side}");
            if explicit.contains(&sname.as_str()) {
                continue;
            }
            let sds = ds.side(side).map_err(|e| table_err(&sname, dir, e))?;
            let t = provider(ctx, &sname, &sds).await?;
            ctx.register_table(sname.as_str(), t).map_err(|e| table_err(&sname, sds.dir(), e))?;
            registered.push((sname, sds));
        }
    }
    Ok(registered)
}

/// Names of the tables a plan scans.
fn scanned_tables(plan: &datafusion::logical_expr::LogicalPlan) -> std::collections::BTreeSet<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut names = std::collections::BTreeSet::new();
    let _ = plan.apply_with_subqueries(|p| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(scan) = p {
            names.insert(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

/// `octet_length` that also takes binary columns (image bytes, page bodies), as
/// PostgreSQL's takes `bytea`: DataFusion's takes strings only, and its `length` reads
/// a binary value as UTF-8, so `length(bytes)` over images failed on their first byte
/// and the size of an image could not be asked for at all.
#[derive(Debug, PartialEq, Eq, Hash)]
struct OctetLength {
    signature: datafusion::logical_expr::Signature,
}

impl OctetLength {
    fn new() -> Self {
        use arrow::datatypes::DataType::*;
        let types = vec![Utf8, LargeUtf8, Utf8View, Binary, LargeBinary, BinaryView];
        OctetLength { signature: datafusion::logical_expr::Signature::uniform(1, types, datafusion::logical_expr::Volatility::Immutable) }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for OctetLength {
    fn name(&self) -> &str {
        "octet_length"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[arrow::datatypes::DataType]) -> datafusion::error::Result<arrow::datatypes::DataType> {
        use arrow::datatypes::DataType::*;
        // What arrow's length kernel returns: 64-bit lengths for the large types only.
        Ok(if matches!(args.first(), Some(LargeUtf8 | LargeBinary)) { Int64 } else { Int32 })
    }

    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::logical_expr::ColumnarValue;
        let [arg] = args.args.as_slice() else {
            return Err(datafusion::error::DataFusionError::Plan("octet_length takes one argument".into()));
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let lengths = arrow::compute::kernels::length::length(arg.to_array(1)?.as_ref())?;
        Ok(if scalar { ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&lengths, 0)?) } else { ColumnarValue::Array(lengths) })
    }
}

/// Runs `query` over the datasets `tables` names (NAME, DIR) and collects the result.
pub fn sql(query: &str, tables: &[(String, PathBuf)]) -> Result<Vec<RecordBatch>, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io { path: PathBuf::from("<tokio runtime>"), source: e })?;
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(OctetLength::new()));
        let registered = register(&ctx, tables).await?;
        let df = ctx.sql(query).await.map_err(|e| Error::Sql(e.to_string()))?;
        // DataFusion reads the files itself, so every shard of each table the query
        // scans is checked against its manifest checksum first; a corrupt shard fails
        // the query by name instead of feeding it altered rows.
        let scanned = scanned_tables(df.logical_plan());
        for (name, ds) in &registered {
            if scanned.contains(name) {
                ds.verify_shards().map_err(|e| table_err(name, ds.dir(), e))?;
            }
        }
        df.collect().await.map_err(|e| Error::Sql(e.to_string()))
    })
}

/// The rows as a JSON array of objects (column name -> value), for scripts.
pub fn to_json(batches: &[RecordBatch]) -> Result<String, Error> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs).map_err(|e| Error::Output(e.to_string()))?;
    w.finish().map_err(|e| Error::Output(e.to_string()))?;
    let bytes = w.into_inner();
    // The writer emits nothing at all for zero rows; scripts still expect an array.
    if bytes.is_empty() {
        return Ok("[]".to_string());
    }
    String::from_utf8(bytes).map_err(|e| Error::Output(e.to_string()))
}

/// The rows as a pretty table.
pub fn to_table(batches: &[RecordBatch]) -> Result<String, Error> {
    arrow::util::pretty::pretty_format_batches(batches).map(|t| t.to_string()).map_err(|e| Error::Output(e.to_string()))
}
