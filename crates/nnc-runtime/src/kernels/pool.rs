//! Pooling over `[n, c, h, w]`: max (padding counts as −∞), average
//! (padding not counted, ONNX `count_include_pad=0`) and global average.
//! A NaN in a window makes its output NaN, max pooling included (PyTorch).
//! A window wholly in the padding (which `check` refuses: a pool's padding
//! is at most half its window) would give −∞ (max) or 0 (average).
//! The backward of max pooling routes each gradient to the argmax recorded
//! by `max_pool2d_argmax`.

use std::ops::Range;

use super::act::max_nan;
use super::norm::{lanes_total, RUN_LANES};
#[cfg(target_arch = "x86_64")]
use super::simd::low_lanes;
use super::simd::{Lanes, Level, Portable};

/// A pooling window. `pads` are `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pads: [usize; 4],
}

impl PoolGeometry {
    pub fn out_height(&self) -> usize {
        (self.height + self.pads[0] + self.pads[2]).saturating_sub(self.kernel) / self.stride.max(1) + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + self.pads[1] + self.pads[3]).saturating_sub(self.kernel) / self.stride.max(1) + 1
    }

    /// Calls `f(sum_or_max_input, count)` for each output position, folding
    /// the in-bounds inputs of its window with `fold` from `init`.
    fn each_window(
        &self,
        plane: &[f32],
        out: &mut [f32],
        init: f32,
        fold: impl Fn(f32, f32) -> f32,
        finish: impl Fn(f32, usize) -> f32,
    ) {
        let (oh, ow) = (self.out_height(), self.out_width());
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut acc, mut count) = (init, 0usize);
                for ky in 0..self.kernel {
                    let Some(iy) = (oy * self.stride + ky)
                        .checked_sub(self.pads[0])
                        .filter(|v| *v < self.height)
                    else {
                        continue;
                    };
                    for kx in 0..self.kernel {
                        let Some(ix) = (ox * self.stride + kx)
                            .checked_sub(self.pads[1])
                            .filter(|v| *v < self.width)
                        else {
                            continue;
                        };
                        acc = fold(acc, plane[iy * self.width + ix]);
                        count += 1;
                    }
                }
                out[oy * ow + ox] = finish(acc, count);
            }
        }
    }

    /// The input rows and columns under output `(oy, ox)`'s window, the
    /// padding left out (empty for a window wholly in the padding).
    fn window(&self, oy: usize, ox: usize) -> (Range<usize>, Range<usize>) {
        let stride = self.stride.max(1);
        let span = |o: usize, pad: usize, size: usize| {
            (o * stride).saturating_sub(pad)..(o * stride + self.kernel).saturating_sub(pad).min(size)
        };
        (span(oy, self.pads[0], self.height), span(ox, self.pads[1], self.width))
    }

    fn planes<'a>(&self, x: &'a [f32], n: usize, y: &'a mut [f32]) -> impl Iterator<Item = (&'a [f32], &'a mut [f32])> {
        let (in_plane, out_plane) = (self.height * self.width, self.out_height() * self.out_width());
        let count = n * self.channels;
        x.chunks(in_plane.max(1))
            .zip(y.chunks_mut(out_plane.max(1)))
            .take(count)
    }
}

pub fn max_pool2d(x: &[f32], n: usize, g: &PoolGeometry, y: &mut [f32]) {
    if g.kernel == 2 && g.stride == 2 && g.pads == [0; 4] {
        // The usual 2×2 halving, in the general fold's order (the first
        // fold, from −∞, is the identity), without its bounds per tap.
        for (plane, out) in g.planes(x, n, y) {
            max_pool_rows(plane, (g.height, g.width, g.width), 2, out);
        }
        return;
    }
    for (plane, out) in g.planes(x, n, y) {
        g.each_window(plane, out, f32::NEG_INFINITY, max_nan, |m, _| m);
    }
}

