//! Makes the benchmark's sample dataset with the real pipeline (`m6corpus ingest`,
//! `extract`, `tokenizer train`, `tokenize`; the same code the tests use):
//! `bench_samples OUT_DIR N_POEMS COPIES TEXT_FILES [IMAGE_SIZE PATCH_SIZE MAX_LEN VOCAB_SIZE]`.
//! COPIES: how many times each handbook figure page and each photo goes in.

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 && a.len() != 9 {
        eprintln!("usage: bench_samples OUT_DIR N_POEMS COPIES TEXT_FILES [IMAGE_SIZE PATCH_SIZE MAX_LEN VOCAB_SIZE]");
        std::process::exit(2);
    }
    let out = std::path::Path::new(&a[1]);
    let mut spec = common::Spec { n_poems: a[2].parse().unwrap(), copies: a[3].parse().unwrap(), text_files: a[4].parse().unwrap(), ..common::Spec::tests() };
    if a.len() == 9 {
        (spec.image_size, spec.patch_size, spec.max_len, spec.vocab_size) = (a[5].parse().unwrap(), a[6].parse().unwrap(), a[7].parse().unwrap(), a[8].parse().unwrap());
    }
    let _ = std::fs::remove_dir_all(out);
    let t = std::time::Instant::now();
    let s = common::pipeline_samples(out, &spec);
    println!("{} text + {} image samples in {} ({:.1} s)", s.text_samples, s.image_samples, s.train.display(), t.elapsed().as_secs_f64());
}
