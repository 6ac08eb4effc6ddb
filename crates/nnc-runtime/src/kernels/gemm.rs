//! A packed SGEMM for CPUs with AVX2 and FMA (and AVX-512F, used where
//! present): `C = A·B + beta·C` with A and B given by any strides, C
//! row-major. The products of the dense and conv layers without panels and
//! of every backward run here; matrixmultiply's elsewhere.
//!
//! The blocking is the usual one (Goto and van de Geijn): B is packed in
//! blocks of `KC × NC` as panels `NR` columns wide, A in blocks of
//! `MC × KC` as panels `MR` rows tall, and a register-blocked micro-kernel
//! computes each `MR × NR` tile of C from one panel of each, with its
//! accumulators (two vector registers per row) in registers: 6 × 16 with
//! AVX2, 12 × 32 with AVX-512. The packing buffers are per thread and
//! allocated once, at their largest, on a thread's first product, so a
//! planned step allocates nothing (matrixmultiply allocates its packing
//! buffers on every call).

// Off x86-64 `available()` is false: the blocking is never reached.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use std::cell::RefCell;

use super::dense::Gemm;
use super::simd::{Lanes, Level};

/// Rows of a micro-tile with AVX2 (12 `ymm` accumulators of 16).
const MR_AVX2: usize = 6;
/// Rows of a micro-tile with AVX-512 (24 `zmm` accumulators of 32).
const MR_AVX512: usize = 12;
/// The tallest micro-tile, for buffer sizes.
const MR_MAX: usize = MR_AVX512;
/// Floats of a panel of B (KC·NR, 16 KiB): it stays in L1 even when two
/// hyperthreads of one core each hold one.
const B_PANEL: usize = 4096;
/// The largest depth of a packed block (with the narrowest tile, NR = 16).
const KC: usize = B_PANEL / 16;
/// Rows of a packed block of A (MC·KC floats, at most 144 KiB): stays in L2.
const MC: usize = 144;
/// Columns of a packed block of B (KC·NC floats, at most 1 MiB).
const NC: usize = 1024;

thread_local! {
    /// This thread's packed blocks of A and B.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Whether this CPU runs [`sgemm`].
#[inline]
pub(crate) fn available() -> bool {
    Level::detect() != Level::Base
}

/// What runs on each block of finished rows of C: `then(first_row, rows)`,
/// `rows` starting at row `first_row` (whole rows of `rsc` floats, the last
/// one possibly cut at its end).
pub(crate) type Then<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// `C = A·B + beta·C`: A is `m × k` with strides `(rsa, csa)`, B is `k × n`
/// with `(rsb, csb)`, C is `m × n` with row stride `rsc`; `beta` 0 (C is not
/// read) or 1; then `then` on each block of rows as soon as it is final,
/// while it is in cache. The caller has checked that `k > 0`, that every
/// element the strides reach is inside its slice, and that [`available`]
/// holds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    g: Gemm,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
    rsc: usize,
    beta: f32,
    then: Then<'_>,
) {
    product(g, (a, sa), b, sb, c, rsc, beta, then);
}

/// Grows this thread's packed blocks to the largest, once: later products
/// allocate nothing. Every member of a [`Team`](crate::team::Team) calls it
/// when the team starts, since which member runs which part of a product
/// changes from run to run (a planned step must allocate nothing after its
/// first, whoever ran the products then).
pub(crate) fn reserve() {
    if available() {
        PACKED.with(|packed| grow(&mut packed.borrow_mut()));
    }
}

fn grow((a_pack, b_pack): &mut (Vec<f32>, Vec<f32>)) {
    if a_pack.len() < MC.next_multiple_of(MR_MAX) * KC {
        a_pack.resize(MC.next_multiple_of(MR_MAX) * KC, 0.0);
    }
    if b_pack.len() < KC * NC {
        b_pack.resize(KC * NC, 0.0);
    }
}

