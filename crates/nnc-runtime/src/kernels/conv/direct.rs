//! Direct convolution: each output tile is `MR` output channels × `NV`
//! vectors of consecutive output positions, accumulated in registers over
//! the whole depth (input channels × kernel taps) and read straight from a
//! copy of the input, with no column matrix.
//!
//! The copy ([`Grid`]) is the input zero-padded and split into `stride²`
//! phases (phase `(a, b)` holds the padded pixels `(s·i + a, s·j + b)`), so
//! that for every tap the outputs of a row read consecutive values of one
//! phase: output `(r, q)` under tap `(ki, kj)` reads phase
//! `(ki·d mod s, kj·d mod s)` at `(r + ki·d div s, q + kj·d div s)`. The
//! outputs are computed on the phase's row width (a few columns too many,
//! dropped when the tile is copied out), so a vector of outputs runs across
//! rows and is one unaligned load per tap. The same grid serves the input
//! gradient, a stride-1 convolution of the output gradient spread out by the
//! stride (zeros between its pixels), with the kernel flipped.
//!
//! The weights are packed per group into strips of `MR` output channels,
//! depth-major, so a tap's `MR` weights are consecutive broadcasts.
//!
//! Tiles with channels in the vectors ([`Shape::across`]) broadcast each
//! position's source value, so they read any stride in place; each takes
//! only its positions' own taps ([`plan_across`]), so they need no copy.

use std::cell::{Cell, RefCell};
use std::ops::Range;

use super::ConvGeometry;
use crate::aligned::LINE;
use crate::kernels::epilogue::{ChannelForm, ChannelSteps, Epilogue};
use crate::kernels::pool::max_pool_rows;
use crate::kernels::simd::{low_lanes, Lanes, Level, Portable};
use crate::team::{Disjoint, Team};

/// Multiply-adds a part should have for a conv to share its work, parts
/// rounded to the nearest (two parts from 0.75 M). Below that a split
/// loses in the windows where this VM's two vCPUs are slow to reach each
/// other (mobile_mini's 0.5 M pointwise convs at batch 1: 0.048 ms in fast
/// windows either way, 0.075 → 0.104 in slow ones when split), while a 3
/// → 32 conv on a 32 × 32 map (0.9 M, cifar_vgg's first) shared gains
/// even there, now that its pools share their planes: cifar_vgg at batch 1
/// on two threads 0.375 → 0.364 ms, resnet_mini 0.640 → 0.628, mobile_mini
/// unchanged. The unit tests split everything, to reach the split paths on
/// small shapes.
pub(super) const WORK_PER_PART: usize = if cfg!(test) { 1 } else { 1 << 19 };
/// Floats of a unit's output tiles per thread: the unit's rows are chosen
/// to fit (at least one), so the tiles are copied out while in L2.
const OUT_CAP: usize = 32 * 1024;
/// Depth steps (channels × taps) per block: a tile's reads of a block
/// stay in L1 while the strips' weights pass over them. A 3 × 3 conv over
/// 64 channels (576) is one block, not two whose partial sums go through
/// memory (2–3 % faster on a 16 × 16 map on a Zen 4, AVX-512 and AVX2).
pub(super) const DEPTH_BLOCK: usize = 1024;
/// Floats of a strip's weights per block of channels in the
/// channels-in-vectors tiles (24 KiB: half of a 48 KiB L1).
const ACROSS_BLOCK: usize = 6 * 1024;
/// Depth steps (channels × taps) from which a tile fetches, for writing,
/// the lines of `y` that the tile two on stores to: at batch 64 they are
/// out of cache, and a 3 × 3 conv over 32 channels on a 32 × 32 map
/// waited on them (a tenth of its time, before it read its source in
/// place; 0.6 % now). A shallower tile has few multiply-adds to hide the
/// fetches behind, and their 24 instructions a tile cost more than they
/// saved: pointwise convs over 32, 64 and 128 channels at batch 64 on a
/// Zen 4 ran 3, 1.5 and 1.2 % faster without them, a 3 → 32 stride-2
/// first layer 3–5 %.
const WRITE_AHEAD_DEPTH: usize = 256;
/// The widest tile, in floats (8 vectors of 16).
const TILE_MAX: usize = 128;

/// How a direct convolution reads its source: where each source pixel lands
/// in a zero-padded plane, split into `stride²` phases of `phase_h × phase_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Grid {
    /// Source channels per group: the depth is `channels · kernel²`.
    pub channels: usize,
    pub src_h: usize,
    pub src_w: usize,
    /// Source pixel `(i, j)` lands at padded `(i·spread + top, j·spread + left)`.
    pub spread: usize,
    pub top: isize,
    pub left: isize,
    /// The kernel's rows and columns (square but for the input
    /// gradient's phases, [`super::phases`]).
    pub kernel: [usize; 2],
    pub dilation: usize,
    pub stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub phase_h: usize,
    pub phase_w: usize,
}

impl Grid {
    /// The forward convolution's: the input, padded, at the conv's stride.
    pub fn forward(g: &ConvGeometry) -> Grid {
        let s = g.stride.max(1);
        let [top, left, bottom, right] = g.pads;
        Grid {
            channels: g.in_channels / g.groups.max(1),
            src_h: g.height,
            src_w: g.width,
            spread: 1,
            top: top as isize,
            left: left as isize,
            kernel: [g.kernel; 2],
            dilation: g.dilation.max(1),
            stride: s,
            out_h: g.out_height(),
            out_w: g.out_width(),
            phase_h: (g.height + top + bottom).div_ceil(s),
            phase_w: (g.width + left + right).div_ceil(s),
        }
    }

    /// The input gradient's: the output gradient spread out by the stride
    /// and padded by `span − 1 − pad` (cut where that is negative), read at
    /// stride 1 with the flipped kernel, onto the input's size.
    pub fn transposed(g: &ConvGeometry) -> Grid {
        let span = g.span();
        Grid {
            channels: g.out_channels / g.groups.max(1),
            src_h: g.out_height(),
            src_w: g.out_width(),
            spread: g.stride.max(1),
            top: span as isize - 1 - g.pads[0] as isize,
            left: span as isize - 1 - g.pads[1] as isize,
            kernel: [g.kernel; 2],
            dilation: g.dilation.max(1),
            stride: 1,
            out_h: g.height,
            out_w: g.width,
            phase_h: g.height + span - 1,
            phase_w: g.width + span - 1,
        }
    }

    /// The kernel rows `lo..hi` that reach a source row from some output
    /// row in `first..=last`: the others read padding alone (at 8 × 8 a
    /// twelfth of a 3 × 3 conv's taps, at 16 × 16 a twenty-fourth).
    pub fn kernel_rows(&self, first: usize, last: usize) -> (usize, usize) {
        let rows = (self.top, self.src_h);
        reaching(
            self.kernel[0],
            self.dilation,
            self.stride,
            self.spread,
            rows,
            (first, last),
        )
    }

    /// The window of taps that read a source pixel from output `(r, c)`.
    fn window_at(&self, r: usize, c: usize) -> Window {
        Window {
            rows: self.kernel_rows(r, r),
            cols: self.kernel_cols(c, c),
            width: self.kernel[1],
        }
    }

    /// Where output `(r, c)`'s tap (0, 0) reads: in the copy, or
    /// `in_place` in the source itself, where it is before the plane's
    /// first float (or past its row's end) if that tap reads padding.
    fn read_at(&self, in_place: bool, r: usize, c: usize) -> i32 {
        let at = match in_place {
            true => {
                let (i, j) = (
                    (r * self.stride) as isize - self.top,
                    (c * self.stride) as isize - self.left,
                );
                i * self.src_w as isize + j
            }
            false => (r * self.phase_w + c) as isize,
        };
        at as i32
    }

    /// [`Grid::kernel_rows`] for columns.
    pub fn kernel_cols(&self, first: usize, last: usize) -> (usize, usize) {
        let cols = (self.left, self.src_w);
        reaching(
            self.kernel[1],
            self.dilation,
            self.stride,
            self.spread,
            cols,
            (first, last),
        )
    }

    /// Whether the copy is the source as it is: stride 1, no padding, no
    /// spreading out.
    pub fn is_plain(&self) -> bool {
        (self.stride, self.spread, self.top, self.left) == (1, 1, 0, 0)
            && (self.phase_h, self.phase_w) == (self.src_h, self.src_w)
    }

    pub fn plane(&self) -> usize {
        self.phase_h * self.phase_w
    }

    /// How far past an output position a tap reads, in phase rows (and columns).
    fn reach(&self) -> usize {
        self.kernel[0].max(self.kernel[1]).saturating_sub(1) * self.dilation / self.stride
    }

    pub fn depth(&self) -> usize {
        self.channels * self.taps()
    }

    /// Taps of the kernel.
    pub fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Floats of the copy: the phases, then room for the last tile's
    /// overrun (it reads past the last row; those outputs are dropped).
    pub fn source_len(&self) -> usize {
        self.stride * self.stride * self.channels * self.plane() + TILE_MAX + self.reach() + 1
    }

    /// Planes of `src_h × src_w` (as many as fit `buf`) onto rows of
    /// `phase_w`, `phase_h` of them a plane, zeros after each row: a
    /// weight gradient's output gradient on its copy's row width.
    pub fn widen(src: &[f32], (src_h, src_w): (usize, usize), phase_w: usize, buf: &mut [f32]) {
        let grid = Grid {
            channels: buf.len() / (src_h * phase_w).max(1),
            src_h,
            src_w,
            spread: 1,
            top: 0,
            left: 0,
            kernel: [1, 1],
            dilation: 1,
            stride: 1,
            out_h: src_h,
            out_w: src_w,
            phase_h: src_h,
            phase_w,
        };
        #[cfg(target_arch = "x86_64")]
        if Level::detect() == Level::Avx512 {
            // SAFETY: the CPU has AVX-512.
            return unsafe { grid.prepare_plain_avx512(src, buf) };
        }
        grid.prepare_plain::<false>(src, buf);
    }

