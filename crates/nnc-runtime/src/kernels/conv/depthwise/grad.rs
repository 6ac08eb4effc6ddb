//! The backward of the depthwise shapes that walk in registers on AVX-512
//! ([`Walk`]): the weight gradient on the forward's walks, and the input
//! gradient of the stride-2 shape by the sub-pixel rule in registers.
//!
//! Both read the planes in place. The ways they replace took 3–5× the
//! forward's time on mobile_mini's depthwise layers: the weight gradient
//! went through a padded copy of each sample with `dy` widened to the
//! copy's rows (memory-bound on 8 × 8 maps), and the stride-2 input
//! gradient ran the forward kernel on `dy` spread out with zeros (four
//! times the multiply-adds).

use super::super::direct::WORK_PER_PART;
use super::super::ConvGeometry;
use super::walks::{halved_taps, row_pair_taps, rows_taps, up_to_eight, Walk, ROWS};
use crate::kernels::dense::split;
use crate::team::{Disjoint, Team};
use std::arch::x86_64::*;
use std::ops::Range;

/// One channel's planes over a run of samples: plane `i` is sample
/// `first + i`'s.
struct Planes<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    /// Plane `i` is at `(first + i · step)` planes into `x` and `dy`.
    first: usize,
    step: usize,
    count: usize,
    in_plane: usize,
    out_plane: usize,
}

impl<'a> Planes<'a> {
    /// Plane `i`'s input, and its output gradient's first float.
    #[inline(always)]
    fn at(&self, i: usize) -> (&'a [f32], *const f32) {
        let p = self.first + i * self.step;
        let dy = &self.dy[p * self.out_plane..(p + 1) * self.out_plane];
        (&self.x[p * self.in_plane..(p + 1) * self.in_plane], dy.as_ptr())
    }
}

/// `dw[c · 9 + t] += Σ x under tap t · dy` and `db[c] += Σ dy` over the
/// samples `samples` of `x` `[batch, channels, h, w]` and `dy` (a [`Walk`]
/// conv of geometry `g`): channel by channel, the forward's walk over each
/// sample's plane with each tap's inputs multiplied by the output gradient
/// under them, the sums in registers across the samples, then each summed
/// across its lanes. (Lane-wise sums kept in memory cost a pass to zero
/// them and one to sum them, which at batch 1 took 2–4× the walks.)
///
/// # Safety
/// The CPU has AVX-512F; `walk` is `g`'s and `g` is depthwise.
#[target_feature(enable = "avx512f")]
pub(in crate::kernels::conv) unsafe fn weight_grad(
    walk: Walk,
    g: &ConvGeometry,
    (x, dy): (&[f32], &[f32]),
    samples: Range<usize>,
    (dw, db): (&mut [f32], &mut [f32]),
) {
    let channels = g.in_channels;
    let (h, w) = (g.height, g.width);
    assert_eq!(dw.len(), channels * 9);
    assert_eq!(db.len(), channels);
    for (c, dw) in dw.chunks_exact_mut(9).enumerate() {
        let planes = Planes {
            x,
            dy,
            first: samples.start * channels + c,
            step: channels,
            count: samples.len(),
            in_plane: h * w,
            out_plane: g.out_height() * g.out_width(),
        };
        let sums = [_mm512_setzero_ps(); SUMS];
        // SAFETY: AVX-512F, as this function's; the walks are `g`'s.
        let sums = unsafe {
            match walk {
                Walk::Rows => rows(&planes, (h, w), sums),
                Walk::RowPairs => up_to_eight!(h, H => row_pairs::<H>(&planes, sums)),
                Walk::Halved => halved(&planes, h / 2, sums),
            }
        };
        for (dw, &sum) in dw.iter_mut().zip(&sums) {
            *dw += _mm512_reduce_add_ps(sum);
        }
        db[c] += _mm512_reduce_add_ps(sums[BIAS]);
    }
}

/// The sums [`weight_grad`] keeps in registers: a tap's each, then the
/// output gradient's (for the bias: summed on its way to the taps, not in
/// a pass of its own over `dy`).
const SUMS: usize = 10;
const BIAS: usize = 9;

/// [`weight_grad`] on [`Walk::Rows`] planes `h` × `w`, in blocks of eight
/// output rows and a last one of what is left: every output the walk
/// hands on is in the plane, so none multiplies inputs by a zero gradient
/// (an input NaN reaches only the taps that read it, as in PyTorch).
#[target_feature(enable = "avx512f")]
unsafe fn rows(planes: &Planes, (h, w): (usize, usize), mut sums: [__m512; SUMS]) -> [__m512; SUMS] {
    for i in 0..planes.count {
        let (input, dy) = planes.at(i);
        for v in 0..w / 16 {
            for r0 in (0..h).step_by(ROWS) {
                let block = (input, dy, (h, w), (v, r0));
                // SAFETY: AVX-512F, as this function's; the block's loops unrolled.
                unsafe { up_to_eight!(h - r0, R => rows_block::<R>(block, &mut sums)) }
            }
        }
    }
    sums
}