#[allow(clippy::too_many_arguments)]
fn product(
    g: Gemm,
    a: (&[f32], (usize, usize)),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
    rsc: usize,
    beta: f32,
    then: Then<'_>,
) {
    PACKED.with(|packed| {
        let mut packed = packed.borrow_mut();
        grow(&mut packed);
        let (a_pack, b_pack) = &mut *packed;
        // Each kernel goes with the level that says the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        match Level::detect() {
            Level::Avx512 => blocked::<MR_AVX512, 32>(g, a, b, sb, c, rsc, beta, a_pack, b_pack, then, tile_avx512),
            _ => blocked::<MR_AVX2, 16>(g, a, b, sb, c, rsc, beta, a_pack, b_pack, then, tile_avx2),
        }
        // Elsewhere `available()` is false and nothing calls this.
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (g, a, b, sb, c, rsc, beta, a_pack, b_pack, then);
    });
}

/// A micro-kernel: `kc` depths of an `MR`-row panel of A and an `NR`-column
/// panel of B into `MR` rows of `NR` of C at row stride `rsc`, added to what
/// is there with `accumulate`. Unsafe to call unless the CPU has the
/// kernel's features and the pointers hold that much.
type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool);

/// The most floats a micro-tile holds (12 × 32).
const TILE_MAX: usize = MR_MAX * 32;

/// The blocked product with `kernel`'s `MR × NR` micro-tiles; `kernel`
/// must be one the CPU runs.
#[allow(clippy::too_many_arguments)]
fn blocked<const MR: usize, const NR: usize>(
    g: Gemm,
    (a, sa): (&[f32], (usize, usize)),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
    rsc: usize,
    beta: f32,
    a_pack: &mut [f32],
    b_pack: &mut [f32],
    then: Then<'_>,
    kernel: Kernel,
) {
    let depth = B_PANEL / NR;
    for jc in (0..g.n).step_by(NC) {
        let nc = NC.min(g.n - jc);
        for pc in (0..g.k).step_by(depth) {
            let kc = depth.min(g.k - pc);
            pack_b::<NR>(b, sb, pc, kc, jc, nc, b_pack);
            // The first block of the depth writes C (scaled by beta); the
            // others add to it.
            let keep = if pc == 0 { beta } else { 1.0 };
            for ic in (0..g.m).step_by(MC) {
                let mc = MC.min(g.m - ic);
                pack_a::<MR>(a, sa, ic, mc, pc, kc, a_pack);
                for (q, jr) in (0..nc).step_by(NR).enumerate() {
                    let nr = NR.min(nc - jr);
                    let b_panel = &b_pack[q * kc * NR..(q + 1) * kc * NR];
                    for (p, ir) in (0..mc).step_by(MR).enumerate() {
                        let mr = MR.min(mc - ir);
                        let a_panel = &a_pack[p * kc * MR..(p + 1) * kc * MR];
                        let at = (ic + ir) * rsc + jc + jr;
                        let c = &mut c[at..];
                        // SAFETY: the CPU runs `kernel` (the caller's
                        // promise); the panels hold `kc` depths (sliced so);
                        // a whole tile's rows are inside `c` (checked), an
                        // edge tile goes to `tile`, MR rows of NR.
                        if mr == MR && nr == NR && c.len() >= (MR - 1) * rsc + NR {
                            unsafe { kernel(kc, a_panel.as_ptr(), b_panel.as_ptr(), c.as_mut_ptr(), rsc, keep != 0.0) };
                        } else {
                            let mut tile = [0.0; TILE_MAX];
                            unsafe { kernel(kc, a_panel.as_ptr(), b_panel.as_ptr(), tile.as_mut_ptr(), NR, false) };
                            store(&tile[..MR * NR], NR, mr, nr, c, rsc, keep);
                        }
                    }
                }
                // Rows ic..ic + mc are final once the last depth block of
                // the last column block is in.
                if jc + nc == g.n && pc + kc == g.k {
                    let end = ((ic + mc) * rsc).min(c.len());
                    then(ic, &mut c[ic * rsc..end]);
                }
            }
        }
    }
}