    /// Lays one group's source planes (`channels` of `src_h × src_w`) out in
    /// `buf`, zeros in the room past the phases (only outputs that are
    /// dropped read it, but the weight gradient multiplies it by zeros, and
    /// a stale NaN would not vanish).
    pub fn prepare(&self, src: &[f32], buf: &mut [f32]) {
        let planes = src.chunks_exact(self.src_h * self.src_w).take(self.channels);
        let (buf, room) =
            buf[..self.source_len()].split_at_mut(self.stride * self.stride * self.channels * self.plane());
        room.fill(0.0);
        if self.stride == 1 && self.spread == 1 {
            #[cfg(target_arch = "x86_64")]
            if Level::detect() == Level::Avx512 {
                // SAFETY: the CPU has AVX-512.
                unsafe { self.prepare_plain_avx512(src, buf) };
                return;
            }
            self.prepare_plain::<false>(src, buf);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.spread == 1 && Level::detect() == Level::Avx512 {
            // SAFETY: the CPU has AVX-512.
            unsafe { self.prepare_strided_avx512(src, buf) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.spread == 1 && self.stride == 2 && Level::detect() == Level::Avx2 {
            // SAFETY: the CPU has AVX2.
            unsafe { self.prepare_stride2_avx2(src, buf) };
            return;
        }
        buf.fill(0.0);
        let (s, plane) = (self.stride, self.plane());
        let phases = self.channels * plane;
        let place = |at: usize, extent: usize, offset: isize| {
            let v = (at * self.spread) as isize + offset;
            usize::try_from(v).ok().filter(|&v| v < extent * s)
        };
        // The source columns inside the plane, from the first: stepping
        // `s` columns keeps the phase and moves `spread` phase columns, so
        // each phase takes every `s`-th column from the first that lands in
        // it (the forward: consecutive writes; the input gradient's spread
        // copy: `s` is 1).
        let first_j = (0..self.src_w).find(|&j| place(j, self.phase_w, self.left).is_some());
        let Some(first_j) = first_j else { return };
        for (c, channel) in planes.enumerate() {
            for (i, row) in channel.chunks_exact(self.src_w).enumerate() {
                let Some(vi) = place(i, self.phase_h, self.top) else {
                    continue;
                };
                let phase_row = (vi % s) * s * phases + c * plane + (vi / s) * self.phase_w;
                for j in first_j..(first_j + s).min(self.src_w) {
                    let Some(vj) = place(j, self.phase_w, self.left) else {
                        continue;
                    };
                    let (b, col) = (vj % s, vj / s);
                    let out = &mut buf[phase_row + b * phases..][..self.phase_w];
                    let cols = (col..self.phase_w).step_by(self.spread);
                    for (to, v) in cols.zip(row[j..].iter().step_by(s)) {
                        out[to] = *v;
                    }
                }
            }
        }
    }
}

impl Grid {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn prepare_plain_avx512(&self, src: &[f32], buf: &mut [f32]) {
        let inside = self.top >= 0
            && self.left >= 0
            && self.top as usize + self.src_h <= self.phase_h
            && self.left as usize + self.src_w <= self.phase_w;
        if !inside {
            return self.prepare_plain::<true>(src, buf);
        }
        // The source is all inside the plane: each vector of the padded
        // planes takes the next source floats into its interior lanes
        // (an expand), so a channel is a run of whole vectors, however
        // narrow its rows (an 8 × 8 map's rows are half a vector).
        use std::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_maskz_expand_ps, _mm512_maskz_loadu_ps};
        let (plane, src_plane) = (self.plane(), self.src_h * self.src_w);
        let (top, left) = (self.top as usize, self.left as usize);
        let lanes_of = LaneMasks {
            len: plane,
            rows: top..top + self.src_h,
            pitch: self.phase_w,
            cols: left..left + self.src_w,
        };
        let first = lanes_of.chunk(0);
        let planes = src.chunks_exact(src_plane).take(self.channels);
        for (channel, out) in planes.zip(buf.chunks_exact_mut(plane)) {
            let (mut from, mut to) = (channel.as_ptr(), out.as_mut_ptr());
            lanes_of.each(&first, |k, lanes| {
                let n = lanes.count_ones() as usize;
                let at = k * 16;
                let store = low_lanes(plane - at);
                // SAFETY: the interior lanes of the plane, counted from its
                // first vector, number exactly the source plane's floats,
                // so `from` reads inside `channel`; the stores stay inside
                // `out`.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(low_lanes(n), from);
                    _mm512_mask_storeu_ps(to, store, _mm512_maskz_expand_ps(lanes, v));
                    from = from.add(n);
                    to = to.add(16);
                }
            });
        }
    }

    /// [`Grid::prepare`] at a stride above 1 (not spread out), in AVX-512:
    /// every row of every phase written once, its source pixels (every
    /// `stride`-th of a source row) gathered 16 at a time, zeros where
    /// the row or a column falls in the padding.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn prepare_strided_avx512(&self, src: &[f32], buf: &mut [f32]) {
        use std::arch::x86_64::{
            _mm512_add_epi32, _mm512_mask_i32gather_ps, _mm512_mask_storeu_ps, _mm512_max_epi32, _mm512_min_epi32,
            _mm512_mullo_epi32, _mm512_set1_epi32, _mm512_setr_epi32, _mm512_setzero_ps, _mm512_setzero_si512,
        };
        let (s, plane, src_plane) = (self.stride, self.plane(), self.src_h * self.src_w);
        if s == 2 {
            return self.prepare_stride2_avx512(src, buf);
        }
        let phases = self.channels * plane;
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let steps = _mm512_mullo_epi32(lane, _mm512_set1_epi32(s as i32));
        let (src_w, phase_w) = (self.src_w as isize, self.phase_w);
        let planes = src.chunks_exact(src_plane.max(1)).take(self.channels);
        for (c, channel) in planes.enumerate() {
            for phase in 0..s * s {
                let (a, b) = (phase / s, phase % s);
                let out = &mut buf[phase * phases + c * plane..][..plane];
                for (pr, out_row) in out.chunks_exact_mut(phase_w).enumerate() {
                    let i = (pr * s + a) as isize - self.top;
                    let row = (0..self.src_h as isize)
                        .contains(&i)
                        .then(|| &channel[i as usize * self.src_w..][..self.src_w]);
                    for t0 in (0..phase_w).step_by(16) {
                        // Lane l reads source column start + s·l.
                        let start = (t0 * s + b) as isize - self.left;
                        let lo = if start >= 0 {
                            0
                        } else {
                            start.unsigned_abs().div_ceil(s) as isize
                        };
                        let hi = if start >= src_w {
                            0
                        } else {
                            (src_w - start).unsigned_abs().div_ceil(s) as isize
                        };
                        let store = low_lanes(phase_w - t0);
                        let read = match row {
                            Some(_) => store & lane_range(lo, hi),
                            None => 0,
                        };
                        let v = match row {
                            Some(row) if read != 0 => {
                                // Lanes outside the row read its ends (and
                                // are masked off): a gather whose dropped
                                // lanes point outside memory is far slower.
                                let offsets = _mm512_add_epi32(_mm512_set1_epi32(start as i32), steps);
                                let inside = _mm512_min_epi32(
                                    _mm512_max_epi32(offsets, _mm512_setzero_si512()),
                                    _mm512_set1_epi32(self.src_w as i32 - 1),
                                );
                                // SAFETY: every offset is a column of the row.
                                unsafe {
                                    _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), read, inside, row.as_ptr())
                                }
                            }
                            _ => _mm512_setzero_ps(),
                        };
                        // SAFETY: the store stays inside the phase row.
                        unsafe { _mm512_mask_storeu_ps(out_row.as_mut_ptr().add(t0), store, v) };
                    }
                }
            }
        }
    }

    /// [`Grid::prepare_strided_avx512`] at stride 2, the common one: 32
    /// consecutive floats of a source row loaded (masked to the row) and
    /// split into their even and odd columns, the two phases of that row,
    /// by two permutes (a gather per 16 values was a fifth of a
    /// MobileNet-like forward).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn prepare_stride2_avx512(&self, src: &[f32], buf: &mut [f32]) {
        use std::arch::x86_64::{
            _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32, _mm512_setzero_ps,
        };
        let (plane, src_plane, phase_w) = (self.plane(), self.src_h * self.src_w, self.phase_w);
        let phases = self.channels * plane;
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let src_w = self.src_w as isize;
        let channels = src.len().min(self.channels * src_plane) / src_plane.max(1);
        assert!(buf.len() >= 4 * phases && channels <= self.channels);
        // Columns outside, rows inside, so that a column's masks are worked
        // out once for every row of every channel, and no closure (one is
        // not compiled with this function's AVX-512, stays a call and
        // returns its vector through memory: the copy was a seventh of a
        // stride-2 conv at batch 1, most of it on masks and calls).
        for t0 in (0..phase_w).step_by(16) {
            // Phase (a, b) column t0 + l reads source column first + 2l + b.
            let first = (2 * t0) as isize - self.left;
            let (low_read, high_read) = (
                lane_range(-first, src_w - first),
                lane_range(-first - 16, src_w - first - 16),
            );
            let store = low_lanes(phase_w - t0);
            for c in 0..channels {
                for row_at in 0..2 * self.phase_h {
                    let (a, pr) = (row_at / self.phase_h, row_at % self.phase_h);
                    let i = (pr * 2 + a) as isize - self.top;
                    let (evens, odds) = if (0..self.src_h as isize).contains(&i) {
                        let from = src.as_ptr().wrapping_add(c * src_plane + i as usize * self.src_w);
                        // SAFETY: the lanes read are inside row i of
                        // channel c; the others are not touched.
                        let (low, high) = unsafe {
                            (
                                _mm512_maskz_loadu_ps(low_read, from.wrapping_offset(first)),
                                _mm512_maskz_loadu_ps(high_read, from.wrapping_offset(first + 16)),
                            )
                        };
                        (
                            _mm512_permutex2var_ps(low, even, high),
                            _mm512_permutex2var_ps(low, odd, high),
                        )
                    } else {
                        (_mm512_setzero_ps(), _mm512_setzero_ps())
                    };
                    let at = (2 * a) * phases + c * plane + pr * phase_w + t0;
                    // SAFETY: the stores stay inside the phase rows (the
                    // assert above: `at + phases` is in phase (a, 1)).
                    unsafe {
                        _mm512_mask_storeu_ps(buf.as_mut_ptr().add(at), store, evens);
                        _mm512_mask_storeu_ps(buf.as_mut_ptr().add(at + phases), store, odds);
                    }
                }
            }
        }
    }

    /// [`Grid::prepare_stride2_avx512`] in AVX2: 16 source columns a step
    /// (two loads), their even and odd columns by two in-lane shuffles and
    /// two permutes of 64-bit pairs (the scalar copy was a quarter of a
    /// stride-2 first conv on a Zen 1). Masked moves only where a vector
    /// is partly outside the row: on a Zen 1 a masked load or store costs
    /// several plain ones, and with them at every step the copy was a fifth
    /// of a 32 → 64 stride-2 conv on a 32 × 32 map.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn prepare_stride2_avx2(&self, src: &[f32], buf: &mut [f32]) {
        use std::arch::x86_64::*;
        let (plane, src_plane, phase_w) = (self.plane(), self.src_h * self.src_w, self.phase_w);
        let phases = self.channels * plane;
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        // The lanes of `from..from + 8` in `0..n`, as a mask.
        let inside = |from: isize, n: isize| {
            let at = _mm256_add_epi32(_mm256_set1_epi32(from as i32), lanes);
            let above = _mm256_cmpgt_epi32(at, _mm256_set1_epi32(-1));
            _mm256_and_si256(above, _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), at))
        };
        // Outputs 0 2 4 6 of `low`, then of `high` (`ODD`: 1 3 5 7).
        let pick = |low: __m256, high: __m256, odd: bool| {
            let v = if odd {
                _mm256_shuffle_ps::<0b11_01_11_01>(low, high)
            } else {
                _mm256_shuffle_ps::<0b10_00_10_00>(low, high)
            };
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        // How much of `from..from + 8` is in a row of `n`.
        #[derive(Clone, Copy)]
        enum Cover {
            All,
            Part(__m256i),
            Nothing,
        }
        let cover = |from: isize, n: isize| match (from >= 0 && from + 8 <= n, from + 8 <= 0 || from >= n) {
            (true, _) => Cover::All,
            (_, true) => Cover::Nothing,
            _ => Cover::Part(inside(from, n)),
        };
        // SAFETY (of the calls): the lanes `cover` says are in the row are.
        let load = |at: *const f32, cover: Cover| unsafe {
            match cover {
                Cover::All => _mm256_loadu_ps(at),
                Cover::Part(lanes) => _mm256_maskload_ps(at, lanes),
                Cover::Nothing => _mm256_setzero_ps(),
            }
        };
        let src_w = self.src_w as isize;
        let channels = src.len().min(self.channels * src_plane) / src_plane.max(1);
        assert!(buf.len() >= 4 * phases && channels <= self.channels);
        // Columns outside, rows inside, as the AVX-512 copy.
        for t0 in (0..phase_w).step_by(8) {
            let first = (2 * t0) as isize - self.left;
            let (low_read, high_read) = (cover(first, src_w), cover(first + 8, src_w));
            let n = (phase_w - t0).min(8);
            for c in 0..channels {
                for row_at in 0..2 * self.phase_h {
                    let (a, pr) = (row_at / self.phase_h, row_at % self.phase_h);
                    let i = (pr * 2 + a) as isize - self.top;
                    let (evens, odds) = if (0..self.src_h as isize).contains(&i) {
                        let from = src.as_ptr().wrapping_add(c * src_plane + i as usize * self.src_w);
                        // The lanes read are inside row i of channel c;
                        // the others are not touched.
                        let low = load(from.wrapping_offset(first), low_read);
                        let high = load(from.wrapping_offset(first + 8), high_read);
                        (pick(low, high, false), pick(low, high, true))
                    } else {
                        (_mm256_setzero_ps(), _mm256_setzero_ps())
                    };
                    let to = (2 * a) * phases + c * plane + pr * phase_w + t0;
                    // SAFETY: the stores stay inside the phase rows (the
                    // assert above: `to + phases` is in phase (a, 1)).
                    unsafe {
                        if n == 8 {
                            let at = buf.as_mut_ptr().add(to);
                            _mm256_storeu_ps(at, evens);
                            _mm256_storeu_ps(at.add(phases), odds);
                        } else {
                            // A row's last few: through the stack.
                            let mut lanes = [[0.0f32; 8]; 2];
                            _mm256_storeu_ps(lanes[0].as_mut_ptr(), evens);
                            _mm256_storeu_ps(lanes[1].as_mut_ptr(), odds);
                            copy_run(&mut buf[to..to + n], &lanes[0]);
                            copy_run(&mut buf[to + phases..to + phases + n], &lanes[1]);
                        }
                    }
                }
            }
        }
    }

    /// [`Grid::prepare`] at stride 1 (not spread out): one pass, row by
    /// row, each padded row written whole (`MASKED`: in AVX-512 vectors).
    #[inline(always)]
    fn prepare_plain<const MASKED: bool>(&self, src: &[f32], buf: &mut [f32]) {
        let planes = src.chunks_exact(self.src_h * self.src_w).take(self.channels);
        for (channel, out) in planes.zip(buf.chunks_exact_mut(self.plane())) {
            for (pi, out_row) in out.chunks_exact_mut(self.phase_w).enumerate() {
                let i = usize::try_from(pi as isize - self.top).ok().filter(|&i| i < self.src_h);
                let row = match i {
                    Some(i) => &channel[i * self.src_w..(i + 1) * self.src_w],
                    None => &[],
                };
                if MASKED {
                    // SAFETY: only callers with AVX-512 set `MASKED`.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        place_row_avx512(out_row, row, self.left)
                    };
                } else {
                    place_row(out_row, row, self.left);
                }
            }
        }
    }
}

/// The kernel offsets `lo..hi` (along one axis of a kernel of `k`) that
/// reach a source pixel from some output in `first..=last`, where the
/// source's `len` pixels land `spread` apart from padded place `pad`.
fn reaching(
    k: usize,
    dilation: usize,
    stride: usize,
    spread: usize,
    (pad, len): (isize, usize),
    (first, last): (usize, usize),
) -> (usize, usize) {
    let (k, d, s) = (k as isize, dilation.max(1) as isize, stride as isize);
    // Output `r` reads padded place `r·stride + ki·dilation`.
    let (top, bottom) = (pad, pad + (len as isize - 1) * spread as isize);
    let below = top - last as isize * s;
    let lo = if below <= 0 { 0 } else { (below + d - 1) / d };
    let above = bottom - first as isize * s;
    let hi = if above < 0 { 0 } else { above / d + 1 };
    let (lo, hi) = (lo.clamp(0, k) as usize, hi.clamp(0, k) as usize);
    (lo, hi.max(lo))
}

/// Vectors of masks computed at a time, on the stack.
const CHUNK: usize = 128;

/// Which of `len` positions, in rows of `pitch`, are in `rows` and `cols`
/// (a source's pixels in a padded plane, outputs among tile positions):
/// bit `l` of mask `k` set where position `16k + l` is.
struct LaneMasks {
    len: usize,
    rows: Range<usize>,
    pitch: usize,
    cols: Range<usize>,
}

impl LaneMasks {
    fn vectors(&self) -> usize {
        self.len.div_ceil(16)
    }

    /// The masks of vectors `start..start + CHUNK`, a row's run of bits a
    /// word at a time (a few operations a row, against a copy of every
    /// channel); zero past the last.
    fn chunk(&self, start: usize) -> [u16; CHUNK] {
        let mut lanes = [0u16; CHUNK];
        let (from, to) = (start * 16, ((start + CHUNK) * 16).min(self.len));
        let pitch = self.pitch.max(1);
        for r in self.rows.start.max(from / pitch)..self.rows.end.min(to.div_ceil(pitch)) {
            let mut at = (r * pitch + self.cols.start).max(from);
            let end = (r * pitch + self.cols.end).min(to);
            while at < end {
                let (word, bit) = (at / 16 - start, at % 16);
                let n = (16 - bit).min(end - at);
                lanes[word] |= low_lanes(n) << bit;
                at += n;
            }
        }
        lanes
    }

    /// `f(k, mask)` for every vector `k` in order, the masks a chunk at a
    /// time, the first (`first`, from [`LaneMasks::chunk`] at 0, made once
    /// for every channel) borrowed: a copy of it a channel, and the
    /// 2-byte loads of each mask from that copy, stalled store-to-load
    /// forwarding (a third of an input gradient's padded copies of `dy`
    /// on Zen 4).
    #[inline(always)]
    fn each(&self, first: &[u16; CHUNK], mut f: impl FnMut(usize, u16)) {
        for start in (0..self.vectors()).step_by(CHUNK) {
            let later;
            let chunk = if start == 0 {
                first
            } else {
                later = self.chunk(start);
                &later
            };
            for (k, lanes) in chunk.iter().take(self.vectors() - start).enumerate() {
                f(start + k, *lanes);
            }
        }
    }
}

