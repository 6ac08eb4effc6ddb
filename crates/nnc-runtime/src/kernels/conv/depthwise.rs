//! Depthwise convolution (as many groups as channels, one output channel
//! per input channel) on AVX-512, read in place: a vector holds 16 outputs
//! of one channel, and each tap is one masked load of the input (lanes that
//! fall in the padding load zeros), so there is no padded copy and no tile
//! buffer, and the epilogue runs on the registers on their way out. With
//! stride 2, a vector is two runs of up to 8 outputs of a row, and a tap
//! loads the 16 inputs under each run and keeps the even lanes.
//!
//! The direct kernel of [`super::direct`] took one channel by many vectors
//! of positions through a padded copy of the whole sample: the copy and a
//! second pass for the epilogue cost as much as the multiply-adds, and the
//! tiles read the copy from L2 (2–3.5× ONNX Runtime's time on the depthwise
//! layers of `mobile_mini.nn`).
//!
//! The loads' offsets and masks depend on the geometry alone: they are
//! worked out for a block of vectors at a time and serve every channel.
//! AVX2 takes another way to plain loads ([`banded`]).

#[cfg(target_arch = "x86_64")]
mod banded;
#[cfg(target_arch = "x86_64")]
pub(super) mod grad;
#[cfg(target_arch = "x86_64")]
pub(super) mod walks;

use super::direct::{lane_range, WORK_PER_PART};
use super::ConvGeometry;
use crate::aligned::LINE;
use crate::kernels::dense::split;
use crate::kernels::epilogue::{ChannelForm, ChannelSteps, Epilogue, LaneSteps};
use crate::kernels::simd::{low_lanes, Level};
use crate::team::{Disjoint, Team};
#[cfg(target_arch = "x86_64")]
use walks::{halved_taps, row_pair_taps, rows_taps, up_to_eight, Walk, ROWS};

/// Taps the tables hold: kernels up to 7 × 7.
const MAX_TAPS: usize = 49;
/// Vectors computed at once, at most.
const BLOCK: usize = 8;
/// Blocks of vectors the tables hold: a plane of 32 × 32 outputs (maps
/// with more take their vectors in chunks of this many blocks).
const BLOCKS: usize = 8;

/// A vector of outputs: the lanes that hold outputs (`lanes`), which go
/// packed together to `count` consecutive positions of the output plane
/// from `at`.
#[derive(Clone, Copy, Default)]
struct Segment {
    at: usize,
    lanes: u16,
    count: usize,
}

/// A run of outputs in one vector: `n` consecutive positions of the output
/// plane from `p` (row `p / out_w`, column `p % out_w`).
#[derive(Clone, Copy)]
struct Run {
    p: usize,
    n: usize,
}

/// The tables of a block of up to [`BLOCK`] vectors. Tap `t` of vector
/// `i` reads the 16 lanes from `bases[i].0 + taps[t]` of the channel's
/// input plane (stride 1), or the even lanes of 16 from there and of 16
/// from `bases[i].1 + taps[t]` (stride 2), where `taps[t]` is
/// [`Tables::taps`]; `masks[t][i]` enables the lanes inside the plane (the
/// others read nothing).
#[derive(Clone, Copy)]
struct Block {
    bases: [(isize, isize); BLOCK],
    masks: [[(u16, u16); BLOCK]; MAX_TAPS],
    segments: [Segment; BLOCK],
}

/// The tables of a chunk of up to [`BLOCKS`] blocks.
struct Tables {
    /// Where each tap reads relative to a vector's base.
    taps: [isize; MAX_TAPS],
    blocks: [Block; BLOCKS],
}

/// A depthwise conv's geometry as the kernel walks it.
pub(super) struct Depthwise<'a> {
    g: ConvGeometry,
    /// `[channels, kernel²]`.
    weights: &'a [f32],
    epilogue: &'a Epilogue<'a>,
    /// The epilogue where the kernel takes it on its registers (found
    /// once: a lookup per plane cost a third of a small map's time).
    form: Option<ChannelForm<'a>>,
    /// The output's rows and columns.
    out_h: usize,
    out_w: usize,
    /// Outputs per run: 16, or 8 with stride 2.
    run_len: usize,
    /// Whether a stride-1 run may go on into the next row: when input and
    /// output rows are as wide, the next row's inputs follow in memory.
    flat: bool,
    /// Runs per output row (but for flat runs).
    per_row: usize,
    /// Runs in the plane.
    runs: usize,
}

