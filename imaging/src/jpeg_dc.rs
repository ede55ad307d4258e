//! Reduced-scale grey pictures of baseline and progressive JPEGs, read from the luma
//! coefficients alone.
//!
//! A JPEG block's DC coefficient, dequantised and divided by 8, is the mean of the
//! block's 64 decoded luma values (plus 128): the 1/8-scale picture needs no inverse
//! DCT, no chroma, no colour conversion and no coefficient storage. The mean of each
//! 4×4 quadrant (the 1/4-scale picture) needs only the 25 coefficients whose
//! frequencies are 0, 1, 3, 5 or 7 on both axes: the even ones above 0 sum to zero
//! over half a block. The mean of each 2×2 cell (the 1/2-scale picture) needs all but
//! frequency 4; each nonzero coefficient adds its basis function's cell means, so it
//! costs little more than the quarter picture where zune-jpeg's full decode costs a
//! fifth more (`m6-decode-bench`, mode `half`). The full-size picture (an inverse DCT
//! over the rows of coefficients that are not all zero) is there for the damage check
//! on small files (the filter's and dedup's), whose read it makes the decode. Entropy
//! decoding cannot be skipped — baseline Huffman codes have
//! no lengths to jump over — so every AC code is still read, but for 1/8 only to find
//! where the next block starts: one table lookup gives a code's length and its
//! magnitude bits together, and nothing is dequantised, de-zigzagged or written.
//! Chroma blocks are read the same way and dropped. `m6-decode-bench` (modes `dc`,
//! `quarter`, `half`, `full`) measures them against zune-jpeg's full luma decode.
//!
//! The colour pictures at 1/8, 1/4 and 1/2 ([`decode_rgb_reduced`], `tokenize`'s samples
//! of JPEGs over twice their size) keep chroma's DC, or its coefficients, the same
//! way, interpolate subsampled chroma onto the luma cells and convert to RGB.
//!
//! Progressive files (SOF2, a large share of the web's JPEGs) spread each block over
//! several scans; a full decode stores every coefficient of every component until the
//! last one. Here the DC picture reads only the scans holding luma DC (the first one
//! and its one-bit refinements) and passes over every other scan by looking for the
//! marker after it, without decoding it; the other pictures also decode luma's AC
//! scans (end-of-band runs, correction bits) into 64 coefficients per luma block, then
//! take the same cells. Chroma scans are passed over, except by the colour pictures
//! (at 1/8 their DC scans, at 1/4 and 1/2 all of them).
//!
//! It handles what the web is mostly made of: 8-bit baseline, extended sequential or
//! progressive Huffman JPEGs, grey or YCbCr, any sampling factors, restart
//! intervals; sequential ones with all components in one scan. Anything else
//! (arithmetic, 12-bit, CMYK, Adobe RGB, sequential files with separate scans per
//! component, progressive scans out of T.81's order) gives [`Unread::Unhandled`]
//! (`None` from the plain functions): the caller then decodes through its usual path.
//! Damage in the entropy-coded data of a scan it reads gives [`Unread::Damaged`],
//! saying what and in which MCU: a code no table has, a run past the block's or
//! band's end, data that ends or hits a marker before the last unit, a restart marker
//! missing or out of sequence, and whole bytes of data left over after a scan's last
//! unit or before a restart marker — what libjpeg warns of as "extraneous bytes
//! before marker" and decodes anyway, as do zune-jpeg and jpeg-decoder (a desynchronised
//! scan usually finds its way back to valid codes and ends with bytes to spare, so the
//! count catches damage that no single code shows). Progressive files' scans that
//! are passed over (chroma, and AC at 1/8) are not checked.

use crate::tones::Tones;
use crate::Gray;
use std::cell::RefCell;
use std::rc::Rc;

/// Luma DC picture of a JPEG: `ceil(width/8) × ceil(height/8)` grey levels (0–255,
/// unrounded block means), and the full size. `None` when the file is not one this
/// decoder handles or is damaged (see the module note).
pub fn decode_luma_dc(bytes: &[u8]) -> Option<(Gray, u32, u32)> {
    decode_luma_reduced(bytes, 8)
}

/// Luma of a JPEG at 1/`factor` scale, `factor` 8 (the DC picture), 4 (each block's
/// four 4×4 quadrant means, from the coefficients that do not cancel over a quadrant:
/// frequencies 0, 1, 3, 5 and 7 on each axis, as libjpeg's 2×2 reduced IDCT uses), 2
/// (its sixteen 2×2 cell means, from every coefficient but those of frequency 4) or 1
/// (the full-size luma, by an inverse DCT rounded to 8 bits as a decoder's output).
/// `ceil(width/factor) × ceil(height/factor)` grey levels (unrounded but at full size)
/// and the full size;
/// `None` as for [`decode_luma_dc`].
pub fn decode_luma_reduced(bytes: &[u8], factor: u32) -> Option<(Gray, u32, u32)> {
    decode_luma_checked(bytes, factor).ok()
}

/// Why [`decode_luma_checked`] gave no picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Not a file this decoder handles, or a malformed header: other decoders decide.
    Unhandled,
    /// Damaged entropy-coded data: what, and where (see the module note).
    Damaged(String),
}

/// [`decode_luma_reduced`], saying why there is no picture: damage this decoder found
/// is told apart from a file it does not handle.
pub fn decode_luma_checked(bytes: &[u8], factor: u32) -> Result<(Gray, u32, u32), Unread> {
    decode_luma_seen(bytes, factor, false).map(|(g, w, h, _)| (g, w, h))
}

/// [`decode_luma_checked`], also giving how far from neutral grey the chroma the read
/// passed over is: the largest distance of a chroma block's mean (its DC) from neutral,
/// in grey levels; `Some(0.0)` for a grey (one-component) frame. A baseline scan codes
/// every chroma block's DC, which the luma read decodes anyway to find the next block,
/// so this costs a compare per block. A progressive file gives it from chroma's DC in
/// an interleaved first DC scan (libjpeg's default script), to 2^Al × the DC step / 8
/// levels; `None` when chroma's DC comes in scans of its own (skipped unread) or the
/// frame is not YCbCr or grey. A grey picture saved as a three-component JPEG (as most
/// tools save one) has every chroma DC at exactly 0: YCbCr's chroma weights sum to 0.
/// `tones`: also [`ChromaSeen::variety`] (else `None`): dedup's signing wants it, the
/// filter does not, and the loop that gathers it read baseline 1080p photos at 1/8
/// 8% slower (`m6-decode-bench` mode `seen`, 11 camera photos: 4.0 -> 4.3 ms).
pub fn decode_luma_seen(bytes: &[u8], factor: u32, tones: bool) -> Result<(Gray, u32, u32, ChromaSeen), Unread> {
    let mut damage = None;
    let mut chroma = ChromaSeen::default();
    reduced(bytes, factor, false, tones, &mut damage, &mut chroma).map(|(g, w, h, _)| (g, w, h, chroma)).ok_or_else(|| damage.map_or(Unread::Unhandled, Unread::Damaged))
}

/// What [`decode_luma_seen`]'s read saw of chroma.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChromaSeen {
    /// How far from neutral grey chroma goes: the largest |DC| of a chroma block, in
    /// grey levels (`Some(0.0)` for a grey frame).
    pub spread: Option<f32>,
    /// [`Tones::variety`] of the MCUs' DC means (`Some(0.0)` for a grey frame), when
    /// asked for: known where `spread` is, when some brightness bin has 8 of the MCUs
    /// gathered ([`MCU_TONES`]).
    pub variety: Option<f32>,
}

/// Per-MCU DC sums of an interleaved Y, Cb, Cr scan, kept on a grid of MCUs and made
/// [`Tones`] after the scan ([`ChromaSeen::variety`]).
struct McuTones {
    /// Levels per unit of a component's DC sum over an MCU: its DC step (× 2^Al) / 8
    /// over its blocks per MCU.
    scale: [f32; 3],
    /// MCUs kept: every `step`th of every `step`th row.
    step: usize,
    /// The kept MCUs' DC sums per component.
    mcus: Vec<[i32; 3]>,
}

/// About how many MCUs at least a picture's tones are made of (every `step`th of every
/// `step`th row, `step` = ⌊√(MCUs / this)⌋): the memory and the work after the scan stay
/// bounded whatever the size; a JPEG up to about 1,000×1,000 px (4:2:0) keeps every
/// MCU, a 1080p one (8,160) every other of every other row. (The grid did not change
/// the read's time: the 8% that gathering costs baseline files is in the scan loop,
/// see [`decode_luma_seen`].)
const MCU_TONES: usize = 2048;

impl McuTones {
    /// For a three-component frame's interleaved scans; `None` otherwise or without
    /// chroma's tables.
    fn new(f: &Frame, quant: &[Option<[u16; 64]>; 4], al: u8) -> Option<McuTones> {
        if f.comps.len() != 3 {
            return None;
        }
        let mut scale = [0f32; 3];
        for (s, c) in scale.iter_mut().zip(&f.comps) {
            *s = quant[c.tq as usize]?[0] as f32 * (1u32 << al) as f32 / 8.0 / (c.h * c.v) as f32;
        }
        let (mcux, mcuy) = (f.w.div_ceil(8 * f.comps[0].h), f.h.div_ceil(8 * f.comps[0].v));
        let step = (mcux * mcuy / MCU_TONES).isqrt().max(1);
        Some(McuTones { scale, step, mcus: Vec::with_capacity(mcux.div_ceil(step) * mcuy.div_ceil(step)) })
    }

    /// MCU (`mx`, `my`), from the sums of its blocks' DC per component: kept when on
    /// the sampling grid, and made tones after the scan ([`McuTones::variety`]).
    #[inline]
    fn add(&mut self, mx: usize, my: usize, s: [i32; 3]) {
        if mx % self.step == 0 && my % self.step == 0 {
            self.mcus.push(s);
        }
    }

    fn variety(&self) -> Option<f32> {
        let mut t = Tones::default();
        let k = self.scale;
        for s in &self.mcus {
            t.add(s[0] as f32 * k[0] + 128.0, s[1] as f32 * k[1], s[2] as f32 * k[2]);
        }
        t.variety()
    }
}