/// A mask of lanes `lo..hi` (clamped to the 16).
pub(super) fn lane_range(lo: isize, hi: isize) -> u16 {
    let (lo, hi) = (lo.clamp(0, 16) as usize, hi.clamp(0, 16) as usize);
    low_lanes(hi) & !low_lanes(lo)
}

/// `dst[j] = src[j − offset]` where that is in `src`, else 0, for every
/// `j` of `dst`: a source row placed in a padded (or cropped) one.
pub(super) fn place_row(dst: &mut [f32], src: &[f32], offset: isize) {
    let left = usize::try_from(offset).unwrap_or(0).min(dst.len());
    let skip = usize::try_from(-offset).unwrap_or(0).min(src.len());
    let (pad, rest) = dst.split_at_mut(left);
    zero_run(pad);
    let n = (src.len() - skip).min(rest.len());
    copy_run(&mut rest[..n], &src[skip..skip + n]);
    zero_run(&mut rest[n..]);
}

/// [`place_row`] in masked AVX-512 moves: a vector per 16 floats of `dst`,
/// padding and source alike, with no branch per run of moves.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn place_row_avx512(dst: &mut [f32], src: &[f32], offset: isize) {
    use std::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};
    let (n, m) = (dst.len() as isize, src.len() as isize);
    let lanes = |from: isize, to: isize| -> u16 {
        let (from, to) = (from.clamp(0, 16), to.clamp(0, 16));
        (((1u32 << to) - 1) & !((1u32 << from) - 1)) as u16
    };
    let mut k = 0;
    while k < n {
        // Lane `l` writes dst[k + l] and reads src[k + l − offset].
        let store = lanes(0, n - k);
        let read = store & lanes(offset - k, offset + m - k);
        // SAFETY: the lanes read are inside `src`, those written inside
        // `dst`; masked-off lanes are not touched (nor fault).
        let v = _mm512_maskz_loadu_ps(read, src.as_ptr().wrapping_offset(k - offset));
        _mm512_mask_storeu_ps(dst.as_mut_ptr().offset(k), store, v);
        k += 16;
    }
}

/// Places each row of `dst` from `src` (rows of `dst_w` and `src_w`) as
/// [`place_row`] does, vectorised where the CPU allows.
pub(super) fn place_rows(dst: &mut [f32], dst_w: usize, src: &[f32], src_w: usize, offset: isize) {
    let rows = dst.chunks_exact_mut(dst_w.max(1)).zip(src.chunks_exact(src_w.max(1)));
    #[cfg(target_arch = "x86_64")]
    if Level::detect() == Level::Avx512 {
        #[target_feature(enable = "avx512f")]
        unsafe fn all<'a>(rows: impl Iterator<Item = (&'a mut [f32], &'a [f32])>, offset: isize) {
            for (d, s) in rows {
                // SAFETY: the CPU has AVX-512 (the caller checked).
                unsafe { place_row_avx512(d, s, offset) };
            }
        }
        // SAFETY: the CPU has AVX-512.
        unsafe { all(rows, offset) };
        return;
    }
    for (d, s) in rows {
        place_row(d, s, offset);
    }
}

/// `dst = src` for the short runs of one row, in moves of 8, 4, 2 and 1
/// floats inline, where `copy_from_slice` would call `memmove` per row.
/// Each move is followed by an empty `asm!` barrier: LLVM sees a loop of
/// moves as a copy and calls `memmove` all the same (whose setup on rows
/// of 8 to 32 floats cost a tenth of an 8 × 8 depthwise conv).
#[inline]
#[allow(clippy::int_plus_one)] // `at + 1 <= n` reads as its siblings do.
pub(super) fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let mut at = 0;
    macro_rules! moves {
        ($($width:literal),*) => {$(
            while at + $width <= n {
                if let (Ok(d), Ok(s)) = (
                    <&mut [f32; $width]>::try_from(&mut dst[at..at + $width]),
                    <&[f32; $width]>::try_from(&src[at..at + $width]),
                ) {
                    *d = *s;
                }
                #[cfg(target_arch = "x86_64")]
                // SAFETY: an empty template: no instruction, no effect.
                unsafe {
                    std::arch::asm!("", options(nomem, nostack, preserves_flags))
                };
                at += $width;
            }
        )*};
    }
    moves!(8, 4, 2, 1);
}

/// `dst = 0` for the padding of one row, as [`copy_run`] (no `memset` call).
#[inline]
pub(super) fn zero_run(dst: &mut [f32]) {
    const ZEROS: [f32; 8] = [0.0; 8];
    for part in dst.chunks_mut(8) {
        copy_run(part, &ZEROS);
    }
}

/// A micro-tile: `mr` output channels by `nv` vectors of `lanes` positions;
/// or, with `across` (channels in vectors), `nv` output positions by `mr`
/// channels, `mr / lanes` vectors of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    pub mr: usize,
    nv: usize,
    lanes: usize,
    across: bool,
}

impl Shape {
    /// The shape for this CPU, `out_group` output channels per group and
    /// the output `grid`: 24 accumulators (AVX-512) or 8 (AVX2), as many
    /// channels as divide evenly, and one channel by many vectors for a
    /// depthwise conv. Where rows of positions fill vectors badly (maps of
    /// 8 × 8 and smaller take 16-lane vectors two-thirds full) and the
    /// channels come in 32s, AVX-512 puts channels in the vectors instead.
    /// AVX2 has 16 registers: tiles of 12 sums (4 × 3, 6 × 2) leave too
    /// few for the reads, and LLVM keeps two or three sums on the stack,
    /// a store and a load around each of their multiply-adds (4 × 2 and
    /// 2 × 4 were 15–25 % faster on a Zen core's 3 × 3 and 1 × 1 convs).
    pub fn pick(out_group: usize, grid: &Grid) -> Shape {
        let level = Level::detect();
        let lanes = if level == Level::Avx512 { 16 } else { 8 };
        let (mr, nv) = match level {
            _ if out_group <= 2 => (1, if level == Level::Base { 4 } else { 8 }),
            Level::Avx512 if out_group.is_multiple_of(8) => (8, 3),
            Level::Avx512 => (12, 2),
            _ if out_group.is_multiple_of(4) => (4, 2),
            Level::Avx2 => (2, 4),
            Level::Base => (4, 2),
        };
        let positions = Shape {
            mr,
            nv,
            lanes,
            across: false,
        };
        if level != Level::Avx512 || positions.position_use(grid) >= 0.85 {
            return positions;
        }
        match (out_group.is_multiple_of(64), out_group.is_multiple_of(32)) {
            (true, _) => Shape {
                mr: 64,
                nv: 6,
                lanes,
                across: true,
            },
            (false, true) => Shape {
                mr: 32,
                nv: 12,
                lanes,
                across: true,
            },
            _ => positions,
        }
    }

    /// The share of computed positions that are outputs, for tiles of
    /// positions on `grid` (a whole map a unit).
    fn position_use(&self, grid: &Grid) -> f64 {
        let outputs = grid.out_h * grid.out_w;
        let vectors = if grid.out_w.is_multiple_of(self.lanes) {
            outputs / self.lanes
        } else {
            (grid.out_h * grid.phase_w).div_ceil(self.lanes)
        };
        // As [`Direct::tiles`] computes them: a last vector on its own is
        // a tile of one, a last few a whole tile.
        let last = match vectors % self.nv {
            0 => 0,
            1 => 1,
            _ => self.nv,
        };
        let computed = (vectors / self.nv * self.nv + last) * self.lanes;
        outputs as f64 / computed.max(1) as f64
    }

    pub(super) fn lanes(&self) -> usize {
        self.lanes
    }

    pub(super) fn tile(&self) -> usize {
        self.nv * self.lanes
    }

    /// Whether the tiles put channels in the vectors.
    pub fn across(&self) -> bool {
        self.across
    }

    pub(super) fn strips(&self, out_group: usize) -> usize {
        out_group.div_ceil(self.mr)
    }
}

/// Floats of `groups` groups' weights packed by [`pack`].
pub(super) fn packed_len(shape: Shape, groups: usize, out_group: usize, depth: usize) -> usize {
    groups * shape.strips(out_group) * shape.mr * depth
}

/// Packs the weights into strips of `mr` output channels, depth-major,
/// zero past the last channel: output channel `o` of a group on source
/// channel `c` at tap `t` (depth `c · taps + t`) is `weights[at(group, c,
/// t) + o · o_stride]`. The depth comes as channel and tap, and the output
/// channel as a stride, so that a strip's slot is a strided run read with
/// one offset computed (an input gradient's flipped kernel, with four
/// divisions a weight, was a sixth of the 8 × 8 layers' dX, and the
/// offsets of every weight 4 % of a stride-2 layer's).
pub(super) fn pack(
    shape: Shape,
    groups: usize,
    out_group: usize,
    (channels, taps): (usize, usize),
    (weights, o_stride, at): (&[f32], usize, impl Fn(usize, usize, usize) -> usize),
    out: &mut [f32],
) {
    let mr = shape.mr;
    let strip_len = mr * channels * taps;
    for group in 0..groups {
        for strip in 0..shape.strips(out_group) {
            let first = strip * mr;
            let n = mr.min(out_group - first);
            let from = |c: usize, t: usize| {
                weights[at(group, c, t) + first * o_stride..]
                    .iter()
                    .step_by(o_stride.max(1))
            };
            let at_strip = (group * shape.strips(out_group) + strip) * strip_len;
            let mut slots = out[at_strip..at_strip + strip_len].chunks_exact_mut(mr);
            for c in 0..channels {
                for t in 0..taps {
                    let Some(slot) = slots.next() else { return };
                    let (kept, past) = slot.split_at_mut(n);
                    kept.iter_mut().zip(from(c, t)).for_each(|(v, w)| *v = *w);
                    past.fill(0.0);
                }
            }
        }
    }
}

/// One direct convolution: `groups` groups of `out_group` output channels,
/// the weights packed by [`pack`] with `shape`.
pub(super) struct Direct<'a> {
    grid: Grid,
    shape: Shape,
    groups: usize,
    out_group: usize,
    packed: &'a [f32],
    epilogue: &'a Epilogue<'a>,
    /// The epilogue as a few steps per channel, if it has that form.
    form: Option<ChannelForm<'a>>,
    /// With one source channel per group (a depthwise conv), the groups
    /// run as one, `multiplier` output channels reading each source
    /// channel: a sample's channels are laid out and tiled in one go.
    multiplier: Option<usize>,
    /// Whether the tiles read a 3 × 3 conv's padded source in place,
    /// masking the lanes that fall in the padding ([`Direct::edges`]).
    edges: bool,
    /// Whether channels-in-vectors tiles read the source itself, at any
    /// stride and padding: each of their positions takes its own taps
    /// and no others ([`plan_across`] with `in_place`), so none reads
    /// padding, and a strided conv needs no copy split into phases.
    across_in_place: bool,
    /// The window of the max pool fused after the epilogue (1: none): each
    /// unit's outputs go into the thread's tile buffer, and from there,
    /// pooled, into `y` ([`Direct::pool_unit`]).
    pool: usize,
    /// Floats between one group's planes and the next's, in the source
    /// and in the output, past its channels' own ([`Direct::gapped`]).
    gaps: [usize; 2],
}