/// Channel `c`'s nine weights of a 3 × 3 kernel, each in every lane, and
/// its epilogue's steps where the registers take them: a macro, in the
/// caller's body, not a function returning them (10 % slower on a
/// 16 × 16 map).
#[cfg(target_arch = "x86_64")]
macro_rules! three_by_three {
    ($dw:expr, $c:expr) => {{
        let c = $c;
        let mut weights = [_mm512_setzero_ps(); 9];
        for (wt, &tap) in weights.iter_mut().zip(&$dw.weights[c * 9..][..9]) {
            *wt = _mm512_set1_ps(tap);
        }
        // Not `map`: a closure does not take the caller's AVX-512.
        let steps: Option<LaneSteps<__m512>> = match &$dw.form {
            Some(form) => Some(form.at(c).in_lanes()),
            None => None,
        };
        (weights, steps)
    }};
}

/// The [`Walk`] of a depthwise conv of geometry `g` on this CPU (with
/// AVX-512), if it has one.
#[cfg(target_arch = "x86_64")]
pub(super) fn walk_of(g: &ConvGeometry) -> Option<Walk> {
    (Level::detect() == Level::Avx512 && Depthwise::applies(g))
        .then(|| Walk::of(g))
        .flatten()
}

impl<'a> Depthwise<'a> {
    /// Whether this kernel runs `g`: depthwise with stride 1 or 2 and a
    /// kernel of at most 7 × 7, on a CPU with AVX-512, or with AVX2 where
    /// a band of the plane fits its copy.
    pub fn applies(g: &ConvGeometry) -> bool {
        let c = g.in_channels;
        let depthwise = c > 0
            && g.groups == c
            && g.out_channels == c
            && (1..=2).contains(&g.stride)
            && (1..=MAX_TAPS).contains(&(g.kernel * g.kernel));
        #[cfg(target_arch = "x86_64")]
        return depthwise
            && match Level::detect() {
                Level::Avx512 => true,
                Level::Avx2 => banded::Band::of(g).is_some(),
                Level::Base => false,
            };
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    }