/// The colour picture of a JPEG at 1/`factor` scale, 8, 4 or 2. At 1/8 every
/// component's DC (each block's mean); at 1/4 each block's four quadrant means, at 1/2
/// its sixteen 2×2 cell means (the luma pictures of [`decode_luma_reduced`]), of chroma
/// too. Subsampled chroma is interpolated linearly between its cells onto the luma
/// cells (chroma keeps its resolution relative to luma's), then turned to
/// RGB (JFIF's full-range YCbCr): `ceil(width/factor) × ceil(height/factor)` pixels as
/// 8-bit RGB rows, and the full size. Of a progressive file the 1/8 picture reads only
/// the DC scans, which hold all of it: its AC scans (most of the file) are passed over
/// unread; the 1/4 and 1/2 pictures read every scan, chroma's too. The read is a check of
/// exactly the data the picture is made from: damage there is [`Unread::Damaged`]. A
/// grey JPEG gives its grey in all three channels.
///
/// For a sample whose shorter side needs at most half of the file's
/// (`m6_imaging::decode_rgb_min_short`): jpeg-decoder, which decodes every scan of a
/// progressive file whatever the scale, spent 77% of `tokenize`'s CPU on camera photos.
/// At 1/2 (web photos of 448-895 px on their shorter side, for 224 px samples) this
/// read costs about what jpeg-decoder's scaled decode does, and is closer to a full
/// decode's colours (see `assert_colour_close`); it is also the damage check, which
/// jpeg-decoder's decode needed a separate 1/8 read for.
pub fn decode_rgb_reduced(bytes: &[u8], factor: u32) -> Result<(Vec<u8>, usize, usize, u32, u32), Unread> {
    if !matches!(factor, 2 | 4 | 8) {
        return Err(Unread::Unhandled);
    }
    let mut damage = None;
    let (y, w, h, chroma) = reduced(bytes, factor, true, false, &mut damage, &mut ChromaSeen::default()).ok_or_else(|| damage.map_or(Unread::Unhandled, Unread::Damaged))?;
    let mut rgb = Vec::with_capacity(3 * y.px.len());
    match chroma {
        None => {
            for &v in &y.px {
                let v = level_u8(v);
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        Some(c) => {
            // Subsampled chroma is interpolated linearly between the cells around each
            // luma cell's centre (libjpeg's "fancy" upsampling, on cells): repeating each
            // chroma cell over the luma cells it covers put retina.jpg's 1/2 picture 0.61
            // levels from a full decode's cell colours on average, where jpeg-decoder's
            // scaled decode is 0.46 and this 0.48; chelsea's 4:2:0 crop 0.84 -> 0.66 at
            // 1/2, 1.23 -> 1.09 at 1/4, 1.66 -> 1.54 at 1/8.
            // Per axis and luma cell: the two chroma cells and the second one's weight.
            let taps = |n: usize, sub: usize, full: usize, cells: usize| -> Vec<(usize, usize, f32)> {
                let r = (full / sub.max(1)).max(1) as f32;
                (0..n)
                    .map(|x| {
                        let p = (x as f32 + 0.5) / r - 0.5;
                        let f = p.floor();
                        let at = |i: f32| (i.max(0.0) as usize).min(cells - 1);
                        (at(f), at(f + 1.0), p - f)
                    })
                    .collect()
            };
            let rows_of = |k: usize| c.planes[k].len() / c.stride[k];
            let cols: [Vec<(usize, usize, f32)>; 2] = std::array::from_fn(|k| taps(y.w, c.h[k], c.hmax, c.stride[k]));
            let rows: [Vec<(usize, usize, f32)>; 2] = std::array::from_fn(|k| taps(y.h, c.v[k], c.vmax, rows_of(k)));
            // A row's chroma is gathered first, so that the conversion runs over plain
            // slices (no index arithmetic or bounds check per pixel, no growing Vec):
            // the two chroma rows are blended over the row of cells (vector
            // instructions), then spread over the luma cells; at half width (4:2:0 and
            // 4:2:2, nearly every colour JPEG) by a fixed 3:1 pattern, not through the
            // taps' per-pixel gathers (this function 28% -> 22% of the 1/2 picture's
            // profile on web-sized photos).
            let mut under: [Vec<f32>; 2] = std::array::from_fn(|_| vec![0f32; y.w]);
            let mut blend = vec![0f32; c.stride[0].max(c.stride[1])];
            let (mut red, mut green, mut blue) = (vec![0u8; y.w], vec![0u8; y.w], vec![0u8; y.w]);
            rgb.resize(3 * y.px.len(), 0);
            for (yy, (luma, out)) in y.px.chunks_exact(y.w).zip(rgb.chunks_exact_mut(3 * y.w)).enumerate() {
                for (k, dst) in under.iter_mut().enumerate() {
                    let (r0, r1, wy) = rows[k][yy];
                    let n = c.stride[k];
                    let (a, b) = (&c.planes[k][r0 * n..][..n], &c.planes[k][r1 * n..][..n]);
                    let v = &mut blend[..n];
                    for ((v, &a), &b) in v.iter_mut().zip(a).zip(b) {
                        *v = a + wy * (b - a) - 128.0;
                    }
                    match c.hmax / c.h[k].max(1) {
                        1 => dst.copy_from_slice(&v[..y.w]),
                        2 => {
                            // Luma cell 2i sits a quarter of a chroma cell left of cell
                            // i's centre, 2i + 1 a quarter right (taps' weights exactly).
                            for (i, pair) in dst.chunks_mut(2).enumerate() {
                                let (l, m, r) = (v[i.saturating_sub(1)], v[i], v[(i + 1).min(n - 1)]);
                                pair[0] = m + 0.25 * (l - m);
                                if let Some(o) = pair.get_mut(1) {
                                    *o = m + 0.25 * (r - m);
                                }
                            }
                        }
                        _ => {
                            for (d, &(x0, x1, wx)) in dst.iter_mut().zip(&cols[k]) {
                                *d = v[x0] + wx * (v[x1] - v[x0]);
                            }
                        }
                    }
                }
                // Each channel over the whole row (vector instructions), then interleaved.
                for ((g, &l), (&cb, &cr)) in green.iter_mut().zip(luma).zip(under[0].iter().zip(&under[1])) {
                    *g = level_u8(l - 0.344136 * cb - 0.714136 * cr);
                }
                for ((r, &l), &cr) in red.iter_mut().zip(luma).zip(&under[1]) {
                    *r = level_u8(l + 1.402 * cr);
                }
                for ((b, &l), &cb) in blue.iter_mut().zip(luma).zip(&under[0]) {
                    *b = level_u8(l + 1.772 * cb);
                }
                for (((o, &r), &g), &b) in out.chunks_exact_mut(3).zip(&red).zip(&green).zip(&blue) {
                    o.copy_from_slice(&[r, g, b]);
                }
            }
        }
    }
    Ok((rgb, y.w, y.h, w, h))
}

/// A level rounded half up and clamped to a byte.
#[inline(always)]
fn level_u8(v: f32) -> u8 {
    round_level(v) as u8
}

/// The chroma pictures of a colour JPEG ([`decode_rgb_reduced`]): Cb and Cr block
/// means (1/8), quadrant means (1/4) or 2×2 cell means (1/2), 0-255 unrounded, on each
/// component's own grid (`per` cells per block side), rows `stride` apart.
struct ChromaPlanes {
    planes: [Vec<f32>; 2],
    stride: [usize; 2],
    /// Sampling factors of Cb and Cr, and luma's (the largest).
    h: [usize; 2],
    v: [usize; 2],
    hmax: usize,
    vmax: usize,
    /// Each one's DC step / 8 (a baseline scan's).
    scale: [f32; 2],
    /// Cells per block side (1, 2 or 4), and at 1/4 and 1/2 each one's cell maker.
    per: usize,
    cells: Option<[Cells; 2]>,
}

/// The damage this decoder finds in a JPEG's entropy-coded data when reading its 1/8
/// picture (see the module note), `None` for an undamaged file or one it does not
/// handle. As costly as that picture: on small photos about half of zune-jpeg's full
/// luma decode (all of the entropy decoding, none of the rest).
pub fn damage(bytes: &[u8]) -> Option<String> {
    match decode_luma_checked(bytes, 8) {
        Err(Unread::Damaged(d)) => Some(d),
        _ => None,
    }
}

impl ChromaPlanes {
    /// Planes of neutral grey for `f`'s two chroma components on the block grid of an
    /// interleaved scan (whole MCUs); `scale`: each one's DC step / 8, by which a
    /// baseline scan turns its DC values into levels.
    /// `q`: at 1/4 and 1/2 (`factor`), the two chroma quantisers (zig-zag order).
    fn new(f: &Frame, scale: [f32; 2], q: Option<[&[u16; 64]; 2]>, factor: u32) -> ChromaPlanes {
        let (hmax, vmax) = (f.comps[0].h, f.comps[0].v);
        let (mcux, mcuy) = (f.w.div_ceil(8 * hmax), f.h.div_ceil(8 * vmax));
        let per = if q.is_some() { 8 / factor as usize } else { 1 };
        let c = |k: usize| &f.comps[k + 1];
        let stride = [mcux * c(0).h * per, mcux * c(1).h * per];
        let planes = std::array::from_fn(|k| vec![128f32; stride[k] * mcuy * c(k).v * per]);
        let cells = q.map(|q| q.map(|q| Cells::new(q, factor)));
        ChromaPlanes { planes, stride, h: [c(0).h, c(1).h], v: [c(0).v, c(1).v], hmax, vmax, scale, per, cells }
    }
}

/// The reduced picture; `None` with `damage` set when the entropy-coded data is
/// damaged, `None` alone when the file is not one this decoder handles.
/// With `colour` (at 1/8, 1/4 or 1/2), a colour file's chroma pictures too. `spread`: how far
/// from neutral the chroma read is, and how varied at one brightness ([`decode_luma_seen`]).
fn reduced(bytes: &[u8], factor: u32, colour: bool, want_tones: bool, damage: &mut Option<String>, spread: &mut ChromaSeen) -> Option<(Gray, u32, u32, Option<ChromaPlanes>)> {
    if !matches!(factor, 1 | 2 | 4 | 8) || (colour && !matches!(factor, 2 | 4 | 8)) {
        return None;
    }
    let mut p = Parser { b: bytes, i: 2 };
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return None;
    }
    let mut frame: Option<Frame> = None;
    let mut dc_tables: [Option<Rc<Huffman>>; 4] = Default::default();
    let mut ac_tables: [Option<Rc<Huffman>>; 4] = Default::default();
    // Quantisation tables in zig-zag order (as stored).
    let mut quant = [None::<[u16; 64]>; 4];
    let mut restart = 0usize;
    let mut adobe_rgb = false;
    let mut progressive = false;
    // A progressive frame's luma coefficients, gathered scan by scan until EOI.
    let mut prog: Option<Progressive> = None;
    loop {
        let (m, seg) = p.segment()?;
        match m {
            // One frame per file (a second is a hierarchical file or garbage).
            0xC0..=0xC2 if frame.is_some() || prog.is_some() => return None,
            0xC0 | 0xC1 => frame = Some(Frame::parse(seg)?),
            0xC2 => {
                frame = Some(Frame::parse(seg)?);
                progressive = true;
            }
            // Lossless, hierarchical, arithmetic-coded: not handled here.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            0xC4 => dht_tables(seg, |class, id, t| {
                match (class, id) {
                    (0, 0..=3) => dc_tables[id] = Some(t),
                    (1, 0..=3) => ac_tables[id] = Some(t),
                    _ => return None,
                }
                Some(())
            })?,
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (wide, id) = (s[0] >> 4, (s[0] & 15) as usize);
                    let len = match wide {
                        0 => 65,
                        1 => 129,
                        _ => return None,
                    };
                    if id > 3 || s.len() < len {
                        return None;
                    }
                    let mut q = [0u16; 64];
                    for (k, v) in q.iter_mut().enumerate() {
                        *v = if wide == 0 { s[1 + k] as u16 } else { u16::from_be_bytes([s[1 + 2 * k], s[2 + 2 * k]]) };
                    }
                    quant[id] = Some(q);
                    s = &s[len..];
                }
            }
            0xDD => restart = u16::from_be_bytes([*seg.first()?, *seg.get(1)?]) as usize,
            // Adobe's APP14 with transform 0: three components that are R, G, B, not Y, Cb, Cr.
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => adobe_rgb = seg[11] == 0,
            0xDA if progressive => {
                if prog.is_none() {
                    let f = frame.take()?;
                    if adobe_rgb && f.comps.len() == 3 {
                        return None;
                    }
                    prog = Some(Progressive { tones: want_tones, ..Progressive::new(f, factor, colour)? });
                }
                let st = prog.as_mut()?;
                p.i = st.scan(seg, &dc_tables, &ac_tables, &quant, restart, bytes, p.i, damage)?;
                *spread = ChromaSeen { spread: st.chroma_spread(), variety: st.variety() };
            }
            0xDA => {
                let f = frame?;
                if adobe_rgb && f.comps.len() == 3 {
                    return None;
                }
                let ns = *seg.first()? as usize;
                if ns != f.comps.len() || seg.len() < 1 + 2 * ns + 3 {
                    return None;
                }
                // Blocks whose coefficients are only counted (all at 1/8; chroma at
                // 1/4 and 1/2): with enough of them, their AC tables get multi-code
                // lookups, whose 4,096 entries cost more to build than a small picture
                // saves.
                let (hmax, vmax) = (f.comps[0].h, f.comps[0].v);
                let mcus = f.w.div_ceil(8 * hmax) * f.h.div_ceil(8 * vmax);
                // (The colour picture at 1/4 keeps chroma's coefficients too.)
                let kept = if factor == 8 { 0 } else if colour { ns } else { 1 };
                let counted = mcus * f.comps.iter().skip(kept).map(|c| c.h * c.v).sum::<usize>();
                if counted >= MULTI_MIN_BLOCKS {
                    for k in kept.min(ns)..ns {
                        if let Some(Some(t)) = ac_tables.get_mut((seg[2 + 2 * k] & 15) as usize) {
                            with_multi(t);
                        }
                    }
                }
                let mut scan = Vec::with_capacity(ns);
                for k in 0..ns {
                    let (id, tables) = (seg[1 + 2 * k], seg[2 + 2 * k]);
                    // Components in frame order (the interleaving order of each MCU).
                    if f.comps[k].id != id {
                        return None;
                    }
                    let dc = dc_tables.get((tables >> 4) as usize)?.as_deref()?;
                    let ac = ac_tables.get((tables & 15) as usize)?.as_deref()?;
                    scan.push((dc, ac));
                }
                let (ss, se, a) = (seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns]);
                if ss != 0 || se != 63 || a != 0 {
                    return None;
                }
                let q = quant[f.comps[0].tq as usize]?;
                let data = &bytes[p.i..];
                let mut chroma = match f.comps.len() {
                    3 if colour => {
                        let (q1, q2) = (quant[f.comps[1].tq as usize].as_ref()?, quant[f.comps[2].tq as usize].as_ref()?);
                        Some(ChromaPlanes::new(&f, [q1[0] as f32 / 8.0, q2[0] as f32 / 8.0], (factor < 8).then_some([q1, q2]), factor))
                    }
                    _ => None,
                };
                let mut peak = [0u32; 3];
                let mut tones = if want_tones { McuTones::new(&f, &quant, 0) } else { None };
                let read = match tones.as_mut() {
                    Some(t) => decode_scan::<true>(&f, &scan, &q, factor, restart, data, chroma.as_mut(), &mut peak, Some(t)),
                    None => decode_scan::<false>(&f, &scan, &q, factor, restart, data, chroma.as_mut(), &mut peak, None),
                };
                return match read {
                    Ok(g) => {
                        *spread = match f.comps.len() {
                            1 => ChromaSeen { spread: Some(0.0), variety: Some(0.0) },
                            3 => ChromaSeen {
                                spread: (1..3).map(|k| quant[f.comps[k].tq as usize].map(|q| peak[k] as f32 * q[0] as f32 / 8.0)).try_fold(0f32, |m, v| v.map(|v| m.max(v))),
                                variety: tones.and_then(|t| t.variety()),
                            },
                            _ => ChromaSeen::default(),
                        };
                        Some((g, f.w as u32, f.h as u32, chroma))
                    }
                    Err(d) => {
                        *damage = Some(d);
                        None
                    }
                };
            }
            0xD9 => return prog?.finish(),
            _ => {}
        }
    }
}

/// Whether a JPEG's frame header is progressive (SOF2): its segments are walked up to
/// the first frame header. For counting (m6-decode-bench); the decoders read it
/// themselves.
pub fn is_progressive(bytes: &[u8]) -> bool {
    let mut p = Parser { b: bytes, i: 2 };
    while let Some((m, _)) = p.segment() {
        match m {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return m == 0xC2,
            0xDA | 0xD9 => return false,
            _ => {}
        }
    }
    false
}

/// Index of the marker that ends the entropy-coded data from `i` on: the next 0xFF that
/// is not stuffing (FF 00), a restart marker or a fill byte. Eight bytes at a time
/// while none is 0xFF, as almost all are. This is how scans the picture does not need
/// (chroma, and AC for the DC picture) are passed over without decoding them.
fn next_marker(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        while let Some(c) = b.get(i..i + 8) {
            let v = !u64::from_le_bytes(c.try_into().expect("8 bytes"));
            if v.wrapping_sub(0x0101_0101_0101_0101) & !v & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            i += 8;
        }
        i += b.get(i..)?.iter().position(|&x| x == 0xFF)?;
        match *b.get(i + 1)? {
            0x00 | 0xD0..=0xD7 => i += 2,
            0xFF => i += 1,
            _ => return Some(i),
        }
    }
}

/// Most luma blocks the 1/4, 1/2 or full-size picture of a progressive file keeps all
/// 64 coefficients of (a correction bit is read for every coefficient already nonzero,
/// kept or not): 2^19 blocks are 64 MiB, a 33-megapixel picture; those paths are taken
/// below 2048 px sides (at the filter's 256 px work size). Larger ones go to the full
/// decoders.
const MAX_PROGRESSIVE_QUARTER_BLOCKS: usize = 1 << 19;

/// The luma coefficients of a progressive frame (T.81 Annex G), gathered over its scans:
/// for the DC picture only each block's DC, for the quarter picture all 64 (zig-zag
/// order), on the block grid of an interleaved scan (the MCU-padded one). Scans without
/// luma, and AC scans when only the DC picture is wanted, are skipped by finding the
/// marker after them. The coefficients are those a full decoder builds, so a
/// progressive file gives exactly the picture its baseline twin (same quantised
/// coefficients) gives through [`decode_scan`].
struct Progressive {
    f: Frame,
    /// 8 (the DC picture), 4, 2 or 1 (from all of luma's coefficients).
    factor: u32,
    /// Luma blocks per row and rows of blocks in luma's `coef`.
    gw: usize,
    gh: usize,
    /// Coefficients kept per block: 1 or 64.
    per: usize,
    /// The components whose coefficients are kept, in frame order: luma alone, or
    /// (colour picture, [`decode_rgb_reduced`]) luma and both chroma components. Scans
    /// of the others are read (an interleaved DC scan) or skipped, never kept.
    comps: Vec<ProgComp>,
    /// Per chroma component (Cb, Cr), the largest |DC| of its blocks in levels, from an
    /// interleaved first DC scan ([`decode_luma_seen`]); `None` until one is read.
    chroma_peak: [Option<f32>; 2],
    /// Whether to gather [`ChromaSeen::variety`] ([`decode_luma_seen`]'s `tones`), and
    /// what an interleaved first DC scan of all three components gave.
    tones: bool,
    variety: Option<f32>,
}

/// One kept component's coefficients and progress through the file's scans.
struct ProgComp {
    /// `per` coefficients a block on the component's block grid (the interleaved,
    /// MCU-padded one; a grey frame's own blocks), `stride` blocks a row.
    coef: Vec<i16>,
    /// Quarter picture only: per block, which coefficients are nonzero (bit = zig-zag
    /// index), for the refinement scans' correction bits.
    nz: Vec<u64>,
    stride: usize,
    /// The component's quantisation table, as it was at its first DC scan.
    q: Option<[u16; 64]>,
    /// Lowest bit of its DC received so far (the last DC scan's Al), `None` before the
    /// first DC scan.
    dc_al: Option<u8>,
    /// The same per AC coefficient (zig-zag index), -1 before its first scan.
    ac_al: [i8; 64],
}

impl ProgComp {
    fn new(blocks: usize, stride: usize, per: usize) -> ProgComp {
        ProgComp { coef: vec![0; blocks * per], nz: vec![0; if per == 64 { blocks } else { 0 }], stride, q: None, dc_al: None, ac_al: [-1; 64] }
    }
}

impl Progressive {
    fn new(f: Frame, factor: u32, colour: bool) -> Option<Progressive> {
        // Every picture but the DC one is made from all of luma's coefficients.
        let all = factor < 8;
        let (hmax, vmax) = (f.comps[0].h, f.comps[0].v);
        // A grey frame's only scan is non-interleaved: its blocks are those of the picture.
        let (gw, gh) = if f.comps.len() == 1 { (f.w.div_ceil(8), f.h.div_ceil(8)) } else { (f.w.div_ceil(8 * hmax) * hmax, f.h.div_ceil(8 * vmax) * vmax) };
        let colour = colour && f.comps.len() == 3;
        let (mcux, mcuy) = (f.w.div_ceil(8 * hmax), f.h.div_ceil(8 * vmax));
        let chroma_blocks = if colour { f.comps[1..].iter().map(|c| mcux * c.h * mcuy * c.v).sum() } else { 0 };
        if all && gw * gh + chroma_blocks > MAX_PROGRESSIVE_QUARTER_BLOCKS {
            return None;
        }
        let per = if all { 64 } else { 1 };
        let mut comps = vec![ProgComp::new(gw * gh, gw, per)];
        if colour {
            comps.extend(f.comps[1..].iter().map(|c| ProgComp::new(mcux * c.h * mcuy * c.v, mcux * c.h, per)));
        }
        Some(Progressive { f, factor, gw, gh, per, comps, chroma_peak: [None; 2], tones: false, variety: None })
    }

