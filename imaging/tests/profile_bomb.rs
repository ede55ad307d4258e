//! A PNG whose colour profile (iCCP, deflate-compressed in the header) inflates to
//! 96 MB of zeros, on a 200×200 picture: 100 KB of file. Reading its header made the
//! probe allocate the whole profile (no limits) and every image-crate reader up to its
//! 512 MB default, per image and thread. This binary counts allocations and checks the
//! largest one each decoder makes.

#[global_allocator]
static A: m6_imaging::alloc_probe::Largest = m6_imaging::alloc_probe::Largest;

#[test]
fn a_colour_profile_bomb_is_not_inflated() {
    let bytes = m6_imaging::alloc_probe::png_with_colour_profile(96);
    assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
    let limit = 2 * m6_imaging::HEADER_ALLOC as usize;
    let check = |what: &str, f: &dyn Fn()| {
        m6_imaging::alloc_probe::assert_installed();
        f();
        let largest = m6_imaging::alloc_probe::largest();
        assert!(largest <= limit, "{what}: largest allocation {largest} bytes");
    };
    check("probe", &|| assert_eq!(m6_imaging::probe(&bytes).map(|h| (h.width, h.height)).unwrap(), (200, 200)));
    check("decode_gray (dedup's signing)", &|| assert_eq!(m6_imaging::decode_gray_as(&bytes, 128, m6_imaging::JpegGrey::Luma).unwrap().1, 200));
    check("decode_png_gray (the filter's pixel rules)", &|| assert_eq!(m6_imaging::decode_png_gray(&bytes, 256).unwrap().unwrap().1, 200));
    check("decode_rgb_min_short (tokenize)", &|| assert_eq!(m6_imaging::decode_rgb_min_short(&bytes, 224, true).unwrap().1, 200));
    check("exif::orientation", &|| assert_eq!(m6_imaging::exif::orientation(&bytes), m6_imaging::exif::Orientation::NoTransforms));
    check("load", &|| assert_eq!(m6_imaging::load(&bytes).unwrap().width(), 200));
}