/// Output rows `r0..r0 + R` at vector `v` of a [`rows`] plane.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::type_complexity)]
unsafe fn rows_block<const R: usize>(
    (input, dy, (h, w), (v, r0)): (&[f32], *const f32, (usize, usize), (usize, usize)),
    sums: &mut [__m512; SUMS],
) {
    let mut rows = [_mm512_setzero_ps(); R];
    for (o, row) in rows.iter_mut().enumerate() {
        // SAFETY: row `r0 + o` of the plane, 16 floats from column `16v`.
        *row = unsafe { _mm512_loadu_ps(dy.add((r0 + o) * w + 16 * v)) };
        sums[BIAS] = _mm512_add_ps(sums[BIAS], *row);
    }
    rows_taps!((input, (h, w), v, r0), rows: R, outside: zeros, |o, tap, x| {
        sums[tap] = _mm512_fmadd_ps(x, rows[o], sums[tap]);
    });
}

/// [`weight_grad`] on [`Walk::RowPairs`] planes of `H` rows of 8. With `H`
/// odd, the last vector's second row is past the plane: its products are
/// masked off (not multiplied by a zero gradient: see [`rows`]).
#[target_feature(enable = "avx512f")]
unsafe fn row_pairs<const H: usize>(planes: &Planes, mut sums: [__m512; SUMS]) -> [__m512; SUMS] {
    for i in 0..planes.count {
        let (input, dy) = planes.at(i);
        let mut rows = [_mm512_setzero_ps(); 4];
        for (m, row) in rows.iter_mut().enumerate().take(H.div_ceil(2)) {
            let lanes = if 2 * m + 1 < H { 0xFFFF } else { 0x00FF };
            // SAFETY: the mask loads rows `2m` and `2m + 1` where they are
            // in the plane.
            *row = unsafe { _mm512_maskz_loadu_ps(lanes, dy.add(16 * m)) };
            sums[BIAS] = _mm512_add_ps(sums[BIAS], *row);
        }
        row_pair_taps!((input.as_ptr(), H), |m, tap, x| {
            sums[tap] = if 2 * m + 1 < H {
                _mm512_fmadd_ps(x, rows[m], sums[tap])
            } else {
                _mm512_mask3_fmadd_ps(x, rows[m], sums[tap], 0x00FF)
            };
        });
    }
    sums
}

/// [`weight_grad`] on [`Walk::Halved`] planes of `out_h` output rows.
#[target_feature(enable = "avx512f")]
unsafe fn halved(planes: &Planes, out_h: usize, mut sums: [__m512; SUMS]) -> [__m512; SUMS] {
    for i in 0..planes.count {
        let (input, dy) = planes.at(i);
        for o0 in (0..out_h).step_by(8) {
            let block = (input, dy, o0);
            // SAFETY: AVX-512F, as this function's; the block's loops unrolled.
            unsafe { up_to_eight!(out_h - o0, R => halved_block::<R>(block, &mut sums)) }
        }
    }
    sums
}

/// Output rows `o0..o0 + R` of a [`halved`] plane.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn halved_block<const R: usize>((input, dy, o0): (&[f32], *const f32, usize), sums: &mut [__m512; SUMS]) {
    let mut rows = [_mm512_setzero_ps(); 4];
    for (m, row) in rows.iter_mut().enumerate().take(R.div_ceil(2)) {
        let lanes = if 2 * m + 1 < R { 0xFFFF } else { 0x00FF };
        // SAFETY: the mask loads output rows `o0 + 2m` and `o0 + 2m + 1`
        // where they are in the plane.
        *row = unsafe { _mm512_maskz_loadu_ps(lanes, dy.add(8 * o0 + 16 * m)) };
        sums[BIAS] = _mm512_add_ps(sums[BIAS], *row);
    }
    halved_taps!(
        (input, o0, R),
        |m, tap, x| {
            sums[tap] = _mm512_fmadd_ps(x, rows[m], sums[tap]);
        },
        |_m| {}
    );
}