    /// Reads (or skips) one scan whose header is `seg` and whose data starts at
    /// `bytes[start]`; returns where the next marker is. `None` on anything malformed,
    /// out of the order T.81 G.1.1.1 allows, or damaged (then with `damage` set).
    #[allow(clippy::too_many_arguments)]
    fn scan(&mut self, seg: &[u8], dc_tables: &[Option<Rc<Huffman>>; 4], ac_tables: &[Option<Rc<Huffman>>; 4], quant: &[Option<[u16; 64]>; 4], restart: usize, bytes: &[u8], start: usize, damage: &mut Option<String>) -> Option<usize> {
        let ns = *seg.first()? as usize;
        if ns == 0 || ns > self.f.comps.len() || seg.len() < 1 + 2 * ns + 3 {
            return None;
        }
        // Frame indices of the scan's components, which must come in frame order.
        let mut idx = [0usize; 4];
        let mut sel = [0u8; 4];
        for k in 0..ns {
            let id = seg[1 + 2 * k];
            idx[k] = self.f.comps.iter().position(|c| c.id == id)?;
            sel[k] = seg[2 + 2 * k];
            if k > 0 && idx[k] <= idx[k - 1] {
                return None;
            }
        }
        let (ss, se, ah, al) = (seg[1 + 2 * ns] as usize, seg[2 + 2 * ns] as usize, seg[3 + 2 * ns] >> 4, seg[3 + 2 * ns] & 15);
        let dc = ss == 0;
        // DC and AC never share a scan, AC scans hold one component, and a refinement
        // scan adds exactly one bit.
        if (dc && se != 0) || (!dc && (se < ss || se > 63 || ns != 1)) || al > 13 || (ah != 0 && al + 1 != ah) {
            return None;
        }
        // The colour picture keeps chroma's scans too, wherever they are (at 1/8 its
        // DC scans alone, as for luma); otherwise a scan without luma is skipped.
        let colour = self.comps.len() > 1;
        if idx[0] >= self.comps.len() || (!dc && self.factor == 8) {
            return next_marker(bytes, start);
        }
        if dc {
            let want = if ah == 0 { None } else { Some(ah) };
            // Chroma in luma's interleaved DC scan is read but not kept when only luma is.
            let kept = self.comps.len();
            for &c in idx[..ns].iter().filter(|&&c| c < kept) {
                let pc = &mut self.comps[c];
                if pc.dc_al != want {
                    return None;
                }
                pc.dc_al = Some(al);
                if pc.q.is_none() {
                    pc.q = Some(quant[self.f.comps[c].tq as usize]?);
                }
            }
        } else {
            // AC before the first DC scan, or bits of a coefficient out of order.
            let pc = &mut self.comps[idx[0]];
            pc.dc_al?;
            for k in ss..=se {
                if pc.ac_al[k] != if ah == 0 { -1 } else { ah as i8 } {
                    return None;
                }
                pc.ac_al[k] = al as i8;
            }
        }
        let f = &self.f;
        let (hmax, vmax) = (f.comps[0].h, f.comps[0].v);
        // A one-component scan is not interleaved: its units are single blocks over
        // the component's own extent (luma's is the picture's; a chroma component's is
        // the picture's scaled by its sampling factors), not the MCU-padded grid.
        let single = ns == 1;
        let c0 = f.comps[idx[0]];
        let (ux, uy) = if single { ((f.w * c0.h).div_ceil(hmax).div_ceil(8), (f.h * c0.v).div_ceil(vmax).div_ceil(8)) } else { (f.w.div_ceil(8 * hmax), f.h.div_ceil(8 * vmax)) };
        // Huffman tables this scan reads (DC refinement bits are raw).
        let mut tables: [Option<&Huffman>; 4] = [None; 4];
        if ah == 0 || !dc {
            for k in 0..ns {
                tables[k] = Some(if dc { dc_tables.get((sel[k] >> 4) as usize)?.as_deref()? } else { ac_tables.get((sel[k] & 15) as usize)?.as_deref()? });
            }
        }
        let mut bits = Bits { d: bytes.get(start..)?, i: 0, acc: 0, n: 0, pad: 0, marker: None };
        let mut pred = [0i32; 4];
        // Largest |DC| (shifted by the point transform) per scan component.
        let mut peak = [0u32; 4];
        // A first DC scan of all three components gives each MCU's mean colour.
        let mut tones = if self.tones && dc && ah == 0 && ns == 3 { McuTones::new(f, quant, al) } else { None };
        let mut mcu_sum = [0i32; 4];
        let mut eobrun = 0u32;
        let per = self.per;
        // Blocks per MCU of an interleaved scan (the bits of a DC refinement MCU).
        let per_mcu: u32 = (0..ns).map(|k| (f.comps[idx[k]].h * f.comps[idx[k]].v) as u32).sum();
        if !single && per_mcu > 10 {
            return None;
        }
        // Units are walked row by row (no division per unit or block: a DC scan does
        // only a few instructions per block).
        let mut restarts = Restarts::new(restart);
        // What went wrong in which unit, when its data is damaged (formatted only then).
        let units = ux * uy;
        let kind = if dc { "DC" } else { "AC" };
        let mut hurt = |what: &str, u: usize| {
            *damage = Some(format!("unit {u} of {units} of a progressive {kind} scan: {what}"));
            None
        };
        for my in 0..uy {
            for mx in 0..ux {
                let u = my * ux + mx;
                match restarts.before_unit(&mut bits) {
                    Some(true) => {
                        pred = [0; 4];
                        eobrun = 0;
                    }
                    Some(false) => {}
                    None => return hurt(RESTART, u),
                }
                if single {
                    // This component's coefficients and masks, and its block's index.
                    let pc = &mut self.comps[idx[0]];
                    let (coef, nzs, b) = (&mut pc.coef, &mut pc.nz, my * pc.stride + mx);
                    if dc {
                        if dc_block(&mut bits, tables[0], &mut pred[0], ah, al, Some(&mut coef[b * per])).is_none() {
                            return hurt(BAD_CODE, u);
                        }
                    } else {
                        let blk: &mut [i16; 64] = (&mut coef[b * 64..b * 64 + 64]).try_into().ok()?;
                        let act = tables[0]?;
                        let read = if ah == 0 { ac_first(&mut bits, act, blk, &mut nzs[b], ss, se, al, &mut eobrun) } else { ac_refine(&mut bits, act, blk, &mut nzs[b], ss, se, al, &mut eobrun) };
                        if read.is_none() {
                            return hurt(BAD_CODE, u);
                        }
                    }
                } else if dc && ah != 0 && colour {
                    // The colour picture's DC refinement: every block's bit, in MCU
                    // order (the word path below keeps luma's alone).
                    bits.refill();
                    let word = bits.peek(per_mcu);
                    bits.drop_bits(per_mcu);
                    let mut i = 0;
                    for k in 0..ns {
                        let c = f.comps[idx[k]];
                        for v in 0..c.v {
                            for h in 0..c.h {
                                i += 1;
                                let bit = ((word >> (per_mcu - i)) & 1) as i16;
                                if let Some(slot) = mcu_slot(&mut self.comps, f, idx[k], per, (mx, my, h, v)) {
                                    *slot |= bit << al;
                                }
                            }
                        }
                    }
                } else if dc && ah != 0 {
                    // A DC refinement scan is one raw bit per block, the MCU's blocks in
                    // order, luma's first: read as one word per MCU (at most 10 bits,
                    // T.81 B.2.3) rather than bit by bit through `dc_block`, which took
                    // a third of the 1/8 picture's time on progressive 2048 px photos.
                    bits.refill();
                    let word = bits.peek(per_mcu);
                    bits.drop_bits(per_mcu);
                    // Branch-free: the bits are as good as random, and a branch on
                    // each was mispredicted half the time.
                    let (gw, coef) = (self.gw, &mut self.comps[0].coef);
                    for v in 0..vmax {
                        let row = ((my * vmax + v) * gw + mx * hmax) * per;
                        for h in 0..hmax {
                            let bit = (word >> (per_mcu - 1 - (v * hmax + h) as u32)) & 1;
                            coef[row + h * per] |= (bit << al) as i16;
                        }
                    }
                } else {
                    for k in 0..ns {
                        let c = f.comps[idx[k]];
                        // An MCU holds a component's blocks row by row (T.81 A.2.3).
                        for v in 0..c.v {
                            for h in 0..c.h {
                                let keep = mcu_slot(&mut self.comps, f, idx[k], per, (mx, my, h, v));
                                if dc_block(&mut bits, tables[k], &mut pred[k], ah, al, keep).is_none() {
                                    return hurt(BAD_CODE, u);
                                }
                                // Every component's (no branch): only chroma's is used.
                                peak[k] = peak[k].max(pred[k].unsigned_abs());
                                mcu_sum[k] += pred[k];
                            }
                        }
                    }
                    if let Some(t) = tones.as_mut() {
                        t.add(mx, my, [mcu_sum[0], mcu_sum[1], mcu_sum[2]]);
                    }
                    mcu_sum = [0; 4];
                }
                if bits.overran() {
                    return hurt(ENDS_EARLY, u);
                }
            }
        }
        let extra = bits.extraneous();
        if extra > 0 {
            *damage = Some(format!("{extra} extraneous bytes after the last unit of a progressive {kind} scan"));
            return None;
        }
        // A first DC scan holding chroma: its DC values are known to 2^Al steps.
        if dc && ah == 0 && !single {
            for k in 0..ns {
                let c = idx[k];
                if let (1..=2, Some(q)) = (c, quant[f.comps[c].tq as usize]) {
                    let v = peak[k] as f32 * (1u32 << al) as f32 * q[0] as f32 / 8.0;
                    self.chroma_peak[c - 1] = Some(self.chroma_peak[c - 1].map_or(v, |m| m.max(v)));
                }
            }
        }
        if let Some(t) = tones {
            self.variety = t.variety();
        }
        next_marker(bytes, start + bits.i)
    }

    /// How far from neutral chroma is, as far as the scans read so far show
    /// ([`decode_luma_seen`]).
    /// [`ChromaSeen::variety`] as far as the scans read so far show.
    fn variety(&self) -> Option<f32> {
        match self.f.comps.len() {
            1 => Some(0.0),
            _ => self.variety,
        }
    }

    fn chroma_spread(&self) -> Option<f32> {
        match self.f.comps.len() {
            1 => Some(0.0),
            3 => Some(self.chroma_peak[0]?.max(self.chroma_peak[1]?)),
            _ => None,
        }
    }

    /// The picture from the coefficients gathered, once the file's EOI is reached. When
    /// the file's script stops before the last bits of a coefficient (no refinement
    /// scan down to Al = 0), those bits are zero, as in a full decoder: the DC picture
    /// is then exact to q0 × 2^Al / 8 grey levels, not one.
    fn finish(self) -> Option<(Gray, u32, u32, Option<ChromaPlanes>)> {
        let luma = &self.comps[0];
        luma.dc_al?;
        let q = luma.q?;
        let (w, h) = (self.f.w, self.f.h);
        let (bw, bh) = (w.div_ceil(8), h.div_ceil(8));
        debug_assert!(bw <= self.gw && bh <= self.gh);
        if self.factor == 8 {
            let scale = q[0] as f32 / 8.0;
            let mut px = Vec::with_capacity(bw * bh);
            for row in luma.coef.chunks_exact(self.gw).take(bh) {
                px.extend(row[..bw].iter().map(|&c| dc_level(c as i32, scale)));
            }
            let chroma = self.chroma_picture()?;
            return Some((Gray { w: bw, h: bh, px }, w as u32, h as u32, chroma));
        }
        let t = Cells::new(&q, self.factor);
        let per = t.per();
        let (ow, oh) = (w.div_ceil(self.factor as usize), h.div_ceil(self.factor as usize));
        let stride = per * bw;
        let mut out = vec![0f32; stride * per * bh];
        for by in 0..bh {
            for bx in 0..bw {
                let b = by * self.gw + bx;
                let blk = &luma.coef[b * 64..][..64];
                t.put(blk[0] as i32, blk, luma.nz[b], &mut out, per * (by * stride + bx), stride);
            }
        }
        let chroma = self.chroma_picture()?;
        Some((crop_rows(&out, stride, ow, oh), w as u32, h as u32, chroma))
    }

    /// The colour picture's chroma planes from the coefficients gathered: `Some(None)`
    /// for a luma picture; `None` for a colour file whose script never sent a chroma
    /// component's DC, which this reader does not handle.
    fn chroma_picture(&self) -> Option<Option<ChromaPlanes>> {
        let [_, cb, cr] = &self.comps[..] else { return Some(None) };
        let ch = [cb, cr];
        let (q1, q2) = (ch[0].q.as_ref()?, ch[1].q.as_ref()?);
        let mut cd = ChromaPlanes::new(&self.f, [q1[0] as f32 / 8.0, q2[0] as f32 / 8.0], (self.per == 64).then_some([q1, q2]), self.factor);
        for (k, pc) in ch.iter().enumerate() {
            pc.dc_al?;
            match &cd.cells {
                Some(t) => {
                    let (stride, per) = (cd.stride[k], cd.per);
                    for (b, blk) in pc.coef.chunks_exact(64).enumerate() {
                        let (bx, by) = (b % pc.stride, b / pc.stride);
                        t[k].put(blk[0] as i32, blk, pc.nz[b], &mut cd.planes[k], per * (by * stride + bx), stride);
                    }
                }
                None => {
                    for (out, &c) in cd.planes[k].iter_mut().zip(&pc.coef) {
                        *out = dc_level(c as i32, cd.scale[k]);
                    }
                }
            }
        }
        Some(Some(cd))
    }
}

/// In an interleaved scan, the DC slot of block (`h`, `v`) of component `comp`'s part
/// of MCU (`mx`, `my`) (`per` coefficients a block); `None` for a component whose
/// coefficients are not kept (chroma when no colour picture is made: read, not kept).
/// Inlined: it runs for every block of a DC scan, the 1/8 picture's hot loop, which
/// indexed luma's coefficients in place before.
#[inline(always)]
fn mcu_slot<'a>(comps: &'a mut [ProgComp], f: &Frame, comp: usize, per: usize, (mx, my, h, v): (usize, usize, usize, usize)) -> Option<&'a mut i16> {
    let c = &f.comps[comp];
    let pc = comps.get_mut(comp)?;
    Some(&mut pc.coef[((my * c.v + v) * pc.stride + mx * c.h + h) * per])
}

/// One block of a DC scan: the first (`ah` 0) decodes the difference to the
/// component's predictor and keeps the predictor shifted by the point transform `al`;
/// a refinement adds bit `al`. `keep` is the block's DC slot, `None` for a component
/// whose coefficients are not kept (read, not kept).
#[inline(always)]
fn dc_block(bits: &mut Bits, table: Option<&Huffman>, pred: &mut i32, ah: u8, al: u8, keep: Option<&mut i16>) -> Option<()> {
    if ah == 0 {
        bits.refill();
        let table = table?;
        // Code and magnitude in one lookup when they fit (most DC differences).
        let e = table.dcv[bits.peek(FAST) as usize];
        if e != 0 {
            bits.drop_bits((e & 0xFF) as u32);
            *pred = pred.wrapping_add(e >> 8);
            if let Some(c) = keep {
                *c = (*pred << al) as i16;
            }
            return Some(());
        }
        let s = bits.symbol(table)? as u32;
        if s > 11 {
            return None;
        }
        if s > 0 {
            let v = bits.peek(s);
            bits.drop_bits(s);
            *pred = pred.wrapping_add(extend(v, s));
        }
        if let Some(c) = keep {
            *c = (*pred << al) as i16;
        }
    } else {
        // No branch on the bit itself (as good as random: mispredicted half the time).
        let b = bits.bit();
        if let Some(c) = keep {
            *c |= (b << al) as i16;
        }
    }
    Some(())
}

/// One block of a first AC scan over zig-zag `ss..=se` (T.81 G.1.2.2): run/size codes
/// as in baseline, except that size 0 with a run r below 15 starts an end-of-band run
/// of 2^r + r more bits blocks (this one included), over which nothing is read.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ac_first(bits: &mut Bits, act: &Huffman, blk: &mut [i16; 64], nz: &mut u64, ss: usize, se: usize, al: u8, eobrun: &mut u32) -> Option<()> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Some(());
    }
    let mut k = ss;
    while k <= se {
        bits.refill();
        let rs = bits.symbol(act)? as u32;
        let (r, s) = (rs >> 4, rs & 15);
        if s == 0 {
            if r == 15 {
                k += 16;
                continue;
            }
            *eobrun = (1 << r) - 1;
            if r > 0 {
                *eobrun += bits.peek(r);
                bits.drop_bits(r);
            }
            break;
        }
        k += r as usize;
        // A run past the band: corrupt data.
        if k > se {
            return None;
        }
        blk[k] = (extend(bits.peek(s), s) << al) as i16;
        *nz |= 1 << k;
        bits.drop_bits(s);
        k += 1;
    }
    Some(())
}

