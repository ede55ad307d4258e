//! How varied a picture's colours are at one brightness ([`Tones::variety`]): what
//! tells a sepia, duotone or otherwise tinted copy from the colour photo it was made
//! from. A tint maps each brightness to one colour, and its colours lie along one
//! line (or a bent one, where a channel clips) through the chroma plane; a colour
//! photo's sky, leaves and faces at one brightness lie in different directions from
//! neutral. So per brightness bin, of the blocks' chroma (Cb, Cr), the spread across
//! the bin's main axis: the square root of the smaller eigenvalue of their 2×2
//! covariance, pooled over the bins.
//!
//! Chosen over the plain chroma range per bin on 26 scikit-image photos and 26 camera
//! photos with sepia (Microsoft's matrix), warm-toned, blue-gold duotone, half- and
//! quarter-saturated copies (16×16 blocks): the range put a sepia copy at 2-21 levels
//! and a duotone at 8.5 (its colour moves along the bin's 16 levels), against colour
//! originals from 7 to 192, and for 8 of the photos the sepia copy's range was above
//! a quarter of the original's. Across the axis: colour photos 0.59-38, sepia
//! 0.01-1.5, toned 0-0.23, duotone 0.01-0.08, half saturation exactly half the original.

/// Brightness bins (of 32 grey levels each): narrow enough that a tint's colour
/// moves little along its line within one, wide enough for blocks to share one.
const BINS: usize = 8;

/// Blocks a bin needs before its spread counts: a covariance of a few blocks on an
/// edge between bins says little.
const MIN_BLOCKS: u32 = 8;

/// Per brightness bin, sums over a picture's blocks (a block: a JPEG MCU's DC means,
/// or 16×16 pixels of a decoded picture, [`RowTones`]) of chroma and its products.
#[derive(Debug, Clone, Default)]
pub struct Tones {
    n: [u32; BINS],
    /// Per bin: Σ Cb, Σ Cr, Σ Cb², Σ Cr², Σ Cb·Cr.
    sums: [[f64; 5]; BINS],
}

impl Tones {
    /// One block: its mean luma (0-255) and mean chroma (levels from neutral).
    #[inline]
    pub fn add(&mut self, luma: f32, cb: f32, cr: f32) {
        let b = ((luma.max(0.0) / 32.0) as usize).min(BINS - 1);
        let (cb, cr) = (cb as f64, cr as f64);
        self.n[b] += 1;
        let s = &mut self.sums[b];
        s[0] += cb;
        s[1] += cr;
        s[2] += cb * cb;
        s[3] += cr * cr;
        s[4] += cb * cr;
    }

    /// The blocks' chroma spread across each brightness bin's main chroma axis, in
    /// levels (root mean square over the blocks of the bins with at least
    /// [`MIN_BLOCKS`]): 0 for a grey picture and for one tinted by a formula of
    /// brightness, under about 1.5 for sepia copies, from about 0.6 (brown wood) to 40
    /// for colour photos. `None` when no bin has that many blocks.
    pub fn variety(&self) -> Option<f32> {
        let (mut sum, mut n) = (0f64, 0u32);
        for b in 0..BINS {
            let k = self.n[b];
            if k < MIN_BLOCKS {
                continue;
            }
            let s = self.sums[b];
            let m = k as f64;
            let (mb, mr) = (s[0] / m, s[1] / m);
            let (vb, vr, c) = (s[2] / m - mb * mb, s[3] / m - mr * mr, s[4] / m - mb * mr);
            // The smaller eigenvalue of [[vb, c], [c, vr]].
            let minor = (vb + vr) / 2.0 - (((vb - vr) / 2.0).powi(2) + c * c).sqrt();
            sum += minor.max(0.0) * m;
            n += k;
        }
        (n > 0).then(|| (sum / n as f64).sqrt() as f32)
    }
}

/// Block side, in pixels, for decoded pictures: a 4:2:0 JPEG's MCU.
const BLOCK: usize = 16;

/// Of each band of [`BLOCK`] rows, every `ROW_STEP`th is summed: a block's mean colour
/// from 4 of its 16 rows is as good for the variety, and the pass costs a quarter
/// (all rows: dedup's signing decode of scikit-image's photos, mostly PNG, took about
/// 10% longer).
const ROW_STEP: usize = 4;

/// [`Tones`] of a decoded 8-bit picture fed row by row: every [`ROW_STEP`]th row of
/// each band of [`BLOCK`] rows is summed per block, and each block's mean colour is
/// added when the band is full (a last partial band or column counts as a block too).
pub struct RowTones {
    w: usize,
    channels: usize,
    /// R, G, B sums per block of the current band (with alpha, as shown on white, in
    /// 255ths).
    acc: Vec<[u32; 3]>,
    /// Rows of the band seen, and summed.
    rows: usize,
    summed: usize,
    tones: Tones,
}