impl<'a> Direct<'a> {
    pub fn new(
        grid: Grid,
        shape: Shape,
        groups: usize,
        out_group: usize,
        packed: &'a [f32],
        epilogue: &'a Epilogue<'a>,
    ) -> Direct<'a> {
        Direct::laid_out(grid, shape, (groups, out_group), packed, epilogue, [0; 2])
    }

    /// A conv with no epilogue whose groups lie `gaps` floats apart past
    /// their channels' planes, in the source and in the output: a group's
    /// planes a multiple of 4 KiB long put the same place of every group
    /// in one set of L1's (Winograd's transforms write and read all 16
    /// groups at once).
    pub fn gapped(
        grid: Grid,
        shape: Shape,
        (groups, out_group): (usize, usize),
        packed: &'a [f32],
        gaps: [usize; 2],
    ) -> Direct<'a> {
        Direct::laid_out(grid, shape, (groups, out_group), packed, &Epilogue::NONE, gaps)
    }

    fn laid_out(
        grid: Grid,
        shape: Shape,
        (groups, out_group): (usize, usize),
        packed: &'a [f32],
        epilogue: &'a Epilogue<'a>,
        gaps: [usize; 2],
    ) -> Direct<'a> {
        let mut direct = Direct {
            grid,
            shape,
            groups,
            out_group,
            packed,
            epilogue,
            form: epilogue.channel_form(),
            multiplier: None,
            edges: false,
            across_in_place: shape.across && grid.spread == 1,
            pool: 1,
            gaps,
        };
        if direct.reads_padding_in_place() {
            // The tiles read the source's own rows, not a padded copy's.
            direct.grid.phase_h = grid.src_h;
            direct.grid.phase_w = grid.src_w;
            direct.edges = true;
        }
        // (When whole strips fit in one source channel's outputs, and the
        // groups are one run of channels, with no gaps between them.)
        if grid.channels == 1 && groups > 1 && out_group.is_multiple_of(shape.mr) && gaps == [0; 2] {
            direct.grid.channels = groups;
            direct.groups = 1;
            direct.out_group = groups * out_group;
            direct.multiplier = Some(out_group);
        }
        if direct.shape.mr == 1 {
            // One channel by as many vectors as a unit has, up to 8.
            let (rows, lanes) = (direct.rows(), direct.shape.lanes);
            let vectors = if direct.stores_direct() {
                rows * direct.grid.out_w / lanes
            } else {
                (rows * direct.grid.phase_w).div_ceil(lanes)
            };
            direct.shape.nv = vectors.clamp(1, 8);
        }
        direct
    }

    /// With a `window × window` max pool fused after the epilogue (1 for
    /// none; not with a residual or channels-in-vectors tiles).
    pub fn pooled(mut self, window: usize) -> Direct<'a> {
        debug_assert!(window <= 1 || (self.epilogue.residual.is_none() && !self.shape.across && self.gaps == [0; 2]));
        self.pool = window.max(1);
        self
    }

    /// Floats of the weights' depth per output channel.
    fn depth(&self) -> usize {
        match self.multiplier {
            Some(_) => self.grid.taps(),
            None => self.grid.depth(),
        }
    }

    /// Output rows per unit: as many as fit [`OUT_CAP`], at least one.
    fn rows(&self) -> usize {
        let channels = self.shape.strips(self.out_group) * self.shape.mr;
        let most = (OUT_CAP / (channels * self.grid.phase_w).max(1)).clamp(1, self.grid.out_h.max(1));
        // Blocks of even size: 16 + 16 rows, not 30 + 2.
        let rows = self.grid.out_h.div_ceil(self.grid.out_h.div_ceil(most).max(1)).max(1);
        // A pool's windows do not straddle two units.
        rows.next_multiple_of(self.pool).min(self.grid.out_h.max(1))
    }

    /// Floats between the output channels where the tiles store direct:
    /// `y`'s planes, or with a fused pool, the tile buffer's rows.
    fn direct_ld(&self) -> usize {
        match self.pool {
            1 => self.grid.out_h * self.grid.out_w,
            _ => self.out_stride(),
        }
    }

    /// Floats between the rows of the tile buffer (one per channel).
    fn out_stride(&self) -> usize {
        (self.rows() * self.grid.phase_w).next_multiple_of(self.shape.tile())
    }

    /// Scratch per thread: the source copy and the unit's output tiles.
    pub fn scratch_per_thread(grid: &Grid, shape: Shape, groups: usize, out_group: usize, pool: usize) -> usize {
        let direct = Direct::new(*grid, shape, groups, out_group, &[], &Epilogue::NONE);
        direct.pooled(pool).own_scratch()
    }

    fn own_scratch(&self) -> usize {
        let tiles = self.shape.strips(self.out_group) * self.shape.mr * self.out_stride();
        (self.copy_len() + tiles).next_multiple_of(LINE)
    }

    /// Floats of a thread's scratch before its tile buffer: the source
    /// copy, rounded to whole cache lines so that the tiles (and the next
    /// thread's scratch) start on one when the scratch does.
    fn copy_len(&self) -> usize {
        match self.reads_in_place() {
            true => 0,
            false => self.grid.source_len().next_multiple_of(LINE),
        }
    }

    /// `y` (`[batch, groups·out_group, out_h, out_w]`) from `src`
    /// (`[batch, groups·channels, src_h, src_w]`), the epilogue applied.
    pub fn run(&self, src: &[f32], batch: usize, y: &mut [f32], scratch: &mut [f32], team: &Team) {
        let grid = &self.grid;
        if batch == 0 || grid.out_h * grid.out_w == 0 || self.out_group == 0 {
            return;
        }
        let strips = self.shape.strips(self.out_group);
        let row_blocks = grid.out_h.div_ceil(self.rows());
        let span = self.span(batch, row_blocks);
        // A batch too small to share: share each sample's channels.
        let blocks = batch.div_ceil(span) * self.groups * row_blocks;
        let chunks = if blocks < team.threads() {
            team.threads().min(strips)
        } else {
            1
        };
        let units = blocks * chunks;
        let work = [self.groups, self.out_group, grid.out_h, grid.out_w, self.depth()]
            .iter()
            .fold(batch, |w, n| w.saturating_mul(*n));
        let parts = team
            .threads()
            .min(units)
            .min(work.saturating_add(WORK_PER_PART / 2) / WORK_PER_PART)
            .max(1);
        let (y, scratch) = (Disjoint::new(y), Disjoint::new(scratch));
        with_tap_offsets(grid, self.across_in_place, |taps| {
            self.with_across_plan(row_blocks, |across| {
                self.run_units(
                    src,
                    (batch, span),
                    (units, parts, chunks, row_blocks),
                    (taps, across),
                    y,
                    scratch,
                    team,
                )
            })
        });
    }

    /// `f(plan)` with the calling thread's [`AcrossPlan`] for this conv's
    /// `row_blocks` blocks of rows (empty for positions tiles).
    fn with_across_plan<R>(&self, row_blocks: usize, f: impl FnOnce(&AcrossPlan) -> R) -> R {
        ACROSS.with(|plan| {
            let mut plan = plan.borrow_mut();
            let (px, nv, rows) = (self.shape.nv, self.shape.mr / self.shape.lanes, self.rows());
            let key = self.shape.across.then_some((self.grid, px, nv, rows));
            // The same conv again (the next pass of an inference, the next
            // step): its tiles as planned.
            if key.is_some() && plan.key == key {
                return f(&plan);
            }
            plan.key = key;
            let AcrossPlan {
                tiles, starts, spare, ..
            } = &mut *plan;
            tiles.clear();
            starts.clear();
            if self.shape.across {
                for block in 0..row_blocks {
                    starts.push(tiles.len());
                    let block_rows = block * rows..((block + 1) * rows).min(self.grid.out_h);
                    plan_across(&self.grid, block_rows, (px, nv), self.across_in_place, tiles, spare);
                }
                starts.push(tiles.len());
            }
            f(&plan)
        })
    }

    /// Samples per unit: one, or for a conv read in place whose samples'
    /// vectors of positions do not fill whole tiles (a pointwise conv on
    /// an 8 × 8 map is four vectors: a tile of three and a tile of one,
    /// at a third of the speed), as many as make whole tiles, so that
    /// tiles run on from one sample into the next (8–9 % on mobile_mini's
    /// 8 × 8 pointwise convs at batch 64).
    fn span(&self, batch: usize, row_blocks: usize) -> usize {
        let grid = &self.grid;
        let pools = self.pool > 1;
        if !self.reads_in_place() || self.edges || self.shape.across || self.groups != 1 || row_blocks != 1 || pools {
            return 1;
        }
        let (vectors, nv) = (grid.out_h * grid.out_w / self.shape.lanes, self.shape.nv);
        // Past a few tiles a sample, the short last one is a small share
        // (a 16 × 16 map's sixteen vectors ran 2–5 % slower in spans);
        // `nv` samples always make whole tiles.
        if vectors.is_multiple_of(nv) || vectors >= 4 * nv {
            return 1;
        }
        nv.min(batch.max(1))
    }

    /// Whether the tiles read the source itself, not a copy: an unpadded
    /// pointwise conv whose tiles read no further than its outputs, or
    /// a padded 3 × 3 one read with [`Direct::edges`].
    fn reads_in_place(&self) -> bool {
        self.edges || self.across_in_place || (self.grid.is_plain() && self.stores_direct())
    }

    /// Whether the tiles can read a 3 × 3 stride-1 conv's source (or an
    /// input gradient's, the output gradient) in place, with AVX-512's
    /// masked loads taking zeros for the padding columns and the kernel
    /// rows that read padding skipped ([`Grid::kernel_rows`]), so that
    /// there is no padded copy to make: a 32 × 32 map's copy was 3–4 %
    /// of its conv at batch 64. The tiles must store straight into the
    /// output with each vector in one row (an output row a whole number
    /// of vectors, as wide as the source's).
    fn reads_padding_in_place(&self) -> bool {
        let g = &self.grid;
        Level::detect() == Level::Avx512
            && !self.shape.across
            && self.shape.mr > 1
            && self.stores_direct()
            && (g.kernel, g.stride, g.dilation, g.spread) == ([3, 3], 1, 1, 1)
            && (g.out_h, g.out_w) == (g.src_h, g.src_w)
            && (0..=2).contains(&g.top)
            && g.left == 1
    }

    /// Floats between consecutive samples of a unit ([`Direct::span`]):
    /// in its source (read in place) and in the output.
    fn sample_strides(&self) -> (usize, usize) {
        let g = &self.grid;
        (g.channels * g.plane(), self.out_group * g.out_h * g.out_w)
    }

    /// The body of [`Direct::run`]: `units` units of (sample and group,
    /// chunk of strips, block of rows) shared among `parts` parts.
    #[allow(clippy::too_many_arguments)]
    fn run_units(
        &self,
        src: &[f32],
        (batch, span): (usize, usize),
        (units, parts, chunks, row_blocks): (usize, usize, usize, usize),
        (taps, across): (&[usize], &AcrossPlan),
        y: Disjoint<'_>,
        scratch: Disjoint<'_>,
        team: &Team,
    ) {
        let grid = &self.grid;
        let (out_plane, src_plane) = (grid.out_h * grid.out_w, grid.src_h * grid.src_w);
        let (strips, rows) = (self.shape.strips(self.out_group), self.rows());
        let per_thread = self.own_scratch();
        let in_place = self.reads_in_place();
        // A unit's samples: `span` of them (the last unit's fewer), a
        // sample group each when the conv has groups (then `span` is 1).
        let sample_len = span * grid.channels * src_plane;
        let sample_groups = batch * self.groups;
        // What the tiles apply on their way out; the rest runs on each unit.
        let tile_finish = self.tiles_finish();
        team.run(parts, &|t| {
            let mine = crate::kernels::dense::split(units, parts, t, 1);
            // This unit's share of the source this thread reads next (the
            // next sample's, where it has one): at batch 64 a layer's
            // input is out of L2, and its copy waited on each line. Tiles
            // that read the source in place did not wait (the hardware's
            // prefetch follows their reads), and the fetches' instructions
            // cost more than they saved (pointwise convs at batch 64 on a
            // Zen 4 0.8–1.3 % faster without them).
            let (per_sample, last) = (chunks * row_blocks, mine.end);
            let ahead = |unit_samples: usize, rest: usize| -> &[f32] {
                let next = unit_samples + 1;
                if in_place || next * per_sample >= last || next * sample_len >= src.len() {
                    return &[];
                }
                let share = sample_len.div_ceil(per_sample);
                let end = ((next + 1) * sample_len).min(src.len());
                let from = (next * sample_len + rest * share).min(end);
                &src[from..(from + share).min(end)]
            };
            // SAFETY: each part has its own scratch.
            let own = unsafe { scratch.piece(t * per_thread..(t + 1) * per_thread) };
            let (source, tiles) = own.split_at_mut(self.copy_len());
            let mut prepared = None;
            for unit in mine {
                let (unit_samples, rest) = (unit / (chunks * row_blocks), unit % (chunks * row_blocks));
                let (chunk, block) = (rest / row_blocks, rest % row_blocks);
                let sample_group = unit_samples * span;
                let samples = span.min(sample_groups - sample_group);
                let from = sample_group * (grid.channels * src_plane + self.gaps[0]);
                let planes = from..from + samples * grid.channels * src_plane;
                if prepared != Some(sample_group) && !in_place {
                    grid.prepare(&src[planes.clone()], source);
                    prepared = Some(sample_group);
                }
                let source: &[f32] = if in_place { &src[planes] } else { source };
                let strip_range = crate::kernels::dense::split(strips, chunks, chunk, 1);
                let row_range = block * rows..((block + 1) * rows).min(grid.out_h);
                let group = sample_group % self.groups;
                let n = sample_group / self.groups;
                let group_plane = (n * self.groups + group) * (self.out_group * out_plane + self.gaps[1]);
                let direct = self.stores_direct();
                let unit = Unit {
                    source,
                    taps,
                    across: across.block(block),
                    strips: strip_range.clone(),
                    rows: row_range.clone(),
                    group,
                    // SAFETY (of the unit's writes): units write disjoint
                    // (sample, channel, rows) pieces of y.
                    out: match (direct, self.pool) {
                        (true, 1) => y.as_mut_ptr().wrapping_add(group_plane),
                        // The unit's first row at the buffer's start.
                        (true, _) => tiles.as_mut_ptr().wrapping_sub(row_range.start * grid.out_w),
                        (false, _) => tiles.as_mut_ptr(),
                    },
                    sums: tiles.as_mut_ptr(),
                    residual: match tile_finish {
                        Some(TileEpilogue::BiasResidual { residual, .. }) => {
                            residual.as_ptr().wrapping_add(group_plane)
                        }
                        _ => std::ptr::null(),
                    },
                    ahead: Ahead::new(ahead(unit_samples, rest)),
                    samples,
                };
                self.unit(&unit);
                let channels = strip_range.start * self.shape.mr..(strip_range.end * self.shape.mr).min(self.out_group);
                if self.pool > 1 {
                    let applied = direct && tile_finish.is_some();
                    let first = (n * self.groups + group) * self.out_group;
                    self.pool_unit(tiles, (first, group), channels, row_range, applied, y);
                    continue;
                }
                let rows_at = row_range.start * grid.out_w..row_range.end * grid.out_w;
                // A residual is added once the unit's outputs are final, while
                // they are in cache (in the loop over them, where there is one).
                let finish = |channels: Range<usize>| {
                    if self.epilogue.residual.is_none() {
                        return;
                    }
                    debug_assert_eq!(samples, 1, "a unit of samples stores its tiles direct");
                    for o in channels {
                        let at = group_plane + o * out_plane + rows_at.start;
                        // SAFETY: as above.
                        let out = unsafe { y.piece(at..at + rows_at.len()) };
                        self.epilogue.finish_channel(out, at, group * self.out_group + o);
                    }
                };
                if direct {
                    if matches!(tile_finish, Some(TileEpilogue::BiasResidual { .. })) {
                        continue;
                    }
                    for sample in 0..samples {
                        for o in channels.clone() {
                            let at = group_plane + sample * self.sample_strides().1 + o * out_plane + rows_at.start;
                            // SAFETY: as above.
                            let out = unsafe { y.piece(at..at + rows_at.len()) };
                            if tile_finish.is_none() {
                                self.epilogue.apply_channel(out, group * self.out_group + o);
                            }
                            self.epilogue.finish_channel(out, at, group * self.out_group + o);
                        }
                    }
                    continue;
                }
                // Run the epilogue on the tiles while they are in cache (on
                // the columns past out_w too: cheaper than a call per row),
                // then copy the outputs out, dropping those columns.
                let ld = self.out_stride();
                let outs = channels.clone().map(|o| {
                    let plane_at = group_plane + o * out_plane;
                    // SAFETY: as above.
                    let out = unsafe { y.piece(plane_at + rows_at.start..plane_at + rows_at.end) };
                    (o, out)
                });
                #[cfg(target_arch = "x86_64")]
                if Level::detect() == Level::Avx512 {
                    // SAFETY: the CPU has AVX-512.
                    unsafe { self.copy_out_avx512(tiles, ld, row_range.len(), group, outs) };
                    finish(channels);
                    continue;
                }
                for (o, out) in outs {
                    let tile_row = &mut tiles[o * ld..o * ld + row_range.len() * grid.phase_w];
                    self.epilogue.apply_channel(tile_row, group * self.out_group + o);
                    place_rows(out, grid.out_w, tile_row, grid.phase_w, 0);
                }
                finish(channels);
            }
        });
    }

    /// A unit's outputs, which its tiles left in the tile buffer (rows of
    /// channel `o` of the group at `o · out_stride`, on the output width
    /// stored direct, else on the phase width), pooled into `y`
    /// (`first` the group's first channel in the batch), the epilogue
    /// applied first unless the tiles `applied` it.
    fn pool_unit(
        &self,
        tiles: &mut [f32],
        (first, group): (usize, usize),
        channels: Range<usize>,
        rows: Range<usize>,
        applied: bool,
        y: Disjoint<'_>,
    ) {
        let grid = &self.grid;
        let (p, ld) = (self.pool, self.out_stride());
        let pitch = match self.stores_direct() {
            true => grid.out_w,
            false => grid.phase_w,
        };
        let (pooled_w, pooled_plane) = (grid.out_w / p, (grid.out_h / p) * (grid.out_w / p));
        debug_assert!(rows.start.is_multiple_of(p));
        let pooled_rows = rows.start / p..rows.end / p;
        for o in channels {
            let outputs = &mut tiles[o * ld..o * ld + rows.len() * pitch];
            if !applied {
                self.epilogue.apply_channel(outputs, group * self.out_group + o);
            }
            let at = (first + o) * pooled_plane + pooled_rows.start * pooled_w;
            // SAFETY: units pool disjoint (sample, channel, rows) pieces of y.
            let out = unsafe { y.piece(at..at + pooled_rows.len() * pooled_w) };
            max_pool_rows(outputs, (rows.len(), grid.out_w, pitch), p, out);
        }
    }

    /// The copy-out of a unit's tiles (`rows` rows on the phase width, the
    /// rows of output channel `o` of the group at `o · ld`) into `outs`
    /// (`(o, its rows of y)`), the epilogue applied: a vector of tile
    /// positions at a time, its outputs packed together (a compress) and
    /// stored, the epilogue on the way where
    /// [`ChannelSteps`](crate::kernels::epilogue::ChannelSteps) has it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn copy_out_avx512<'y>(
        &self,
        tiles: &mut [f32],
        ld: usize,
        rows: usize,
        group: usize,
        outs: impl Iterator<Item = (usize, &'y mut [f32])>,
    ) {
        use std::arch::x86_64::{_mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_compress_ps};
        let grid = &self.grid;
        let positions = rows * grid.phase_w;
        let lanes_of = LaneMasks {
            len: positions,
            rows: 0..rows,
            pitch: grid.phase_w,
            cols: 0..grid.out_w,
        };
        let first = lanes_of.chunk(0);
        let form = self.epilogue.channel_form();
        for (o, out) in outs {
            let channel = group * self.out_group + o;
            // A tile row has room for whole vectors (`ld` is a multiple
            // of the tile), so every vector loads inside it.
            let tile_row = &mut tiles[o * ld..(o + 1) * ld];
            debug_assert!(lanes_of.vectors() * 16 <= tile_row.len() && out.len() == rows * grid.out_w);
            let steps = form.map(|form| form.at(channel));
            if steps.is_none() {
                self.epilogue.apply_channel(&mut tile_row[..positions], channel);
            }
            let mut to = out.as_mut_ptr();
            lanes_of.each(&first, |k, lanes| {
                // SAFETY: the load is inside the tile row; the lanes kept
                // number the outputs of this vector, the next ones of `out`.
                unsafe {
                    let mut v = _mm512_loadu_ps(tile_row.as_ptr().add(16 * k));
                    if let Some(steps) = &steps {
                        v = steps.apply(v);
                    }
                    let n = lanes.count_ones() as usize;
                    _mm512_mask_storeu_ps(to, low_lanes(n), _mm512_maskz_compress_ps(lanes, v));
                    to = to.add(n);
                }
            });
        }
    }

    /// Whether the tiles are stored straight into the output: when whole
    /// vectors tile each output row (a tile's vectors are then row
    /// segments, with no columns to drop) and whole strips the channels.
    /// Otherwise tiles run across rows on the phase width, into the
    /// thread's tile buffer, whose strips have room for every row.
    fn stores_direct(&self) -> bool {
        (self.shape.across || self.grid.out_w.is_multiple_of(self.shape.lanes))
            && self.out_group.is_multiple_of(self.shape.mr)
    }

    /// The epilogue's steps, when the tiles take them on their way into
    /// the output (stored straight there, positions in the vectors): a
    /// separate pass over a pointwise conv's outputs, which leave L1
    /// before it comes, was a sixth of its time.
    /// Positions tiles take any [`ChannelForm`] (a bias and ReLU on the
    /// registers, the others through a copy of the sums); channels-in-
    /// vectors tiles a bias and ReLU only (a vector of biases a vector of
    /// sums).
    fn tiles_finish(&self) -> Option<TileEpilogue<'a>> {
        if let (Some((bias, residual, relu)), true, false) =
            (self.epilogue.bias_residual(), self.stores_direct(), self.shape.across)
        {
            return Some(TileEpilogue::BiasResidual { bias, residual, relu });
        }
        let form = self.form.filter(|_| self.stores_direct())?;
        match (form.bias_relu(), self.shape.across) {
            (Some(bias), _) => Some(TileEpilogue::BiasRelu(bias)),
            (None, false) => Some(TileEpilogue::Steps(form)),
            (None, true) => None,
        }
    }

    /// The tiles of strips `at.strips` over output rows `at.rows`, compiled
    /// for this CPU's vectors.
    fn unit(&self, at: &Unit) {
        #[cfg(target_arch = "x86_64")]
        match Level::detect() {
            // SAFETY: the CPU has each variant's features.
            Level::Avx512 => return unsafe { self.unit_avx512(at) },
            Level::Avx2 => return unsafe { self.unit_avx2(at) },
            Level::Base => {}
        }
        match (self.shape.mr, self.shape.nv) {
            (1, _) => self.tiles::<Portable, 1, 4, false>(at),
            _ => self.tiles::<Portable, 4, 2, false>(at),
        }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn unit_avx512(&self, at: &Unit) {
        match (self.shape.across, self.shape.mr, self.shape.nv) {
            (true, 64, _) => self.across_avx512::<6, 4>(at),
            (true, _, _) => self.across_avx512::<12, 2>(at),
            (_, 1, 1) => self.tiles_avx512::<1, 1, false>(at),
            (_, 1, 2) => self.tiles_avx512::<1, 2, false>(at),
            (_, 1, 3) => self.tiles_avx512::<1, 3, false>(at),
            (_, 1, 4) => self.tiles_avx512::<1, 4, false>(at),
            (_, 1, 5) => self.tiles_avx512::<1, 5, false>(at),
            (_, 1, 6) => self.tiles_avx512::<1, 6, false>(at),
            (_, 1, 7) => self.tiles_avx512::<1, 7, false>(at),
            (_, 1, _) => self.tiles_avx512::<1, 8, false>(at),
            (_, 8, _) if self.edges => self.tiles_avx512::<8, 3, true>(at),
            (_, 8, _) => self.tiles_avx512::<8, 3, false>(at),
            _ if self.edges => self.tiles_avx512::<12, 2, true>(at),
            _ => self.tiles_avx512::<12, 2, false>(at),
        }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn unit_avx2(&self, at: &Unit) {
        match (self.shape.mr, self.shape.nv) {
            (1, 1) => self.tiles_avx2::<1, 1>(at),
            (1, 2) => self.tiles_avx2::<1, 2>(at),
            (1, 3..=4) => self.tiles_avx2::<1, 4>(at),
            (1, _) => self.tiles_avx2::<1, 8>(at),
            (4, _) => self.tiles_avx2::<4, 2>(at),
            _ => self.tiles_avx2::<2, 4>(at),
        }
    }

    // Each shape's tiles in a function of their own, not all inlined into
    // one dispatch: unoptimised, their locals together outgrew a test
    // thread's 2 MiB stack.

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn tiles_avx512<const MR: usize, const NV: usize, const EDGES: bool>(&self, at: &Unit) {
        self.tiles::<std::arch::x86_64::__m512, MR, NV, EDGES>(at)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn across_avx512<const PX: usize, const NV: usize>(&self, at: &Unit) {
        self.tiles_across::<PX, NV>(at)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tiles_avx2<const MR: usize, const NV: usize>(&self, at: &Unit) {
        self.tiles::<std::arch::x86_64::__m256, MR, NV, false>(at)
    }

    /// The body of [`Direct::unit`] for vectors `V` and `MR × NV` tiles.
    #[inline(always)]
    fn tiles<V: Lanes, const MR: usize, const NV: usize, const EDGES: bool>(&self, at: &Unit) {
        let grid = &self.grid;
        let (depth, plane) = (self.depth(), grid.plane());
        let strip_len = MR * depth;
        let group_at = at.group * self.shape.strips(self.out_group) * strip_len;
        let s = grid.stride;
        let last = (s * s - 1) * grid.channels * plane + grid.reach() * (grid.phase_w + 1);
        // How far before an output its tap (0, 0) reads, read in place.
        let padding = (grid.top * grid.phase_w as isize + grid.left) as usize;
        // Where vector `v` of tile `t` reads (from the copy's first channel)
        // and writes (channel 0 of the strip, channels `ld` apart).
        let direct = self.stores_direct();
        let finish = self.tiles_finish();
        let (ld, vectors) = if direct {
            let per_row = grid.out_w / V::N;
            (self.direct_ld(), at.samples * at.rows.len() * per_row)
        } else {
            (self.out_stride(), (at.rows.len() * grid.phase_w).div_ceil(V::N))
        };
        let place = |index: usize| {
            if direct {
                let per_row = grid.out_w / V::N;
                let per_sample = at.rows.len() * per_row;
                let (sample, index) = (index / per_sample, index % per_sample);
                let (r, q) = (at.rows.start + index / per_row, (index % per_row) * V::N);
                let (from, to) = self.sample_strides();
                (sample * from + r * grid.phase_w + q, sample * to + r * grid.out_w + q)
            } else {
                (at.rows.start * grid.phase_w + index * V::N, index * V::N)
            }
        };
        // Blocks of channels whose reads and weights stay in L1 across a
        // strip's tiles; the tiles add up the blocks' sums where they go.
        // A depthwise strip reads one channel, its own.
        let taps = grid.taps();
        let most = (DEPTH_BLOCK / taps.max(1)).max(1);
        let block = grid.channels.div_ceil(grid.channels.div_ceil(most).max(1)).max(1);
        let blocks = match self.multiplier {
            Some(_) => 1,
            None => grid.channels.div_ceil(block),
        };
        at.ahead.spread(blocks * vectors.div_ceil(NV) * at.strips.len());
        let pitch = row_pitch(at.taps);
        // The output rows of vector `index`'s positions, and the kernel
        // rows that a tile of vectors `from..=to` reads a source row with
        // (with a pitch: the others are skipped).
        let rows_of = |index: usize| -> (usize, usize) {
            if direct {
                let per_row = grid.out_w / V::N;
                let r = at.rows.start + index % (at.rows.len() * per_row) / per_row;
                (r, r)
            } else {
                let p = index * V::N;
                (
                    at.rows.start + p / grid.phase_w,
                    at.rows.start + (p + V::N - 1) / grid.phase_w,
                )
            }
        };
        let kernel_rows = |from: usize, to: usize| match pitch {
            Some(_) => grid.kernel_rows(rows_of(from).0, rows_of(to).1),
            None => (0, grid.kernel[0]),
        };
        let all = Window::all(grid);
        // Units of whole maps: the next unit (the thread's next sample)
        // writes where the tiles' places run on past this one's.
        let whole_maps = at.rows.len() == grid.out_h && self.pool == 1;
        let residual = matches!(finish, Some(TileEpilogue::BiasResidual { .. }));
        // Whether the tiles fetch their lines of `y` ahead ([`WRITE_AHEAD_DEPTH`]).
        let writes_ahead = direct && depth >= WRITE_AHEAD_DEPTH;
        // Tiles outside, strips inside: a tile's reads stay in L1 while
        // every strip's weights (a block's worth) pass over them.
        for b in 0..blocks {
            // One tile of K vectors: `spots` are where each reads and writes.
            macro_rules! tile {
                ($k:tt, $spots:expr, $kernel_rows:expr, $first:expr) => {{
                    let spots: [(usize, usize); $k] = $spots;
                    let kernel_rows = $kernel_rows;
                    // Each vector's lanes that read the source under each
                    // kernel column (with `EDGES`): the others are in the
                    // padding left or right of its row. Filled in a loop,
                    // as `spots`.
                    let mut edges = [[0u16; 3]; $k];
                    if EDGES {
                        for (lanes, (from, _)) in edges.iter_mut().zip(&spots) {
                            let q = (from % grid.phase_w) as isize;
                            for (kj, l) in lanes.iter_mut().enumerate() {
                                let lo = grid.left - kj as isize - q;
                                *l = lane_range(lo, lo + grid.src_w as isize);
                            }
                        }
                    }
                    // Where the tile two tiles on stores, where this block's
                    // tiles store into y (the last block's, stored direct).
                    let spots_ahead: [Option<usize>; $k] = std::array::from_fn(|v| {
                        let ahead = $first + 2 * NV + v;
                        (writes_ahead && b + 1 == blocks && (ahead < vectors || whole_maps)).then(|| place(ahead).1)
                    });
                    for strip in at.strips.clone() {
                        let (c0, channels) = match self.multiplier {
                            Some(m) => (strip * MR / m, 1),
                            None => (b * block, block.min(grid.channels - b * block)),
                        };
                        let reads = Reads {
                            channels,
                            plane,
                            taps: at.taps,
                            pitch,
                            window: Window {
                                rows: kernel_rows,
                                ..all
                            },
                        };
                        let w_at =
                            group_at + strip * strip_len + (c0 * taps * MR) * usize::from(self.multiplier.is_none());
                        let w = &self.packed[w_at..w_at + channels * taps * MR];
                        let src = spots.map(|(from, _)| {
                            let from = from + c0 * plane;
                            if EDGES {
                                // Where tap (0, 0) would read, in the
                                // padding: only lanes and kernel rows that
                                // land in the source are read from it.
                                return at.source.as_ptr().wrapping_add(from).wrapping_sub(padding);
                            }
                            debug_assert!(
                                from + last + (channels - 1) * plane + V::N
                                    <= at
                                        .source
                                        .len()
                                        .min(grid.source_len() + (at.samples - 1) * self.sample_strides().0),
                                "reads past the copy"
                            );
                            at.source[from..].as_ptr()
                        });
                        let dst = spots.map(|(_, to)| at.out.wrapping_add(strip * MR * ld + to));
                        // The last block's sums are the outputs (with whole
                        // strips, `stores_direct`, a strip's MR channels are
                        // there).
                        let first = at.group * self.out_group + strip * MR;
                        // Filled only where the tile applies them (stores of
                        // MR steps per tile otherwise).
                        let steps: [ChannelSteps; MR];
                        let finish = match finish.filter(|_| b + 1 == blocks) {
                            None => Finish::Sums,
                            Some(TileEpilogue::BiasRelu(bias)) => Finish::BiasRelu(bias[first..].as_ptr()),
                            Some(TileEpilogue::BiasResidual { bias, relu, .. }) => Finish::BiasResidual {
                                bias: bias[first..].as_ptr(),
                                residual: spots.map(|(_, to)| at.residual.wrapping_add(strip * MR * ld + to)),
                                relu,
                            },
                            Some(TileEpilogue::Steps(form)) => {
                                steps = std::array::from_fn(|i| form.at(first + i));
                                Finish::Steps(&steps)
                            }
                        };
                        at.ahead.step();
                        // The strip's lines of y two tiles on, fetched for
                        // writing: at batch 64 they are out of cache, and
                        // the tile's stores, each to a line of its own,
                        // waited on them (a tenth of a 3 × 3 conv on a
                        // 32 × 32 map; fetched a few a strip, not all at
                        // once, or the fetches wait).
                        for &to in spots_ahead.iter().flatten() {
                            for i in 0..MR {
                                write_soon(at.out.wrapping_add((strip * MR + i) * ld + to));
                                if residual {
                                    read_soon(at.residual.wrapping_add((strip * MR + i) * ld + to));
                                }
                            }
                        }
                        // SAFETY: the reads stay inside `source` (a copy's
                        // length has room for a vector and the reach past
                        // the last row; read in place, the window's kernel
                        // rows are the source's and `edges` the lanes in
                        // its rows), `w` holds the block's `MR · depth`, and the
                        // MR rows of each `dst` are this unit's (in y, or in
                        // the tile buffer, whose rows of `ld` hold every
                        // position).
                        unsafe { micro::<V, MR, $k, EDGES>(&reads, src, &edges, w.as_ptr(), dst, ld, b > 0, finish) };
                    }
                }};
            }
            let mut first = 0;
            while first < vectors {
                // One or two vectors left: a tile of as many, not of NV
                // computing some twice (a 32 × 32 map's 3 × 3 conv has
                // units of 32 vectors: a tenth of its tiles were a third
                // wasted, 3–4 % of its time).
                // Four left of tiles of three: two tiles of two, not
                // three and a tile of one, whose eight multiply-adds a
                // step wait on nine loads (a product of four vectors of
                // Winograd tiles, 64 → 64 on 16 × 16, ran at half the FMA
                // peak on a Xeon).
                let take = match vectors - first {
                    1 => 1,
                    2 if NV > 2 => 2,
                    4 if NV == 3 => 2,
                    left => left.min(NV),
                };
                // Only vectors that read the same kernel rows go together,
                // so that a map's top and bottom rows (their kernel rows
                // cut) skip the taps that read padding: at 8 × 8, one
                // vector a row, six taps in place of nine; at 32 × 32 the
                // two vectors of each edge row are a tile of their own.
                let take = match pitch {
                    Some(_) => {
                        let own = kernel_rows(first, first);
                        (1..take)
                            .find(|&v| kernel_rows(first + v, first + v) != own)
                            .unwrap_or(take)
                    }
                    None => take,
                };
                let rows = kernel_rows(first, first + take - 1);
                match take {
                    1 => tile!(1, [place(first)], rows, first),
                    2 if NV > 2 => tile!(2, [place(first), place(first + 1)], rows, first),
                    _ => {
                        // A short tile (the last, or one cut before an
                        // edge row) repeats its last vector: the same
                        // sums, stored twice.
                        // Filled in a loop: a closure given to
                        // `array::from_fn` stays a call per tile (2 % of a
                        // 27-deep first conv).
                        let mut spots = [(0, 0); NV];
                        for (v, spot) in spots.iter_mut().enumerate() {
                            *spot = place(first + v.min(take - 1));
                        }
                        tile!(NV, spots, rows, first);
                    }
                }
                first += take;
            }
        }
    }

    /// [`Direct::tiles`] with channels in the vectors: tiles of `PX`
    /// output positions ([`plan_across`]: alike positions of the map, not
    /// consecutive ones) by `NV` vectors of channels, stored straight into
    /// the output.
    #[inline(always)]
    #[cfg(target_arch = "x86_64")]
    fn tiles_across<const PX: usize, const NV: usize>(&self, at: &Unit) {
        type V = std::arch::x86_64::__m512;
        let grid = &self.grid;
        let plane = match self.across_in_place {
            true => grid.src_h * grid.src_w,
            false => grid.plane(),
        };
        let (depth, mr) = (self.depth(), NV * V::N);
        let strip_len = mr * depth;
        let group_at = at.group * self.shape.strips(self.out_group) * strip_len;
        let out_plane = grid.out_h * grid.out_w;
        let taps = at.taps.len();
        // Blocks of channels whose weights (a strip's) stay in L1 while
        // every tile of the unit passes over them: a strip of 64 channels
        // of a 3 × 3 kernel over 128 input channels is 295 KB, streamed
        // from L2 once per tile otherwise. The tiles keep their partial
        // sums in the tile buffer between blocks (as `PX × NV` vectors).
        // The blocks are as alike as they can be: a short last one is the
        // tiles' loads and stores of their sums for little work.
        let most = (ACROSS_BLOCK / (taps.max(1) * mr)).clamp(1, grid.channels.max(1));
        let blocks = grid.channels.div_ceil(most);
        let bias_relu = match self.tiles_finish() {
            Some(TileEpilogue::BiasRelu(bias)) => Some(bias),
            _ => None,
        };
        // Planned by the conv's calling thread ([`AcrossPlan`]).
        let tiles = at.across;
        at.ahead.spread(at.strips.len() * blocks * tiles.len());
        for strip in at.strips.clone() {
            let w = &self.packed[group_at + strip * strip_len..group_at + (strip + 1) * strip_len];
            let bias = bias_relu.map(|bias| bias[at.group * self.out_group + strip * mr..].as_ptr());
            for block in 0..blocks {
                let c0 = block * grid.channels / blocks;
                let channels = (block + 1) * grid.channels / blocks - c0;
                let last = block + 1 == blocks;
                // Where each tile keeps its sums: `PX` positions' worth, or
                // one for a tile of one.
                let mut slot = 0;
                for tile in tiles.iter() {
                    // Not the row pitch: with six positions' pointers
                    // live, these tiles spill with it (20 % slower).
                    let reads = Reads {
                        channels,
                        plane,
                        taps: at.taps,
                        pitch: None,
                        window: tile.window,
                    };
                    // A short tile repeats its last position.
                    // (Read in place, a position by the padding is read
                    // from before the source's first float: by its taps
                    // that reach past the padding alone.)
                    let src: [*const f32; PX] = std::array::from_fn(|i| {
                        let read = tile.reads[i.min(tile.count - 1)] as isize;
                        at.source.as_ptr().wrapping_add(c0 * plane).wrapping_offset(read)
                    });
                    let sums = at.sums.wrapping_add(slot * mr);
                    slot += if tile.count == 1 { 1 } else { PX };
                    let out = last.then(|| {
                        (
                            at.out.wrapping_add(strip * mr * out_plane),
                            out_plane,
                            &tile.stores,
                            bias,
                        )
                    });
                    at.ahead.step();
                    // SAFETY: as in `tiles`: the reads stay inside
                    // `source` (every tap of a position is in its
                    // padded plane), `w` holds the strip's `mr · depth`
                    // (the block's from `c0 · taps · mr`), the tile's
                    // sums are its own part of the thread's buffer
                    // (there are as many tiles as `PX` consecutive
                    // positions make), and the strip's channels at the
                    // tile's positions are this unit's part of y.
                    unsafe {
                        let w = w.as_ptr().add(c0 * taps * mr);
                        if tile.count == 1 {
                            micro_across::<1, NV>(&reads, [src[0]], w, sums, c0 > 0, out);
                        } else {
                            micro_across::<PX, NV>(&reads, src, w, sums, c0 > 0, out);
                        }
                    }
                }
            }
        }
    }
}

/// Positions of a channels-in-vectors tile, at most.
const ACROSS_MAX: usize = 12;

/// One tile of [`Direct::tiles_across`]: `count` output positions of a
/// sample (`row · out_w + column`, ascending), where each reads its tap
/// (0, 0) ([`Grid::read_at`]), the window of taps they read a source
/// pixel with, and where their outputs go.
#[derive(Clone, Copy, Debug)]
struct AcrossTile {
    positions: [u32; ACROSS_MAX],
    reads: [i32; ACROSS_MAX],
    count: usize,
    window: Window,
    stores: Stores,
}

/// Groups of eight positions in a tile.
const GROUPS: usize = ACROSS_MAX.div_ceil(8);

/// Where a channels-in-vectors tile's outputs go: each eight positions'
/// runs of consecutive ones ([`store_transposed`]), worked out once with
/// the tile, not at each of its stores.
#[derive(Clone, Copy, Debug, Default)]
struct Stores {
    runs: [[Run; 8]; GROUPS],
    counts: [usize; GROUPS],
}

impl Stores {
    /// The runs of `positions` (ascending), eight at a time.
    fn of(positions: &[u32]) -> Stores {
        let mut stores = Stores::default();
        for (i, &p) in positions.iter().enumerate() {
            let (group, lane) = (i / 8, i % 8);
            let n = &mut stores.counts[group];
            if *n > 0 && lane > 0 && positions[i - 1] + 1 == p {
                stores.runs[group][*n - 1].lanes |= 1 << lane;
            } else {
                stores.runs[group][*n] = Run {
                    lanes: 1 << lane,
                    at: p as usize - lane,
                };
                *n += 1;
            }
        }
        stores
    }

    /// The runs of positions `8g..8g + 8`.
    fn group(&self, g: usize) -> &[Run] {
        &self.runs[g][..self.counts[g]]
    }
}

/// The tiles of [`Direct::tiles_across`] for each block of output rows,
/// planned by the thread that runs the conv before its team starts, and
/// room for the tiles' leftovers while it plans.
pub(super) struct AcrossPlan {
    tiles: Vec<AcrossTile>,
    /// Where each block's tiles start in `tiles`, and where the last ends.
    starts: Vec<usize>,
    spare: Vec<AcrossTile>,
    /// The conv planned: its grid, tile (positions, vectors) and rows a
    /// block.
    key: Option<(Grid, usize, usize, usize)>,
}

impl AcrossPlan {
    /// The tiles of block `block`: none for a conv of positions tiles.
    fn block(&self, block: usize) -> &[AcrossTile] {
        match self.starts.get(block..block + 2) {
            Some(&[start, end]) => &self.tiles[start..end],
            _ => &[],
        }
    }
}

thread_local! {
    /// The calling thread's [`AcrossPlan`]: grown to its largest conv, so
    /// that a planned step allocates nothing after its first. On the
    /// calling thread, not each of the team's: which units a team thread
    /// takes differs from call to call, and a thread's first unit of a
    /// conv would have grown its own plan on a later step.
    static ACROSS: RefCell<AcrossPlan> = const {
        RefCell::new(AcrossPlan {
            tiles: Vec::new(),
            starts: Vec::new(),
            spare: Vec::new(),
            key: None,
        })
    };
}

/// The runs of `span` alike in `key`, with it: rows (or columns) of
/// outputs that read the same kernel rows.
fn alike<K: PartialEq>(span: Range<usize>, key: impl Fn(usize) -> K) -> impl Iterator<Item = (Range<usize>, K)> {
    let mut at = span.start;
    std::iter::from_fn(move || {
        if at >= span.end {
            return None;
        }
        let (start, first) = (at, key(at));
        while at < span.end && key(at) == first {
            at += 1;
        }
        Some((start..at, first))
    })
}

/// Appends to `tiles` tiles of `px` positions over the output rows `rows`
/// of `grid`, each of positions that read alike windows of the kernel: a
/// 3 × 3 conv's 8 × 8 map is an inside of 6 × 6 positions (every tap),
/// four edges of six (six taps: a padding row or column skipped) and four
/// corners (four taps, one position a tile), 484 position-taps in place
/// of 594 for tiles of six consecutive positions: 11 % faster at 128
/// channels on a Zen 4. The positions of each window are cut into tiles
/// of `px`; what is left of each is put together into tiles whose windows
/// grow least, or split into tiles of one where that computes less. Their
/// sums take no more room than the tiles of `px` consecutive positions
/// would, so that the tile buffer holds them.
///
/// Tiles that read the source `in_place` take each position's own window:
/// a wider one would read, for its taps over the padding, floats of the
/// next row or channel. What is left of each window then goes together
/// only with what is left of the same window, and is a tile of its own
/// while there is room for its sums, then tiles of one.
fn plan_across(
    grid: &Grid,
    rows: Range<usize>,
    (px, nv): (usize, usize),
    in_place: bool,
    tiles: &mut Vec<AcrossTile>,
    spare: &mut Vec<AcrossTile>,
) {
    spare.clear();
    let (first_tile, room) = (tiles.len(), (rows.len() * grid.out_w).div_ceil(px) * px);
    for (row_run, kernel_rows) in alike(rows, |r| grid.kernel_rows(r, r)) {
        for (col_run, kernel_cols) in alike(0..grid.out_w, |c| grid.kernel_cols(c, c)) {
            let mut tile = AcrossTile {
                positions: [0; ACROSS_MAX],
                reads: [0; ACROSS_MAX],
                count: 0,
                window: Window {
                    rows: kernel_rows,
                    cols: kernel_cols,
                    width: grid.kernel[1],
                },
                stores: Stores::default(),
            };
            for r in row_run.clone() {
                for c in col_run.clone() {
                    tile.positions[tile.count] = (r * grid.out_w + c) as u32;
                    tile.reads[tile.count] = grid.read_at(in_place, r, c);
                    tile.count += 1;
                    if tile.count == px {
                        tiles.push(tile);
                        tile.count = 0;
                    }
                }
            }
            if tile.count > 0 {
                spare.push(tile);
            }
        }
    }
    // The leftovers: the fullest starts a tile, which takes in those
    // whose windows widen it least.
    while let Some(first) = (0..spare.len()).max_by_key(|&i| (spare[i].count, spare[i].window.taps())) {
        let mut tile = spare.swap_remove(first);
        while tile.count < px {
            let alike = (0..spare.len()).filter(|&j| !in_place || spare[j].window == tile.window);
            let Some(next) = alike.min_by_key(|&j| {
                (
                    tile.window.union(spare[j].window).taps(),
                    std::cmp::Reverse(spare[j].count),
                )
            }) else {
                break;
            };
            let other = &mut spare[next];
            let take = (px - tile.count).min(other.count);
            let (from, to) = (other.count - take..other.count, tile.count..tile.count + take);
            tile.positions[to.clone()].copy_from_slice(&other.positions[from.clone()]);
            tile.reads[to].copy_from_slice(&other.reads[from]);
            tile.count += take;
            other.count -= take;
            tile.window = tile.window.union(other.window);
            if other.count == 0 {
                spare.swap_remove(next);
            }
        }
        // Ascending, so that the stores find runs of consecutive positions.
        let mut order: [(u32, i32); ACROSS_MAX] = std::array::from_fn(|i| (tile.positions[i], tile.reads[i]));
        order[..tile.count].sort_unstable();
        for (i, (p, r)) in order[..tile.count].iter().enumerate() {
            (tile.positions[i], tile.reads[i]) = (*p, *r);
        }
        // Positions whose own windows are much smaller than the tile's
        // (an 8 × 8 map's four corners: four taps each, nine together) go
        // one a tile: at a weight vector read per `nv` multiply-adds, the
        // four corners cost 20 position-taps where a tile of them is 54.
        let own = |p: u32| grid.window_at(p as usize / grid.out_w, p as usize % grid.out_w);
        let alone: usize = tile.positions[..tile.count].iter().map(|&p| own(p).taps()).sum();
        let slots: usize = tiles[first_tile..]
            .iter()
            .map(|t| if t.count == 1 { 1 } else { px })
            .sum();
        // The leftovers still to place, as tiles of one at least.
        let after: usize = spare.iter().map(|t| t.count).sum();
        let no_room = slots + px + after > room;
        if tile.count > 1 && (alone * (nv + 1) < px * tile.window.taps() * nv || no_room) {
            for (&p, &read) in tile.positions[..tile.count].iter().zip(&tile.reads) {
                let mut single = AcrossTile {
                    count: 1,
                    window: own(p),
                    ..tile
                };
                (single.positions[0], single.reads[0]) = (p, read);
                tiles.push(single);
            }
        } else {
            tiles.push(tile);
        }
    }
    for tile in tiles.iter_mut() {
        tile.stores = Stores::of(&tile.positions[..tile.count]);
    }
}

/// Fetches the line at `at` into L2, to be read (into L1 it was 2 %
/// slower: the lines of 16 planes 4 KB apart share a set of L1).
#[inline(always)]
fn read_soon(at: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(at.cast());
    }
}

/// Fetches the line at `at` into cache, to be written.
#[inline(always)]
fn write_soon(at: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        _mm_prefetch::<_MM_HINT_ET0>(at.cast_const().cast());
    }
}

/// What one [`Direct::unit`] computes.
struct Unit<'a> {
    source: &'a [f32],
    taps: &'a [usize],
    /// The tiles of a channels-in-vectors conv over the unit's rows.
    across: &'a [AcrossTile],
    /// Where the group's (or the tile buffer's) channel 0 is: the tiles
    /// of strip `s` go `s · MR` channels on.
    out: *mut f32,
    /// The thread's tile buffer (where channels-in-vectors tiles keep
    /// their partial sums between blocks of channels).
    sums: *mut f32,
    /// Where `out` is in the residual, where the tiles add it
    /// ([`TileEpilogue::BiasResidual`]).
    residual: *const f32,
    strips: std::ops::Range<usize>,
    rows: std::ops::Range<usize>,
    group: usize,
    ahead: Ahead,
    /// Samples in the unit (one but for [`Direct::span`]), whose sources
    /// and outputs are [`Direct::sample_strides`] apart.
    samples: usize,
}