/// One block of an AC refinement scan (T.81 G.1.2.3): each code places one new ±2^al
/// coefficient after skipping `r` coefficients that are still zero, and every
/// coefficient already nonzero that is passed (or, in an end-of-band run, every one in
/// the band) takes one correction bit, which adds 2^al away from zero.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ac_refine(bits: &mut Bits, act: &Huffman, blk: &mut [i16; 64], nz: &mut u64, ss: usize, se: usize, al: u8, eobrun: &mut u32) -> Option<()> {
    let p1 = 1i16 << al;
    // Zig-zag indices from `k` to the band's end, as a mask (empty past the end).
    let from = |k: usize| if k <= se { (u64::MAX << k) & (u64::MAX >> (63 - se)) } else { 0 };
    let mut k = ss;
    if *eobrun == 0 {
        while k <= se {
            bits.refill();
            let rs = bits.symbol(act)? as u32;
            let (r, s) = (rs >> 4, rs & 15);
            let new = match s {
                0 if r < 15 => {
                    *eobrun = 1 << r;
                    if r > 0 {
                        *eobrun += bits.peek(r);
                        bits.drop_bits(r);
                    }
                    break;
                }
                // 15 zeros and a 16th: skipped, nothing placed.
                0 => 0,
                1 => {
                    if bits.bit() != 0 {
                        p1
                    } else {
                        -p1
                    }
                }
                // A refinement only ever adds coefficients of magnitude one.
                _ => return None,
            };
            // Pass r still-zero coefficients, correcting the nonzero ones on the way;
            // the next zero one is the target (past the band when there is none). Found
            // from the masks rather than stepping through every index.
            let rest = from(k);
            let mut zeros = !*nz & rest;
            for _ in 0..r {
                zeros &= zeros.wrapping_sub(1);
            }
            let target = if zeros == 0 { se + 1 } else { zeros.trailing_zeros() as usize };
            correct_nonzero(bits, blk, *nz & rest & !from(target), p1);
            k = target;
            if new != 0 {
                if k > se {
                    return None;
                }
                blk[k] = new;
                *nz |= 1 << k;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        // Only the nonzero coefficients left in the band, from the mask: scanning all
        // of them was most of the quarter picture's time (each block's 128 bytes
        // loaded and 63 branches, per refinement scan).
        correct_nonzero(bits, blk, *nz & from(k), p1);
        *eobrun -= 1;
    }
    Some(())
}

/// The correction bits of the (nonzero) coefficients in `mask`, in zig-zag order: a
/// 1 adds `p1` away from zero, unless that bit is already set.
#[inline(always)]
fn correct_nonzero(bits: &mut Bits, blk: &mut [i16; 64], mut mask: u64, p1: i16) {
    while mask != 0 {
        let c = &mut blk[mask.trailing_zeros() as usize];
        if bits.bit() != 0 && *c & p1 == 0 {
            *c = if *c >= 0 { c.wrapping_add(p1) } else { c.wrapping_sub(p1) };
        }
        mask &= mask - 1;
    }
}

/// The DC picture of a `full_w`×`full_h` JPEG box-averaged so its longer side is at
/// most `max_side`, with the output size the full-size paths give ([`crate::shrink`]
/// of the full picture), over the picture's true extent (the encoder's padding past
/// the edge is left out). Cell edges are rounded to whole DC pixels, as `shrink`
/// rounds them to whole pixels: exact fractional edge weights blur the picture by
/// one more block width, and on a 2120 px mosaic of the sample photos measured the
/// sharpness signal at 1746 against the full decode's 4487 (rounded edges: 4232;
/// 2800-5200 px within 3%).
pub fn shrink_dc(g: &Gray, full_w: u32, full_h: u32, max_side: usize) -> Gray {
    shrink_reduced(g, full_w, full_h, max_side, 8)
}

/// [`shrink_dc`] of a 1/`factor`-scale picture ([`decode_luma_reduced`]).
pub fn shrink_reduced(g: &Gray, full_w: u32, full_h: u32, max_side: usize, factor: u32) -> Gray {
    let (fw, fh) = (full_w as f64, full_h as f64);
    let f = (max_side as f64 / fw.max(fh)).min(1.0);
    let (nw, nh) = (((fw * f).round() as usize).max(1), ((fh * f).round() as usize).max(1));
    crate::box_mean(g, (fw / factor as f64) as f32, (fh / factor as f64) as f32, nw, nh)
}

pub(crate) struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the first marker after a JPEG's SOI.
    pub(crate) fn after_soi(b: &'a [u8]) -> Parser<'a> {
        Parser { b, i: 2 }
    }

    /// Where the parser is: just past the last segment returned.
    pub(crate) fn offset(&self) -> usize {
        self.i
    }

    /// The next marker and its segment's payload (after the length).
    pub(crate) fn segment(&mut self) -> Option<(u8, &'a [u8])> {
        if *self.b.get(self.i)? != 0xFF {
            return None;
        }
        // Fill bytes (0xFF runs) may precede a marker.
        while *self.b.get(self.i + 1)? == 0xFF {
            self.i += 1;
        }
        let m = self.b[self.i + 1];
        if matches!(m, 0xD8 | 0xD9 | 0x01) || (0xD0..=0xD7).contains(&m) {
            self.i += 2;
            return Some((m, &[]));
        }
        let len = u16::from_be_bytes([*self.b.get(self.i + 2)?, *self.b.get(self.i + 3)?]) as usize;
        let seg = self.b.get(self.i + 4..self.i + 2 + len.max(2))?;
        self.i += 2 + len;
        Some((m, seg))
    }
}

#[derive(Clone, Copy)]
struct Comp {
    id: u8,
    h: usize,
    v: usize,
    tq: u8,
}

struct Frame {
    w: usize,
    h: usize,
    comps: Vec<Comp>,
}

impl Frame {
    fn parse(s: &[u8]) -> Option<Frame> {
        let (precision, h, w, n) = (*s.first()?, u16::from_be_bytes([*s.get(1)?, *s.get(2)?]) as usize, u16::from_be_bytes([*s.get(3)?, *s.get(4)?]) as usize, *s.get(5)? as usize);
        // 12-bit samples, a height given later (DNL), CMYK / YCCK: not handled.
        if precision != 8 || w == 0 || h == 0 || !(n == 1 || n == 3) || s.len() < 6 + 3 * n {
            return None;
        }
        let comps: Vec<Comp> = (0..n).map(|k| Comp { id: s[6 + 3 * k], h: (s[7 + 3 * k] >> 4) as usize, v: (s[7 + 3 * k] & 15) as usize, tq: s[8 + 3 * k] }).collect();
        if comps.iter().any(|c| !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) || c.tq > 3) {
            return None;
        }
        // JFIF says component ids 'R', 'G', 'B' mean RGB (decoders honour it).
        if n == 3 && comps.iter().map(|c| c.id).eq(*b"RGB") {
            return None;
        }
        // Luma must have the largest sampling factors, or its blocks are not 8×8 pixels.
        let (hmax, vmax) = (comps.iter().map(|c| c.h).max()?, comps.iter().map(|c| c.v).max()?);
        if comps[0].h != hmax || comps[0].v != vmax {
            return None;
        }
        Some(Frame { w, h, comps })
    }
}

/// Bits of lookahead of the fast tables.
const FAST: u32 = 10;

/// A Huffman table: a direct lookup for codes up to [`FAST`] bits and the canonical
/// code ranges (JPEG Annex F.2.2.3) for longer ones. AC tables also hold, per
/// lookahead, the whole skip (code and magnitude bits) when both fit.
#[derive(Clone)]
struct Huffman {
    /// Per FAST-bit lookahead: symbol << 8 | code length, 0 when longer than FAST.
    fast: Vec<u16>,
    /// AC only: bits to drop (code + magnitude) | (coefficients advanced) << 5 |
    /// 1 << 10 for end of block | magnitude bits << 11; 0 when it does not fit in FAST
    /// bits.
    skip: Vec<u16>,
    /// AC only, built for large baseline pictures (empty otherwise): per
    /// [`MULTI`]-bit lookahead, the codes (with their magnitude bits) it holds whole,
    /// read as one step when the values are not wanted: bits to drop | coefficients
    /// advanced << 4 | 1 << 11 when the last is the end of block; 0 when not even one
    /// fits.
    multi: Vec<u16>,
    /// DC only: per lookahead, the difference it codes << 8 | bits to drop (code and
    /// magnitude), when both fit in FAST bits; 0 otherwise.
    dcv: Vec<i32>,
    /// Largest code of each length (-1 when none), and index of its first symbol.
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: &[u8], ac: bool) -> Option<Huffman> {
        let mut t = Huffman { fast: vec![0; 1 << FAST], skip: if ac { vec![0; 1 << FAST] } else { vec![] }, multi: vec![], dcv: if ac { vec![] } else { vec![0; 1 << FAST] }, maxcode: [-1; 18], valptr: [0; 17], mincode: [0; 17], symbols: symbols.to_vec() };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16usize {
            let n = counts[len - 1] as usize;
            t.valptr[len] = k as i32;
            t.mincode[len] = code;
            for _ in 0..n {
                // Codes of one length are consecutive; a table with more codes than the
                // length allows is corrupt.
                if code >= 1 << len {
                    return None;
                }
                let sym = symbols[k];
                if len as u32 <= FAST {
                    let shift = FAST - len as u32;
                    let base = (code as usize) << shift;
                    for e in base..base + (1 << shift) {
                        t.fast[e] = (sym as u16) << 8 | len as u16;
                        let total = len as u32 + sym as u32;
                        if !ac && sym <= 11 && total <= FAST {
                            let mag = (e as u32 >> (FAST - total)) & ((1 << sym) - 1);
                            let v = if sym == 0 { 0 } else { extend(mag, sym as u32) };
                            t.dcv[e] = v << 8 | total as i32;
                        }
                        if ac {
                            let (run, size) = ((sym >> 4) as u32, (sym & 15) as u32);
                            let total = len as u32 + size;
                            if total <= FAST {
                                // Size 0 with a run other than 15 ends the block, as
                                // libjpeg reads it.
                                let (adv, eob) = match (run, size) {
                                    (15, 0) => (16, 0),
                                    (_, 0) => (0, 1),
                                    _ => (run + 1, 0),
                                };
                                t.skip[e] = (total | adv << 5 | eob << 10 | size << 11) as u16;
                            }
                        }
                    }
                }
                code += 1;
                k += 1;
            }
            t.maxcode[len] = if n > 0 { code - 1 } else { -1 };
            code <<= 1;
        }
        t.maxcode[17] = i32::MAX;
        Some(t)
    }
}

/// Each Huffman table of a DHT segment, as (class: 0 DC / 1 AC, id, table), to `f`;
/// `None` when the segment is malformed or `f` refuses a table. Tables come from this
/// thread's [`TableCache`].
fn dht_tables(seg: &[u8], mut f: impl FnMut(u8, usize, Rc<Huffman>) -> Option<()>) -> Option<()> {
    let mut s = seg;
    while !s.is_empty() {
        let (class, id) = (s[0] >> 4, (s[0] & 15) as usize);
        let counts: [u8; 16] = s.get(1..17)?.try_into().ok()?;
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let symbols = s.get(17..17 + n)?;
        let t = TABLES.with(|c| c.borrow_mut().get(class == 1, &s[1..17 + n], || Huffman::new(&counts, symbols, class == 1)))?;
        f(class, id, t)?;
        s = &s[17 + n..];
    }
    Some(())
}

/// Tables a thread keeps between files.
const CACHED_TABLES: usize = 16;

/// Huffman tables built from earlier files' DHT definitions, the most recently used
/// kept. Most JPEGs on the web carry the same four tables: the example tables of T.81
/// Annex K, which libjpeg, Pillow and most cameras write unless told to optimise
/// them. Built once, a table reused from one file to the next also gets its
/// [`Huffman::multi`] lookups, which a small picture alone does not repay
/// ([`MULTI_MIN_BLOCKS`]): on the 496 JPEGs of `bench/dedup_images.py --quick`
/// (96-1,411 px) the 1/8 picture took 0.331 ms per file with tables built per file and
/// multi lookups from 2^14 blocks, 0.323 ms with multi lookups for every file (built
/// per file), and 0.27 ms with both reused. A definition is its class and its bytes,
/// and the table built from the same bytes is the same, so a reused table decodes
/// exactly as a fresh one.
struct TableCache {
    entries: Vec<CachedTable>,
    tick: u64,
}

struct CachedTable {
    /// Class (1 AC, 0 DC) and the DHT bytes after the class/id byte: the 16 counts and
    /// the symbols.
    ac: bool,
    def: Vec<u8>,
    table: Rc<Huffman>,
    last_used: u64,
}

thread_local! {
    static TABLES: RefCell<TableCache> = const { RefCell::new(TableCache { entries: Vec::new(), tick: 0 }) };
}

impl TableCache {
    /// The table of this definition: a kept one (with its multi-code lookups, for AC,
    /// from its second file on), or `build`'s, kept in place of the least recently used.
    fn get(&mut self, ac: bool, def: &[u8], build: impl FnOnce() -> Option<Huffman>) -> Option<Rc<Huffman>> {
        self.tick += 1;
        if let Some(e) = self.entries.iter_mut().find(|e| e.ac == ac && e.def == def) {
            e.last_used = self.tick;
            if ac && e.table.multi.is_empty() {
                // No file holds it any more (each file's tables are dropped when its
                // decode returns), so this builds in place; a clone otherwise.
                let t = Rc::make_mut(&mut e.table);
                t.multi = multi_skips(&t.skip);
            }
            return Some(e.table.clone());
        }
        let table = Rc::new(build()?);
        let entry = CachedTable { ac, def: def.to_vec(), table: table.clone(), last_used: self.tick };
        if self.entries.len() < CACHED_TABLES {
            self.entries.push(entry);
        } else if let Some(old) = self.entries.iter_mut().min_by_key(|e| e.last_used) {
            *old = entry;
        }
        Some(table)
    }

    /// Puts `new` in place of the kept entry that holds `old`, if any.
    fn replace(&mut self, old: &Rc<Huffman>, new: &Rc<Huffman>) {
        if let Some(e) = self.entries.iter_mut().find(|e| Rc::ptr_eq(&e.table, old)) {
            e.table = new.clone();
        }
    }
}

/// Gives an AC table its multi-code lookups (a large picture's first file with it),
/// for the kept copy too.
fn with_multi(t: &mut Rc<Huffman>) {
    if t.multi.is_empty() {
        let mut h = (**t).clone();
        h.multi = multi_skips(&h.skip);
        let new = Rc::new(h);
        TABLES.with(|c| c.borrow_mut().replace(t, &new));
        *t = new;
    }
}

/// Lookahead bits of [`Huffman::multi`]: a 4096-entry table (8 KiB) per AC table.
const MULTI: u32 = 12;

/// Counted blocks from which a baseline scan builds [`Huffman::multi`] tables. At
/// 2048 px (about 100,000 blocks) they made the 1/8 picture 19% cheaper; at 512 px
/// (2,000 chroma blocks at 1/4) building them cost 5% more than they saved.
const MULTI_MIN_BLOCKS: usize = 1 << 14;

/// [`Huffman::multi`] from the single-code skips: from each lookahead, codes are taken
/// while the bits known so far determine them (a skip entry depends only on its own
/// code and magnitude bits), up to and including an end of block.
fn multi_skips(skip: &[u16]) -> Vec<u16> {
    let mut multi = vec![0u16; 1 << MULTI];
    for (i, m) in multi.iter_mut().enumerate() {
        let (mut pos, mut adv, mut eob, mut n) = (0u32, 0u32, 0u32, 0);
        while pos < MULTI {
            let known = MULTI - pos;
            let rest = i as u32 & ((1 << known) - 1);
            let look = if known >= FAST { rest >> (known - FAST) } else { rest << (FAST - known) };
            let e = skip[look as usize] as u32;
            let total = e & 31;
            if e == 0 || total > known {
                break;
            }
            pos += total;
            n += 1;
            if e >> 10 & 1 != 0 {
                eob = 1;
                break;
            }
            adv += (e >> 5) & 31;
            if adv >= 64 {
                break;
            }
        }
        if n > 0 {
            *m = (pos | adv << 4 | eob << 11) as u16;
        }
    }
    multi
}

/// A scan's restart intervals: a countdown of the units left in the current one.
struct Restarts {
    every: usize,
    left: usize,
    seen: usize,
}

impl Restarts {
    fn new(every: usize) -> Restarts {
        Restarts { every, left: every, seen: 0 }
    }

    /// Called before each unit (MCU, or block of a one-component scan): at the end of
    /// an interval, moves the reader past its restart marker (`None` when that marker
    /// is not the next one expected) and says so, for the caller to reset predictors.
    #[inline(always)]
    fn before_unit(&mut self, bits: &mut Bits) -> Option<bool> {
        if self.every == 0 {
            return Some(false);
        }
        let reset = self.left == 0;
        if reset {
            *bits = bits.restarted(self.seen)?;
            self.seen += 1;
            self.left = self.every;
        }
        self.left -= 1;
        Some(reset)
    }
}

/// Big-endian bit reader over entropy-coded data: undoes byte stuffing (FF 00) and
/// stops at a marker, after which it feeds zero bits and counts them, so reading past
/// the data is noticed.
#[derive(Clone, Copy)]
struct Bits<'a> {
    d: &'a [u8],
    i: usize,
    acc: u64,
    n: u32,
    /// Zero bits fed past a marker or the end, still in or consumed from `acc`.
    pad: u32,
    marker: Option<u8>,
}

impl<'a> Bits<'a> {
    /// Makes sure at least 32 bits are buffered (a code and its magnitude bits take
    /// at most 31): four bytes at once when none is 0xFF (stuffing or a marker), as
    /// most are; byte by byte otherwise. Refilling only below 32 bits, rather than
    /// topping up after every code, made the DC decode about 1.3× faster.
    #[inline(always)]
    fn refill(&mut self) {
        if self.n >= 32 {
            return;
        }
        if self.marker.is_none() {
            if let Some(b) = self.d.get(self.i..self.i + 4) {
                let w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let v = !w;
                if v.wrapping_sub(0x0101_0101) & !v & 0x8080_8080 == 0 {
                    self.acc |= (w as u64) << (32 - self.n);
                    self.n += 32;
                    self.i += 4;
                    return;
                }
            }
        }
        *self = Self::refilled(*self);
    }

    /// The slow refill, out of line and by value: were it to take `&mut self`, the
    /// reader's state would have to live in memory for the whole decode loop, and
    /// every code read would go through a store and a load.
    #[inline(never)]
    #[cold]
    fn refilled(mut b: Self) -> Self {
        b.refill_bytes();
        b
    }

    fn refill_bytes(&mut self) {
        while self.n <= 56 {
            let byte = self.next_byte().unwrap_or_else(|| {
                self.pad += 8;
                0
            });
            self.acc |= (byte as u64) << (56 - self.n);
            self.n += 8;
        }
    }

    /// The next data byte (stuffing undone), or `None` from a marker on, which it
    /// records (the end of the data counts as EOI).
    fn next_byte(&mut self) -> Option<u8> {
        if self.marker.is_some() {
            return None;
        }
        match (self.d.get(self.i), self.d.get(self.i + 1)) {
            (Some(&0xFF), Some(&0x00)) => {
                self.i += 2;
                Some(0xFF)
            }
            (Some(&0xFF), m) => {
                self.marker = Some(m.copied().unwrap_or(0xD9));
                None
            }
            (Some(&b), _) => {
                self.i += 1;
                Some(b)
            }
            (None, _) => {
                self.marker = Some(0xD9);
                None
            }
        }
    }

    #[inline(always)]
    fn peek(&self, k: u32) -> u32 {
        (self.acc >> (64 - k)) as u32
    }

    #[inline(always)]
    fn drop_bits(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
    }

