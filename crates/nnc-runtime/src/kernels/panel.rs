//! Dense layers on weights packed once into column panels, with an AVX-512
//! micro-kernel.
//!
//! A dense weight `w[out, in]` is constant, so it is rearranged once, at
//! load, into the order the product reads it: `⌈out / NR⌉` panels, panel `p`
//! holding `w[p·NR + j, k]` at `k·NR + j` (zero for `p·NR + j ≥ out`). A
//! micro-tile of the output, `MR` samples × `NR` features, then lives in
//! 3·MR vector registers while the kernel walks down `k`: per step it loads
//! three vectors of the panel, broadcasts one input value per sample and does
//! 3·MR fused multiply-adds. With one sample this is the GEMV that streams
//! the weights at memory speed; with many it is a register-blocked GEMM
//! whose panel slice (`KC` deep) stays in L1 while every sample of a row
//! tile passes over it.
//!
//! Threads take contiguous ranges of panels, so each reads only its share
//! of the weights, until the batch is large enough for each thread to take
//! its own rows: then the weights are reused often enough that reading all
//! of them costs nothing, while threads writing the same output rows would
//! share the cache lines where their column ranges meet.

use std::ops::Range;

use super::dense::{split, WORK_PER_THREAD};
use super::epilogue::Epilogue;
use crate::team::{Disjoint, Team};
use crate::AlignedBuf;

/// Output features per panel: three 16-lane registers.
pub const NR: usize = 48;
/// Registers per panel row.
const VR: usize = NR / 16;
/// Samples per micro-tile: 3·MR = 24 accumulators (of 32 registers), enough
/// independent multiply-adds to cover the FMA latency on two ports, with 11
/// loads per 24 multiply-adds.
const MR: usize = 8;
/// Depth of one pass over a panel when several micro-tiles share it: a
/// 30 KiB slice, which stays in L1 (NR = 48 measured 10 % faster than 32 on
/// the 800×750 layer at batch 64, KC = 160 than 256 at batch 2000).
const KC: usize = 160;
/// Bytes of input and output rows per row tile: they stay in L2 while every
/// panel of the thread passes over the inputs, and until the epilogue has
/// run on the outputs.
const ROW_TILE_BYTES: usize = 1 << 20;
/// Rows per thread from which threads split the rows rather than the
/// panels (measured on the seed MLP at batch 2000 with 2 threads: 47 ms by
/// rows, 52 ms by panels).
const ROWS_PER_PART: usize = 256;

/// A weight packed into panels. Only built where [`available`] holds.
#[derive(Clone, Debug)]
pub struct Panels {
    /// The panels, the first on a 64-byte line.
    data: AlignedBuf,
    in_features: usize,
    out_features: usize,
}

/// Whether this CPU runs the panel kernel (AVX-512, unless `NNC_SIMD` asks for less).
pub fn available() -> bool {
    super::simd::Level::detect() == super::simd::Level::Avx512
}

impl Panels {
    /// Packs `weight` ([out, in], row-major).
    pub fn pack(weight: &[f32], out_features: usize, in_features: usize) -> Panels {
        debug_assert_eq!(weight.len(), out_features * in_features);
        let panels = out_features.div_ceil(NR);
        let mut data = AlignedBuf::zeroed(panels * NR * in_features);
        let packed = &mut data[..];
        for (o, row) in weight.chunks_exact(in_features.max(1)).take(out_features).enumerate() {
            let (p, j) = (o / NR, o % NR);
            let panel = &mut packed[p * NR * in_features..(p + 1) * NR * in_features];
            for (k, &v) in row.iter().enumerate() {
                panel[k * NR + j] = v;
            }
        }
        Panels {
            data,
            in_features,
            out_features,
        }
    }

    fn count(&self) -> usize {
        self.out_features.div_ceil(NR)
    }
}