/// Rows `ic..ic + mc`, depths `pc..pc + kc` of A as panels of `MR` rows:
/// depth-major within a panel, zero past the last row.
fn pack_a<const MR: usize>(
    a: &[f32],
    (rsa, csa): (usize, usize),
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    out: &mut [f32],
) {
    for (p, ir) in (0..mc).step_by(MR).enumerate() {
        let panel = &mut out[p * kc * MR..(p + 1) * kc * MR];
        let rows = MR.min(mc - ir);
        if rows < MR {
            for (kk, slot) in panel.chunks_exact_mut(MR).enumerate() {
                let at = (ic + ir) * rsa + (pc + kk) * csa;
                for (i, v) in slot.iter_mut().enumerate() {
                    *v = if i < rows { a[at + i * rsa] } else { 0.0 };
                }
            }
        } else if csa == 1 {
            // Row-major A: MR runs of contiguous depths, interleaved.
            let row = |i: usize| {
                let at = (ic + ir + i) * rsa + pc;
                &a[at..at + kc]
            };
            let rows: [&[f32]; MR] = std::array::from_fn(row);
            for (kk, slot) in panel.chunks_exact_mut(MR).enumerate() {
                if let Ok(slot) = <&mut [f32; MR]>::try_from(slot) {
                    *slot = std::array::from_fn(|i| rows[i][kk]);
                }
            }
        } else {
            for (kk, slot) in panel.chunks_exact_mut(MR).enumerate() {
                let at = (ic + ir) * rsa + (pc + kk) * csa;
                if rsa == 1 {
                    slot.copy_from_slice(&a[at..at + MR]);
                } else {
                    for (i, v) in slot.iter_mut().enumerate() {
                        *v = a[at + i * rsa];
                    }
                }
            }
        }
    }
}

/// Depths `pc..pc + kc`, columns `jc..jc + nc` of B as panels of `NR`
/// columns: depth-major within a panel, zero past the last column.
fn pack_b<const NR: usize>(
    b: &[f32],
    (rsb, csb): (usize, usize),
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    out: &mut [f32],
) {
    for (q, jr) in (0..nc).step_by(NR).enumerate() {
        let panel = &mut out[q * kc * NR..(q + 1) * kc * NR];
        let cols = NR.min(nc - jr);
        if rsb == 1 && csb != 1 {
            // B read transposed (a weight `[out, in]` as `in × out`): each
            // column's depths are contiguous; read them in runs.
            if cols < NR {
                panel.fill(0.0);
            }
            for j in 0..cols {
                let at = (jc + jr + j) * csb + pc;
                for (kk, v) in b[at..at + kc].iter().enumerate() {
                    panel[kk * NR + j] = *v;
                }
            }
            continue;
        }
        for (kk, slot) in panel.chunks_exact_mut(NR).enumerate() {
            let at = (pc + kk) * rsb + (jc + jr) * csb;
            if csb == 1 && cols == NR {
                // Fixed-size copies: moves, not a memcpy call per row.
                if let (Ok(slot), Ok(row)) = (
                    <&mut [f32; NR]>::try_from(slot),
                    <&[f32; NR]>::try_from(&b[at..at + NR]),
                ) {
                    *slot = *row;
                }
            } else {
                for (j, v) in slot.iter_mut().enumerate() {
                    *v = if j < cols { b[at + j * csb] } else { 0.0 };
                }
            }
        }
    }
}

/// `C[..mr, ..nr] = tile + keep·C` (keep 0: C is not read), `tile` rows of
/// `nr_full`.
fn store(tile: &[f32], nr_full: usize, mr: usize, nr: usize, c: &mut [f32], rsc: usize, keep: f32) {
    for (i, row) in tile.chunks_exact(nr_full).enumerate().take(mr) {
        let out = &mut c[i * rsc..i * rsc + nr];
        if keep == 0.0 {
            out.copy_from_slice(&row[..nr]);
        } else {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    }
}

/// The micro-kernel, `MR` rows × two vectors of `V`: 2·MR accumulators, two
/// loads of B and MR broadcasts of A per depth; the tile goes to `c` (rows
/// `rsc` apart), added to what is there with `accumulate`.
///
/// # Safety
/// The CPU has `V`'s features; `a` holds `kc·MR` floats, `b` `kc·2·lanes`,
/// and `c` MR rows of `2·lanes` at stride `rsc`.
#[inline(always)]
unsafe fn tile<V: Lanes, const MR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    accumulate: bool,
) {
    let nr = 2 * V::N;
    let mut acc = [[V::zero(); 2]; MR];
    for kk in 0..kc {
        let bs = [V::load(b.add(kk * nr)), V::load(b.add(kk * nr + V::N))];
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = V::splat(a.add(kk * MR + i));
            row[0] = V::fma(ai, bs[0], row[0]);
            row[1] = V::fma(ai, bs[1], row[1]);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        let out = c.add(i * rsc);
        for (v, part) in row.iter().enumerate() {
            let at = out.add(v * V::N);
            let value = if accumulate { V::add(*part, V::load(at)) } else { *part };
            value.store(at);
        }
    }
}

