//! Writes a benchmark sample dataset from real poems and photos (the same fixture code
//! the tests use): `bench_samples OUT_DIR N_POEMS IMAGE_REPEATS SHARDS`.

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: bench_samples OUT_DIR N_POEMS IMAGE_REPEATS SHARDS");
        std::process::exit(2);
    }
    let out = std::path::Path::new(&a[1]);
    let rows = common::fixture(out, a[2].parse().unwrap(), a[3].parse().unwrap(), a[4].parse().unwrap());
    println!("{} samples in {}", rows.len(), out.display());
}