/// `y = epilogue(x · wᵀ)` for `batch` samples, the panels split between
/// the team's threads. The caller guarantees [`available`] and the slice
/// lengths.
pub fn dense(x: &[f32], batch: usize, w: &Panels, epilogue: &Epilogue, y: &mut [f32], team: &Team) {
    let work = batch * w.out_features * w.in_features;
    let most = team.threads().min(work / WORK_PER_THREAD).max(1);
    let y = Disjoint::new(y);
    let (k, out) = (w.in_features, w.out_features);
    let by_rows = most.min(batch / ROWS_PER_PART);
    if by_rows > 1 {
        team.run(by_rows, &|t| {
            let rows = split(batch, by_rows, t, MR);
            // SAFETY: parts own disjoint ranges of rows.
            let mine = Disjoint::new(unsafe { y.piece(rows.start * out..rows.end * out) });
            let x = &x[rows.start * k..rows.end * k];
            // SAFETY: the caller checked `available()`.
            unsafe { panels_avx512(x, rows.len(), w, 0..w.count(), epilogue, mine) }
        });
        return;
    }
    let parts = most.min(w.count());
    team.run(parts, &|t| {
        let panels = split(w.count(), parts, t, 1);
        // SAFETY: the caller checked `available()`; parts write disjoint
        // column ranges (their panels) of y.
        unsafe { panels_avx512(x, batch, w, panels, epilogue, y) }
    });
}