/// A `window × window` max pool at stride `window` (unpadded, floor mode)
/// of one channel's `rows × cols` outputs, their rows `pitch` apart in
/// `src`, into `out` (`rows / window` rows of `cols / window`): what a
/// conv with a fused pool runs on each block of rows it has computed,
/// while they are in cache. The same folds, in the same order, as
/// [`max_pool2d`].
pub fn max_pool_rows(src: &[f32], (rows, cols, pitch): (usize, usize, usize), window: usize, out: &mut [f32]) {
    let window = window.max(1);
    let (oh, ow) = (rows / window, cols / window);
    debug_assert!(out.len() >= oh * ow && (oh == 0 || src.len() >= (oh * window - 1) * pitch + ow * window));
    if window == 2 {
        assert!(oh == 0 || src.len() >= (2 * oh - 1) * pitch + 2 * ow);
        let out = &mut out[..oh * ow];
        #[cfg(target_arch = "x86_64")]
        if super::simd::Level::detect() == super::simd::Level::Avx512 {
            // SAFETY: the CPU has AVX-512F; the rows read are in `src` (the
            // assert) and `out` holds the outputs.
            return unsafe { halve_rows_avx512(src, (oh, ow, pitch), out) };
        }
        for (r, out_row) in out.chunks_exact_mut(ow.max(1)).enumerate() {
            let top = 2 * r * pitch;
            halve_row(&src[top..][..2 * ow], &src[top + pitch..][..2 * ow], out_row, None);
        }
        return;
    }
    for (r, out_row) in out.chunks_exact_mut(ow.max(1)).take(oh).enumerate() {
        let top = r * window * pitch;
        for (q, o) in out_row.iter_mut().enumerate() {
            let mut m = f32::NEG_INFINITY;
            for ky in 0..window {
                let at = top + ky * pitch + q * window;
                m = src[at..at + window].iter().fold(m, |m, v| max_nan(m, *v));
            }
            *o = m;
        }
    }
}

/// Where a row's arg-max indices go: `arg[q]` is the index in the plane
/// (`first + 2q + d`, `d` one of `0, 1, width, width + 1` for the top pair
/// then the bottom pair) of the window's first maximum in that order, or
/// of its first NaN, as the general scan records it.
struct ArgRow<'a> {
    first: usize,
    width: usize,
    arg: &'a mut [u32],
}

/// One output row of a 2 × 2 stride-2 max pool: `out[q]` from
/// `top[2q..2q + 2]` and `bottom[2q..2q + 2]`, folded in `max_nan`'s order,
/// and with `arg`, where each came from, from the same reads.
fn halve_row(top: &[f32], bottom: &[f32], out: &mut [f32], arg: Option<ArgRow<'_>>) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::Level::detect() == super::simd::Level::Avx512 {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { halve_row_avx512(top, bottom, out, arg) };
    }
    let pairs = top.chunks_exact(2).zip(bottom.chunks_exact(2));
    for (o, (t, b)) in out.iter_mut().zip(pairs.clone()) {
        *o = max_nan(max_nan(max_nan(t[0], t[1]), b[0]), b[1]);
    }
    let Some(ArgRow { first, width, arg }) = arg else {
        return;
    };
    for (q, (a, (t, b))) in arg.iter_mut().zip(pairs).enumerate() {
        let values = [t[0], t[1], b[0], b[1]];
        let (mut best, mut best_value) = (0, values[0]);
        for (k, v) in values.iter().enumerate().skip(1) {
            if !best_value.is_nan() && (*v > best_value || v.is_nan()) {
                (best, best_value) = (k, *v);
            }
        }
        *a = (first + 2 * q + [0, 1, width, width + 1][best]) as u32;
    }
}

/// [`halve_row`] 16 outputs at a time: the even and odd lanes of 32
/// inputs of each row (two permutes); `max_nan` as a vector max (which
/// gives its second operand where either is NaN or they are equal, as
/// `max_nan` does) with the first operand's NaNs put back; the arg-max
/// scan's comparisons as masks, each taking its window position's offset.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn halve_row_avx512(top: &[f32], bottom: &[f32], out: &mut [f32], mut arg: Option<ArgRow<'_>>) {
    use std::arch::x86_64::*;
    let mut n = out.len().min(top.len() / 2).min(bottom.len() / 2);
    if let Some(a) = &arg {
        n = n.min(a.arg.len());
    }
    for q in (0..n).step_by(16) {
        let count = (n - q).min(16);
        // SAFETY: the window's 2·count inputs from 2q are in both rows;
        // the stored lanes are the count outputs from q.
        unsafe {
            let (t0, t1, b0, b1) = window_pairs(top.as_ptr().add(2 * q), bottom.as_ptr().add(2 * q), count);
            let v = max_nan_lanes(max_nan_lanes(max_nan_lanes(t0, t1), b0), b1);
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(q), low_lanes(count), v);
            let Some(ArgRow { first, width, arg }) = &mut arg else {
                continue;
            };
            let (mut best, mut offset) = (t0, _mm512_setzero_si512());
            for (v, d) in [(t1, 1), (b0, *width), (b1, *width + 1)] {
                let best_is_number = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
                let above_or_nan = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                let take = best_is_number & above_or_nan;
                best = _mm512_mask_mov_ps(best, take, v);
                offset = _mm512_mask_mov_epi32(offset, take, _mm512_set1_epi32(d as i32));
            }
            let base = _mm512_add_epi32(_mm512_set1_epi32((*first + 2 * q) as i32), even_lanes());
            let at = _mm512_add_epi32(base, offset);
            _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(q).cast(), low_lanes(count), at);
        }
    }
}

