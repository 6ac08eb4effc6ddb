//! A conv's weight gradient as a product read in place: for one sample and
//! group, `dWᵀ[r, o] += Σ_p src[start(r) + at(p)] · dyᵀ[p, o]`, where row
//! `r` is an input channel and a tap (`start(r)` where the tap's reads
//! begin in the [`Grid`](super::direct::Grid) copy), `p` an output
//! position (at `at(p)`, its row times the copy's width plus its column),
//! and `dyᵀ` the output gradient transposed, a position's channels
//! consecutive.
//!
//! A register tile holds `NR` rows × `MV` vectors of output channels: each
//! position broadcasts one float of each row's reads and loads `MV` vectors
//! of `dyᵀ`, so no column matrix is built or packed, every load is whole
//! (a broadcast or an aligned vector) and the sums need no reduction across
//! lanes. The positions come in blocks whose `dyᵀ` stays in L1 while every
//! row's tiles read it.

use crate::kernels::simd::{Lanes, Level, Portable};

/// Bytes of `dyᵀ` a block of positions holds for one tile's channels (half
/// of a 48 KiB L1, the rows' reads the other half).
const BLOCK_BYTES: usize = 24 * 1024;

/// One sample's (and group's) operands of the product.
pub(super) struct Correlation<'a> {
    /// The zero-padded copy of the sample's input channels.
    pub source: &'a [f32],
    /// Floats between two channels of `source`.
    pub plane: usize,
    /// Where each tap's reads start in a channel of `source`.
    pub taps: &'a [usize],
    /// Input channels: the rows are `channels · taps.len()`.
    pub channels: usize,
    /// The copy's row width: output row `i` reads from `i · row_pitch`.
    pub row_pitch: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// `[out_h · out_w, pitch]`: the output gradient, transposed, zeros
    /// past the group's channels.
    pub dy_t: &'a [f32],
    /// Floats per position of `dy_t` and per row of the sums: the output
    /// channels rounded up to [`PITCH`].
    pub pitch: usize,
}

/// What `pitch` is a multiple of: a whole number of vectors at every width.
pub(super) const PITCH: usize = 16;