    pub fn new(g: &ConvGeometry, weights: &'a [f32], epilogue: &'a Epilogue<'a>) -> Depthwise<'a> {
        debug_assert!(Depthwise::applies(g));
        debug_assert_eq!(weights.len(), g.out_channels * g.kernel * g.kernel);
        let (out_h, out_w, run_len) = (g.out_height(), g.out_width(), 16 / g.stride);
        let flat = g.stride == 1 && out_w == g.width;
        let per_row = out_w.div_ceil(run_len);
        let runs = if flat {
            (out_h * out_w).div_ceil(16)
        } else {
            out_h * per_row
        };
        Depthwise {
            g: *g,
            weights,
            epilogue,
            form: epilogue.channel_form(),
            out_h,
            out_w,
            run_len,
            flat,
            per_row,
            runs,
        }
    }

    /// Run `index` of the plane (in order).
    fn run(&self, index: usize) -> Run {
        if self.flat {
            let p = 16 * index;
            return Run {
                p,
                n: 16.min(self.out_h * self.out_w - p),
            };
        }
        let (r, q) = (index / self.per_row, index % self.per_row * self.run_len);
        Run {
            p: r * self.out_w + q,
            n: self.run_len.min(self.out_w - q),
        }
    }

    /// Vectors of outputs in the plane: a run each (stride 1), or two.
    fn segments(&self) -> usize {
        self.runs.div_ceil(self.g.stride)
    }

    /// Where each tap reads relative to a vector's base: rows then columns,
    /// not a division per tap.
    fn tap_offsets(&self) -> [isize; MAX_TAPS] {
        let (k, d, w) = (self.g.kernel, self.g.dilation.max(1) as isize, self.g.width as isize);
        let mut taps = [0; MAX_TAPS];
        let offsets = (0..k as isize).flat_map(|i| (0..k as isize).map(move |j| i * d * w + j * d));
        for (tap, offset) in taps.iter_mut().zip(offsets) {
            *tap = offset;
        }
        taps
    }

    /// Fills the tables of segments `first..first + n`.
    fn tables(&self, first: usize, n: usize, t: &mut Block) {
        let g = &self.g;
        let (k, d) = (g.kernel, g.dilation.max(1) as isize);
        let (h, w, ow) = (g.height as isize, g.width as isize, self.out_w);
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
        let s = g.stride;
        for (i, segment) in (first..first + n).enumerate() {
            let (a, b) = (self.run(s * segment), self.run((s * segment + 1).min(self.runs - 1)));
            let second = s == 2 && s * segment + 1 < self.runs;
            t.segments[i] = if s == 1 {
                Segment {
                    at: a.p,
                    lanes: low_lanes(a.n),
                    count: a.n,
                }
            } else {
                let nb = if second { b.n } else { 0 };
                Segment {
                    at: a.p,
                    lanes: low_lanes(a.n) | low_lanes(nb) << 8,
                    count: a.n + nb,
                }
            };
            let (r0, q0) = ((a.p / ow) as isize, (a.p % ow) as isize);
            let (rb, qb) = ((b.p / ow) as isize, (b.p % ow) as isize);
            t.bases[i] = if s == 1 {
                // Lane l reads input (r0 + ki − pt, q0 + l + kj − pl), going
                // on into the next rows when the run is flat.
                ((r0 - pt) * w + q0 - pl, 0)
            } else {
                ((2 * r0 - pt) * w + 2 * q0 - pl, (2 * rb - pt) * w + 2 * qb - pl)
            };
            // The vector's pieces, one per input row a tap reads: its input
            // row under the kernel's first row, its lanes (`lo` half or
            // `hi`), and the lanes whose input column is inside the plane
            // under the kernel's first column (`lane_range(cols)`).
            let mut pieces = [(0isize, false, 0u16, (0isize, 0isize)); 17];
            let mut count = 0;
            if s == 1 {
                let last_row = ((a.p + a.n - 1) / ow) as isize;
                for r in r0..=last_row {
                    let row_lane = (r - r0) * ow as isize - q0;
                    let lanes = lane_range(row_lane.max(0), (row_lane + ow as isize).min(a.n as isize));
                    pieces[count] = (r - pt, false, lanes, (row_lane + pl, row_lane + w + pl));
                    count += 1;
                }
            } else {
                for (run, hi, present) in [(a, false, true), (b, true, second)] {
                    let (r, q) = ((run.p / ow) as isize, (run.p % ow) as isize);
                    if present {
                        let lanes = EVEN & lane_range(0, 2 * run.n as isize);
                        pieces[count] = (2 * r - pt, hi, lanes, (pl - 2 * q, w + pl - 2 * q));
                        count += 1;
                    }
                }
            }
            // (Rows then columns, not a division per tap.)
            let offsets = (0..k as isize).flat_map(|i| (0..k as isize).map(move |j| (i * d, j * d)));
            for (tap, (ki, kj)) in offsets.enumerate() {
                let mut masks = (0, 0);
                for &(row, hi, lanes, (lo_col, hi_col)) in &pieces[..count] {
                    if (0..h).contains(&(row + ki)) {
                        let mask = if hi { &mut masks.1 } else { &mut masks.0 };
                        *mask |= lanes & lane_range(lo_col - kj, hi_col - kj);
                    }
                }
                t.masks[tap][i] = masks;
            }
        }
    }

    /// `y` `[batch, channels, out_h, out_w]` from `x` `[batch, channels,
    /// height, width]`, the epilogue applied, the planes (a sample's
    /// channel each) shared among the team's threads.
    pub fn forward(&self, x: &[f32], batch: usize, y: &mut [f32], team: &Team) {
        let g = &self.g;
        let (c, taps) = (g.out_channels, g.kernel * g.kernel);
        let out_plane = self.out_h * self.out_w;
        if batch * c * out_plane == 0 {
            return;
        }
        let planes = batch * c;
        let work = planes * out_plane * taps;
        let parts = team.threads().min(planes).min(work / WORK_PER_PART).max(1);
        let y = Disjoint::new(y);
        team.run(parts, &|part| {
            let mine = split(planes, parts, part, 1);
            // SAFETY: the parts own disjoint ranges of planes.
            let out = unsafe { y.piece(mine.start * out_plane..mine.end * out_plane) };
            let src = &x[mine.start * g.height * g.width..mine.end * g.height * g.width];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `applies` checked for AVX-512, or AVX2 (and FMA).
            unsafe {
                match Level::detect() {
                    Level::Avx512 => self.planes_avx512(src, mine.clone(), out),
                    _ => self.planes_avx2(src, mine.clone(), out),
                }
            };
            // What the kernel's registers did not take: the uncommon
            // epilogues, and a residual's sum.
            if self.form.is_some() && self.epilogue.residual.is_none() {
                return;
            }
            for (p, plane) in mine.zip(out.chunks_exact_mut(out_plane)) {
                if self.form.is_none() {
                    self.epilogue.apply_channel(plane, p % c);
                }
                self.epilogue.finish_channel(plane, p * out_plane, p % c);
            }
        });
    }

    /// The output planes `planes` (of `[batch · channels]`; their inputs
    /// `src`, outputs `out`), with the epilogue where it is
    /// [`ChannelSteps`](crate::kernels::epilogue::ChannelSteps): a chunk of
    /// vectors at a time, every plane passing over the chunk's tables while
    /// its input stays in L1.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn planes_avx512(&self, src: &[f32], planes: std::ops::Range<usize>, out: &mut [f32]) {
        // The commonest 3 × 3 shapes walk in registers, without the tables.
        match Walk::of(&self.g) {
            // SAFETY: the CPU has AVX-512F (the caller's promise).
            Some(Walk::Rows) => return unsafe { self.planes_of_rows_avx512(src, planes, out) },
            // SAFETY: as above.
            Some(Walk::RowPairs) => {
                return unsafe { up_to_eight!(self.g.height, H => self.planes_of_row_pairs::<H>(src, planes, out)) };
            }
            // SAFETY: as above.
            Some(Walk::Halved) => return unsafe { self.planes_halved_avx512(src, planes, out) },
            None => {}
        }
        let segments = self.segments();
        // Vectors per block, and planes per step: eight sums in flight
        // (an FMA's latency times its throughput) where a plane has fewer
        // than eight vectors.
        let width = match segments {
            1 => 1,
            2 => 2,
            3..=4 => 4,
            _ => 8,
        };
        let block = Block {
            bases: [(0, 0); BLOCK],
            masks: [[(0, 0); BLOCK]; MAX_TAPS],
            segments: [Segment::default(); BLOCK],
        };
        let mut tables = Tables {
            taps: self.tap_offsets(),
            blocks: [block; BLOCKS],
        };
        for first in (0..segments).step_by(BLOCKS * width) {
            let n = (BLOCKS * width).min(segments - first);
            let blocks = n.div_ceil(width);
            for (b, block) in tables.blocks[..blocks].iter_mut().enumerate() {
                let m = width.min(n - b * width);
                self.tables(first + b * width, m, block);
                // A short last block repeats its last vector (the same
                // sums, stored twice).
                for i in m..width {
                    for tap in 0..self.g.kernel * self.g.kernel {
                        block.masks[tap][i] = block.masks[tap][m - 1];
                    }
                    block.bases[i] = block.bases[m - 1];
                    block.segments[i] = block.segments[m - 1];
                }
            }
            let chunk = (&tables, blocks);
            // SAFETY: the CPU has AVX-512F (the caller's promise).
            unsafe {
                match (width, self.g.stride == 2) {
                    (1, false) => self.chunk::<4, 1, false>(chunk, src, planes.clone(), out),
                    (2, false) => self.chunk::<4, 2, false>(chunk, src, planes.clone(), out),
                    (4, false) => self.chunk::<2, 4, false>(chunk, src, planes.clone(), out),
                    (_, false) => self.chunk::<1, 8, false>(chunk, src, planes.clone(), out),
                    (1, true) => self.chunk::<4, 1, true>(chunk, src, planes.clone(), out),
                    (2, true) => self.chunk::<4, 2, true>(chunk, src, planes.clone(), out),
                    (4, true) => self.chunk::<2, 4, true>(chunk, src, planes.clone(), out),
                    (_, true) => self.chunk::<1, 8, true>(chunk, src, planes.clone(), out),
                }
            }
        }
    }