/// [`max_pool_rows`] by 2 × 2 windows, `oh` rows of `ow` outputs, in one
/// loop: a call of [`halve_row_avx512`] per output row (one vector, on a
/// 32-wide map) cost more than its loads and permutes.
///
/// # Safety
/// The CPU has AVX-512F; `src` holds `2·oh` rows of `2·ow` values, `pitch`
/// apart, and `out` `oh·ow` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn halve_rows_avx512(src: &[f32], (oh, ow, pitch): (usize, usize, usize), out: &mut [f32]) {
    use std::arch::x86_64::_mm512_mask_storeu_ps;
    for r in 0..oh {
        for q in (0..ow).step_by(16) {
            let count = (ow - q).min(16);
            // SAFETY: the window's 2·count inputs from 2q are in rows 2r
            // and 2r + 1; the stored lanes are the count outputs from q of
            // row r.
            unsafe {
                let top = src.as_ptr().add(2 * r * pitch + 2 * q);
                let (t0, t1, b0, b1) = window_pairs(top, top.add(pitch), count);
                let v = max_nan_lanes(max_nan_lanes(max_nan_lanes(t0, t1), b0), b1);
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(r * ow + q), low_lanes(count), v);
            }
        }
    }
}

/// Lane `l` takes input `2l` (and `2l + 1`): as indices, also `l`'s
/// output's offset in its row.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn even_lanes() -> std::arch::x86_64::__m512i {
    // SAFETY: the caller's.
    unsafe { std::arch::x86_64::_mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0) }
}

/// The 2 × 2 windows of `count` outputs (up to 16): the even and odd
/// inputs of the `2·count` from `top` and from `bottom` (two permutes a
/// row), as `(top even, top odd, bottom even, bottom odd)`.
///
/// # Safety
/// The CPU has AVX-512F; `2·count` floats are readable from both.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn window_pairs(
    top: *const f32,
    bottom: *const f32,
    count: usize,
) -> (
    std::arch::x86_64::__m512,
    std::arch::x86_64::__m512,
    std::arch::x86_64::__m512,
    std::arch::x86_64::__m512,
) {
    use std::arch::x86_64::*;
    let (low, high) = (low_lanes(2 * count), low_lanes((2 * count).saturating_sub(16)));
    // SAFETY: the caller's.
    unsafe {
        let (evens, odds) = (even_lanes(), _mm512_add_epi32(even_lanes(), _mm512_set1_epi32(1)));
        let row = |p: *const f32| {
            let (a, b) = (_mm512_maskz_loadu_ps(low, p), _mm512_maskz_loadu_ps(high, p.add(16)));
            (_mm512_permutex2var_ps(a, evens, b), _mm512_permutex2var_ps(a, odds, b))
        };
        let ((t0, t1), (b0, b1)) = (row(top), row(bottom));
        (t0, t1, b0, b1)
    }
}

/// `max_nan` on vectors: a vector max (which gives its second operand
/// where either is NaN or they are equal, as `max_nan` does) with the
/// first operand's NaNs put back.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn max_nan_lanes(a: std::arch::x86_64::__m512, b: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's.
    unsafe {
        let a_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a);
        _mm512_mask_mov_ps(_mm512_max_ps(a, b), a_nan, a)
    }
}

pub fn avg_pool2d(x: &[f32], n: usize, g: &PoolGeometry, y: &mut [f32]) {
    for (plane, out) in g.planes(x, n, y) {
        g.each_window(
            plane,
            out,
            0.0,
            |a, v| a + v,
            |s, count| if count == 0 { 0.0 } else { s / count as f32 },
        );
    }
}

