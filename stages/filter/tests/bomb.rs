//! A decompression bomb is refused without allocating its pixels: this test binary
//! counts every allocation and checks the largest one made while judging a PNG that
//! declares 100000 x 100000 pixels (30 GB of RGB).

#[global_allocator]
static A: m6_imaging::alloc_probe::Largest = m6_imaging::alloc_probe::Largest;

mod common;

/// The tests here measure one process-wide number: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bomb_refused_without_allocating() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stage = m6_stage_filter::FilterStage::new(Default::default()).unwrap();
    let bomb = common::png_bomb(100_000, 100_000);
    m6_imaging::alloc_probe::assert_installed();
    let e = stage.judge_image(&bomb).unwrap_err();
    let largest = m6_imaging::alloc_probe::largest();
    assert_eq!(e.rule, "image.bomb");
    assert!(largest < 1 << 20, "largest allocation while judging the bomb: {largest} bytes");
}

/// A 200×200 PNG whose colour profile (iCCP, compressed in the header) inflates to
/// 96 MB of zeros: judging it read the header three times (probe without limits, the
/// animation check at the image crate's 512 MB default, the pixel rules' PNG reader),
/// each inflating the profile. The image is judged (and kept) without that.
#[test]
fn a_colour_profile_bomb_is_judged_without_inflating_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stage = m6_stage_filter::FilterStage::new(Default::default()).unwrap();
    let bytes = m6_imaging::alloc_probe::png_with_colour_profile(96);
    m6_imaging::alloc_probe::assert_installed();
    let kept = stage.judge_image(&bytes);
    let largest = m6_imaging::alloc_probe::largest();
    assert!(kept.is_ok(), "{kept:?}");
    assert!(largest <= 2 * m6_imaging::HEADER_ALLOC as usize, "largest allocation while judging: {largest} bytes");
}