/// Lines of a source to be read soon, fetched into L2 a few at a time
/// between a unit's tiles, where the load ports have room: the copy of a
/// sample from L3 otherwise waits on every line (a tenth of a 3 × 3 conv
/// on a 32 × 32 map at batch 64, a seventh of a stride-2 one).
struct Ahead {
    at: Cell<*const f32>,
    end: *const f32,
    per_tile: Cell<usize>,
}

impl Ahead {
    fn new(lines: &[f32]) -> Ahead {
        let range = lines.as_ptr_range();
        Ahead {
            at: Cell::new(range.start),
            end: range.end,
            per_tile: Cell::new(0),
        }
    }

    /// Spreads the lines over `tiles` calls of [`Ahead::step`].
    fn spread(&self, tiles: usize) {
        let floats = (self.end as usize).saturating_sub(self.at.get() as usize) / 4;
        self.per_tile.set(floats.div_ceil(LINE).div_ceil(tiles.max(1)));
    }

    /// Fetches the next few lines.
    #[inline(always)]
    fn step(&self) {
        let mut at = self.at.get();
        for _ in 0..self.per_tile.get() {
            if at >= self.end {
                break;
            }
            read_soon(at);
            at = at.wrapping_add(LINE);
        }
        self.at.set(at);
    }
}