/// `dx` `[batch, channels, h, 16]` of a [`Walk::Halved`] conv of geometry
/// `g` (weights `w` `[channels, 3, 3]`) from `dy` `[batch, channels, h/2,
/// 8]`, overwritten; the planes shared among the team's threads.
///
/// Input row `2r` is reached by kernel row 0 from output row `r` and by
/// kernel row 2 from output row `r − 1`, input row `2r + 1` by kernel row
/// 1 from output row `r`; within a row, input column `2j` by kernel column
/// 0 from output column `j` and by column 2 from `j − 1`, column `2j + 1`
/// by column 1 from `j`. So each output row, spread over 16 lanes twice
/// (each output in two lanes; each a lane on in the even lanes), serves
/// three input rows with two multiply-adds each: the forward's nine taps
/// for each four inputs, with nothing multiplied by zero.
///
/// # Safety
/// The CPU has AVX-512F; `g` is depthwise and walks [`Walk::Halved`].
pub(in crate::kernels::conv) unsafe fn grad_input_halved(
    dy: &[f32],
    batch: usize,
    g: &ConvGeometry,
    w: &[f32],
    dx: &mut [f32],
    team: &Team,
) {
    let (in_plane, out_plane) = (g.height * 16, g.height / 2 * 8);
    let planes = batch * g.in_channels;
    assert!(dy.len() == planes * out_plane && dx.len() == planes * in_plane && w.len() == g.in_channels * 9);
    let parts = team
        .threads()
        .min(planes)
        .min(planes * in_plane * 9 / 4 / WORK_PER_PART)
        .max(1);
    let dx = Disjoint::new(dx);
    team.run(parts, &|part| {
        let mine = split(planes, parts, part, 1);
        // SAFETY: the parts own disjoint ranges of planes.
        let out = unsafe { dx.piece(mine.start * in_plane..mine.end * in_plane) };
        let dy = &dy[mine.start * out_plane..mine.end * out_plane];
        // SAFETY: AVX-512F (the caller's promise).
        unsafe { spread_planes(dy, (w, g.in_channels), (mine.start, g.height / 2), out) };
    });
}

/// The planes of [`grad_input_halved`] from plane `first` (of `[batch ·
/// channels]`) on, `out_h` output rows each: `dy` theirs, `dx` theirs.
#[target_feature(enable = "avx512f")]
unsafe fn spread_planes(dy: &[f32], (w, channels): (&[f32], usize), (first, out_h): (usize, usize), dx: &mut [f32]) {
    let (in_plane, out_plane) = (out_h * 32, out_h * 8);
    // Each output in the two lanes of its input columns `2j` and `2j + 1`;
    // then output `j − 1` in the lane of column `2j` (the others zeroed).
    let twice_at = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let on_at = _mm512_setr_epi32(0, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0);
    for (k, (dy, dx)) in dy
        .chunks_exact(out_plane)
        .zip(dx.chunks_exact_mut(in_plane))
        .enumerate()
    {
        let c = (first + k) % channels;
        let wc = &w[c * 9..c * 9 + 9];
        // Kernel row `ki`: columns 0 and 1 in the even and odd lanes, which
        // take an output `twice`; column 2, which takes it a lane `on`.
        let near = |ki: usize| _mm512_mask_blend_ps(0xAAAA, _mm512_set1_ps(wc[3 * ki]), _mm512_set1_ps(wc[3 * ki + 1]));
        let (near, far) = (
            [near(0), near(1), near(2)],
            [_mm512_set1_ps(wc[2]), _mm512_set1_ps(wc[5]), _mm512_set1_ps(wc[8])],
        );
        // Output row `r − 1`'s two spreads, for kernel row 2.
        let mut above = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for r in 0..out_h {
            // SAFETY: 8 floats of the plane, row `r`.
            let row = unsafe { _mm512_maskz_loadu_ps(0x00FF, dy[8 * r..8 * r + 8].as_ptr()) };
            let (twice, on) = (
                _mm512_permutexvar_ps(twice_at, row),
                _mm512_maskz_permutexvar_ps(0x5554, on_at, row),
            );
            let even = _mm512_fmadd_ps(on, far[0], _mm512_mul_ps(twice, near[0]));
            let even = _mm512_fmadd_ps(above.1, far[2], _mm512_fmadd_ps(above.0, near[2], even));
            let odd = _mm512_fmadd_ps(on, far[1], _mm512_mul_ps(twice, near[1]));
            // SAFETY: input rows `2r` and `2r + 1`, 16 floats each.
            unsafe {
                _mm512_storeu_ps(dx[32 * r..32 * r + 16].as_mut_ptr(), even);
                _mm512_storeu_ps(dx[32 * r + 16..32 * r + 32].as_mut_ptr(), odd);
            }
            above = (twice, on);
        }
    }
}
