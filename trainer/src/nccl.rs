//! NCCL all-reduce of the gradients on the GPU, through the few NCCL calls it needs,
//! bound at run time: `libnccl.so.2` is the one libtorch_cuda already loaded (the
//! `nvidia-nccl-cu13` wheel beside torch), so the binary needs no NCCL to link and
//! runs on CPU-only machines. `cudaSetDevice` comes from the CUDA runtime the same way.
//!
//! Every op is enqueued on CUDA's legacy default stream (`NULL`): tch never switches
//! streams, so libtorch runs the backward pass and the optimiser there too, and the
//! all-reduce is ordered after the gradients are written and before they are read,
//! with no host synchronisation.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;

use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum NcclError {
    #[error("cannot load {what}: tried {tried}; {hint}")]
    Load { what: &'static str, tried: String, hint: &'static str },
    #[error("{call} failed: {msg} (code {code})")]
    Call { call: &'static str, code: i32, msg: String },
    #[error("{0}")]
    Other(String),
}

/// `ncclUniqueId`: 128 opaque bytes rank 0 creates and every rank passes to init.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UniqueId {
    pub internal: [c_char; 128],
}

type Comm = *mut c_void;
type Res = c_int;
const NCCL_SUM: c_int = 0;
const NCCL_FLOAT32: c_int = 7;
const NCCL_BFLOAT16: c_int = 9;

struct Api {
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> Res,
    comm_init_rank: unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> Res,
    all_reduce: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> Res,
    group_start: unsafe extern "C" fn() -> Res,
    group_end: unsafe extern "C" fn() -> Res,
    comm_destroy: unsafe extern "C" fn(Comm) -> Res,
    get_error_string: unsafe extern "C" fn(Res) -> *const c_char,
    get_version: unsafe extern "C" fn(*mut c_int) -> Res,
    cuda_set_device: unsafe extern "C" fn(c_int) -> c_int,
    _nccl: libloading::Library,
    _cudart: libloading::Library,
}

/// torch's `lib` folder as build.rs found it (the NVIDIA wheels sit beside torch).
fn torch_lib_dir() -> Option<PathBuf> {
    option_env!("M6_TORCH_LIB_DIR").map(PathBuf::from)
}

fn open(what: &'static str, env: &str, names: &[&str], rel: &[&str], hint: &'static str) -> Result<libloading::Library, NcclError> {
    let mut cands: Vec<String> = vec![];
    if let Ok(p) = std::env::var(env) {
        cands.push(p);
    }
    // By soname first: the copy libtorch_cuda loaded is found without a path.
    cands.extend(names.iter().map(|s| s.to_string()));
    if let Some(dir) = torch_lib_dir() {
        cands.extend(rel.iter().map(|r| dir.join(r).display().to_string()));
    }
    for c in &cands {
        // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's
        // NCCL / CUDA runtime, which libtorch itself loads.
        if let Ok(l) = unsafe { libloading::Library::new(c) } {
            return Ok(l);
        }
    }
    Err(NcclError::Load { what, tried: cands.join(", "), hint })
}

impl Api {
    fn load() -> Result<Api, NcclError> {
        let nccl = open(
            "NCCL",
            "M6_NCCL_LIB",
            &["libnccl.so.2", "libnccl.so"],
            &["../../nvidia/nccl/lib/libnccl.so.2"],
            "install torch==2.11.0 with its nvidia-nccl-cu13 wheel (`make torch`) or set M6_NCCL_LIB",
        )?;
        let cudart = open(
            "the CUDA runtime",
            "M6_CUDART_LIB",
            &["libcudart.so.13", "libcudart.so.12", "libcudart.so"],
            &["../../nvidia/cu13/lib/libcudart.so.13", "../../nvidia/cuda_runtime/lib/libcudart.so.12"],
            "set M6_CUDART_LIB to libcudart.so of torch's CUDA",
        )?;
        fn sym<T: Copy>(lib: &libloading::Library, name: &[u8]) -> Result<T, NcclError> {
            // SAFETY: each call site's T is NCCL's / CUDA's public C signature of `name`.
            unsafe { lib.get::<T>(name) }.map(|s| *s).map_err(|e| NcclError::Other(format!("symbol {}: {e}", String::from_utf8_lossy(&name[..name.len() - 1]))))
        }
        Ok(Api {
            get_unique_id: sym(&nccl, b"ncclGetUniqueId\0")?,
            comm_init_rank: sym(&nccl, b"ncclCommInitRank\0")?,
            all_reduce: sym(&nccl, b"ncclAllReduce\0")?,
            group_start: sym(&nccl, b"ncclGroupStart\0")?,
            group_end: sym(&nccl, b"ncclGroupEnd\0")?,
            comm_destroy: sym(&nccl, b"ncclCommDestroy\0")?,
            get_error_string: sym(&nccl, b"ncclGetErrorString\0")?,
            get_version: sym(&nccl, b"ncclGetVersion\0")?,
            cuda_set_device: sym(&cudart, b"cudaSetDevice\0")?,
            _nccl: nccl,
            _cudart: cudart,
        })
    }

    fn check(&self, call: &'static str, code: Res) -> Result<(), NcclError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string.
        let msg = unsafe { CStr::from_ptr((self.get_error_string)(code)) }.to_string_lossy().into_owned();
        Err(NcclError::Call { call, code, msg })
    }
}