/// [`tile`] with AVX2: 6 × 16, 12 accumulators.
///
/// # Safety
/// AVX2 and FMA are available; the operands as [`tile`] needs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: usize, accumulate: bool) {
    tile::<std::arch::x86_64::__m256, MR_AVX2>(kc, a, b, c, rsc, accumulate);
}

/// [`tile`] with AVX-512: 12 × 32, 24 of the 32 registers accumulating.
///
/// # Safety
/// AVX-512F is available; the operands as [`tile`] needs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: usize, accumulate: bool) {
    tile::<std::arch::x86_64::__m512, MR_AVX512>(kc, a, b, c, rsc, accumulate);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product in f64, the naive way.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        g: Gemm,
        a: &[f32],
        sa: (usize, usize),
        b: &[f32],
        sb: (usize, usize),
        c: &[f32],
        beta: f32,
    ) -> Vec<f64> {
        let mut out = vec![0.0; g.m * g.n];
        for i in 0..g.m {
            for j in 0..g.n {
                let mut s = f64::from(beta) * f64::from(c[i * g.n + j]);
                for k in 0..g.k {
                    s += f64::from(a[i * sa.0 + k * sa.1]) * f64::from(b[k * sb.0 + j * sb.1]);
                }
                out[i * g.n + j] = s;
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_product_on_edges_strides_and_blocks() {
        if !available() {
            return;
        }
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 3, 7),
            (6, 16, 16),
            (7, 257, 17),
            (73, 300, 1030),
            (13, 0, 5),
        ] {
            for transposed in [false, true] {
                for beta in [0.0, 1.0] {
                    let g = Gemm { m, k, n };
                    let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
                    let start: Vec<f32> = (0..m * n).map(|_| next()).collect();
                    // A as given, or read through transposed strides.
                    let sa = if transposed { (1, m) } else { (k, 1) };
                    let a_t: Vec<f32> = if transposed {
                        let mut t = vec![0.0; m * k];
                        for i in 0..m {
                            for kk in 0..k {
                                t[kk * m + i] = a[i * k + kk];
                            }
                        }
                        t
                    } else {
                        a.clone()
                    };
                    // B as given, or transposed (a weight read as `in × out`).
                    let (b_t, sb) = if transposed {
                        let mut t = vec![0.0; k * n];
                        for kk in 0..k {
                            for j in 0..n {
                                t[j * k + kk] = b[kk * n + j];
                            }
                        }
                        (t, (1, k))
                    } else {
                        (b.clone(), (n, 1))
                    };
                    let mut c = start.clone();
                    // Through dense's entry points, which take k = 0 before
                    // the blocking does.
                    if beta == 0.0 {
                        crate::kernels::dense::sgemm(g, &a_t, sa, &b_t, sb, &mut c, n);
                    } else {
                        crate::kernels::dense::sgemm_add(g, &a_t, sa, &b_t, sb, &mut c, n);
                    }
                    let expected = reference(g, &a, (k, 1), &b, (n, 1), &start, beta);
                    for (i, (got, want)) in c.iter().zip(&expected).enumerate() {
                        let tolerance = 1e-5 * (k as f64).sqrt().max(1.0);
                        assert!(
                            (f64::from(*got) - want).abs() <= tolerance,
                            "{m}x{k}x{n} transposed {transposed} beta {beta}: element {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