impl Correlation<'_> {
    fn rows(&self) -> usize {
        self.channels * self.taps.len()
    }

    fn start(&self, row: usize) -> usize {
        let taps = self.taps.len();
        (row / taps) * self.plane + self.taps[row % taps]
    }

    /// `dw_t[r · pitch + o] +=` the product, for every row `r` and channel
    /// `o < pitch` (`dw_t` is `rows · pitch` floats).
    pub fn accumulate(&self, dw_t: &mut [f32]) {
        let (rows, positions) = (self.rows(), self.out_h * self.out_w);
        assert_eq!(dw_t.len(), rows * self.pitch);
        assert_eq!(self.dy_t.len(), positions * self.pitch);
        assert_eq!(self.pitch % PITCH, 0);
        if rows == 0 || positions == 0 || self.pitch == 0 {
            return;
        }
        // The furthest read: the last row's, at the last position.
        let last = self.start(rows - 1) + (self.out_h - 1) * self.row_pitch + self.out_w;
        assert!(last <= self.source.len(), "a weight gradient read past its copy");
        #[cfg(target_arch = "x86_64")]
        match Level::detect() {
            // SAFETY: the CPU has each variant's features; the reads are in
            // bounds (checked above) and the tiles within `dw_t` and `dy_t`.
            Level::Avx512 => return unsafe { self.accumulate_avx512(dw_t) },
            Level::Avx2 => return unsafe { self.accumulate_avx2(dw_t) },
            Level::Base => {}
        }
        // SAFETY: as above; `Portable` needs no CPU feature.
        unsafe { self.tiles::<Portable, 4, 1>(dw_t) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn accumulate_avx512(&self, dw_t: &mut [f32]) {
        use std::arch::x86_64::__m512;
        match self.pitch / 16 {
            1 => self.tiles::<__m512, 8, 1>(dw_t),
            2 => self.tiles::<__m512, 8, 2>(dw_t),
            3 => self.tiles::<__m512, 8, 3>(dw_t),
            _ => self.tiles::<__m512, 6, 4>(dw_t),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn accumulate_avx2(&self, dw_t: &mut [f32]) {
        self.tiles::<std::arch::x86_64::__m256, 6, 2>(dw_t)
    }

    /// Every tile of `NR` rows × `MV` vectors of channels; the channels past
    /// the last whole `MV` run in tiles of one vector.
    ///
    /// # Safety
    /// The CPU has `V`'s features; the reads are within `source`.
    #[inline(always)]
    unsafe fn tiles<V: Lanes, const NR: usize, const MV: usize>(&self, dw_t: &mut [f32]) {
        let (rows, vectors) = (self.rows(), self.pitch / V::N);
        let whole = vectors / MV * MV;
        let out_rows = (BLOCK_BYTES / (4 * MV * V::N * self.out_w)).clamp(1, self.out_h);
        for block in (0..self.out_h).step_by(out_rows) {
            let block = block..(block + out_rows).min(self.out_h);
            for v in (0..whole).step_by(MV) {
                for r in (0..rows).step_by(NR) {
                    self.tile::<V, NR, MV>(r, v * V::N, block.clone(), dw_t);
                }
            }
            for v in whole..vectors {
                for r in (0..rows).step_by(NR) {
                    self.tile::<V, NR, 1>(r, v * V::N, block.clone(), dw_t);
                }
            }
        }
    }

    /// The tile of rows `row..row + NR` (those that exist) and channels
    /// `channel..channel + MV·lanes` over output rows `block`.
    ///
    /// # Safety
    /// As [`Self::tiles`].
    #[inline(always)]
    unsafe fn tile<V: Lanes, const NR: usize, const MV: usize>(
        &self,
        row: usize,
        channel: usize,
        block: std::ops::Range<usize>,
        dw_t: &mut [f32],
    ) {
        let count = (self.rows() - row).min(NR);
        // Rows past the last repeat it (their sums are dropped), so the
        // loop below is the same for every tile.
        let src: [*const f32; NR] = std::array::from_fn(|i| {
            let r = row + i.min(count - 1);
            self.source.as_ptr().add(self.start(r) + block.start * self.row_pitch)
        });
        let c = dw_t.as_mut_ptr().add(row * self.pitch + channel);
        let mut acc = [[V::zero(); MV]; NR];
        for (i, acc_row) in acc.iter_mut().enumerate().take(count) {
            for (v, a) in acc_row.iter_mut().enumerate() {
                *a = V::load(c.add(i * self.pitch + v * V::N));
            }
        }
        let mut b = self.dy_t.as_ptr().add(block.start * self.out_w * self.pitch + channel);
        for out_row in 0..block.len() {
            let src_row: [*const f32; NR] = std::array::from_fn(|i| src[i].add(out_row * self.row_pitch));
            for q in 0..self.out_w {
                let dy: [V; MV] = std::array::from_fn(|v| V::load(b.add(v * V::N)));
                for (acc_row, s) in acc.iter_mut().zip(&src_row) {
                    let x = V::splat(s.add(q));
                    for (a, d) in acc_row.iter_mut().zip(&dy) {
                        *a = V::fma(x, *d, *a);
                    }
                }
                b = b.add(self.pitch);
            }
        }
        for (i, acc_row) in acc.iter().enumerate().take(count) {
            for (v, a) in acc_row.iter().enumerate() {
                a.store(c.add(i * self.pitch + v * V::N));
            }
        }
    }
}

/// A depthwise conv's weight gradient of one sample (one input and one
/// output channel per group): `dW[c, t] += Σ_p dy_c[p] · x_c[p + tap t]`
/// over the positions on the copy's row width (the extra columns' `dy` is
/// zero). A vector of positions is one load of `dy` and one of the copy per
/// tap, for a block of up to [`TAP_BLOCK`] taps at once; the sums stay
/// lane-wise, [`LANES`] floats per channel and tap, so a sample ends with a
/// vector add rather than a reduction across lanes ([`reduce_lanes`] once
/// per call).
pub(super) struct DepthwiseTaps<'a> {
    /// The zero-padded copy of every channel of the sample.
    pub source: &'a [f32],
    /// Floats between two channels of `source`.
    pub plane: usize,
    /// Where each tap's reads start in a channel of `source`.
    pub taps: &'a [usize],
    /// Each channel's output gradient on the copy's row width, one after
    /// the other, `positions` floats each.
    pub dy: &'a [f32],
    pub positions: usize,
    /// Floats between two rows of `dy` (and of `source`'s phase), of which
    /// the first `out_w` are outputs: the others, zeros in `dy`, are
    /// skipped, not multiplied (by an input that may be NaN).
    pub row_pitch: usize,
    pub out_w: usize,
}

/// Floats of a lane-wise sum: a vector at the widest level.
pub(super) const LANES: usize = 16;
/// Taps summed at once: a 3 × 3 kernel's nine in registers.
const TAP_BLOCK: usize = 9;

impl DepthwiseTaps<'_> {
    fn channels(&self) -> usize {
        self.dy.len() / self.positions.max(1)
    }

    /// `lanes[(c · taps + t) · LANES ..][..LANES] +=` the lane-wise sums.
    pub fn accumulate(&self, lanes: &mut [f32]) {
        let (channels, taps) = (self.channels(), self.taps.len());
        assert_eq!(lanes.len(), channels * taps * LANES);
        if channels == 0 || taps == 0 || self.positions == 0 {
            return;
        }
        let furthest = self.taps.iter().max().copied().unwrap_or(0);
        let last = (channels - 1) * self.plane + furthest + self.positions;
        assert!(last <= self.source.len(), "a weight gradient read past its copy");
        #[cfg(target_arch = "x86_64")]
        match Level::detect() {
            // SAFETY: the CPU has each variant's features; the reads are in
            // bounds (checked above).
            Level::Avx512 => return unsafe { self.accumulate_avx512(lanes) },
            Level::Avx2 => return unsafe { self.accumulate_avx2(lanes) },
            Level::Base => {}
        }
        // SAFETY: as above; `Portable` needs no CPU feature.
        unsafe { self.channels_at::<Portable>(lanes) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn accumulate_avx512(&self, lanes: &mut [f32]) {
        self.channels_at::<std::arch::x86_64::__m512>(lanes)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn accumulate_avx2(&self, lanes: &mut [f32]) {
        self.channels_at::<std::arch::x86_64::__m256>(lanes)
    }

    /// # Safety
    /// The CPU has `V`'s features; the reads are within `source`.
    #[inline(always)]
    unsafe fn channels_at<V: Lanes>(&self, lanes: &mut [f32]) {
        let (taps, positions) = (self.taps.len(), self.positions);
        let (whole, tail) = (self.out_w / V::N * V::N, self.out_w % V::N);
        let rows = (0..positions / self.row_pitch.max(1)).map(|r| r * self.row_pitch);
        for c in 0..self.channels() {
            let src = self.source.as_ptr().add(c * self.plane);
            let dy = self.dy.as_ptr().add(c * positions);
            for first in (0..taps).step_by(TAP_BLOCK) {
                let count = (taps - first).min(TAP_BLOCK);
                // Taps past the last repeat it (their sums are dropped).
                let at: [*const f32; TAP_BLOCK] = std::array::from_fn(|t| src.add(self.taps[first + t.min(count - 1)]));
                let mut acc = [V::zero(); TAP_BLOCK];
                for row in rows.clone() {
                    for p in (row..row + whole).step_by(V::N) {
                        let d = V::load(dy.add(p));
                        for (a, x) in acc.iter_mut().zip(&at) {
                            *a = V::fma(V::load(x.add(p)), d, *a);
                        }
                    }
                    if tail > 0 {
                        let d = V::load_low(dy.add(row + whole), tail);
                        for (a, x) in acc.iter_mut().zip(&at) {
                            *a = V::fma(V::load_low(x.add(row + whole), tail), d, *a);
                        }
                    }
                }
                let out = lanes.as_mut_ptr().add((c * taps + first) * LANES);
                for (t, a) in acc.iter().enumerate().take(count) {
                    let o = out.add(t * LANES);
                    V::add(V::load(o), *a).store(o);
                }
            }
        }
    }
}

/// `out[i] += Σ lanes[i · LANES ..][..LANES]`, in f64.
pub(super) fn reduce_lanes(lanes: &[f32], out: &mut [f32]) {
    for (o, l) in out.iter_mut().zip(lanes.chunks_exact(LANES)) {
        *o += l.iter().map(|v| f64::from(*v)).sum::<f64>() as f32;
    }
}

/// Positions a transposition handles at once: its output has room for
/// whole blocks ([`transposed_len`]).
const TRANSPOSE_BLOCK: usize = 16;

/// Floats [`transpose`] writes for `positions` and `pitch`: whole blocks of
/// positions, the last one's rows past `positions` left as they fall.
pub(super) fn transposed_len(positions: usize, pitch: usize) -> usize {
    positions.next_multiple_of(TRANSPOSE_BLOCK) * pitch
}

/// `out[p · pitch + o] = planes[o · positions + p]` for the planes' channels
/// `o` (the columns past them are not touched).
pub(super) fn transpose(planes: &[f32], positions: usize, pitch: usize, out: &mut [f32]) {
    let channels = planes.len() / positions.max(1);
    assert!(channels <= pitch && out.len() >= transposed_len(positions, pitch));
    #[cfg(target_arch = "x86_64")]
    if Level::detect() == Level::Avx512 {
        // SAFETY: the CPU has AVX-512; the sizes are checked above.
        unsafe { transpose_avx512(planes, channels, positions, pitch, out) };
        return;
    }
    for p0 in (0..positions).step_by(TRANSPOSE_BLOCK) {
        let block = p0..(p0 + TRANSPOSE_BLOCK).min(positions);
        for (o, plane) in planes.chunks_exact(positions).enumerate() {
            for p in block.clone() {
                out[p * pitch + o] = plane[p];
            }
        }
    }
}

/// [`transpose`] in blocks of 8 channels × 16 positions: a (masked) load of
/// each channel's positions, stored transposed by
/// [`store_transposed`](super::direct::store_transposed).
///
/// # Safety
/// The CPU has AVX-512F; `planes` is `channels · positions` floats and
/// `out` [`transposed_len`] of them, `channels ≤ pitch`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(planes: &[f32], channels: usize, positions: usize, pitch: usize, out: &mut [f32]) {
    use crate::kernels::simd::low_lanes;
    use std::arch::x86_64::_mm512_maskz_loadu_ps;
    // A block of positions at a time, so its rows of `out` are written
    // whole while in L1.
    for p0 in (0..positions).step_by(TRANSPOSE_BLOCK) {
        let mask = low_lanes(positions - p0);
        for o0 in (0..channels).step_by(8) {
            let n = (channels - o0).min(8);
            let rows = std::array::from_fn(|i| {
                let o = o0 + i.min(n - 1);
                _mm512_maskz_loadu_ps(mask, planes.as_ptr().add(o * positions + p0))
            });
            super::direct::store_transposed(
                rows,
                out.as_mut_ptr().add(p0 * pitch + o0),
                pitch,
                &[super::direct::Run::first(n)],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    #[test]
    fn transpose_puts_each_channel_in_a_column() {
        let mut rng = Rng::new(11, 0);
        for (channels, positions, pitch) in [
            (1, 1, 16),
            (3, 17, 16),
            (8, 16, 16),
            (13, 40, 16),
            (32, 100, 32),
            (70, 9, 80),
        ] {
            let planes = random(&mut rng, channels * positions);
            let mut out = vec![f32::NAN; transposed_len(positions, pitch)];
            transpose(&planes, positions, pitch, &mut out);
            for p in 0..positions {
                for o in 0..pitch {
                    let want = if o < channels {
                        planes[o * positions + p]
                    } else {
                        f32::NAN
                    };
                    let got = out[p * pitch + o];
                    assert!(
                        got == want || (got.is_nan() && want.is_nan()),
                        "{channels} {positions} {pitch}: ({p}, {o})"
                    );
                }
            }
        }
    }

    /// Every tile shape and remainder (rows past the last whole tile,
    /// channel vectors past the last whole run) against the sums in f64.
    #[test]
    fn accumulate_matches_the_definition() {
        let mut rng = Rng::new(12, 0);
        for (channels, taps, out_h, out_w, row_pitch, pitch) in [
            (1, 1, 1, 1, 1, 16),
            (3, 9, 5, 7, 9, 16),
            (2, 4, 9, 3, 5, 32),
            (5, 9, 4, 4, 6, 48),
            (4, 9, 3, 10, 12, 64),
            (3, 2, 2, 6, 8, 80),
            (7, 1, 40, 2, 2, 96),
        ] {
            let plane = (out_h + 2) * row_pitch;
            let offsets: Vec<usize> = (0..taps).map(|t| (t * 7) % (2 * row_pitch)).collect();
            let source = random(&mut rng, channels * plane + 3 * row_pitch);
            let positions = out_h * out_w;
            let dy_t = random(&mut rng, positions * pitch);
            let rows = channels * taps;
            let before = random(&mut rng, rows * pitch);
            let mut dw_t = before.clone();
            let product = Correlation {
                source: &source,
                plane,
                taps: &offsets,
                channels,
                row_pitch,
                out_h,
                out_w,
                dy_t: &dy_t,
                pitch,
            };
            product.accumulate(&mut dw_t);
            for r in 0..rows {
                let start = (r / taps) * plane + offsets[r % taps];
                for o in 0..pitch {
                    let mut want = f64::from(before[r * pitch + o]);
                    for i in 0..out_h {
                        for q in 0..out_w {
                            let x = f64::from(source[start + i * row_pitch + q]);
                            want += x * f64::from(dy_t[(i * out_w + q) * pitch + o]);
                        }
                    }
                    let got = f64::from(dw_t[r * pitch + o]);
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + positions as f64),
                        "row {r} channel {o}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// Kernels of 1, 9 and 25 taps (blocks of nine, the last one short)
    /// against the sums in f64.
    #[test]
    fn depthwise_taps_match_the_definition() {
        let mut rng = Rng::new(13, 0);
        for (channels, taps, positions) in [(1, 1, 3), (3, 9, 40), (5, 25, 17), (2, 9, 64)] {
            let plane = positions + 8;
            let offsets: Vec<usize> = (0..taps).map(|t| (t * 3) % 9).collect();
            let source = random(&mut rng, channels * plane);
            let dy = random(&mut rng, channels * positions);
            let mut lanes = vec![0.0; channels * taps * LANES];
            let product = DepthwiseTaps {
                source: &source,
                plane,
                taps: &offsets,
                dy: &dy,
                positions,
                // One row, every position an output.
                row_pitch: positions,
                out_w: positions,
            };
            product.accumulate(&mut lanes);
            product.accumulate(&mut lanes);
            let mut dw = vec![0.5; channels * taps];
            reduce_lanes(&lanes, &mut dw);
            for c in 0..channels {
                for (t, offset) in offsets.iter().enumerate() {
                    let at = |p: usize| f64::from(source[c * plane + offset + p]) * f64::from(dy[c * positions + p]);
                    let want = 0.5 + 2.0 * (0..positions).map(at).sum::<f64>();
                    let got = f64::from(dw[c * taps + t]);
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + positions as f64),
                        "channel {c} tap {t}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