/// Where the taps of one output position read, relative to it: channel
/// `c`'s tap `t` (kernel row, then column) at `c · plane + taps[t]`.
#[derive(Clone, Copy)]
struct Reads<'a> {
    channels: usize,
    plane: usize,
    taps: &'a [usize],
    /// [`row_pitch`] of `taps`, where [`each_tap!`] is to use it.
    pitch: Option<usize>,
    /// The taps that read a source pixel for some output of the tile: the
    /// others read only padding, and are skipped.
    window: Window,
}

/// Kernel rows `rows.0..rows.1` by columns `cols.0..cols.1` of a kernel
/// `width` columns wide ([`Grid::kernel_rows`], [`Grid::kernel_cols`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    rows: (usize, usize),
    cols: (usize, usize),
    width: usize,
}

impl Window {
    /// The whole of `grid`'s kernel.
    fn all(grid: &Grid) -> Window {
        Window {
            rows: (0, grid.kernel[0]),
            cols: (0, grid.kernel[1]),
            width: grid.kernel[1],
        }
    }

    /// The taps of the window.
    fn taps(&self) -> usize {
        (self.rows.1 - self.rows.0) * (self.cols.1 - self.cols.0)
    }

    /// The smallest window holding both.
    fn union(self, other: Window) -> Window {
        let span = |a: (usize, usize), b: (usize, usize)| (a.0.min(b.0), a.1.max(b.1));
        Window {
            rows: span(self.rows, other.rows),
            cols: span(self.cols, other.cols),
            width: self.width,
        }
    }
}