/// Panels `panels` of every sample: row tiles, the product of each tile
/// with the panels, then the epilogue on the tile's block of the output while
/// it is in L2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn panels_avx512(x: &[f32], batch: usize, w: &Panels, panels: Range<usize>, epilogue: &Epilogue, y: Disjoint) {
    let (k_total, out) = (w.in_features, w.out_features);
    debug_assert!(x.len() >= batch * k_total && y.len() >= batch * out);
    let tile_rows = (ROW_TILE_BYTES / (4 * (k_total + out))).clamp(MR, 1024) / MR * MR;
    let packed = &w.data[..];
    for rows in (0..batch).step_by(tile_rows).map(|r| r..(r + tile_rows).min(batch)) {
        let product = Product {
            rows: rows.len(),
            depth: k_total,
            a: x.as_ptr().add(rows.start * k_total),
            lda: k_total,
            panels: packed.as_ptr(),
            cols: out,
            c: y.as_mut_ptr().add(rows.start * out),
            ldc: out,
        };
        product.run(panels.clone());
        // The epilogue on the tile's rows across all of this thread's panels,
        // still in L2: long rows let the activation's dependency chains of
        // neighbouring vectors overlap (on one panel's width they would not).
        let cols = panels.start * NR..(panels.end * NR).min(out);
        for i in rows {
            let row = std::slice::from_raw_parts_mut(y.as_mut_ptr().add(i * out + cols.start), cols.len());
            epilogue.apply_row(row, cols.start);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn panels_avx512(_: &[f32], _: usize, _: &Panels, _: Range<usize>, _: &Epilogue, _: Disjoint) {
    unreachable!("panels are only built where AVX-512 is available")
}

/// `C[rows, cols] = A[rows, depth] · B[depth, cols]` with B in panels.
struct Product {
    rows: usize,
    depth: usize,
    /// Row i, step k of A at `a + i·lda + k`.
    a: *const f32,
    lda: usize,
    /// Panel p of B at `panels + p·depth·NR`, step k of it `k·NR` further.
    panels: *const f32,
    cols: usize,
    /// Row i of C at `c + i·ldc`.
    c: *mut f32,
    ldc: usize,
}

impl Product {
    /// The columns of panels `panels`: per panel a pass per `KC` slice over
    /// the micro-tiles of the rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, panels: Range<usize>) {
        // One pass when a single micro-tile covers the rows: nothing to share the slice with.
        let tiles = self.rows.div_ceil(MR);
        let kc = if tiles > 1 { KC } else { self.depth };
        // The packed weights are one stream: the next slice follows this
        // one. Its lines are fetched into L2 a share per micro-tile, so that
        // the tile that first reads the next slice does not wait on L3 alone.
        let per_tile = if tiles > 1 {
            (kc.min(self.depth) * NR * 4).div_ceil(64).div_ceil(tiles)
        } else {
            0
        };
        for p in panels {
            let panel = self.panels.add(p * self.depth * NR);
            let cols = p * NR..((p + 1) * NR).min(self.cols);
            let mask = lane_masks(cols.len());
            for k0 in (0..self.depth).step_by(kc.max(1)) {
                let depth = kc.min(self.depth - k0);
                let next = panel.add((k0 + depth) * NR) as *const u8;
                for (n, i) in (0..self.rows).step_by(MR).enumerate() {
                    let tile = MicroTile {
                        prefetch: next.wrapping_add(n * per_tile * 64),
                        prefetch_lines: per_tile.min(depth),
                        depth,
                        a: self.a.add(i * self.lda + k0),
                        lda: self.lda,
                        b: panel.add(k0 * NR),
                        c: self.c.add(i * self.ldc + cols.start),
                        ldc: self.ldc,
                        mask,
                        accumulate: k0 > 0,
                    };
                    match MR.min(self.rows - i) {
                        8 => micro::<8>(&tile),
                        7 => micro::<7>(&tile),
                        6 => micro::<6>(&tile),
                        5 => micro::<5>(&tile),
                        4 => micro::<4>(&tile),
                        3 => micro::<3>(&tile),
                        2 => micro::<2>(&tile),
                        _ => micro::<1>(&tile),
                    }
                }
            }
        }
    }
}

/// The store masks of a panel's registers for `cols` valid columns.
fn lane_masks(cols: usize) -> [u16; VR] {
    let low = |n: usize| ((1u32 << n.min(16)) - 1) as u16;
    std::array::from_fn(|v| low(cols.saturating_sub(16 * v)))
}

/// One call of the micro-kernel: `C[m, cols] (+)= A[m, depth] · B[depth, NR]`.
struct MicroTile {
    depth: usize,
    /// Row i, step k of A at `a + i·lda + k`.
    a: *const f32,
    lda: usize,
    /// Step k of the panel slice at `b + k·NR` (NR floats).
    b: *const f32,
    /// Row i of the output block at `c + i·ldc`, its valid lanes in `mask`.
    c: *mut f32,
    ldc: usize,
    mask: [u16; VR],
    /// Add to C (a later `KC` slice) rather than overwrite it.
    accumulate: bool,
    /// Lines to fetch into L2 from `prefetch` on, one per step.
    prefetch: *const u8,
    prefetch_lines: usize,
}

/// M rows × NR columns in VR·M registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn micro<const M: usize>(t: &MicroTile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); VR]; M];
    if t.accumulate {
        for (i, row) in acc.iter_mut().enumerate() {
            let c = t.c.add(i * t.ldc);
            for (v, reg) in row.iter_mut().enumerate() {
                *reg = _mm512_maskz_loadu_ps(t.mask[v], c.add(16 * v));
            }
        }
    }
    // One pointer per row, so each broadcast is a load at `row + k`
    // rather than a chain of address additions.
    let mut rows = [t.a; M];
    for (i, r) in rows.iter_mut().enumerate() {
        *r = t.a.add(i * t.lda);
    }
    for k in 0..t.depth {
        if k < t.prefetch_lines {
            _mm_prefetch::<_MM_HINT_T1>(t.prefetch.wrapping_add(64 * k) as *const i8);
        }
        let b = t.b.add(k * NR);
        // Unaligned loads: conv's packed columns live in a plain scratch buffer.
        let bv: [__m512; VR] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
        for (row, r) in acc.iter_mut().zip(&rows) {
            let a = _mm512_set1_ps(*r.add(k));
            for (reg, b) in row.iter_mut().zip(&bv) {
                *reg = _mm512_fmadd_ps(a, *b, *reg);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let c = t.c.add(i * t.ldc);
        for (v, reg) in row.iter().enumerate() {
            _mm512_mask_storeu_ps(c.add(16 * v), t.mask[v], *reg);
        }
    }
}
