//! A decompression bomb is refused without allocating its pixels: this test binary
//! counts every allocation and checks the largest one made while judging a PNG that
//! declares 100000 x 100000 pixels (30 GB of RGB).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST.fetch_max(new, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

mod common;

#[test]
fn bomb_refused_without_allocating() {
    let stage = m6_stage_filter::FilterStage::new(Default::default()).unwrap();
    let bomb = common::png_bomb(100_000, 100_000);
    LARGEST.store(0, Ordering::Relaxed);
    let e = stage.judge_image(&bomb).unwrap_err();
    let largest = LARGEST.load(Ordering::Relaxed);
    assert_eq!(e.rule, "image.bomb");
    assert!(largest < 1 << 20, "largest allocation while judging the bomb: {largest} bytes");
}