    /// Moves past the `k`-th restart marker of a scan (counting from 0): the bits left
    /// of the interval must be its last byte's padding, with no whole byte before the
    /// next marker ([`Bits::extraneous`]), and that marker must be RST(k mod 8). Reading on until the marker,
    /// rather than expecting the reader to have met it already: a four-byte refill can
    /// take an interval's last bytes without looking past them, and if the codes after
    /// it then leave only padding (a last code and magnitude of 25 bits or more) the
    /// marker is still unread. Rare (0 of 110 encoder files with intervals of 1-11 MCUs
    /// hit it), but such a file is valid. By value, out of line, for the reason given
    /// at [`Bits::refilled`].
    #[inline(never)]
    fn restarted(mut self, k: usize) -> Option<Self> {
        if self.overran() || self.extraneous() > 0 {
            return None;
        }
        if self.marker != Some(0xD0 + (k % 8) as u8) {
            return None;
        }
        self.i += 2;
        self.marker = None;
        self.acc = 0;
        self.n = 0;
        self.pad = 0;
        Some(self)
    }

    /// One raw bit (a DC refinement or an AC correction bit).
    #[inline(always)]
    fn bit(&mut self) -> u32 {
        self.refill();
        let b = self.peek(1);
        self.drop_bits(1);
        b
    }

    /// Whether any fed padding has been consumed: the data ran out early.
    fn overran(&self) -> bool {
        self.pad > self.n
    }

    /// Whole bytes of data left unread up to the next marker (which it finds), once a
    /// scan or restart interval's last unit is read: only the padding bits of the last
    /// byte may be left. Any more is damage that the codes did not show (libjpeg's
    /// "extraneous bytes before marker").
    fn extraneous(&mut self) -> usize {
        let mut extra = (self.n.saturating_sub(self.pad) / 8) as usize;
        while self.next_byte().is_some() {
            extra += 1;
        }
        extra
    }

    /// Decodes one symbol (the buffer holds at least 16 bits).
    #[inline(always)]
    fn symbol(&mut self, t: &Huffman) -> Option<u8> {
        let e = t.fast[self.peek(FAST) as usize];
        if e != 0 {
            self.drop_bits((e & 0xFF) as u32);
            return Some((e >> 8) as u8);
        }
        let mut len = FAST as usize + 1;
        let bits = self.peek(16) as i32;
        while len <= 16 {
            let c = bits >> (16 - len);
            if c <= t.maxcode[len] {
                self.drop_bits(len as u32);
                return t.symbols.get((t.valptr[len] + c - t.mincode[len]) as usize).copied();
            }
            len += 1;
        }
        None
    }
}

/// Frequencies that survive averaging over half a block (a 4-pixel run): the even
/// ones above 0 sum to zero over each half.
const QUARTER_FREQS: [usize; 5] = [0, 1, 3, 5, 7];

/// Per zig-zag index, the slot (row index × 5 + column index in [`QUARTER_FREQS`]) of
/// a coefficient the quarter picture needs, or 255.
fn quarter_slots() -> [u8; 64] {
    let mut slots = [255u8; 64];
    for (slot, (v, u)) in slots.iter_mut().zip(zigzag()) {
        if let (Some(iv), Some(iu)) = (QUARTER_FREQS.iter().position(|&f| f == v), QUARTER_FREQS.iter().position(|&f| f == u)) {
            *slot = (iv * 5 + iu) as u8;
        }
    }
    slots
}

/// Weight of each [`QUARTER_FREQS`] basis function in the mean of the first half of a
/// block, with the IDCT's C(0) = 1/√2: mean over x in 0..4 of cos((2x+1)uπ/16). The
/// second half's is the same with odd frequencies negated.
fn quarter_weights() -> [f32; 5] {
    QUARTER_FREQS.map(|u| basis_mean(u, 0, 4) as f32)
}

/// The mean of the IDCT's basis function of frequency `f` on one axis, C(f) ·
/// cos((2x+1)fπ/16) with C(0) = 1/√2, over the `n` pixels from `x0`: what a coefficient
/// adds per unit to a cell of the reduced pictures (to a pixel for `n` = 1), before
/// the IDCT's overall 1/4.
fn basis_mean(f: usize, x0: usize, n: usize) -> f64 {
    let c = if f == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
    c * (x0..x0 + n).map(|x| ((2 * x + 1) as f64 * f as f64 * std::f64::consts::PI / 16.0).cos()).sum::<f64>() / n as f64
}

/// The frequency-0 and odd-frequency parts of one axis of a quarter picture's cell
/// means (weights `a`, coefficients `c` in [`QUARTER_FREQS`] order): the first half's
/// mean is their sum, the second half's their difference.
#[inline(always)]
fn halves(a: &[f32; 5], c: &[f32; 5]) -> (f32, f32) {
    (a[0] * c[0], a[1] * c[1] + a[2] * c[2] + a[3] * c[3] + a[4] * c[4])
}

/// A block's mean grey level from its DC coefficient (`scale`: the DC quantiser / 8).
#[inline(always)]
fn dc_level(dc: i32, scale: f32) -> f32 {
    (dc as f32 * scale + 128.0).clamp(0.0, 255.0)
}

/// What the quarter picture needs to turn a block's coefficients into its four cells.
struct Quarter {
    /// Per zig-zag index, its slot in [`quadrants`]' coefficients (255: not read).
    slots: [u8; 64],
    a: [f32; 5],
    /// The 24 AC zig-zag indices the quadrant means read, as a mask: a block loads only
    /// those of them it has (most of the high ones are zero).
    wanted: u64,
    /// The quantiser as floats, in zig-zag order.
    qf: [f32; 64],
}

impl Quarter {
    fn new(q: &[u16; 64]) -> Quarter {
        let slots = quarter_slots();
        let wanted = slots.iter().enumerate().skip(1).filter(|(_, &s)| s != 255).fold(0u64, |m, (p, _)| m | 1 << p);
        Quarter { slots, a: quarter_weights(), wanted, qf: std::array::from_fn(|k| q[k] as f32) }
    }

    /// Writes the four cells of a block whose DC is `dc` and whose zig-zag coefficients
    /// `c` are nonzero where `nz` says (other entries are not read) into `out`, the
    /// top-left cell at `o`, rows `stride` apart.
    #[inline(always)]
    fn put<T: Copy + Into<i32>>(&self, dc: i32, c: &[T], nz: u64, out: &mut [f32], o: usize, stride: usize) {
        let mut coef = [0f32; 25];
        coef[0] = dc as f32 * self.qf[0];
        let mut m = nz & self.wanted;
        while m != 0 {
            let pos = m.trailing_zeros() as usize;
            coef[self.slots[pos] as usize] = c[pos].into() as f32 * self.qf[pos];
            m &= m - 1;
        }
        let [tl, tr, bl, br] = quadrants(&self.a, &coef);
        out[o] = tl;
        out[o + 1] = tr;
        out[o + stride] = bl;
        out[o + stride + 1] = br;
    }
}

/// How a block's kept coefficients become its cells in the 1/4, the 1/2 or the
/// full-size picture.
enum Cells {
    Quarter(Quarter),
    Half(Box<Half>),
    Full(Box<Full>),
}

impl Cells {
    fn new(q: &[u16; 64], factor: u32) -> Cells {
        match factor {
            1 => Cells::Full(Box::new(Full::new(q))),
            2 => Cells::Half(Box::new(Half::new(q))),
            _ => Cells::Quarter(Quarter::new(q)),
        }
    }

    /// Cells per block side.
    fn per(&self) -> usize {
        match self {
            Cells::Quarter(_) => 2,
            Cells::Half(_) => 4,
            Cells::Full(_) => 8,
        }
    }

    /// See [`Quarter::put`].
    #[inline(always)]
    fn put<T: Copy + Into<i32>>(&self, dc: i32, c: &[T], nz: u64, out: &mut [f32], o: usize, stride: usize) {
        match self {
            Cells::Quarter(t) => t.put(dc, c, nz, out, o, stride),
            Cells::Half(t) => t.put(dc, c, nz, out, o, stride),
            Cells::Full(t) => t.put(dc, c, nz, out, o, stride),
        }
    }
}

/// The full-size picture: each block's 64 pixels by a separable inverse DCT in floats,
/// rounded and clamped to 0-255 as a decoder's 8-bit output is. Rows of coefficients
/// that are all zero are skipped (most of a photo's block rows are), so a block costs
/// 8 multiply-adds per nonzero coefficient and 64 per nonzero row.
struct Full {
    /// Per zig-zag index: its row frequency, and its column basis (C(u)/2 ·
    /// cos((2x+1)uπ/16) for x in 0..8) times its quantisation step.
    rows: [(usize, [f32; 8]); 64],
    /// Per row frequency v, the column pass's weights C(v)/2 · cos((2y+1)vπ/16), by y.
    cols: [[f32; 8]; 8],
}

impl Full {
    fn new(q: &[u16; 64]) -> Full {
        // Per frequency and pixel, C(f)/2 · cos((2x+1)fπ/16): the IDCT's 1/4 split
        // between the two passes.
        let k: [[f64; 8]; 8] = std::array::from_fn(|f| std::array::from_fn(|x| basis_mean(f, x, 1) / 2.0));
        let zz = zigzag();
        let rows = std::array::from_fn(|i| {
            let (v, u) = zz[i];
            (v, std::array::from_fn(|x| (q[i] as f64 * k[u][x]) as f32))
        });
        Full { rows, cols: std::array::from_fn(|v| std::array::from_fn(|y| k[v][y] as f32)) }
    }

    /// [`Quarter::put`] for the 64 pixels.
    #[inline(always)]
    fn put<T: Copy + Into<i32>>(&self, dc: i32, c: &[T], nz: u64, out: &mut [f32], o: usize, stride: usize) {
        // Row pass: per row frequency with a nonzero coefficient, its 8 column sums.
        let mut tmp = [[0f32; 8]; 8];
        let d = dc as f32;
        for (t, b) in tmp[0].iter_mut().zip(&self.rows[0].1) {
            *t = d * b;
        }
        let mut live = 1u8;
        let mut m = nz & !1;
        while m != 0 {
            let pos = m.trailing_zeros() as usize;
            let (v, basis) = &self.rows[pos];
            let x = c[pos].into() as f32;
            for (t, b) in tmp[*v].iter_mut().zip(basis) {
                *t += x * b;
            }
            live |= 1 << v;
            m &= m - 1;
        }
        // Column pass over the live rows, 8 pixels at a time.
        for y in 0..8 {
            let mut acc = [128f32; 8];
            let mut l = live;
            while l != 0 {
                let v = l.trailing_zeros() as usize;
                let w = self.cols[v][y];
                for (a, t) in acc.iter_mut().zip(&tmp[v]) {
                    *a += w * t;
                }
                l &= l - 1;
            }
            let row = &mut out[o + y * stride..o + y * stride + 8];
            for (px, a) in row.iter_mut().zip(acc) {
                *px = round_level(a);
            }
        }
    }
}

/// A sample clamped to 0-255 and rounded half up, as an integer-valued float: what a
/// decoder's 8-bit output holds.
///
/// Written so that the compiler turns a row of them into a few vector instructions:
/// `f32::round` is a libm call per pixel, and a saturating `as i32` (NaN to 0) was
/// compiled to a compare and a scalar conversion per pixel, a tenth of the full-size
/// read. `max`/`min` return the number where the other operand is NaN, so the value
/// truncated is always in 0.5..=255.5, and truncation is rounding half up there.
#[inline(always)]
fn round_level(a: f32) -> f32 {
    let v = a.max(0.0).min(255.0) + 0.5;
    // SAFETY: `v` is finite and within 0.5..=255.5 (see above), inside i32's range.
    unsafe { v.to_int_unchecked::<i32>() as f32 }
}

/// The full-size picture's levels (whole numbers in 0-255, [`round_level`]) as bytes,
/// a vector of them at a time (a saturating `as u8` per pixel was scalar: a tenth of
/// the filter's decode of a small JPEG).
pub fn levels_u8(px: &[f32]) -> Vec<u8> {
    px.iter().map(|&v| level_u8(v)).collect()
}

/// Row and column frequency (v, u) of each zig-zag index.
fn zigzag() -> [(usize, usize); 64] {
    let mut at = [(0, 0); 64];
    let mut k = 0;
    for s in 0..15usize {
        let rows: Vec<usize> = (s.saturating_sub(7)..=s.min(7)).collect();
        // Even diagonals run up and to the right, odd ones down and to the left.
        let order: Vec<usize> = if s % 2 == 0 { rows.into_iter().rev().collect() } else { rows };
        for v in order {
            at[k] = (v, s - v);
            k += 1;
        }
    }
    at
}

/// The 1/2 picture: each block's sixteen 2×2 cell means. Every frequency but 4 has a
/// nonzero mean over a 2-pixel run, so unlike the 1/4 picture nearly all of a block's
/// coefficients count; each nonzero one adds its dequantised value times its basis
/// function's 4×4 cell means (precomputed per quantisation table), so a block costs
/// 16 multiply-adds per nonzero coefficient, and most of a photo's are zero.
struct Half {
    /// Per zig-zag index, the 16 cell means (row-major) of its basis function at one
    /// quantisation step, the IDCT's 1/4 included.
    basis: [[f32; 16]; 64],
}

impl Half {
    fn new(q: &[u16; 64]) -> Half {
        // Per cell and frequency, the basis function's mean over the cell's 2-pixel run
        // (a table per file: 4,096 cosines made a fifth of a small file's decode).
        let w: [[f64; 8]; 4] = std::array::from_fn(|cell| std::array::from_fn(|f| basis_mean(f, 2 * cell, 2)));
        let zz = zigzag();
        let mut basis = [[0f32; 16]; 64];
        for (k, b) in basis.iter_mut().enumerate() {
            let (v, u) = zz[k];
            for (i, cell) in b.iter_mut().enumerate() {
                *cell = (0.25 * q[k] as f64 * w[i / 4][v] * w[i % 4][u]) as f32;
            }
        }
        Half { basis }
    }

    /// [`Quarter::put`] for the sixteen cells.
    #[inline(always)]
    fn put<T: Copy + Into<i32>>(&self, dc: i32, c: &[T], nz: u64, out: &mut [f32], o: usize, stride: usize) {
        let mut acc = [0f32; 16];
        let d = dc as f32;
        for (a, b) in acc.iter_mut().zip(&self.basis[0]) {
            *a = d * b;
        }
        let mut m = nz & !1;
        while m != 0 {
            let pos = m.trailing_zeros() as usize;
            let v = c[pos].into() as f32;
            for (a, b) in acc.iter_mut().zip(&self.basis[pos]) {
                *a += v * b;
            }
            m &= m - 1;
        }
        for (r, row) in acc.chunks_exact(4).enumerate() {
            for (x, v) in row.iter().enumerate() {
                out[o + r * stride + x] = (v + 128.0).clamp(0.0, 255.0);
            }
        }
    }
}

/// A block's four quadrant means (top left, top right, bottom left, bottom right) from
/// its dequantised coefficients in [`QUARTER_FREQS`] order (row frequency × 5 + column
/// frequency) and the weights of [`quarter_weights`].
#[inline(always)]
fn quadrants(a: &[f32; 5], coef: &[f32; 25]) -> [f32; 4] {
    // Columns first: per kept row frequency, the left and right half sums.
    let (mut left, mut right) = ([0f32; 5], [0f32; 5]);
    for iv in 0..5 {
        let (even, odd) = halves(a, coef[iv * 5..iv * 5 + 5].try_into().expect("5 coefficients"));
        left[iv] = even + odd;
        right[iv] = even - odd;
    }
    let half = |g: &[f32; 5]| {
        let (even, odd) = halves(a, g);
        ((0.25 * (even + odd) + 128.0).clamp(0.0, 255.0), (0.25 * (even - odd) + 128.0).clamp(0.0, 255.0))
    };
    let ((tl, bl), (tr, br)) = (half(&left), half(&right));
    [tl, tr, bl, br]
}

#[inline(always)]
fn extend(v: u32, size: u32) -> i32 {
    if v < 1 << (size - 1) {
        v as i32 - (1 << size) + 1
    } else {
        v as i32
    }
}

/// Reads one block's AC codes; with `KEEP`, writes each coefficient's value at its
/// zig-zag index in `zz` and sets that index's bit in `nz` (only those entries are
/// read after: nothing is zeroed between blocks). Returns the index past the last
/// coefficient (over 64: a run past the block's end).
#[inline(always)]
fn ac<const KEEP: bool>(bits: &mut Bits, act: &Huffman, zz: &mut [i32; 64], nz: &mut u64) -> Option<u32> {
    let mut k = 1u32;
    while k < 64 {
        bits.refill();
        if !KEEP && !act.multi.is_empty() {
            // Several codes per lookup when only their count matters, as long as they
            // all lie inside this block; anything else takes the one-code path below.
            let m = act.multi[bits.peek(MULTI) as usize] as u32;
            if m != 0 {
                let (drop, adv) = (m & 15, (m >> 4) & 127);
                if m >> 11 != 0 {
                    if k + adv < 64 {
                        bits.drop_bits(drop);
                        k += adv;
                        break;
                    }
                } else if k + adv <= 64 {
                    bits.drop_bits(drop);
                    k += adv;
                    continue;
                }
            }
        }
        let e = act.skip[bits.peek(FAST) as usize];
        if e != 0 {
            let (drop, adv, size) = ((e & 31) as u32, ((e >> 5) & 31) as u32, (e >> 11) as u32 & 15);
            if e >> 10 & 1 != 0 {
                bits.drop_bits(drop);
                break;
            }
            if KEEP && size > 0 {
                // Index k + run; a run past the end is caught by the caller.
                let v = extend(bits.peek(drop) & ((1 << size) - 1), size);
                let at = ((k + adv - 1) as usize).min(63);
                zz[at] = v;
                *nz |= 1 << at;
            }
            bits.drop_bits(drop);
            k += adv;
            continue;
        }
        let rs = bits.symbol(act)? as u32;
        let (run, size) = (rs >> 4, rs & 15);
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            break;
        }
        if KEEP {
            let at = ((k + run) as usize).min(63);
            zz[at] = extend(bits.peek(size), size);
            *nz |= 1 << at;
        }
        bits.drop_bits(size);
        k += run + 1;
    }
    Some(k)
}