/// How gradients travel: fp32 as they are, or cast to bf16 for the wire (half the
/// bytes; the sum is rounded to bf16 precision, as DDP's bf16 compression hook does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    F32,
    Bf16,
}

/// One rank's NCCL communicator.
pub struct Nccl {
    api: Api,
    comm: Comm,
    pub world: u64,
    pub version: i32,
}

// The communicator is used from the training thread only; moving it between threads
// before use is fine for NCCL.
unsafe impl Send for Nccl {}

impl Nccl {
    /// Rank 0's side of the rendezvous: a fresh unique id to hand to the others.
    pub fn unique_id() -> Result<Vec<u8>, NcclError> {
        let api = Api::load()?;
        let mut id = UniqueId { internal: [0; 128] };
        // SAFETY: id is a valid out-pointer to a 128-byte ncclUniqueId.
        api.check("ncclGetUniqueId", unsafe { (api.get_unique_id)(&mut id) })?;
        Ok(id.internal.iter().map(|&c| c as u8).collect())
    }

    /// Joins the communicator of `world` ranks on GPU `device` (this rank's LOCAL_RANK).
    pub fn init(id: &[u8], rank: u64, world: u64, device: usize) -> Result<Self, NcclError> {
        if id.len() != 128 {
            return Err(NcclError::Other(format!("NCCL unique id of {} bytes from rank 0 (expected 128): rank 0 is not using NCCL", id.len())));
        }
        let api = Api::load()?;
        let mut uid = UniqueId { internal: [0; 128] };
        for (d, s) in uid.internal.iter_mut().zip(id) {
            *d = *s as c_char;
        }
        // SAFETY: plain C calls with valid arguments; NCCL binds the communicator to
        // the current device, so it is set first.
        let code = unsafe { (api.cuda_set_device)(device as c_int) };
        if code != 0 {
            return Err(NcclError::Other(format!("cudaSetDevice({device}) failed with CUDA error {code}")));
        }
        let mut version = 0;
        api.check("ncclGetVersion", unsafe { (api.get_version)(&mut version) })?;
        let mut comm: Comm = std::ptr::null_mut();
        api.check("ncclCommInitRank", unsafe { (api.comm_init_rank)(&mut comm, world as c_int, uid, rank as c_int) })?;
        Ok(Nccl { api, comm, world, version })
    }

    /// Sums `tensors` (CUDA, contiguous) over all ranks, in place, `bucket_bytes` of
    /// gradients per NCCL group. F32: each tensor is reduced where it lies (grouped
    /// calls, fused by NCCL; no copies). Bf16: a bucket is packed into one bf16 buffer,
    /// reduced and unpacked into the tensors.
    pub fn all_reduce_sum(&self, tensors: &[Tensor], kind: ReduceKind, bucket_bytes: usize) -> Result<(), NcclError> {
        let _guard = tch::no_grad_guard();
        for t in tensors {
            if !t.device().is_cuda() || !t.is_contiguous() || t.kind() != Kind::Float {
                return Err(NcclError::Other(format!("NCCL reduces contiguous fp32 CUDA tensors; got {:?} on {:?}", t.kind(), t.device())));
            }
        }
        let mut start = 0;
        while start < tensors.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < tensors.len() && (end == start || bytes + tensors[end].numel() * 4 <= bucket_bytes) {
                bytes += tensors[end].numel() * 4;
                end += 1;
            }
            let bucket = &tensors[start..end];
            match kind {
                ReduceKind::F32 => {
                    self.group(|| {
                        for t in bucket {
                            self.reduce_raw(t, NCCL_FLOAT32)?;
                        }
                        Ok(())
                    })?;
                }
                ReduceKind::Bf16 => {
                    let flat: Vec<Tensor> = bucket.iter().map(|t| t.flatten(0, -1)).collect();
                    let packed = Tensor::cat(&flat, 0).to_kind(Kind::BFloat16);
                    self.group(|| self.reduce_raw(&packed, NCCL_BFLOAT16))?;
                    let mut o = 0;
                    for t in bucket {
                        let n = t.numel() as i64;
                        let mut dst = t.shallow_clone();
                        dst.copy_(&packed.narrow(0, o, n).view(t.size().as_slice()));
                        o += n;
                    }
                }
            }
            start = end;
        }
        Ok(())
    }

    fn group(&self, f: impl FnOnce() -> Result<(), NcclError>) -> Result<(), NcclError> {
        // SAFETY: group calls bracket the enqueued all-reduces.
        self.api.check("ncclGroupStart", unsafe { (self.api.group_start)() })?;
        let r = f();
        let end = self.api.check("ncclGroupEnd", unsafe { (self.api.group_end)() });
        r.and(end)
    }

    fn reduce_raw(&self, t: &Tensor, dtype: c_int) -> Result<(), NcclError> {
        let p = t.data_ptr();
        // SAFETY: p points to t.numel() contiguous elements of `dtype` on the device the
        // communicator was made for; NULL is the legacy default stream libtorch uses.
        let code = unsafe { (self.api.all_reduce)(p, p, t.numel(), dtype, NCCL_SUM, self.comm, std::ptr::null_mut()) };
        self.api.check("ncclAllReduce", code)
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        // SAFETY: the communicator was created by ncclCommInitRank and is destroyed once.
        unsafe {
            (self.api.comm_destroy)(self.comm);
        }
    }
}