/// [`max_pool2d`] that also records, per output, the index `h·W + w` within
/// its input plane of the element it took, for [`max_pool2d_grad`]: the
/// first maximum in scan order, or the first NaN (which wins, as in
/// `max_nan`); `u32::MAX` for a window wholly in the padding (output −∞).
/// `y` is bit-identical to [`max_pool2d`]'s.
pub fn max_pool2d_argmax(x: &[f32], n: usize, g: &PoolGeometry, y: &mut [f32], argmax: &mut [u32]) {
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    let (ow, count) = (g.out_width(), n * g.channels);
    if g.kernel == 2 && g.stride == 2 && g.pads == [0; 4] && in_plane <= u32::MAX as usize {
        // The 2×2 halving without bounds per tap, as max_pool2d's; the
        // index moves as the general scan's does.
        let width = g.width;
        let planes = x.chunks(in_plane.max(1)).zip(y.chunks_mut(out_plane.max(1)));
        for ((plane, out), arg) in planes.zip(argmax.chunks_mut(out_plane.max(1))).take(count) {
            let rows = out.chunks_exact_mut(ow.max(1)).zip(arg.chunks_exact_mut(ow.max(1)));
            for (r, (out_row, arg_row)) in rows.enumerate() {
                let (top, bottom) = (
                    &plane[2 * r * width..][..2 * ow],
                    &plane[(2 * r + 1) * width..][..2 * ow],
                );
                let arg = ArgRow {
                    first: 2 * r * width,
                    width,
                    arg: arg_row,
                };
                halve_row(top, bottom, out_row, Some(arg));
            }
        }
        return;
    }
    let planes = x.chunks(in_plane.max(1)).zip(y.chunks_mut(out_plane.max(1)));
    for ((plane, out), arg) in planes.zip(argmax.chunks_mut(out_plane.max(1))).take(count) {
        for (o, (out, arg)) in out.iter_mut().zip(arg.iter_mut()).enumerate() {
            let (rows, cols) = g.window(o / ow, o % ow);
            let (mut acc, mut best, mut best_value) = (f32::NEG_INFINITY, u32::MAX, f32::NEG_INFINITY);
            for iy in rows {
                for ix in cols.clone() {
                    let v = plane[iy * g.width + ix];
                    // The value folds exactly as max_pool2d's; the index moves
                    // only on a strict increase or a first NaN.
                    acc = max_nan(acc, v);
                    if best == u32::MAX || (!best_value.is_nan() && (v > best_value || v.is_nan())) {
                        best = u32::try_from(iy * g.width + ix).unwrap_or(u32::MAX);
                        best_value = v;
                    }
                }
            }
            *out = acc;
            *arg = best;
        }
    }
}

/// The input gradient of max pooling: `dx = 0`, then each `dy` is added at
/// its window's argmax (from [`max_pool2d_argmax`]); overlapping windows sum.
pub fn max_pool2d_grad(dy: &[f32], argmax: &[u32], n: usize, g: &PoolGeometry, dx: &mut [f32]) {
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    dx.fill(0.0);
    let planes = dx.chunks_mut(in_plane.max(1)).zip(dy.chunks(out_plane.max(1)));
    for ((dx, dy), arg) in planes.zip(argmax.chunks(out_plane.max(1))).take(n * g.channels) {
        for (d, &a) in dy.iter().zip(arg) {
            // u32::MAX (a window wholly in the padding) is past any plane.
            if let Some(target) = usize::try_from(a).ok().and_then(|a| dx.get_mut(a)) {
                *target += d;
            }
        }
    }
}

/// The input gradient of [`avg_pool2d`]: `dx = 0`, then each `dy` divided by
/// its window's count of real elements is added to each of them.
pub fn avg_pool2d_grad(dy: &[f32], n: usize, g: &PoolGeometry, dx: &mut [f32]) {
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    let ow = g.out_width();
    dx.fill(0.0);
    let planes = dx.chunks_mut(in_plane.max(1)).zip(dy.chunks(out_plane.max(1)));
    for (dx, dy) in planes.take(n * g.channels) {
        for (o, d) in dy.iter().enumerate() {
            let (rows, cols) = g.window(o / ow, o % ow);
            let count = rows.len() * cols.len();
            if count == 0 {
                continue;
            }
            let share = d / count as f32;
            for iy in rows {
                dx[iy * g.width + cols.start..iy * g.width + cols.end]
                    .iter_mut()
                    .for_each(|v| *v += share);
            }
        }
    }
}