/// What damaged entropy-coded data shows (see the module note), in few words: reports
/// cut them short. A code no table has, or a run of coefficients past the block's (or
/// band's) end; a restart marker missing, out of sequence or after whole bytes the
/// interval did not use; data running out (or into a marker) before the last unit.
const BAD_CODE: &str = "invalid Huffman code or run";
const RESTART: &str = "bad restart marker";
const ENDS_EARLY: &str = "data ends early";

/// Decodes the scan's MCUs, keeping the luma DC of each block (`factor` 8), or its
/// four quadrant means (4), sixteen 2×2 cell means (2) or 64 pixels (1). `Err` says how
/// and where the data is damaged.
/// `chroma` (a colour frame's picture at 1/8 or 1/4): its planes get each chroma
/// block's DC level or quadrant means.
#[allow(clippy::too_many_arguments)]
/// `TONES`: gather `tones` (a separate instance: the loop that does is slower).
fn decode_scan<const TONES: bool>(f: &Frame, scan: &[(&Huffman, &Huffman)], q: &[u16; 64], factor: u32, restart: usize, data: &[u8], mut chroma: Option<&mut ChromaPlanes>, peak: &mut [u32; 3], mut tones: Option<&mut McuTones>) -> Result<Gray, String> {
    let (hmax, vmax) = (f.comps[0].h, f.comps[0].v);
    // A single-component scan is not interleaved: its MCU is one block, whatever the
    // sampling factors say (T.81 A.2.2).
    let single = f.comps.len() == 1;
    let (bw, bh) = (f.w.div_ceil(8), f.h.div_ceil(8));
    let (mcux, mcuy) = if single { (bw, bh) } else { (f.w.div_ceil(8 * hmax), f.h.div_ceil(8 * vmax)) };
    let (yh, yv) = if single { (1, 1) } else { (hmax, vmax) };
    // Outputs per block side, and luma outputs per row including the MCU padding
    // (cropped at the end).
    // Every picture but the DC one is made from all of luma's coefficients.
    let all = factor < 8;
    let per = 8 / factor as usize;
    let stride = mcux * yh * per;
    let mut out = vec![0f32; stride * mcuy * yv * per];
    let mut bits = Bits { d: data, i: 0, acc: 0, n: 0, pad: 0, marker: None };
    let mut pred = [0i32; 3];
    // The MCU's DC sums per component ([`McuTones`]).
    let mut dc_sum = [0i32; 3];
    let scale = q[0] as f32 / 8.0;
    let cells = all.then(|| Cells::new(q, factor));
    let blocks: Vec<(usize, usize)> = if single { vec![(1, 1)] } else { f.comps.iter().map(|c| (c.h, c.v)).collect() };
    let mut zz = [0i32; 64];
    // MCUs row by row, as in `Progressive::scan` (no division per MCU or block).
    let mut restarts = Restarts::new(restart);
    // Where first: a report cut to a few words still says it.
    let hurt = |what: &str, my: usize, mx: usize| format!("MCU {} of {}: {what}", my * mcux + mx, mcux * mcuy);
    for my in 0..mcuy {
        for mx in 0..mcux {
            match restarts.before_unit(&mut bits) {
                Some(true) => pred = [0; 3],
                Some(false) => {}
                None => return Err(hurt(RESTART, my, mx)),
            }
            for (c, &(dct, act)) in scan.iter().enumerate() {
                // Only luma's coefficients are kept (and chroma's for the colour
                // picture at 1/4), and not for the DC picture.
                let keep = all && (c == 0 || chroma.as_ref().is_some_and(|cd| cd.cells.is_some()));
                let (ch, cv) = blocks[c];
                for v in 0..cv {
                    for h in 0..ch {
                        // A sequential scan's DC is a progressive first DC scan without a
                        // point transform.
                        let mut nz = 0u64;
                        let read = dc_block(&mut bits, Some(dct), &mut pred[c], 0, 0, None).and_then(|()| if keep { ac::<true>(&mut bits, act, &mut zz, &mut nz) } else { ac::<false>(&mut bits, act, &mut zz, &mut nz) });
                        // No code, or a run past the 63rd coefficient: corrupt data.
                        if !matches!(read, Some(k) if k <= 64) {
                            return Err(hurt(BAD_CODE, my, mx));
                        }
                        // Every component's (no branch): chroma's says whether the
                        // picture holds colour (`decode_luma_seen`).
                        peak[c] = peak[c].max(pred[c].unsigned_abs());
                        if TONES {
                            dc_sum[c] += pred[c];
                        }
                        if c == 0 {
                            let (bx, by) = (mx * yh + h, my * yv + v);
                            match &cells {
                                Some(t) => t.put(pred[0], &zz, nz, &mut out, per * (by * stride + bx), stride),
                                None => out[by * stride + bx] = dc_level(pred[0], scale),
                            }
                        } else if let Some(cd) = chroma.as_deref_mut() {
                            let k = c - 1;
                            let (bx, by) = (mx * ch + h, my * cv + v);
                            match &cd.cells {
                                Some(t) => t[k].put(pred[c], &zz, nz, &mut cd.planes[k], cd.per * (by * cd.stride[k] + bx), cd.stride[k]),
                                None => cd.planes[k][by * cd.stride[k] + bx] = dc_level(pred[c], cd.scale[k]),
                            }
                        }
                    }
                }
            }
            if bits.overran() {
                return Err(hurt(ENDS_EARLY, my, mx));
            }
            if TONES {
                if let Some(t) = tones.as_deref_mut() {
                    t.add(mx, my, dc_sum);
                }
                dc_sum = [0; 3];
            }
        }
    }
    let extra = bits.extraneous();
    if extra > 0 {
        return Err(format!("{extra} extraneous bytes after the last MCU ({})", mcux * mcuy));
    }
    let (ow, oh) = (f.w.div_ceil(factor as usize), f.h.div_ceil(factor as usize));
    Ok(crop_rows(&out, stride, ow, oh))
}