impl RowTones {
    /// For rows of `w` pixels, `channels` per pixel (3: RGB; 4: RGBA).
    pub fn new(w: usize, channels: usize) -> RowTones {
        RowTones { w, channels, acc: vec![[0; 3]; w.div_ceil(BLOCK)], rows: 0, summed: 0, tones: Tones::default() }
    }

    pub fn push(&mut self, row: &[u8]) {
        if self.rows % ROW_STEP == 0 {
            self.sum(row);
            self.summed += 1;
        }
        self.rows += 1;
        if self.rows == BLOCK {
            self.flush();
        }
    }

    fn sum(&mut self, row: &[u8]) {
        let c = self.channels;
        for (a, px) in self.acc.iter_mut().zip(row[..self.w * c].chunks(BLOCK * c)) {
            let mut s = [0u32; 3];
            if c == 4 {
                // Shown on white, in 255ths (divided out when the block is added).
                for p in px.chunks_exact(4) {
                    let (al, rest) = (p[3] as u32, 255 * (255 - p[3] as u32));
                    s[0] += p[0] as u32 * al + rest;
                    s[1] += p[1] as u32 * al + rest;
                    s[2] += p[2] as u32 * al + rest;
                }
            } else {
                for p in px.chunks_exact(3) {
                    s[0] += p[0] as u32;
                    s[1] += p[1] as u32;
                    s[2] += p[2] as u32;
                }
            }
            for k in 0..3 {
                a[k] += s[k];
            }
        }
    }

    fn flush(&mut self) {
        if self.summed == 0 {
            return;
        }
        let unit = if self.channels == 4 { 255 } else { 1 };
        for (i, a) in self.acc.iter_mut().enumerate() {
            let cols = (self.w - i * BLOCK).min(BLOCK);
            let n = (cols * self.summed * unit) as f32;
            let (r, g, b) = (a[0] as f32 / n, a[1] as f32 / n, a[2] as f32 / n);
            // JPEG's (BT.601 full-range) YCbCr, as the JPEG path's block means are.
            let y = 0.299 * r + 0.587 * g + 0.114 * b;
            self.tones.add(y, -0.168_736 * r - 0.331_264 * g + 0.5 * b, 0.5 * r - 0.418_688 * g - 0.081_312 * b);
            *a = [0; 3];
        }
        self.rows = 0;
        self.summed = 0;
    }

    /// [`Tones::variety`] of the rows pushed.
    pub fn variety(mut self) -> Option<f32> {
        self.flush();
        self.tones.variety()
    }
}

/// Microsoft's sepia matrix over interleaved 8-bit RGB: the tinted copy the tests
/// compare colour photos with.
#[cfg(test)]
pub(crate) fn sepia(rgb: &[u8]) -> Vec<u8> {
    const M: [[f32; 3]; 3] = [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]];
    rgb.chunks_exact(3).flat_map(|p| M.map(|m| (m[0] * p[0] as f32 + m[1] * p[1] as f32 + m[2] * p[2] as f32).round().clamp(0.0, 255.0) as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tint (every pixel's colour a function of its brightness) has next to no
    /// variety, a grey picture none at all; three colours at one brightness have much,
    /// two far less (they lie on one line).
    #[test]
    fn variety_is_chroma_spread_across_each_brightness_axis() {
        let (w, h) = (128usize, 128usize);
        let picture = |f: &dyn Fn(usize, usize) -> [u8; 3]| {
            let mut t = RowTones::new(w, 3);
            for y in 0..h {
                let row: Vec<u8> = (0..w).flat_map(|x| f(x, y)).collect();
                t.push(&row);
            }
            t.variety().unwrap()
        };
        let ramp = |x: usize, y: usize| ((x + y) * 255 / (w + h)) as u8;
        assert_eq!(picture(&|x, y| [ramp(x, y); 3]), 0.0);
        let sepia = picture(&|x, y| {
            let v = ramp(x, y) as f32;
            [(v * 1.07).min(255.0) as u8, (v * 0.74) as u8, (v * 0.43) as u8]
        });
        assert!(sepia < 0.5, "sepia {sepia}");
        // Thirds reddish, bluish and greenish over the same ramp of brightness: three
        // directions from neutral. (Two colours lie on one line through the chroma
        // plane, as a tint's do.)
        let three = picture(&|x, y| {
            let v = ramp(x, y).clamp(40, 200);
            match x * 3 / w {
                0 => [v + 40, v - 20, v - 20],
                1 => [v - 20, v - 10, v + 50],
                _ => [v - 20, v + 20, v - 20],
            }
        });
        assert!(three > 8.0, "three colours {three}");
        let two = picture(&|x, y| {
            let v = ramp(x, y).clamp(40, 200);
            if x < w / 2 { [v + 40, v - 20, v - 20] } else { [v - 20, v - 10, v + 50] }
        });
        assert!(two < 0.5 * three, "two colours {two}, three {three}");
        // Too small to have a bin of MIN_BLOCKS (8) blocks.
        let mut t = RowTones::new(16, 4);
        t.push(&[0; 64]);
        assert_eq!(t.variety(), None);
    }
}