    /// The planes `planes` of a [`Walk::Rows`] conv, a block of eight
    /// output rows at a time ([`rows_taps`]). No table is read: the tables' way read
    /// a mask and did a masked load for each multiply-add, with short
    /// chains between stores (17.5 G multiply-adds/s on a 16 × 16 map on a
    /// Zen 4, 30 % of its peak; this way 29–30, ahead of ONNX Runtime's).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn planes_of_rows_avx512(&self, src: &[f32], planes: std::ops::Range<usize>, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let g = &self.g;
        let (h, w, channels) = (g.height, g.width, g.out_channels);
        let (plane_len, per_row) = (h * w, w / 16);
        for (k, p) in planes.enumerate() {
            let input = &src[k * plane_len..(k + 1) * plane_len];
            let output = &mut out[k * plane_len..(k + 1) * plane_len];
            let (weights, steps) = three_by_three!(self, p % channels);
            // Blocks of `ROWS` output rows (a vector each), whose sums (in
            // registers: the indices are fixed once the loops unroll) are
            // eight chains at once.
            for v in 0..per_row {
                for r0 in (0..h).step_by(ROWS) {
                    let mut sums = [_mm512_setzero_ps(); ROWS];
                    rows_taps!((input, (h, w), v, r0), rows: ROWS, outside: skipped, |o, tap, x| {
                        sums[o] = _mm512_fmadd_ps(x, weights[tap], sums[o]);
                    });
                    for (o, &sum) in sums.iter().enumerate().take(h - r0) {
                        // SAFETY: AVX-512F, as the caller's.
                        let sum = unsafe { LaneSteps::apply_some(&steps, sum) };
                        let at = (r0 + o) * w + 16 * v;
                        _mm512_storeu_ps(output[at..at + 16].as_mut_ptr(), sum);
                    }
                }
            }
        }
    }

    /// The planes `planes` of a [`Walk::RowPairs`] conv of `H` rows
    /// ([`row_pair_taps`]). The tables' way took a mask and a base from a
    /// table for each multiply-add (15–17 G multiply-adds/s on a Zen 4).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn planes_of_row_pairs<const H: usize>(&self, src: &[f32], planes: std::ops::Range<usize>, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let channels = self.g.out_channels;
        let plane_len = H * 8;
        let vectors = H.div_ceil(2);
        for (k, p) in planes.enumerate() {
            let input = src[k * plane_len..(k + 1) * plane_len].as_ptr();
            let output = &mut out[k * plane_len..(k + 1) * plane_len];
            let (weights, steps) = three_by_three!(self, p % channels);
            // A chain of sums per vector and kernel column, twelve at once.
            let mut sums = [[_mm512_setzero_ps(); 3]; 4];
            row_pair_taps!((input, H), |m, tap, x| {
                sums[m][tap % 3] = _mm512_fmadd_ps(x, weights[tap], sums[m][tap % 3]);
            });
            for (m, &[left, middle, right]) in sums.iter().enumerate().take(vectors) {
                let sum = _mm512_add_ps(_mm512_add_ps(left, middle), right);
                // SAFETY: AVX-512F, as the caller's.
                let sum = unsafe { LaneSteps::apply_some(&steps, sum) };
                let lanes = if 2 * m + 1 < H { 0xFFFF } else { 0x00FF };
                // SAFETY: the mask stores only positions of the plane.
                unsafe { _mm512_mask_storeu_ps(output.as_mut_ptr().add(16 * m), lanes, sum) };
            }
        }
    }

    /// The planes `planes` of a [`Walk::Halved`] conv, a block of up to 8
    /// output rows at a time ([`halved_block`]). The tables' way took two
    /// masked loads and a permute for each multiply-add (a third of ONNX
    /// Runtime's speed on mobile_mini's stride-2 conv on a Zen 4); picking
    /// each kernel column from two rows by its own permute ran at 13 G
    /// multiply-adds/s, and splitting the rows into maps in memory to load
    /// them whole, 15 (its loads waited on the stores under them); the
    /// walk in registers 19–20.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn planes_halved_avx512(&self, src: &[f32], planes: std::ops::Range<usize>, out: &mut [f32]) {
        use std::arch::x86_64::*;
        let g = &self.g;
        let (h, channels) = (g.height, g.out_channels);
        let (plane_len, out_h) = (h * 16, h / 2);
        let out_plane = out_h * 8;
        for (k, p) in planes.enumerate() {
            let input = &src[k * plane_len..(k + 1) * plane_len];
            let output = &mut out[k * out_plane..(k + 1) * out_plane];
            let (weights, steps) = three_by_three!(self, p % channels);
            for o0 in (0..out_h).step_by(8) {
                let block = (input, &mut output[8 * o0..], o0);
                let (w, steps) = (&weights, &steps);
                // SAFETY: as the caller's; the block's loops unrolled.
                unsafe { up_to_eight!(out_h - o0, R => halved_block::<R>(block, (w, steps))) }
            }
        }
    }

    /// The first `blocks` blocks of the tables `t` for every plane of
    /// `planes`, `CH` planes by `NV` vectors at a time (one plane at a
    /// time for the planes left over).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn chunk<const CH: usize, const NV: usize, const S2: bool>(
        &self,
        (t, blocks): (&Tables, usize),
        src: &[f32],
        planes: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let channels = self.g.out_channels;
        let plane_len = self.g.height * self.g.width;
        let mut p = planes.start;
        while p < planes.end {
            let step = if planes.end - p >= CH { CH } else { 1 };
            // The input planes two steps on, fetched into L1 while these
            // run (at batch 64 a layer's input is out of L2).
            let ahead = (p + 2 * CH - planes.start) * plane_len;
            for k in (ahead..(ahead + CH * plane_len).min(src.len())).step_by(LINE) {
                // SAFETY: a prefetch does not fault; `k` is inside `src`.
                unsafe {
                    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                    _mm_prefetch::<_MM_HINT_T0>(src.as_ptr().add(k).cast());
                }
            }
            // The planes' epilogues, once for all the blocks (a loop, not
            // a closure: closures do not take this function's AVX-512, so
            // one is a call, and its result read back stalls).
            let mut steps: [Option<ChannelSteps>; CH] = [None; CH];
            if let Some(form) = &self.form {
                for (j, s) in steps.iter_mut().enumerate() {
                    *s = Some(form.at((p + j.min(step - 1)) % channels));
                }
            }
            for block in &t.blocks[..blocks] {
                // SAFETY: as the caller's.
                unsafe {
                    if step == CH {
                        self.step::<CH, NV, S2>(&t.taps, block, src, (planes.start, p), &steps, out)
                    } else {
                        self.step::<1, NV, S2>(&t.taps, block, src, (planes.start, p), &[steps[0]], out)
                    }
                };
            }
            p += step;
        }
    }

    /// The first `NV` vectors of `block` for planes `p..p + CH` (the
    /// slices `src` and `out` start at plane `first`): the sums over every
    /// tap, the planes' epilogue `steps`, the stores.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn step<const CH: usize, const NV: usize, const S2: bool>(
        &self,
        taps_at: &[isize; MAX_TAPS],
        t: &Block,
        src: &[f32],
        (first, p): (usize, usize),
        steps: &[Option<ChannelSteps>; CH],
        out: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        let g = &self.g;
        let (channels, taps) = (g.out_channels, g.kernel * g.kernel);
        let (in_plane, out_plane) = (g.height * g.width, self.out_h * self.out_w);
        let c = p - first;
        debug_assert!((c + CH) * in_plane <= src.len() && (c + CH) * out_plane <= out.len());
        // Loops, not `array::from_fn`: its closures do not take this
        // function's AVX-512 and stay calls.
        let mut weights: [&[f32]; CH] = [&[]; CH];
        let mut lo = [[std::ptr::null::<f32>(); NV]; CH];
        let mut hi = [[std::ptr::null::<f32>(); NV]; CH];
        for (j, ((weights, lo), hi)) in weights.iter_mut().zip(&mut lo).zip(&mut hi).enumerate() {
            *weights = &self.weights[(p + j) % channels * taps..][..taps];
            // Each vector's reads from the plane, before the tap's offset.
            let plane = src.as_ptr().wrapping_add((c + j) * in_plane);
            for (i, (lo, hi)) in lo.iter_mut().zip(hi).enumerate() {
                *lo = plane.wrapping_offset(t.bases[i].0);
                *hi = plane.wrapping_offset(t.bases[i].1);
            }
        }
        let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let mut sums = [[_mm512_setzero_ps(); NV]; CH];
        for tap in 0..taps {
            let (at, masks) = (taps_at[tap], &t.masks[tap]);
            let mut w = [_mm512_setzero_ps(); CH];
            for (w, weights) in w.iter_mut().zip(&weights) {
                *w = _mm512_set1_ps(weights[tap]);
            }
            for (i, &(lo_mask, hi_mask)) in masks.iter().take(NV).enumerate() {
                for j in 0..CH {
                    // SAFETY: the tables enable only lanes inside the
                    // channel's input plane (masked lanes are not read).
                    let v = unsafe {
                        let low = _mm512_maskz_loadu_ps(lo_mask, lo[j][i].wrapping_offset(at));
                        if S2 {
                            let high = _mm512_maskz_loadu_ps(hi_mask, hi[j][i].wrapping_offset(at));
                            _mm512_permutex2var_ps(low, evens, high)
                        } else {
                            low
                        }
                    };
                    sums[j][i] = _mm512_fmadd_ps(v, w[j], sums[j][i]);
                }
            }
        }
        for (j, (sums, steps)) in sums.iter().zip(steps).enumerate() {
            let plane = out.as_mut_ptr().wrapping_add((c + j) * out_plane);
            for (segment, &sum) in t.segments.iter().zip(sums) {
                let v = match steps {
                    // SAFETY: AVX-512F, as the caller's.
                    Some(steps) => unsafe { steps.apply(sum) },
                    None => sum,
                };
                // Stride 1 holds its outputs in the low lanes already.
                let v = if S2 {
                    _mm512_maskz_compress_ps(segment.lanes, v)
                } else {
                    v
                };
                // SAFETY: a segment's outputs are `count` positions of the
                // plane from `at`.
                unsafe { _mm512_mask_storeu_ps(plane.add(segment.at), low_lanes(segment.count), v) };
            }
        }
    }
}