/// The top-left `w`×`h` of a picture whose rows are `stride` apart (the block grid's
/// padding past the picture's extent left out).
fn crop_rows(src: &[f32], stride: usize, w: usize, h: usize) -> Gray {
    let mut px = Vec::with_capacity(w * h);
    for row in src.chunks(stride).take(h) {
        px.extend_from_slice(&row[..w]);
    }
    Gray { w, h, px }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_photos_dir as photos;

    /// zune-jpeg's full-size luma plane, averaged over `cell`×`cell` cells (partial
    /// cells at the right and bottom edges average what they hold).
    fn cell_means(bytes: &[u8], cell: usize) -> (usize, usize, Vec<f32>) {
        use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
        let px = d.decode().unwrap();
        let (w, h) = d.dimensions().unwrap();
        let (bw, bh) = (w.div_ceil(cell), h.div_ceil(cell));
        let mut out = vec![0f32; bw * bh];
        for by in 0..bh {
            for bx in 0..bw {
                let (mut s, mut n) = (0f32, 0f32);
                for y in by * cell..(by * cell + cell).min(h) {
                    for x in bx * cell..(bx * cell + cell).min(w) {
                        s += px[y * w + x] as f32;
                        n += 1.0;
                    }
                }
                out[by * bw + bx] = s / n;
            }
        }
        (bw, bh, out)
    }

    /// zune-jpeg's full RGB decode, averaged over `cell`×`cell` cells per channel.
    fn rgb_cell_means(bytes: &[u8], cell: usize) -> (usize, usize, Vec<[f32; 3]>) {
        use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
        let px = d.decode().unwrap();
        let (w, h) = d.dimensions().unwrap();
        let (bw, bh) = (w.div_ceil(cell), h.div_ceil(cell));
        let mut out = vec![[0f32; 3]; bw * bh];
        for by in 0..bh {
            for bx in 0..bw {
                let (mut s, mut n) = ([0f32; 3], 0f32);
                for y in by * cell..(by * cell + cell).min(h) {
                    for x in bx * cell..(bx * cell + cell).min(w) {
                        for (c, v) in s.iter_mut().enumerate() {
                            *v += px[3 * (y * w + x) + c] as f32;
                        }
                        n += 1.0;
                    }
                }
                out[by * bw + bx] = s.map(|v| v / n);
            }
        }
        (bw, bh, out)
    }

    /// The colour picture at 1/`factor` against the cell means of a full RGB decode, per
    /// channel, over the whole cells (the last row and column also hold the encoder's
    /// padding). Colour conversion is linear, so a cell's mean colour is the conversion
    /// of its mean Y, Cb and Cr, up to clamping; the mean chroma over a luma block is
    /// its chroma block's mean only where chroma is not subsampled: subsampled, the
    /// picture has one chroma value per chroma block, where a decoder's upsampled
    /// chroma varies within it. Returns the mean absolute difference.
    fn colour_difference(name: &str, bytes: &[u8], factor: u32) -> f32 {
        let f = factor as usize;
        let (rgb, bw, bh, w, h) = decode_rgb_reduced(bytes, factor).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!((bw, bh), ((w as usize).div_ceil(f), (h as usize).div_ceil(f)), "{name}");
        assert_eq!(rgb.len(), 3 * bw * bh, "{name}");
        let (mw, mh, means) = rgb_cell_means(bytes, f);
        assert_eq!((mw, mh), (bw, bh), "{name}");
        let (mut sum, mut n) = (0f64, 0usize);
        for y in 0..bh - 1 {
            for x in 0..bw - 1 {
                for c in 0..3 {
                    sum += (rgb[3 * (y * bw + x) + c] as f32 - means[y * bw + x][c]).abs() as f64;
                    n += 1;
                }
            }
        }
        (sum / n as f64) as f32
    }

    /// The same for jpeg-decoder's own decode at that scale (what `tokenize` took its
    /// large JPEGs' samples from before `decode_rgb_reduced`).
    fn jd_difference(bytes: &[u8], factor: u32) -> f32 {
        let f = factor as u16;
        let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
        d.read_info().unwrap();
        let info = d.info().unwrap();
        let (sw, sh) = d.scale(info.width.div_ceil(f), info.height.div_ceil(f)).unwrap();
        let raw = d.decode().unwrap();
        let grey = raw.len() == sw as usize * sh as usize;
        let (bw, bh, means) = rgb_cell_means(bytes, factor as usize);
        assert_eq!((bw, bh), (sw as usize, sh as usize));
        let (mut sum, mut n) = (0f64, 0usize);
        for y in 0..bh - 1 {
            for x in 0..bw - 1 {
                for c in 0..3 {
                    let v = if grey { raw[y * bw + x] } else { raw[3 * (y * bw + x) + c] };
                    sum += (v as f32 - means[y * bw + x][c]).abs() as f64;
                    n += 1;
                }
            }
        }
        (sum / n as f64) as f32
    }

    /// [`colour_difference`] at 1/8 and 1/4 within `bound` levels, and no further from
    /// the full decode than jpeg-decoder's decode at that scale is (with 0.1 to spare).
    /// Measured at 1/8: 0.24-0.31 without subsampled chroma, 1.3-3.1 with it
    /// (jpeg-decoder: 0.43-0.93 and 1.4-3.3); at 1/4: 0.24-0.34 and 0.8-2.0
    /// (jpeg-decoder: 1.0-1.7 and 0.86-2.7); at 1/2: 0.23-0.38 and 0.48-1.1
    /// (jpeg-decoder: 1.2-1.5 and 0.46-1.8).
    fn assert_colour_close(name: &str, bytes: &[u8], bound: f32) {
        for factor in [8, 4, 2] {
            let (d, jd) = (colour_difference(name, bytes, factor), jd_difference(bytes, factor));
            assert!(d < bound && d <= jd + 0.1, "{name} at 1/{factor}: {d} levels from the full decode's cell colours (jpeg-decoder's: {jd})");
        }
    }

    #[test]
    fn colour_pictures_match_a_full_decodes_cell_colours() {
        for name in PROGRESSIVE_TWINS {
            let (b, p) = (fixture(&format!("{name}_baseline.jpg")), fixture(&format!("{name}_progressive.jpg")));
            // Twins: the same picture from the baseline file and the progressive one.
            for factor in [8, 4, 2] {
                let (rb, rp) = (decode_rgb_reduced(&b, factor).unwrap(), decode_rgb_reduced(&p, factor).unwrap());
                assert!(rb == rp, "{name}: the progressive twin's colour picture at 1/{factor} differs");
            }
            let subsampled = !name.contains("444") && !name.contains("grey");
            assert_colour_close(name, &p, if subsampled { 4.0 } else { 0.5 });
        }
        // Grey in all three channels.
        for factor in [8, 4, 2] {
            let (rgb, ..) = decode_rgb_reduced(&fixture("camera_grey_baseline.jpg"), factor).unwrap();
            assert!(rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        }
        for name in ["hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"] {
            assert_colour_close(name, &std::fs::read(photos().join(name)).unwrap(), 4.0);
        }
    }

    /// The 1/8, 1/4 and 1/2 pictures against the cell means of a full decode, and the
    /// full-size picture against its pixels: whole cells agree to the IDCT's and the
    /// pixels' rounding (at 1/2 a cell averages only four rounded pixels: mean
    /// differences 0.10-0.13 on these files; at full size 0.011-0.016, no pixel off by
    /// more than one level; the last row and column
    /// also hold the encoder's padding; cells whose pixels overshoot 0 or 255 are
    /// clamped by a full decode).
    fn assert_matches_full_decode(name: &str, bytes: &[u8]) {
        for factor in [8u32, 4, 2, 1] {
            let (g, w, _) = decode_luma_reduced(bytes, factor).unwrap_or_else(|| panic!("{name}: not decoded"));
            let (bw, bh, want) = cell_means(bytes, factor as usize);
            assert_eq!((g.w, g.h), (bw, bh), "{name}");
            assert_eq!((w as usize).div_ceil(factor as usize), bw, "{name}");
            let (mut sum, mut n, mut far) = (0f32, 0usize, 0usize);
            for y in 0..bh - 1 {
                for x in 0..bw - 1 {
                    let d = (g.px[y * bw + x] - want[y * bw + x]).abs();
                    sum += d;
                    n += 1;
                    far += (d > 1.0) as usize;
                }
            }
            let mean = sum / n as f32;
            assert!(mean < 0.15, "{name} at 1/{factor}: mean |reduced - cell mean| {mean}");
            assert!(far * 100 <= n, "{name} at 1/{factor}: {far} of {n} cells off by more than a grey level");
        }
    }

    fn rgb_of(name: &str) -> (Vec<u8>, u16, u16) {
        let img = image::open(photos().join(name)).unwrap().to_rgb8();
        let (w, h) = (img.width() as u16, img.height() as u16);
        (img.into_raw(), w, h)
    }

    fn encode(rgb: &[u8], w: u16, h: u16, set: impl FnOnce(&mut jpeg_encoder::Encoder<&mut Vec<u8>>), colour: jpeg_encoder::ColorType) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = jpeg_encoder::Encoder::new(&mut out, 85);
        set(&mut e);
        e.encode(rgb, w, h, colour).unwrap();
        out
    }

    /// Test files of the progressive decode, each with its baseline twin: crops of the
    /// sample photos saved by Pillow 13 (libjpeg-turbo) at the same quality and chroma
    /// subsampling, once baseline and once with `progressive=True` (libjpeg's standard
    /// script: spectral selection and successive approximation, DC interleaved, luma
    /// first pass in two bands, then refinement scans), one of them with
    /// `restart_marker_blocks=5`. Same encoder, same settings: the same quantised
    /// coefficients, so the pictures must be identical. Written by
    /// tests/fixtures/progressive/make_fixtures.py (261 KB in all). `camera_greyrgb_420`
    /// is a grey picture saved in three components.
    const PROGRESSIVE_TWINS: [&str; 6] = ["chelsea_420", "coffee_422", "astronaut_444", "camera_grey", "camera_greyrgb_420", "rocket_420_rst5"];

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/progressive").join(name)).unwrap()
    }

    fn assert_same_picture(name: &str, a: &[u8], b: &[u8], factor: u32) {
        let (ga, wa, ha) = decode_luma_reduced(a, factor).unwrap_or_else(|| panic!("{name} at 1/{factor}: first not decoded"));
        let (gb, wb, hb) = decode_luma_reduced(b, factor).unwrap_or_else(|| panic!("{name} at 1/{factor}: second not decoded"));
        assert_eq!((ga.w, ga.h, wa, ha), (gb.w, gb.h, wb, hb), "{name} at 1/{factor}");
        let differ = ga.px.iter().zip(&gb.px).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(differ, 0, "{name} at 1/{factor}: {differ} of {} pixels differ", ga.px.len());
    }

    #[test]
    fn tables_kept_between_files_decode_as_fresh_ones() {
        use jpeg_encoder::ColorType;
        // Files with the standard tables interleaved with files whose tables are
        // optimised per picture (more distinct tables than the cache keeps, so entries
        // are evicted and rebuilt). Each file, decoded on this thread after the others,
        // must give the picture a thread that never saw another file gives: the same
        // bits, with or without multi-code lookups.
        let mut files = vec![];
        for (i, name) in ["chelsea.png", "coffee.png", "astronaut.png", "camera.png", "rocket.jpg"].into_iter().enumerate() {
            let (rgb, w, h) = rgb_of(name);
            let (w2, h2) = (w.min(400), h.min(300));
            let crop: Vec<u8> = (0..h2 as usize).flat_map(|y| rgb[y * w as usize * 3..(y * w as usize + w2 as usize) * 3].to_vec()).collect();
            files.push(encode(&crop, w2, h2, |_| {}, ColorType::Rgb));
            if i % 2 == 0 {
                files.push(encode(&crop, w2, h2, |e| e.set_progressive(true), ColorType::Rgb));
            }
        }
        // libjpeg's progressive files carry tables optimised per scan: dozens of
        // distinct ones. (jpeg-encoder's optimised baseline files put each component
        // in its own scan, which this decoder leaves to the full one.)
        for name in PROGRESSIVE_TWINS {
            files.push(fixture(&format!("{name}_baseline.jpg")));
            files.push(fixture(&format!("{name}_progressive.jpg")));
        }
        let fresh = |b: &[u8], f: u32| {
            let b = b.to_vec();
            std::thread::spawn(move || decode_luma_reduced(&b, f).map(|(g, w, h)| (g.px.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), w, h))).join().unwrap()
        };
        let want: Vec<_> = files.iter().map(|b| [fresh(b, 8), fresh(b, 4), fresh(b, 2)]).collect();
        for round in 0..3 {
            for (i, b) in files.iter().enumerate() {
                for (j, f) in [8, 4, 2].into_iter().enumerate() {
                    let got = decode_luma_reduced(b, f).map(|(g, w, h)| (g.px.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), w, h));
                    assert!(got.is_some(), "file {i} at 1/{f} not decoded");
                    assert!(got == want[i][j], "file {i} at 1/{f}, round {round}: not the fresh thread's picture");
                }
            }
        }
        TABLES.with(|c| {
            let c = c.borrow();
            assert!(c.entries.len() <= CACHED_TABLES);
            // The standard tables, met in every other file, were kept and given multi-code lookups.
            assert!(c.entries.iter().filter(|e| e.ac && !e.table.multi.is_empty()).count() >= 2, "no kept AC table has multi-code lookups");
        });
    }

    #[test]
    fn progressive_files_give_their_baseline_twins_pictures() {
        for name in PROGRESSIVE_TWINS {
            let (b, p) = (fixture(&format!("{name}_baseline.jpg")), fixture(&format!("{name}_progressive.jpg")));
            assert!(is_progressive(&p) && !is_progressive(&b), "{name}");
            assert_eq!(name.contains("rst"), p.windows(2).any(|m| m == [0xFF, 0xDD]), "{name}");
            for factor in [8, 4, 2] {
                assert_same_picture(name, &b, &p, factor);
            }
            // And against a full decode of the progressive file itself.
            assert_matches_full_decode(name, &p);
        }
    }

    #[test]
    fn progressive_non_interleaved_dc_scans_and_restart_intervals() {
        use jpeg_encoder::{ColorType, SamplingFactor as S};
        // jpeg-encoder's progressive script (spectral selection only) sends each
        // component's DC in a scan of its own: luma's covers ceil(w/8) × ceil(h/8)
        // blocks, not the MCU grid. Odd sizes (61 × 63 blocks), so the edge blocks are
        // partial and, subsampled, the MCU grid has a column and a row more than the
        // scan.
        let (rgb, w, h) = rgb_of("astronaut.png");
        let (w2, h2) = (w - 27, h - 13);
        let crop: Vec<u8> = (0..h2 as usize).flat_map(|y| rgb[y * 3 * w as usize..(y * w as usize + w2 as usize) * 3].to_vec()).collect();
        let grey: Vec<u8> = crate::grey601(&crop, 3);
        let layouts = [(&crop, ColorType::Rgb, S::F_1_1), (&crop, ColorType::Rgb, S::F_2_2), (&crop, ColorType::Rgb, S::F_2_1), (&grey, ColorType::Luma, S::F_1_1)];
        for restart in [0u16, 1, 7] {
            for (pixels, colour, sampling) in layouts {
                let twin = |progressive: bool| {
                    encode(
                        pixels,
                        w2,
                        h2,
                        |e| {
                            e.set_sampling_factor(sampling);
                            e.set_progressive(progressive);
                            if restart > 0 {
                                e.set_restart_interval(restart);
                            }
                        },
                        colour,
                    )
                };
                let (b, p) = (twin(false), twin(true));
                assert!(p.windows(2).any(|m| m == [0xFF, 0xC2]));
                let name = format!("{colour:?} {sampling:?} restart {restart}");
                for factor in [8, 4, 2] {
                    assert_same_picture(&name, &b, &p, factor);
                }
                // The colour DC picture reads each chroma component's own DC scan.
                for factor in [8, 4, 2] {
                    assert!(decode_rgb_reduced(&b, factor).unwrap() == decode_rgb_reduced(&p, factor).unwrap(), "{name}: colour at 1/{factor}");
                }
                assert_colour_close(&name, &p, 4.0);
                assert_matches_full_decode(&name, &p);
            }
        }
    }

    /// The chroma spread the luma read passes on (`decode_luma_seen`): far from neutral
    /// for colour photos at every scale, baseline or progressive; exactly 0 for a grey
    /// frame and for a grey picture saved in three components; `None` where a
    /// progressive file's chroma DC comes in scans of its own, which are skipped.
    #[test]
    fn chroma_spread_tells_grey_pictures_from_colour_ones() {
        use jpeg_encoder::ColorType;
        let spread = |b: &[u8], f: u32| decode_luma_seen(b, f, true).unwrap().3.spread;
        for name in PROGRESSIVE_TWINS {
            for kind in ["baseline", "progressive"] {
                let b = fixture(&format!("{name}_{kind}.jpg"));
                for f in [8, 4, 2, 1] {
                    let s = spread(&b, f);
                    if name.starts_with("camera_grey") {
                        assert_eq!(s, Some(0.0), "{name} {kind} at 1/{f}");
                    } else {
                        assert!(s.is_some_and(|s| s > 10.0), "{name} {kind} at 1/{f}: {s:?}");
                    }
                }
            }
        }
        // jpeg-encoder: its baseline scans interleave every component; its progressive
        // ones send each component's DC alone. A grey picture with a red square of
        // 24 px (less than two 4:2:0 chroma blocks) in its lower right corner is colour.
        let (rgb, w, h) = rgb_of("camera.png");
        let grey: Vec<u8> = crate::grey601(&rgb, 3).into_iter().flat_map(|v| [v, v, v]).collect();
        let mut marked = grey.clone();
        for y in h as usize - 30..h as usize - 6 {
            for x in w as usize - 30..w as usize - 6 {
                marked[3 * (y * w as usize + x)..][..3].copy_from_slice(&[200, 30, 30]);
            }
        }
        let (photo, pw, ph) = rgb_of("chelsea.png");
        for (pixels, w, h, colour) in [(&grey, w, h, false), (&marked, w, h, true), (&photo, pw, ph, true)] {
            let b = encode(pixels, w, h, |_| {}, ColorType::Rgb);
            let p = encode(pixels, w, h, |e| e.set_progressive(true), ColorType::Rgb);
            for f in [8, 4, 1] {
                let s = spread(&b, f).unwrap();
                assert_eq!(s > 10.0, colour, "colour {colour} at 1/{f}: {s}");
                assert_eq!(spread(&p, f), None, "own chroma DC scans at 1/{f}");
            }
        }
    }

    /// The colour variety the luma read passes on (`ChromaSeen::variety`): the same at
    /// every scale (it comes from the DC values, which every scale reads), near the
    /// same from a baseline file and its progressive twin (whose interleaved first DC
    /// scan gives DC to 2 steps), 0 for grey pictures; a sepia copy of a colour photo
    /// has a small fraction of the photo's. `None` where a progressive file's DC scans
    /// hold one component each.
    #[test]
    fn variety_tells_tinted_pictures_from_colour_ones() {
        use jpeg_encoder::ColorType;
        let variety = |b: &[u8], f: u32| decode_luma_seen(b, f, true).unwrap().3.variety;
        for name in PROGRESSIVE_TWINS {
            let b = fixture(&format!("{name}_baseline.jpg"));
            let p = fixture(&format!("{name}_progressive.jpg"));
            let (vb, vp) = (variety(&b, 8).unwrap(), variety(&p, 8).unwrap());
            for f in [4, 2, 1] {
                assert_eq!((variety(&b, f), variety(&p, f)), (Some(vb), Some(vp)), "{name} at 1/{f}");
            }
            if name.starts_with("camera_grey") {
                assert_eq!((vb, vp), (0.0, 0.0), "{name}");
            } else {
                // DC to 2 steps adds its rounding to the spread.
                assert!(vb > 0.3 && (vb - vp).abs() <= 0.1 * vb + 0.05, "{name}: baseline {vb}, progressive {vp}");
            }
        }
        // (Not rocket.jpg, a photo of nearly one hue: 0.78 levels, its sepia at q85 0.29.)
        for name in ["chelsea.png", "astronaut.png", "coffee.png"] {
            let (rgb, w, h) = rgb_of(name);
            let sepia = crate::tones::sepia(&rgb);
            let (vc, vs) = (variety(&encode(&rgb, w, h, |_| {}, ColorType::Rgb), 8).unwrap(), variety(&encode(&sepia, w, h, |_| {}, ColorType::Rgb), 8).unwrap());
            assert!(vs < 1.5 && vs < 0.3 * vc, "{name}: colour {vc}, sepia {vs}");
            assert_eq!(variety(&encode(&rgb, w, h, |e| e.set_progressive(true), ColorType::Rgb), 8), None, "{name}: own chroma DC scans");
        }
    }

    #[test]
    fn progressive_restart_out_of_order_and_missing_dc_refinement() {
        // A restart marker renumbered in the first (DC) scan, which both scales decode.
        let p = fixture("rocket_420_rst5_progressive.jpg");
        let sos = p.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
        let rst = sos + p[sos..].windows(2).position(|m| m == [0xFF, 0xD1]).unwrap();
        assert!(rst < next_marker(&p, sos + 2 + u16::from_be_bytes([p[sos + 2], p[sos + 3]]) as usize).unwrap());
        let mut bad = p.clone();
        bad[rst + 1] = 0xD4;
        assert!(decode_luma_dc(&bad).is_none() && decode_luma_reduced(&bad, 4).is_none());
        // The DC refinement scan (Ah 1, Al 0) taken out: the picture is what the first
        // DC scan gives, each block's DC short of its lowest bit, so at most q0/8 grey
        // levels under the complete picture.
        let p = fixture("chelsea_420_progressive.jpg");
        let (full, _, _) = decode_luma_dc(&p).unwrap();
        let mut cut = None;
        let mut parser = Parser { b: &p, i: 2 };
        loop {
            let at = parser.i;
            let (m, seg) = parser.segment().unwrap();
            if m == 0xD9 {
                break;
            }
            if m == 0xDA {
                let ns = seg[0] as usize;
                parser.i = next_marker(&p, parser.i).unwrap();
                // Ss 0, Ah 1, Al 0.
                if seg[1 + 2 * ns] == 0 && seg[3 + 2 * ns] == 0x10 {
                    cut = Some((at, parser.i));
                }
            }
        }
        let (from, to) = cut.expect("a DC refinement scan");
        let short: Vec<u8> = [&p[..from], &p[to..]].concat();
        let (g, _, _) = decode_luma_dc(&short).expect("decoded without its DC refinement");
        let dqt = p.windows(2).position(|m| m == [0xFF, 0xDB]).unwrap();
        assert_eq!(p[dqt + 4], 0, "luma's table first");
        let q0 = p[dqt + 5] as f32;
        let d: Vec<f32> = full.px.iter().zip(&g.px).map(|(a, b)| a - b).collect();
        assert!(d.iter().all(|&x| (-1e-3..=q0 / 8.0 + 1e-3).contains(&x)), "q0 {q0}");
        assert!(d.iter().filter(|&&x| x > 0.0).count() * 4 > d.len(), "about half the blocks have their lowest DC bit set");
    }

    #[test]
    fn real_jpegs_match_the_block_means_of_a_full_decode() {
        // Three encoders' files as published (Photoshop, libjpeg with and without JFIF).
        for name in ["hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"] {
            assert_matches_full_decode(name, &std::fs::read(photos().join(name)).unwrap());
        }
    }

    #[test]
    fn every_sampling_layout_restart_intervals_and_grey() {
        use jpeg_encoder::{ColorType, SamplingFactor as S};
        // Odd sizes, so MCUs are padded on both axes.
        let (rgb, w, h) = rgb_of("astronaut.png");
        let (w2, h2) = (w - 27, h - 13);
        let crop: Vec<u8> = (0..h2 as usize).flat_map(|y| rgb[y * 3 * w as usize..(y * w as usize + w2 as usize) * 3].to_vec()).collect();
        for s in [S::F_1_1, S::F_2_1, S::F_1_2, S::F_2_2, S::F_4_1, S::F_4_2, S::F_1_4, S::F_2_4] {
            for restart in [0u16, 1, 7] {
                let j = encode(
                    &crop,
                    w2,
                    h2,
                    |e| {
                        e.set_sampling_factor(s);
                        if restart > 0 {
                            e.set_restart_interval(restart);
                        }
                    },
                    ColorType::Rgb,
                );
                assert_eq!(restart > 0, j.windows(2).any(|m| m == [0xFF, 0xDD]));
                // The encoder writes 4×1 and larger luma layouts as one scan per
                // component, which is left to the full decoders.
                if j.windows(2).filter(|m| *m == [0xFF, 0xDA]).count() > 1 {
                    assert!(matches!(s, S::F_4_1 | S::F_4_2 | S::F_1_4 | S::F_2_4), "{s:?}");
                    assert!(decode_luma_dc(&j).is_none(), "{s:?}");
                    continue;
                }
                assert_matches_full_decode(&format!("{s:?} restart {restart}"), &j);
                assert_colour_close(&format!("{s:?} restart {restart}"), &j, 4.0);
            }
        }
        let grey: Vec<u8> = crate::grey601(&crop, 3);
        for restart in [0u16, 5] {
            let j = encode(
                &grey,
                w2,
                h2,
                |e| {
                    if restart > 0 {
                        e.set_restart_interval(restart)
                    }
                },
                ColorType::Luma,
            );
            assert_matches_full_decode(&format!("grey restart {restart}"), &j);
        }
    }

    #[test]
    fn what_it_does_not_handle_or_finds_damaged_falls_back() {
        let (rgb, w, h) = rgb_of("coffee.png");
        let j = encode(&rgb, w, h, |e| e.set_restart_interval(4), jpeg_encoder::ColorType::Rgb);
        assert!(decode_luma_dc(&j).is_some());
        // Progressive, but arithmetic-coded (SOF10) or 12-bit: the same file with its
        // frame header saying so (no encoder at hand writes either).
        let p = fixture("chelsea_420_progressive.jpg");
        assert!(decode_luma_dc(&p).is_some());
        let sof = p.windows(2).position(|m| m == [0xFF, 0xC2]).unwrap();
        let mut arith = p.clone();
        arith[sof + 1] = 0xCA;
        let mut twelve = p.clone();
        twelve[sof + 4] = 12;
        for bad in [&arith, &twelve] {
            assert!(decode_luma_dc(bad).is_none() && decode_luma_reduced(bad, 4).is_none());
        }
        // Cut inside the entropy-coded data: the blocks run out.
        assert!(decode_luma_dc(&j[..j.len() * 2 / 3]).is_none());
        // A restart marker renumbered: the interval's data is out of order.
        let mut bad = j.clone();
        let sos = bad.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
        let rst = sos + bad[sos..].windows(2).position(|m| m[0] == 0xFF && m[1] == 0xD0).unwrap();
        bad[rst + 1] = 0xD3;
        assert!(decode_luma_dc(&bad).is_none());
        // Not a JPEG at all, or only its header.
        assert!(decode_luma_dc(b"\x89PNG\r\n\x1a\n").is_none());
        assert!(decode_luma_dc(&j[..sos]).is_none());
    }

    /// Each scan of a JPEG: where its data starts and ends (the next marker other than
    /// RST), its first component's id and its spectral start.
    fn scans(j: &[u8]) -> Vec<(usize, usize, u8, u8)> {
        let mut out = vec![];
        let mut p = Parser::after_soi(j);
        while let Some((m, seg)) = p.segment() {
            if m == 0xDA {
                let start = p.offset();
                let end = next_marker(j, start).unwrap();
                out.push((start, end, seg[1], seg[1 + 2 * seg[0] as usize]));
                p = Parser { b: j, i: end };
            }
        }
        out
    }

    fn overwrite(j: &[u8], at: usize, n: usize) -> Vec<u8> {
        let mut bad = j.to_vec();
        // No 0xFF among them (no marker or stuffing is made): damage the markers survive.
        bad[at..at + n].iter_mut().enumerate().for_each(|(k, b)| *b = (k as u8).wrapping_mul(37).wrapping_add(11) % 0xFF);
        bad
    }

    /// Below 2× the work size the filter's decode (`decode_jpeg_gray_fast` with the
    /// check) is jpeg_dc's full-size read: a small progressive file damaged in a luma AC
    /// scan, which a 1/8 read passes over, is found; undamaged, its picture is
    /// zune-jpeg's to rounding; without the check, zune-jpeg decodes it as before and
    /// reads through the damage.
    #[test]
    fn small_progressive_files_are_checked_in_their_ac_scans() {
        for name in ["chelsea_420", "coffee_422", "rocket_420_rst5"] {
            let p = fixture(&format!("{name}_progressive.jpg"));
            let (w, h) = crate::jpeg_size(&p).unwrap();
            assert!(w.max(h) < 2 * 256, "{name}: {w}x{h} is not below 2x the work size");
            let (got, ..) = crate::decode_jpeg_gray_fast(&p, 256, true).unwrap().unwrap();
            let (want, ..) = crate::decode_jpeg_gray_fast(&p, 256, false).unwrap().unwrap();
            assert_eq!((got.w, got.h), (want.w, want.h), "{name}");
            let mean = got.px.iter().zip(&want.px).map(|(a, b)| (a - b).abs()).sum::<f32>() / got.px.len() as f32;
            assert!(mean < 0.05, "{name}: {mean} grey levels from zune-jpeg's picture on average");
            let luma = p[p.windows(2).position(|m| m == [0xFF, 0xC2]).unwrap() + 10];
            let &(s, e, ..) = scans(&p).iter().filter(|&&(_, _, id, ss)| id == luma && ss > 0).max_by_key(|&&(s, e, ..)| e - s).unwrap();
            let bad = overwrite(&p, (s + e) / 2, 16);
            assert_eq!(damage(&bad), None, "{name}: the 1/8 read reads no AC scan");
            match crate::decode_jpeg_gray_fast(&bad, 256, true).unwrap() {
                Err(crate::DecodeError::Damaged(d)) => assert!(d.contains("progressive AC scan"), "{name}: {d}"),
                other => panic!("{name}: not found damaged: {:?}", other.map(|(g, ..)| (g.w, g.h))),
            }
            assert!(crate::decode_jpeg_gray_fast(&bad, 256, false).unwrap().is_ok(), "{name}: zune-jpeg reads through");
        }
    }

    /// Damage is told apart from what the decoder does not handle, and said with where
    /// it is; undamaged files (the sample photos, the progressive fixtures, encoder
    /// files with restart intervals) have none.
    #[test]
    fn damage_is_found_and_told_apart_from_unhandled_files() {
        let (rgb, w, h) = rgb_of("coffee.png");
        let rst = encode(&rgb, w, h, |e| e.set_restart_interval(4), jpeg_encoder::ColorType::Rgb);
        let mut whole = vec![rst.clone()];
        for e in std::fs::read_dir(photos()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "jpg") {
                whole.push(std::fs::read(&p).unwrap());
            }
        }
        for name in PROGRESSIVE_TWINS {
            whole.push(fixture(&format!("{name}_baseline.jpg")));
            whole.push(fixture(&format!("{name}_progressive.jpg")));
        }
        for (k, j) in whole.iter().enumerate() {
            for factor in [8, 4, 2] {
                assert!(decode_luma_checked(j, factor).is_ok(), "file {k} at 1/{factor}");
            }
            assert_eq!(damage(j), None);
        }
        let damaged = |j: &[u8], factor: u32| match decode_luma_checked(j, factor) {
            Err(Unread::Damaged(d)) => d,
            other => panic!("not found damaged at 1/{factor}: {:?}", other.map(|(_, w, h)| (w, h))),
        };
        // Overwritten in the middle of a baseline scan: a code goes wrong in some MCU.
        let (start, end, ..) = scans(&rst)[0];
        let d = damaged(&overwrite(&rst, (start + end) / 2, 64), 8);
        assert!(d.starts_with("MCU ") && d.contains(" of 950: "), "{d}");
        // Whole bytes before a restart marker or the end marker: what no code shows.
        let rst3 = start + rst[start..].windows(2).position(|m| m == [0xFF, 0xD3]).unwrap();
        let mut before_rst = rst.clone();
        before_rst.splice(rst3..rst3, [0x55, 0x55]);
        assert!(damaged(&before_rst, 4).ends_with(": bad restart marker"));
        let mut before_eoi = rst.clone();
        before_eoi.splice(end..end, [0x55; 5]);
        assert_eq!(damaged(&before_eoi, 8), "5 extraneous bytes after the last MCU (950)");
        assert_eq!(damage(&before_eoi).as_deref(), Some("5 extraneous bytes after the last MCU (950)"));
        // Progressive: the first (DC) scan is read at every scale, luma's AC scans at 1/4 and 1/2.
        let p = fixture("chelsea_420_progressive.jpg");
        let all = scans(&p);
        let (s0, e0, ..) = all[0];
        for factor in [8, 4, 2] {
            let d = damaged(&overwrite(&p, (s0 + e0) / 2, 16), factor);
            assert!(d.contains("progressive DC scan"), "{d}");
        }
        let luma = p[p.windows(2).position(|m| m == [0xFF, 0xC2]).unwrap() + 10];
        let &(s1, e1, ..) = all.iter().find(|&&(_, _, id, ss)| id == luma && ss > 0).unwrap();
        for factor in [4, 2] {
            let d = damaged(&overwrite(&p, (s1 + e1) / 2, 16), factor);
            assert!(d.contains("progressive AC scan"), "{d}");
        }
        // Not handled (arithmetic coding) is not damage: other decoders decide.
        let mut arith = p.clone();
        arith[p.windows(2).position(|m| m == [0xFF, 0xC2]).unwrap() + 1] = 0xCA;
        assert_eq!(decode_luma_checked(&arith, 8).map(|_| ()), Err(Unread::Unhandled));
        assert_eq!(damage(&arith), None);
    }

    /// The first AC table of a JPEG (its DHT segment as the encoder wrote it).
    fn first_ac_table(j: &[u8]) -> Huffman {
        let mut p = Parser::after_soi(j);
        let mut found = None;
        while let Some((m, seg)) = p.segment() {
            if m == 0xC4 {
                dht_tables(seg, |class, _, t| {
                    if class == 1 && found.is_none() {
                        found = Some((*t).clone());
                    }
                    Some(())
                })
                .unwrap();
            }
            if let Some(t) = found {
                return t;
            }
        }
        panic!("no AC table");
    }

    #[test]
    fn multi_code_lookups_count_blocks_as_the_one_code_path_does() {
        // Real data (a photo's entropy-coded bytes, read from arbitrary offsets, so
        // blocks start mid-stream as after any earlier block) and random bytes (codes
        // that do not exist, runs past the end of a block): both paths must end every
        // block at the same coefficient and bit, or both fail.
        let (rgb, w, h) = rgb_of("chelsea.png");
        let j = encode(&rgb, w, h, |_| {}, jpeg_encoder::ColorType::Rgb);
        let mut with = first_ac_table(&j);
        with.multi = multi_skips(&with.skip);
        let mut without = first_ac_table(&j);
        without.multi.clear();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut random = vec![0u8; 1 << 16];
        for b in random.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        let (mut blocks, mut multi_steps) = (0, 0);
        for data in [&j[j.len() / 3..], &random[..]] {
            for start in (0..data.len() / 2).step_by(97) {
                let mut a = Bits { d: &data[start..], i: 0, acc: 0, n: 0, pad: 0, marker: None };
                let mut b = a;
                let (mut zz, mut nz) = ([0i32; 64], 0u64);
                for _ in 0..8 {
                    let ka = ac::<false>(&mut a, &with, &mut zz, &mut nz);
                    let kb = ac::<false>(&mut b, &without, &mut zz, &mut nz);
                    assert_eq!(ka, kb, "offset {start}");
                    if ka.is_none() {
                        break;
                    }
                    // The same bit next (the two may have refilled at other times, so
                    // one may have looked further ahead, up to a marker; past it zero
                    // bits are fed and counted in `pad`).
                    let n = a.n.min(b.n);
                    let at = |x: &Bits| x.i * 8 + x.pad as usize - x.n as usize;
                    assert_eq!((at(&a), a.acc >> (64 - n), a.overran()), (at(&b), b.acc >> (64 - n), b.overran()), "offset {start}");
                    blocks += 1;
                }
            }
        }
        for (i, &m) in with.multi.iter().enumerate() {
            let e = with.skip[i >> (MULTI - FAST)];
            multi_steps += (m != 0 && (m & 15) as u16 > (e & 31)) as usize;
        }
        assert!(blocks > 2000 && multi_steps > 1000, "{blocks} blocks compared, {multi_steps} lookaheads hold several codes");
    }

    #[test]
    fn large_baseline_pictures_take_multi_code_lookups_and_match_a_full_decode() {
        use jpeg_encoder::{ColorType, SamplingFactor as S};
        // Over MULTI_MIN_BLOCKS counted blocks at both scales (2,043 x 1,365: 22,016
        // chroma blocks at 4:2:0), odd sizes, with and without restarts.
        let img = image::open(photos().join("chelsea.png")).unwrap().to_rgb8();
        let big = image::imageops::resize(&img, 2043, 1365, image::imageops::FilterType::Triangle);
        let (w, h) = (big.width() as u16, big.height() as u16);
        for s in [S::F_2_2, S::F_1_1] {
            for restart in [0u16, 7] {
                let j = encode(
                    big.as_raw(),
                    w,
                    h,
                    |e| {
                        e.set_sampling_factor(s);
                        if restart > 0 {
                            e.set_restart_interval(restart);
                        }
                    },
                    ColorType::Rgb,
                );
                let chroma_blocks = if s == S::F_2_2 { 2 * (w as usize).div_ceil(16) * (h as usize).div_ceil(16) } else { 2 * (w as usize).div_ceil(8) * (h as usize).div_ceil(8) };
                assert!(chroma_blocks >= MULTI_MIN_BLOCKS, "{s:?}: the 1/4 picture takes the multi-code path too");
                assert_matches_full_decode(&format!("2043x1365 {s:?} restart {restart}"), &j);
            }
        }
    }

    #[test]
    fn large_jpegs_give_the_full_decodes_work_picture_and_signals() {
        use crate::quality::{signals, SIDE};
        // A 2120×1536 picture of real photos at their own resolution (a 4×3 grid of 512 px
        // tiles, edges repeated to 530), so its sharpness is a photo's, not an upscale's.
        let names = ["astronaut.png", "brick.png", "camera.png", "coffee.png", "grass.png", "gravel.png", "chelsea.png", "moon.png", "page.png", "coins.png", "horse.png", "text.png"];
        let (tw, th) = (530usize, 512usize);
        let mut rgb = vec![0u8; 4 * tw * 3 * th * 3];
        for (k, name) in names.iter().enumerate() {
            let img = image::open(photos().join(name)).unwrap().to_rgb8();
            let (ox, oy) = ((k % 4) * tw, (k / 4) * th);
            for y in 0..th {
                for x in 0..tw {
                    let p = img.get_pixel((x as u32).min(img.width() - 1), (y as u32).min(img.height() - 1));
                    let o = ((oy + y) * 4 * tw + ox + x) * 3;
                    rgb[o..o + 3].copy_from_slice(&p.0);
                }
            }
        }
        let (w, h) = (4 * tw, 3 * th);
        // 2120 px: the DC picture (265 px) is cut into cells of one and two DC pixels, as
        // the full picture is into cells of 8 and 9 pixels, so the pictures differ (by
        // about 5 grey levels on these textures) but the signals agree; 2048 px: the
        // cells are the blocks themselves; 2083 px: not a whole number of blocks.
        for (cut, pixels_agree) in [(0usize, false), (72, true), (37, false), (1020, false)] {
            // The last: 1100×516, the 1/4-scale path at 256 px and at dedup's 192.
            let (cw, ch) = (w - cut, h - cut);
            let crop: Vec<u8> = (0..ch).flat_map(|y| rgb[y * 3 * w..(y * w + cw) * 3].to_vec()).collect();
            let j = encode(&crop, cw as u16, ch as u16, |e| e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2), jpeg_encoder::ColorType::Rgb);
            let factor = if cw.max(ch) >= 8 * SIDE { 8 } else { 4 };
            assert!(cw.max(ch) >= 4 * SIDE && decode_luma_reduced(&j, factor).is_some(), "the reduced path is taken");
            let (a, aw, ah) = crate::decode_jpeg_gray_fast(&j, SIDE, true).unwrap().unwrap();
            assert_eq!((aw, ah), (cw as u32, ch as u32));
            // The full decode's Y, box-shrunk.
            use zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
            let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&j), DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma));
            let y = d.decode().unwrap();
            let b = crate::shrink_u8(&y, cw, ch, SIDE);
            assert_eq!((a.w, a.h), (b.w, b.h), "cut {cut}");
            let mean = a.px.iter().zip(&b.px).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.px.len() as f32;
            if pixels_agree {
                assert!(mean < 0.2, "cut {cut}: work pictures differ by {mean} on average");
            }
            let (sa, sb) = (signals(&a), signals(&b));
            assert!((sa.sharpness / sb.sharpness - 1.0).abs() < 0.08 && (sa.entropy - sb.entropy).abs() < 0.1 && (sa.border - sb.border).abs() < 0.01, "cut {cut}: {sa:?} vs {sb:?}");
            // Dedup's path (Luma grey at its 192 px work size) takes the DC picture too.
            let (g, _, _, scale) = crate::decode_gray_as(&j, 192, crate::JpegGrey::Luma).unwrap();
            assert_eq!((g.w.max(g.h), scale), (192, if cw >= 8 * 192 { 8 } else { 4 }));
            // Saved progressive, the picture takes the same reduced path in both callers
            // to the same work picture as its baseline twin (4:4:4, the layout
            // jpeg-encoder's progressive scans are written for).
            let twin = |progressive: bool| {
                encode(
                    &crop,
                    cw as u16,
                    ch as u16,
                    |e| {
                        e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
                        e.set_progressive(progressive);
                    },
                    jpeg_encoder::ColorType::Rgb,
                )
            };
            let (b, p) = (twin(false), twin(true));
            assert!(decode_luma_reduced(&p, factor).is_some(), "cut {cut}: the reduced path is taken");
            let (gb, _, _, sb) = crate::decode_gray_as(&b, 192, crate::JpegGrey::Luma).unwrap();
            let (gp, _, _, sp) = crate::decode_gray_as(&p, 192, crate::JpegGrey::Luma).unwrap();
            assert_eq!((sp, gp.w, gp.h), (sb, gb.w, gb.h), "cut {cut}");
            assert!(gp.px == gb.px, "cut {cut}: progressive work picture differs at 192");
            let (fb, ..) = crate::decode_jpeg_gray_fast(&b, SIDE, true).unwrap().unwrap();
            let (fp, ..) = crate::decode_jpeg_gray_fast(&p, SIDE, true).unwrap().unwrap();
            assert!(fp.px == fb.px, "cut {cut}: progressive work picture differs at {SIDE}");
        }
    }

    #[test]
    fn damaged_files_never_panic() {
        // Every real JPEG and an encoder's file with restart markers, with bytes flipped
        // anywhere (headers, tables, entropy-coded data) or cut short: the answer may be
        // a picture or None, but never a panic or an out-of-bounds read.
        let (rgb, w, h) = rgb_of("camera.png");
        let mut files = vec![encode(&rgb, w, h, |e| e.set_restart_interval(3), jpeg_encoder::ColorType::Rgb)];
        for name in ["hubble_deep_field.jpg", "retina.jpg", "rocket.jpg"] {
            files.push(std::fs::read(photos().join(name)).unwrap());
        }
        // Progressive files: libjpeg's script (successive approximation, one with
        // restart markers) and jpeg-encoder's (a DC scan per component, restarts).
        for name in PROGRESSIVE_TWINS {
            files.push(fixture(&format!("{name}_progressive.jpg")));
        }
        files.push(encode(
            &rgb,
            w,
            h,
            |e| {
                e.set_progressive(true);
                e.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
                e.set_restart_interval(2);
            },
            jpeg_encoder::ColorType::Rgb,
        ));
        // A progressive file cut anywhere has no EOI, and its picture is not complete.
        for f in &files[4..] {
            for k in 1..40 {
                let cut = f.len() * k / 40;
                for factor in [8, 4, 2] {
                    assert!(decode_luma_reduced(&f[..cut], factor).is_none(), "cut at {cut} of {}", f.len());
                }
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut decoded = 0;
        for f in &files {
            let header = f.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
            for round in 0..60 {
                let mut bad = f.clone();
                // Half the rounds hit the headers, half anywhere.
                let span = if round % 2 == 0 { header + 16 } else { bad.len() };
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % span;
                    bad[i] ^= 1 << (next() % 8);
                }
                let cut = if round % 5 == 0 { (next() as usize) % bad.len() } else { bad.len() };
                for factor in [8, 4, 2] {
                    decoded += decode_luma_reduced(&bad[..cut], factor).is_some() as usize;
                }
            }
        }
        // Flips in entropy-coded data often still decode (JPEG has no checksum): the
        // test is that nothing panicked, and that it did decode some.
        assert!(decoded > 0);
    }
}