/// The row pitch of a 3 × 3 kernel's taps read in one plane (stride and
/// dilation 1: tap `(ki, kj)` at `ki · pitch + kj`), whose nine steps then
/// take their offsets from one register and immediates.
fn row_pitch(taps: &[usize]) -> Option<usize> {
    let taps = <&[usize; 9]>::try_from(taps).ok()?;
    let pitch = taps[3];
    (0..9).all(|t| taps[t] == (t / 3) * pitch + t % 3).then_some(pitch)
}

thread_local! {
    /// The tap offsets of the calling thread's current conv, shared with
    /// the team while it runs: grown once to the largest kernel seen, so a
    /// planned step allocates nothing after its first.
    static TAPS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// `f(taps)` with the offsets of `grid`'s `kernel²` taps, in the calling
/// thread's table.
pub(super) fn with_tap_offsets<R>(grid: &Grid, in_place: bool, f: impl FnOnce(&[usize]) -> R) -> R {
    TAPS.with(|taps| {
        let mut taps = taps.borrow_mut();
        tap_offsets(grid, in_place, &mut taps);
        f(&taps)
    })
}

/// Fills `taps` with the offsets of `grid`'s `kernel²` taps from a
/// position's tap (0, 0): in the copy's phases, or `in_place` in the
/// source's rows.
fn tap_offsets(grid: &Grid, in_place: bool, taps: &mut Vec<usize>) {
    let (s, d, kw) = (grid.stride, grid.dilation, grid.kernel[1]);
    let phases = grid.channels * grid.plane();
    taps.clear();
    taps.extend((0..grid.taps()).map(|t| {
        let (ki, kj) = ((t / kw) * d, (t % kw) * d);
        match in_place {
            true => ki * grid.src_w + kj,
            false => ((ki % s) * s + kj % s) * phases + (ki / s) * grid.phase_w + kj / s,
        }
    }));
}

/// Runs `step` (`|at, w, kj|`: the read `at` floats into the sources, the
/// weights at `w`, the tap's kernel column `kj`) for every tap of every channel of `reads`, in depth
/// order, `width` weights a step; `w` ends past the last. A macro, not a
/// function taking a closure: a closure is not compiled with the caller's
/// vector features. A 3 × 3 kernel's nine taps are unrolled; with taps
/// in one plane at a row pitch ([`Reads::pitch`]), their offsets are that
/// pitch in a register and immediates rather than a table read a step
/// (2–3 % on the positions tiles).
macro_rules! each_tap {
    (@rows $reads:expr, $pitch:ident, $w:ident, $width:ident, |$at:ident, $wt:ident, $kjv:ident| $step:block, $($tap:tt)*) => {
        for c in 0..$reads.channels {
            let base = c * $reads.plane;
            each_tap!(@grid base, $pitch, $w, $width, |$at, $wt, $kjv| $step, $($tap)*);
            $w = $w.add(9 * $width);
        }
    };
    (@grid $base:ident, $pitch:ident, $w:ident, $width:ident, |$at:ident, $wt:ident, $kjv:ident| $step:block, $(($t:literal, $ki:literal, $kj:literal))*) => {
        $({
            let ($at, $wt, $kjv) = ($base + $ki * $pitch + $kj, $w.add($t * $width), $kj);
            $step
        })*
    };
    ($reads:expr, $w:ident, $width:expr, |$at:ident, $wt:ident, $kjv:ident| $step:block) => {{
        let width = $width;
        let window = $reads.window;
        let whole = window.taps() == $reads.taps.len();
        if let Some(pitch) = $reads.pitch {
            debug_assert_eq!(window.cols, (0, 3), "a pitch skips kernel rows alone");
            match window.rows {
                (0, 3) => each_tap!(@rows $reads, pitch, $w, width, |$at, $wt, $kjv| $step, (0, 0, 0) (1, 0, 1) (2, 0, 2) (3, 1, 0) (4, 1, 1) (5, 1, 2) (6, 2, 0) (7, 2, 1) (8, 2, 2)),
                (1, 3) => each_tap!(@rows $reads, pitch, $w, width, |$at, $wt, $kjv| $step, (3, 1, 0) (4, 1, 1) (5, 1, 2) (6, 2, 0) (7, 2, 1) (8, 2, 2)),
                (0, 2) => each_tap!(@rows $reads, pitch, $w, width, |$at, $wt, $kjv| $step, (0, 0, 0) (1, 0, 1) (2, 0, 2) (3, 1, 0) (4, 1, 1) (5, 1, 2)),
                (1, 2) => each_tap!(@rows $reads, pitch, $w, width, |$at, $wt, $kjv| $step, (3, 1, 0) (4, 1, 1) (5, 1, 2)),
                (lo, hi) => {
                    for c in 0..$reads.channels {
                        let base = c * $reads.plane;
                        for t in 3 * lo..3 * hi.max(lo) {
                            let ($at, $wt, $kjv) = (base + (t / 3) * pitch + t % 3, $w.add(t * width), t % 3);
                            $step
                        }
                        $w = $w.add(9 * width);
                    }
                }
            }
        } else if let ([tap], true) = ($reads.taps, whole) {
            // One tap (a pointwise conv): a loop over the channels alone,
            // not one of a tap inside each (5–7 % on 8 × 8 maps).
            let tap = *tap;
            for c in 0..$reads.channels {
                let ($at, $wt, $kjv) = (c * $reads.plane + tap, $w, 0);
                $step
                $w = $w.add(width);
            }
        } else if let (Ok(taps), true) = (<&[usize; 9]>::try_from($reads.taps), whole) {
            for c in 0..$reads.channels {
                let base = c * $reads.plane;
                for (t, tap) in taps.iter().enumerate() {
                    let ($at, $wt, $kjv) = (base + tap, $w.add(t * width), t % 3);
                    $step
                }
                $w = $w.add(9 * width);
            }
        } else {
            // Any kernel, or part of one.
            let taps = $reads.taps;
            for c in 0..$reads.channels {
                let base = c * $reads.plane;
                for ki in window.rows.0..window.rows.1 {
                    for kj in window.cols.0..window.cols.1 {
                        let t = ki * window.width + kj;
                        let ($at, $wt, $kjv) = (base + taps[t], $w.add(t * width), kj);
                        $step
                    }
                }
                $w = $w.add(taps.len() * width);
            }
        }
    }};
}

/// The epilogue a conv's tiles apply themselves ([`Direct::tiles_finish`]).
#[derive(Clone, Copy)]
enum TileEpilogue<'a> {
    /// A bias, then ReLU: the biases of every channel.
    BiasRelu(&'a [f32]),
    /// A bias, then the residual (laid out as y) added, then ReLU if `relu`.
    BiasResidual {
        bias: &'a [f32],
        residual: &'a [f32],
        relu: bool,
    },
    /// Any [`ChannelForm`], through a copy of the sums.
    Steps(ChannelForm<'a>),
}

/// How a tile leaves its registers.
#[derive(Clone, Copy)]
enum Finish<'s, const MR: usize, const NV: usize> {
    /// As they are: partial sums, or outputs whose epilogue runs later.
    Sums,
    /// Through each channel's steps.
    Steps(&'s [ChannelSteps; MR]),
    /// Plus the strip's `MR` biases from the pointer, then ReLU: the
    /// epilogue of a conv whose batch norm is folded into its weights.
    BiasRelu(*const f32),
    /// Plus the strip's biases from `bias`, plus the residual at `residual`
    /// (as `dst`: vector `v` of channel `i` at `residual[v] + i·ld`), then
    /// ReLU if `relu`.
    BiasResidual {
        bias: *const f32,
        residual: [*const f32; NV],
        relu: bool,
    },
}

/// One `MR × NV·lanes` tile: vector `v` of output channel `i` at
/// `dst[v] + i·ld`, reading from `src[v]`; accumulates every tap of
/// `reads.channels` channels (onto what the tile holds, with `accumulate`),
/// then stores the tile as `finish` says. With `EDGES` (a 3 × 3 kernel
/// read from the unpadded source), vector `v` reads under kernel column
/// `kj` only the lanes of `edges[v][kj]`, zeros in the others: the
/// padding left and right of its row.
///
/// # Safety
/// The CPU has `V`'s features; each `src[v]` holds every tap's read of a
/// vector (with `EDGES`, of its lanes in `edges`), `w` `MR · depth`
/// floats, and each `dst[v]` `MR` rows of a vector at stride `ld`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<V: Lanes, const MR: usize, const NV: usize, const EDGES: bool>(
    reads: &Reads<'_>,
    src: [*const f32; NV],
    edges: &[[u16; 3]; NV],
    mut w: *const f32,
    dst: [*mut f32; NV],
    ld: usize,
    accumulate: bool,
    finish: Finish<'_, MR, NV>,
) {
    let mut acc = [[V::zero(); NV]; MR];
    if accumulate {
        for (i, acc_row) in acc.iter_mut().enumerate() {
            for (a, d) in acc_row.iter_mut().zip(&dst) {
                *a = V::load(d.add(i * ld));
            }
        }
    }
    debug_assert!(!EDGES || reads.pitch.is_some(), "edges are a 3 × 3 kernel's");
    each_tap!(reads, w, MR, |at, weights, kj| {
        // The middle column reads inside the row (`EDGES` pads it by one
        // on either side): a plain load, not a masked one (3 % of a
        // 32 × 32 map's conv).
        let xs: [V; NV] = std::array::from_fn(|v| match EDGES && kj != 1 {
            true => V::load_lanes(src[v].wrapping_add(at), edges[v][kj.min(2)]),
            false => V::load(src[v].wrapping_add(at)),
        });
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let wi = V::splat(weights.add(i));
            for (a, xv) in acc_row.iter_mut().zip(&xs) {
                *a = V::fma(wi, *xv, *a);
            }
        }
    });
    let steps = match finish {
        Finish::Sums => {
            for (i, acc_row) in acc.iter().enumerate() {
                for (a, d) in acc_row.iter().zip(&dst) {
                    a.store(d.add(i * ld));
                }
            }
            return;
        }
        Finish::BiasRelu(bias) => {
            // Straight-line code on the registers, no copy of the sums (a
            // twelfth of a pointwise conv over 32 channels).
            #[allow(clippy::needless_range_loop)] // `i` picks a bias too.
            for i in 0..MR {
                let b = V::splat(bias.add(i));
                for v in 0..NV {
                    V::add(acc[i][v], b).relu().store(dst[v].add(i * ld));
                }
            }
            return;
        }
        Finish::BiasResidual { bias, residual, relu } => {
            // Straight-line code on the registers, as for `BiasRelu`, in
            // two passes: one, choosing ReLU at each store, left the sums
            // in memory, stored after each multiply-add (twice as slow).
            #[allow(clippy::needless_range_loop)] // `i` picks a bias too.
            for i in 0..MR {
                let b = V::splat(bias.add(i));
                for v in 0..NV {
                    let sum = V::add(V::add(acc[i][v], b), V::load(residual[v].add(i * ld)));
                    acc[i][v] = sum;
                }
            }
            #[allow(clippy::needless_range_loop)]
            for i in 0..MR {
                for v in 0..NV {
                    let out = if relu { acc[i][v].relu() } else { acc[i][v] };
                    out.store(dst[v].add(i * ld));
                }
            }
            return;
        }
        Finish::Steps(steps) => steps,
    };
    // The steps' loop on a copy of the sums: LLVM need not unroll it (nor
    // does, with the steps' branches), and sums it indexed at run time
    // would be memory all along, spilled inside the loop above at half
    // the speed.
    let sums = std::hint::black_box(acc);
    for (i, row) in sums.iter().enumerate() {
        for (a, d) in row.iter().zip(&dst) {
            steps[i].apply(*a).store(d.add(i * ld));
        }
    }
}

