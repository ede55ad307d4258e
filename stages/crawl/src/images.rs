//! Image responses into `image` rows: size read from the headers by the `image`
//! crate, and an optional downscale on the way in (aspect ratio kept).

use std::io::Cursor;

use image::{ImageDecoder, ImageFormat, ImageReader};
use m6_imaging::format_name;

#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The bytes to store: the original, or the re-encoded downscaled image.
    pub bytes: Option<Vec<u8>>,
    pub width: u32,
    pub height: u32,
    pub format: String,
}

/// Reads the size (and, past `max_side` > 0, downscales). `bytes: None` in the
/// result means "store the original bytes".
pub fn decode(bytes: &[u8], max_side: u32) -> Result<Decoded, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format().ok_or("not a known image format")?;
    // Header-sized limits: the PNG reader inflates the colour profile (see HEADER_ALLOC).
    reader.limits(m6_imaging::header_limits());
    let (w, h) = reader.into_dimensions().map_err(|e| format!("undecodable {} image: {e}", format_name(format)))?;
    if w == 0 || h == 0 {
        return Err(format!("{} image of size {w}x{h}", format_name(format)));
    }
    // An animation is stored as it came: a downscaled copy would be its first frame as
    // a PNG, which the filter's animation rule (M6 keeps still pictures) could no
    // longer see.
    if max_side == 0 || w.max(h) <= max_side || m6_imaging::animated(format, bytes) {
        return Ok(Decoded { bytes: None, width: w, height: h, format: format_name(format) });
    }
    let undecodable = |e: image::ImageError| format!("undecodable {} image: {e}", format_name(format));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(m6_imaging::decode_limits(bytes));
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    // The re-encoded copy has no EXIF block, so it must hold the picture as shown: a
    // phone photo's stored pixels are turned and its tag says how to turn them back.
    img.apply_orientation(orientation);
    // `resize` fits inside the box and keeps the aspect ratio.
    let small = img.resize(max_side, max_side, image::imageops::FilterType::Triangle);
    let out_format = if format == ImageFormat::Jpeg { ImageFormat::Jpeg } else { ImageFormat::Png };
    let small = if out_format == ImageFormat::Jpeg { image::DynamicImage::ImageRgb8(small.to_rgb8()) } else { small };
    let mut buf = Cursor::new(Vec::new());
    small.write_to(&mut buf, out_format).map_err(|e| format!("re-encoding the downscaled image: {e}"))?;
    Ok(Decoded { bytes: Some(buf.into_inner()), width: small.width(), height: small.height(), format: format_name(out_format) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
        let mut c = Cursor::new(vec![]);
        image::DynamicImage::ImageRgb8(img).write_to(&mut c, ImageFormat::Png).unwrap();
        c.into_inner()
    }

    #[test]
    fn sizes_and_resize_keeps_aspect() {
        let b = png(300, 150);
        let d = decode(&b, 0).unwrap();
        assert_eq!((d.width, d.height, d.format.as_str(), d.bytes.is_none()), (300, 150, "png", true));
        let r = decode(&b, 100).unwrap();
        assert_eq!((r.width, r.height), (100, 50));
        let again = decode(r.bytes.as_ref().unwrap(), 0).unwrap();
        assert_eq!((again.width, again.height), (100, 50));
        assert!(decode(b"<html>not an image</html>", 0).is_err());
    }

    /// An animated GIF larger than the limit is stored as it came (still animated, so
    /// the filter's animation rule drops it), not as a PNG of its first frame.
    #[test]
    fn animations_are_not_downscaled_to_their_first_frame() {
        let frames = (0..3u8).map(|k| image::Frame::new(image::RgbaImage::from_fn(300, 200, move |x, y| image::Rgba([(x as u8).wrapping_add(k * 40), y as u8, 90, 255]))));
        let mut gif = vec![];
        image::codecs::gif::GifEncoder::new(&mut gif).encode_frames(frames).unwrap();
        let d = decode(&gif, 100).unwrap();
        assert_eq!((d.bytes.is_none(), d.width, d.height, d.format.as_str()), (true, 300, 200, "gif"));
        // A still GIF is still downscaled.
        let mut still = vec![];
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([x as u8, y as u8, 9]))).write_to(&mut Cursor::new(&mut still), ImageFormat::Gif).unwrap();
        let d = decode(&still, 100).unwrap();
        assert_eq!((d.bytes.is_some(), d.width, d.height), (true, 100, 67));
    }

    /// A phone photo stored turned, with an EXIF tag saying so: the downscaled copy
    /// (re-encoded without EXIF) holds the picture as shown, not the stored pixels.
    #[test]
    fn downscaled_copies_of_exif_turned_photos_are_upright() {
        // Upright: 300×150, red left half, blue right half.
        let upright = image::RgbImage::from_fn(300, 150, |x, _| if x < 150 { image::Rgb([220, 20, 20]) } else { image::Rgb([20, 20, 220]) });
        // Stored turned 90° anticlockwise; EXIF 6 (turn 90° clockwise to show).
        let stored = image::DynamicImage::ImageRgb8(upright).rotate270();
        let mut jpeg = vec![];
        stored.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg).unwrap();
        let tagged = m6_imaging::exif::with_jpeg_orientation(&jpeg, 6, false);
        let d = decode(&tagged, 100).unwrap();
        assert_eq!((d.width, d.height), (100, 50));
        let small = image::load_from_memory(d.bytes.as_ref().unwrap()).unwrap().to_rgb8();
        assert_eq!(small.dimensions(), (100, 50));
        let (left, right) = (small.get_pixel(10, 25).0, small.get_pixel(90, 25).0);
        assert!(left[0] > 150 && left[2] < 100 && right[2] > 150 && right[0] < 100, "left {left:?}, right {right:?}");
    }
}
