"""Rows of a dataset folder's Parquet shards, for the bench scripts that score outputs."""
import glob
import os


def rows(folder, cols):
    """Every row of the `*.parquet` shards directly in `folder` (in file-name order), as
    dicts of the columns `cols`."""
    import pyarrow.parquet as pq
    out = []
    for f in sorted(glob.glob(os.path.join(folder, "*.parquet"))):
        out.extend(pq.read_table(f, columns=cols).to_pylist())
    return out
