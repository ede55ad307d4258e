//! Test support for memory bombs: a global allocator that records the largest single
//! allocation, so a test binary can check what decoding a hostile file asked for.
//! A test binary installs it with
//! `#[global_allocator] static A: m6_imaging::alloc_probe::Largest = m6_imaging::alloc_probe::Largest;`
//! and brackets the code under test with [`assert_installed`] (or [`reset`]) and
//! [`largest`]; the number is
//! process-wide, so such tests run one at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording the largest request (alloc, zeroed or realloc).
pub struct Largest;

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

/// Forgets the largest allocation seen so far.
pub fn reset() {
    LARGEST.store(0, Ordering::Relaxed);
}

/// The largest single allocation since the last [`reset`] (any thread).
pub fn largest() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// Panics unless [`Largest`] is this binary's global allocator: without it [`largest`]
/// stays 0 and every "allocated at most" check would pass.
pub fn assert_installed() {
    reset();
    let probe = std::hint::black_box(vec![0u8; 1 << 20]);
    assert!(largest() >= probe.len(), "m6_imaging::alloc_probe::Largest is not the global allocator of this test binary");
    reset();
}

/// A hostile file for such tests: a 200×200 grey gradient PNG whose colour profile
/// (iCCP, deflate-compressed in the header) is `profile_mb` MB of zeros, so about
/// 100 KB of file for 96 MB of profile.
pub fn png_with_colour_profile(profile_mb: usize) -> Vec<u8> {
    let (w, h) = (200u32, 200u32);
    let mut info = png::Info::with_size(w, h);
    info.color_type = png::ColorType::Grayscale;
    info.bit_depth = png::BitDepth::Eight;
    info.icc_profile = Some(vec![0u8; profile_mb << 20].into());
    let mut out = vec![];
    let mut wr = png::Encoder::with_info(&mut out, info).unwrap().write_header().unwrap();
    let px: Vec<u8> = (0..w * h).map(|i| ((i % w + i / w) % 256) as u8).collect();
    wr.write_image_data(&px).unwrap();
    wr.finish().unwrap();
    out
}