/// One tile of `PX` output positions by `NV` vectors of 16 channels over
/// a block of channels: position `i` reads from `src[i]`; the tile starts
/// from its partial sums at `sums` (with `accumulate`, else from zero),
/// adds every tap of the block's channels, and either keeps its sums
/// there or, with `out = (out, ld, stores, bias)`, goes to `out + c·ld` and
/// on for channel `c` of the strip, at the places of `stores`, stored
/// transposed ([`store_transposed`]), the strip's biases at `bias` added
/// and ReLU applied on the way if given.
///
/// # Safety
/// As [`micro`]'s, with `w` holding `16·NV` weights per depth step,
/// `sums` `PX · NV · 16` floats, `out + c·ld` every position for each of
/// the strip's channels and `bias` `16·NV`; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn micro_across<const PX: usize, const NV: usize>(
    reads: &Reads<'_>,
    src: [*const f32; PX],
    mut w: *const f32,
    sums: *mut f32,
    accumulate: bool,
    out: Option<(*mut f32, usize, &Stores, Option<*const f32>)>,
) {
    use std::arch::x86_64::__m512;
    type V = __m512;
    let mut acc = [[V::zero(); NV]; PX];
    if accumulate {
        for (i, acc_row) in acc.iter_mut().enumerate() {
            for (v, a) in acc_row.iter_mut().enumerate() {
                *a = V::load(sums.add((i * NV + v) * V::N));
            }
        }
    }
    each_tap!(reads, w, NV * V::N, |at, weights, _kj| {
        let ws: [V; NV] = std::array::from_fn(|v| V::load(weights.add(v * V::N)));
        for (i, acc_row) in acc.iter_mut().enumerate() {
            let xi = V::splat(src[i].add(at));
            for (a, wv) in acc_row.iter_mut().zip(&ws) {
                *a = V::fma(xi, *wv, *a);
            }
        }
    });
    let Some((out, ld, stores, bias)) = out else {
        for (i, acc_row) in acc.iter().enumerate() {
            for (v, a) in acc_row.iter().enumerate() {
                a.store(sums.add((i * NV + v) * V::N));
            }
        }
        return;
    };
    // Read at run time below (the store's loop is not unrolled): a copy,
    // or the sums would be memory all along, stored after each
    // multiply-add (2.3 times slower).
    let mut acc = std::hint::black_box(acc);
    #[allow(clippy::needless_range_loop)] // `v` picks a column of `acc`.
    for v in 0..NV {
        if let Some(bias) = bias {
            let b = V::load(bias.add(v * V::N));
            for acc_row in acc.iter_mut() {
                acc_row[v] = V::add(acc_row[v], b).relu();
            }
        }
        for first in (0..PX).step_by(8) {
            let group = first / 8;
            // Eight positions (the last repeated past the tile) of 16 channels.
            let rows: [V; 8] = std::array::from_fn(|i| acc[(first + i).min(PX - 1)][v]);
            store_transposed(rows, out.wrapping_add(v * 16 * ld), ld, stores.group(group));
        }
    }
}

/// Lanes of eight (positions, or channels) stored to consecutive places:
/// lane `l` (a bit of `lanes`) to place `at + l`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Run {
    pub lanes: u16,
    pub at: usize,
}

impl Run {
    /// The first `n` lanes, from place 0.
    pub fn first(n: usize) -> Run {
        Run {
            lanes: ((1u32 << n.min(8)) - 1) as u16,
            at: 0,
        }
    }
}

/// Stores `rows` (8 positions × 16 channels) transposed: for each run,
/// channel `c`'s lane-`l` position at `out + c·ld + run.at + l`. An 8 × 8
/// transpose in each half (unpacks, shuffles, then 128-bit lane moves),
/// 24 shuffles and 16 masked stores a run, where a float at a time was a
/// load and a store per value (a fifth of a 1 × 1 conv's time on an 8 × 8
/// map).
///
/// # Safety
/// The CPU has AVX-512F; `out + c·ld + run.at + l` is a float of the
/// output for every `c < 16` and lane `l` of a run.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn store_transposed(rows: [std::arch::x86_64::__m512; 8], out: *mut f32, ld: usize, runs: &[Run]) {
    use std::arch::x86_64::{
        _mm512_mask_storeu_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_unpackhi_ps, _mm512_unpacklo_ps,
    };
    if runs.is_empty() {
        return;
    }
    // In each 128-bit lane k: t[2j] holds rows 2j, 2j+1 of channels 4k,
    // 4k+1 interleaved; t[2j+1] of channels 4k+2, 4k+3.
    let t: [_; 8] = std::array::from_fn(|i| {
        let (a, b) = (rows[i / 2 * 2], rows[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4h + q]: in lane k, rows 4h..4h+4 of channel 4k + q.
    let u: [_; 8] = std::array::from_fn(|i| {
        let (h, q) = (i / 4, i % 4);
        let (a, b) = (t[4 * h + q / 2], t[4 * h + 2 + q / 2]);
        if q % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xEE>(a, b)
        }
    });
    for q in 0..4 {
        // Lanes 0, 1 of u[q] and u[4 + q] (channels q, 4 + q), then 2, 3
        // (channels 8 + q, 12 + q); each reordered to rows 0–7 of one
        // channel per 256-bit half.
        let low = _mm512_shuffle_f32x4::<0b01_00_01_00>(u[q], u[4 + q]);
        let high = _mm512_shuffle_f32x4::<0b11_10_11_10>(u[q], u[4 + q]);
        for (pair, z) in [low, high].into_iter().enumerate() {
            let z = _mm512_shuffle_f32x4::<0b11_01_10_00>(z, z);
            let (c0, c1) = (8 * pair + q, 8 * pair + 4 + q);
            for run in runs {
                // SAFETY (of both): the run's floats at `out + c·ld +
                // run.at`; the high half's lanes 8.. land there from a base
                // 8 floats before, whose lanes below 8 are masked off and
                // not touched.
                _mm512_mask_storeu_ps(out.add(c0 * ld + run.at), run.lanes, z);
                _mm512_mask_storeu_ps(out.add(c1 * ld + run.at).wrapping_sub(8), run.lanes << 8, z);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(size: usize, pads: [usize; 4], stride: usize) -> Grid {
        Grid::forward(&ConvGeometry {
            in_channels: 1,
            height: size,
            width: size,
            out_channels: 64,
            kernel: 3,
            stride,
            dilation: 1,
            groups: 1,
            pads,
            pool: 1,
        })
    }

    fn covers(outer: Window, inner: Window) -> bool {
        inner.taps() == 0
            || (outer.rows.0 <= inner.rows.0
                && inner.rows.1 <= outer.rows.1
                && outer.cols.0 <= inner.cols.0
                && inner.cols.1 <= outer.cols.1)
    }

    /// Every output of the rows is in one tile, once, whose window covers
    /// its own; the tiles' sums fit where as many tiles as consecutive
    /// positions make would keep theirs (the tile buffer's room); and on
    /// an 8 × 8 map tiles of six compute 6 · 6 · 9 (inside) + 4 · 6 · 6
    /// (edges) + 4 · 4 (corners, one a tile) = 484 position-taps, each
    /// position's own taps and no more.
    #[test]
    fn across_plan() {
        let (mut tiles, mut spare) = (Vec::new(), Vec::new());
        let cases = [
            (grid(8, [1; 4], 1), 0..8, 6, Some(484)),
            (grid(8, [1; 4], 1), 0..8, 12, None),
            (grid(7, [1; 4], 1), 0..7, 6, None),
            (grid(9, [2, 1, 0, 2], 1), 2..7, 6, None),
            (grid(16, [0, 0, 1, 1], 2), 0..8, 6, None),
            (grid(4, [3; 4], 1), 0..8, 12, None),
        ];
        let cases = cases
            .iter()
            .flat_map(|case| [(case.clone(), false), (case.clone(), true)]);
        for ((grid, rows, px, computed), in_place) in cases {
            tiles.clear();
            plan_across(&grid, rows.clone(), (px, 4), in_place, &mut tiles, &mut spare);
            let outputs = rows.len() * grid.out_w;
            let slots = |t: &AcrossTile| if t.count == 1 { 1 } else { px };
            assert!(
                tiles.iter().map(slots).sum::<usize>() <= outputs.div_ceil(px) * px,
                "{grid:?}"
            );
            let mut seen = vec![0; grid.out_h * grid.out_w];
            for tile in &tiles {
                assert!((1..=px).contains(&tile.count));
                let positions = &tile.positions[..tile.count];
                assert!(positions.is_sorted(), "{positions:?}");
                for (&p, &read) in positions.iter().zip(&tile.reads) {
                    let p = p as usize;
                    assert!(rows.contains(&(p / grid.out_w)));
                    let (r, c) = (p / grid.out_w, p % grid.out_w);
                    let (s, top, left) = (grid.stride as isize, grid.top, grid.left);
                    let want = match in_place {
                        true => (r as isize * s - top) * grid.src_w as isize + c as isize * s - left,
                        false => (r * grid.phase_w + c) as isize,
                    };
                    assert_eq!(read as isize, want);
                    let own = grid.window_at(r, c);
                    assert!(covers(tile.window, own), "{grid:?}: {p} in {tile:?}");
                    // Read in place, a tap past a position's own window
                    // would read a float of the next row or channel.
                    assert!(!in_place || tile.window == own, "{grid:?}: {p} in {tile:?}");
                    seen[p] += 1;
                }
            }
            let once = seen
                .iter()
                .enumerate()
                .all(|(p, &n)| n == usize::from(rows.contains(&(p / grid.out_w))));
            assert!(once, "{grid:?}: {seen:?}");
            if let (Some(computed), false) = (computed, in_place) {
                let taps = |t: &AcrossTile| slots(t) * t.window.taps();
                assert_eq!(tiles.iter().map(taps).sum::<usize>(), computed);
            }
        }
    }
}