/// The even lanes of 16.
const EVEN: u16 = 0x5555;

/// Output rows `o0..o0 + R` of a [`Walk::Halved`] plane
/// ([`halved_taps`]), stored from `output` on (the block's first row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::type_complexity)]
unsafe fn halved_block<const R: usize>(
    (input, output, o0): (&[f32], &mut [f32], usize),
    (weights, steps): (
        &[std::arch::x86_64::__m512; 9],
        &Option<LaneSteps<std::arch::x86_64::__m512>>,
    ),
) {
    use std::arch::x86_64::*;
    // A chain of sums per vector and kernel column.
    let mut sums = [[_mm512_setzero_ps(); 3]; 4];
    halved_taps!(
        (input, o0, R),
        |m, tap, x| {
            sums[m][tap % 3] = _mm512_fmadd_ps(x, weights[tap], sums[m][tap % 3]);
        },
        |m| {
            let [left, middle, right] = sums[m];
            let sum = _mm512_add_ps(_mm512_add_ps(left, middle), right);
            // SAFETY: AVX-512F, as the caller's.
            let sum = unsafe { LaneSteps::apply_some(steps, sum) };
            let lanes = if 2 * m + 1 < R { 0xFFFF } else { 0x00FF };
            // SAFETY: the mask stores only positions of the plane.
            unsafe { _mm512_mask_storeu_ps(output.as_mut_ptr().add(16 * m), lanes, sum) };
        }
    );
}