/// The input gradient of [`global_avg_pool`]: each `dy` divided by `inner`
/// over its run.
pub fn global_avg_pool_grad(dy: &[f32], n: usize, channels: usize, inner: usize, dx: &mut [f32]) {
    for (run, d) in dx.chunks_mut(inner.max(1)).zip(dy).take(n * channels) {
        run.fill(d / inner.max(1) as f32);
    }
}

/// The mean of each `[inner]` run: `[n, c, h·w]` → `[n, c]`.
pub fn global_avg_pool(x: &[f32], n: usize, channels: usize, inner: usize, y: &mut [f32]) {
    let planes = (n * channels).min(y.len()).min(x.len() / inner.max(1));
    if inner == 0 {
        y[..planes].fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    match Level::detect() {
        // SAFETY: the CPU has each variant's features; `x` holds `planes`
        // runs of `inner` and `y` `planes` values (counted above).
        Level::Avx512 => return unsafe { plane_means_avx512(x, planes, inner, y) },
        Level::Avx2 => return unsafe { plane_means_avx2(x, planes, inner, y) },
        Level::Base => {}
    }
    // SAFETY: as above; `Portable` needs no CPU feature.
    unsafe { plane_means::<Portable>(x, planes, inner, y) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_means_avx512(x: &[f32], planes: usize, inner: usize, y: &mut [f32]) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_div_ps, _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_permutex2var_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };
    // Sixteen planes at a time: each plane's vector of partial sums, then
    // the sixteen vectors folded into one whose lane `p` is plane `p`'s
    // total, by four levels of pairs (15 adds and 30 permutes, where a
    // plane's own lanes added one by one took some 30 instructions a
    // plane: mobile_mini's 8 192 planes of 64 at batch 64 took 44 µs,
    // now 28). The totals are sums in f32, as ONNX Runtime's (the other
    // levels add their lanes in f64).
    let idx = |v: &[i32; 16]| _mm512_loadu_si512(v.as_ptr().cast());
    let (firsts, seconds) = (FOLD.0.map(|v| idx(&v)), FOLD.1.map(|v| idx(&v)));
    let count = _mm512_set1_ps(inner as f32);
    for p0 in (0..planes).step_by(16) {
        let n = (planes - p0).min(16);
        let mut level: [__m512; 16] = [_mm512_setzero_ps(); 16];
        for (p, sum) in level.iter_mut().enumerate().take(n) {
            *sum = run_sums(x.as_ptr().add((p0 + p) * inner), inner);
        }
        let mut len = 16;
        for k in 0..4 {
            len /= 2;
            for j in 0..len {
                let (a, b) = (level[2 * j], level[2 * j + 1]);
                level[j] = _mm512_add_ps(
                    _mm512_permutex2var_ps(a, firsts[k], b),
                    _mm512_permutex2var_ps(a, seconds[k], b),
                );
            }
        }
        // SAFETY: lanes `..n` are planes `p0..p0 + n`, inside `y`.
        _mm512_mask_storeu_ps(y.as_mut_ptr().add(p0), low_lanes(n), _mm512_div_ps(level[0], count));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_means_avx2(x: &[f32], planes: usize, inner: usize, y: &mut [f32]) {
    plane_means::<std::arch::x86_64::__m256>(x, planes, inner, y)
}

/// The permutes of [`plane_means_avx512`]'s fold, four levels of
/// (first, second) lane indices into a pair of vectors. At level k a
/// vector holds 2^k planes' partial sums, 16 / 2^k lanes each; adding
/// the two permutes of a pair gives one vector holding each of its
/// planes' in half as many lanes, the first vector's planes first.
const FOLD: ([[i32; 16]; 4], [[i32; 16]; 4]) = {
    let (mut firsts, mut seconds) = ([[0i32; 16]; 4], [[0i32; 16]; 4]);
    let mut k = 0;
    while k < 4 {
        let (width, half) = (16 >> (k + 1), 1 << k);
        let mut l = 0;
        while l < 16 {
            let (plane, offset) = (l / width, l % width);
            let from = match plane < half {
                true => plane * 2 * width,
                false => 16 + (plane - half) * 2 * width,
            };
            firsts[k][l] = (from + offset) as i32;
            seconds[k][l] = (from + width + offset) as i32;
            l += 1;
        }
        k += 1;
    }
    (firsts, seconds)
};

/// A run's `inner` values summed into a vector's lanes, in vectors
/// written out: a loop over lanes in an array was vectorised two floats
/// at a time (mobile_mini's 8 192 planes of 64 at batch 64 took 74 µs,
/// ONNX Runtime's 35). Four sums, so that a long run (a 32 × 32 plane)
/// is not bound by the adds' latency; a partial last vector masked.
///
/// # Safety
/// The CPU has `V`'s features; `run` holds `inner` values.
#[inline(always)]
unsafe fn run_sums<V: Lanes>(run: *const f32, inner: usize) -> V {
    let whole = inner / V::N * V::N;
    let mut sums = [V::zero(); 4];
    let mut i = 0;
    while i + 4 * V::N <= whole {
        for (k, sum) in sums.iter_mut().enumerate() {
            *sum = V::add(*sum, V::load(run.add(i + k * V::N)));
        }
        i += 4 * V::N;
    }
    while i < whole {
        sums[0] = V::add(sums[0], V::load(run.add(i)));
        i += V::N;
    }
    if whole < inner {
        sums[1] = V::add(sums[1], V::load_low(run.add(whole), inner - whole));
    }
    V::add(V::add(sums[0], sums[1]), V::add(sums[2], sums[3]))
}

/// The mean of each of `planes` runs of `inner` values, the lanes of
/// each run's [`run_sums`] added in f64.
///
/// # Safety
/// The CPU has `V`'s features; `x` holds `planes · inner` values and `y`
/// `planes`.
#[inline(always)]
unsafe fn plane_means<V: Lanes>(x: &[f32], planes: usize, inner: usize, y: &mut [f32]) {
    for (p, out) in y.iter_mut().enumerate().take(planes) {
        let total: V = run_sums(x.as_ptr().add(p * inner), inner);
        let mut lanes = [0.0f32; RUN_LANES];
        total.store(lanes.as_mut_ptr());
        *out = (lanes_total(lanes) / inner as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<f32> {
        (1..=16).map(|v| v as f32).collect()
    }

    /// The vector halving against `max_nan` folded value by value, bit
    /// for bit: NaNs (either side, both), signed zeros, infinities, and
    /// every row length up to three vectors of outputs.
    #[test]
    fn halving_a_row_folds_as_max_nan_and_finds_its_argmax() {
        let special = [
            f32::NAN,
            -f32::NAN,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            -1.0,
        ];
        let mut rng = crate::Rng::new(9, 0);
        for n in 0..50 {
            let mut pick = || {
                let r = rng.uniform();
                if r < 0.5 {
                    special[(r * 16.0) as usize]
                } else {
                    r - 0.75
                }
            };
            let top: Vec<f32> = (0..2 * n).map(|_| pick()).collect();
            let bottom: Vec<f32> = (0..2 * n).map(|_| pick()).collect();
            let mut got = vec![7.0; n];
            halve_row(&top, &bottom, &mut got, None);
            let (first, width) = (1000, 2 * n + 3);
            let (mut got_with_arg, mut arg) = (vec![7.0; n], vec![0; n]);
            let rows = ArgRow {
                first,
                width,
                arg: &mut arg,
            };
            halve_row(&top, &bottom, &mut got_with_arg, Some(rows));
            for q in 0..n {
                let window = [top[2 * q], top[2 * q + 1], bottom[2 * q], bottom[2 * q + 1]];
                let want = max_nan(max_nan(max_nan(window[0], window[1]), window[2]), window[3]);
                for got in [&got, &got_with_arg] {
                    assert_eq!(got[q].to_bits(), want.to_bits(), "n {n}, output {q}");
                }
                // The first NaN, else the first maximum, in scan order.
                let best = match window.iter().position(|v| v.is_nan()) {
                    Some(k) => k,
                    None => window.iter().position(|v| *v == want).unwrap_or(usize::MAX),
                };
                let at = first + 2 * q + [0, 1, width, width + 1][best];
                assert_eq!(arg[q] as usize, at, "n {n}, output {q}, window {window:?}");
            }
        }
    }

    #[test]
    fn max_and_average_of_hand_computed_windows() {
        let g = PoolGeometry {
            channels: 1,
            height: 4,
            width: 4,
            kernel: 2,
            stride: 2,
            pads: [0; 4],
        };
        let mut y = [0.0; 4];
        max_pool2d(&grid(), 1, &g, &mut y);
        assert_eq!(y, [6.0, 8.0, 14.0, 16.0]);
        avg_pool2d(&grid(), 1, &g, &mut y);
        assert_eq!(y, [3.5, 5.5, 11.5, 13.5]);
    }

    /// The 2×2 fast path against the general window fold, on odd and even
    /// sizes, with NaNs and infinities in every position of a window.
    #[test]
    fn the_two_by_two_path_folds_as_every_window_does() {
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0];
        for (height, width) in [(2, 2), (5, 7), (6, 4), (3, 9), (4, 7), (7, 6)] {
            let g = PoolGeometry {
                channels: 3,
                height,
                width,
                kernel: 2,
                stride: 2,
                pads: [0; 4],
            };
            let x: Vec<f32> = (0..2 * 3 * height * width)
                .map(|i| {
                    if i % 7 == 3 {
                        specials[i % 5]
                    } else {
                        ((i * 37) % 11) as f32 - 5.0
                    }
                })
                .collect();
            let mut fast = vec![0.0; 2 * 3 * g.out_height() * g.out_width()];
            max_pool2d(&x, 2, &g, &mut fast);
            let mut general = vec![0.0; fast.len()];
            for (plane, out) in g.planes(&x, 2, &mut general) {
                g.each_window(plane, out, f32::NEG_INFINITY, max_nan, |m, _| m);
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&general), "{height}x{width}");
            // The arg-max path against the general scan (which a pad on a
            // side that no window reaches, at an even size, sends it to).
            let mut with_arg = vec![0.0; fast.len()];
            let mut arg = vec![0u32; fast.len()];
            max_pool2d_argmax(&x, 2, &g, &mut with_arg, &mut arg);
            let pads = match (height % 2, width % 2) {
                (_, 0) => [0, 0, 0, 1],
                (0, _) => [0, 0, 1, 0],
                _ => continue,
            };
            let scan = PoolGeometry { pads, ..g };
            assert_eq!((scan.out_height(), scan.out_width()), (g.out_height(), g.out_width()));
            let (mut general_y, mut general_arg) = (vec![0.0; fast.len()], vec![0u32; fast.len()]);
            max_pool2d_argmax(&x, 2, &scan, &mut general_y, &mut general_arg);
            assert_eq!(bits(&with_arg), bits(&general_y), "{height}x{width}");
            assert_eq!(arg, general_arg, "{height}x{width}");
        }
    }

    #[test]
    fn padding_is_minus_infinity_for_max_and_not_counted_for_average() {
        // 3×3 windows, stride 2, pad 1 on a 4×4 grid → 2×2 outputs.
        let g = PoolGeometry {
            channels: 1,
            height: 4,
            width: 4,
            kernel: 3,
            stride: 2,
            pads: [1; 4],
        };
        let mut y = [0.0; 4];
        let neg: Vec<f32> = grid().iter().map(|v| -v).collect();
        max_pool2d(&neg, 1, &g, &mut y);
        // Top-left window covers rows 0..1, cols 0..1: max(-1,-2,-5,-6) = -1, not the padding's 0.
        assert_eq!(y, [-1.0, -2.0, -5.0, -6.0]);
        avg_pool2d(&grid(), 1, &g, &mut y);
        // Top-left: (1+2+5+6)/4; top-right: cols 1..3 rows 0..1 → (2+3+4+6+7+8)/6.
        assert_eq!(y[0], 3.5);
        assert_eq!(y[1], 5.0);
    }

    #[test]
    fn global_average() {
        let mut y = [0.0; 2];
        global_avg_pool(&[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0], 1, 2, 4, &mut y);
        assert_eq!(y, [2.5, 25.0]);
    }

    /// The definition: the in-bounds values of each window (stride s,
    /// padding p on every side), in f64.
    fn windows(x: &[f32], h: usize, w: usize, k: usize, s: usize, p: usize) -> Vec<Vec<f64>> {
        let out = |size: usize| (size + 2 * p - k) / s + 1;
        let mut all = Vec::new();
        for oy in 0..out(h) {
            for ox in 0..out(w) {
                let mut window = Vec::new();
                for iy in (oy * s) as isize - p as isize..(oy * s + k) as isize - p as isize {
                    for ix in (ox * s) as isize - p as isize..(ox * s + k) as isize - p as isize {
                        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                            window.push(f64::from(x[iy as usize * w + ix as usize]));
                        }
                    }
                }
                all.push(window);
            }
        }
        all
    }

    /// Every small geometry `check` accepts (padding at most half the
    /// window, so every window holds an input), against the definition.
    #[test]
    fn every_small_geometry_against_the_definition() {
        for (h, w) in (1..=6).flat_map(|h| (1..=6).map(move |w| (h, w))) {
            for (k, s) in (1..=5).flat_map(|k| (1..=3).map(move |s| (k, s))) {
                for p in 0..=k / 2 {
                    if h + 2 * p < k || w + 2 * p < k {
                        continue;
                    }
                    let g = PoolGeometry {
                        channels: 1,
                        height: h,
                        width: w,
                        kernel: k,
                        stride: s,
                        pads: [p; 4],
                    };
                    let x: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
                    let want = windows(&x, h, w, k, s, p);
                    let mut y = vec![f32::NAN; g.out_height() * g.out_width()];
                    assert_eq!(y.len(), want.len(), "{g:?}");
                    max_pool2d(&x, 1, &g, &mut y);
                    for (got, window) in y.iter().zip(&want) {
                        let max = window.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        assert_eq!(f64::from(*got), max, "{g:?}: max of {window:?}");
                    }
                    avg_pool2d(&x, 1, &g, &mut y);
                    for (got, window) in y.iter().zip(&want) {
                        let mean = window.iter().sum::<f64>() / window.len() as f64;
                        assert!(
                            (f64::from(*got) - mean).abs() < 1e-6,
                            "{g:?}: mean of {window:?} is not {got}"
                        );
                    }
                }
            }
        }
    }

    /// Each plane's mean against its sum in f64, for runs of every length
    /// around the vectors' (a partial vector, one to four and more whole
    /// ones, the four-sum loop and its tail) and a 32 × 32 plane, planes
    /// end to end so that a run read past its end would show, and planes
    /// in sixteens and a part of one (the AVX-512 fold's lanes).
    #[test]
    fn global_means_match_sums_in_f64() {
        let mut rng = crate::Rng::new(4, 0);
        for inner in (1..=70).chain([127, 129, 1024, 1031]) {
            // Two whole sixteens of planes and a few more.
            let planes = 37;
            let x: Vec<f32> = (0..planes * inner).map(|_| rng.uniform() * 4.0 - 1.0).collect();
            let mut y = vec![7.0; planes + 1];
            global_avg_pool(&x, 1, planes, inner, &mut y);
            for (p, got) in y[..planes].iter().enumerate() {
                let run = &x[p * inner..(p + 1) * inner];
                let mean = run.iter().map(|v| f64::from(*v)).sum::<f64>() / inner as f64;
                assert!(
                    (f64::from(*got) - mean).abs() < 1e-6,
                    "inner {inner}, plane {p}: {got} vs {mean}"
                );
            }
            assert_eq!(y[planes], 7.0, "inner {inner}: wrote past the planes");
        }
    }

    #[test]
    fn a_nan_makes_every_window_holding_it_nan() {
        // 3×3 windows, stride 1, pad 1 on a 4×4 grid: NaN at (0, 3).
        let g = PoolGeometry {
            channels: 1,
            height: 4,
            width: 4,
            kernel: 3,
            stride: 1,
            pads: [1; 4],
        };
        let mut x = grid();
        x[3] = f32::NAN;
        for pool in [max_pool2d, avg_pool2d] {
            let mut y = [0.0; 16];
            pool(&x, 1, &g, &mut y);
            for (i, v) in y.iter().enumerate() {
                let (r, q) = (i / 4, i % 4);
                assert_eq!(v.is_nan(), r <= 1 && q >= 2, "output ({r}, {q}) = {v}");
            }
        }
        // The NaN also wins over larger values and over +∞ in max pooling.
        let mut y = [0.0];
        let one = PoolGeometry {
            kernel: 2,
            stride: 2,
            height: 2,
            width: 2,
            pads: [0; 4],
            channels: 1,
        };
        max_pool2d(&[f32::INFINITY, f32::NAN, 1.0, 2.0], 1, &one, &mut y);
        assert!(y[0].is_nan());
        max_pool2d(&[f32::NEG_INFINITY, f32::INFINITY, 1.0, 2.0], 1, &one, &mut y);
        assert_eq!(y[0], f32::INFINITY);
        let mut z = [0.0; 2];
        global_avg_pool(&[1.0, f32::NAN, 3.0, 4.0], 1, 2, 2, &mut z);
        assert!(z[0].is_nan() && z[1] == 3.5);
    }
}
