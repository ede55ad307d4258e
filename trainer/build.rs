//! Bakes the libtorch library folder into the binary's rpath, so `m6-train` (and
//! `cargo run`/`cargo test`) run without anyone exporting LD_LIBRARY_PATH.
//! The folder is the one torch-sys linked against: `$LIBTORCH/lib`, or the torch
//! package of the Python that `LIBTORCH_USE_PYTORCH=1` points torch-sys at.

use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Some(l) = std::env::var_os("LIBTORCH") {
        return Some(PathBuf::from(l).join("lib"));
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?);
    let python = std::env::var_os("PYTHON_SYS_EXECUTABLE")
        .map(PathBuf::from)
        .or_else(|| Some(manifest.join("../.venv/bin/python")).filter(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = Command::new(&python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.is_dir().then_some(dir)
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    match torch_lib_dir() {
        Some(dir) => {
            let dir = dir.canonicalize().unwrap_or(dir);
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            // Where src/nccl.rs looks for NCCL and the CUDA runtime when they are not
            // already loaded (the NVIDIA wheels sit beside torch).
            println!("cargo:rustc-env=M6_TORCH_LIB_DIR={}", dir.display());
            // torch-sys links torch_cuda, but nothing references its symbols (it only
            // registers the CUDA backend from static initialisers), so --as-needed drops
            // it and Device::cuda_if_available() would never see a GPU. Force the entry.
            let cuda = dir.join("libtorch_cuda.so");
            if cuda.is_file() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,{},--as-needed", cuda.display());
            }
        }
        None => println!("cargo:warning=could not locate libtorch's lib folder; set LIBTORCH or run `make torch` (m6-train will need LD_LIBRARY_PATH)"),
    }
}
