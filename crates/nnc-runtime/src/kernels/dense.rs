//! Dense (fully connected) layers: `y = epilogue(x · wᵀ)`.
//!
//! A weight that stays fixed across calls is best held as a [`DenseWeight`],
//! which packs it once into column panels where the CPU has AVX-512 (see
//! [`super::panel`]) and otherwise keeps PyTorch's `[out, in]` rows.
//!
//! On rows there are two paths. Small batches (≤ [`GEMV_MAX_BATCH`]) are
//! bound by reading the weights once, so they run a GEMV that streams the
//! weights row by row against the input, with the output features split
//! between threads. Larger batches run a packed SGEMM (nnc's own with AVX2
//! and FMA, [`super::gemm`], else matrixmultiply's), which hands each block
//! of finished output rows to the epilogue while it is in cache (packing
//! the weight once per call, not once per tile of rows), with the batch
//! split between threads.
//!
//! Parts of a call run on the caller's [`Team`], and a call only splits
//! when each part has at least `WORK_PER_THREAD` multiply-adds.

use std::ops::Range;

use super::epilogue::Epilogue;
use super::panel::{self, Panels};
use crate::team::{Disjoint, Team};

/// A dense layer's weight `[out, in]`, laid out once for this CPU's fastest
/// kernel.
#[derive(Clone, Debug)]
pub struct DenseWeight {
    in_features: usize,
    out_features: usize,
    layout: Layout,
}

#[derive(Clone, Debug)]
enum Layout {
    /// PyTorch's `[out, in]`, row-major.
    Rows(Vec<f32>),
    /// Column panels for the AVX-512 kernel.
    Panels(Panels),
}

impl DenseWeight {
    /// `weight` is `[out_features, in_features]`, row-major.
    pub fn new(weight: &[f32], out_features: usize, in_features: usize) -> DenseWeight {
        if !(panel::available() && in_features > 0) {
            return DenseWeight::rows(weight, out_features, in_features);
        }
        DenseWeight {
            in_features,
            out_features,
            layout: Layout::Panels(Panels::pack(weight, out_features, in_features)),
        }
    }

    /// Keeps the rows as they are, whatever the CPU (the portable path).
    pub fn rows(weight: &[f32], out_features: usize, in_features: usize) -> DenseWeight {
        DenseWeight {
            in_features,
            out_features,
            layout: Layout::Rows(weight.to_vec()),
        }
    }

    /// Whether this CPU can run packed panels (x86-64 with AVX-512F).
    pub fn has_panels() -> bool {
        panel::available()
    }
}

/// Whether every matrix product runs on nnc's own SGEMM here (x86-64 with
/// AVX2 and FMA), which allocates nothing once a thread has run one;
/// elsewhere matrixmultiply allocates its packing buffers per product.
pub fn products_allocate_nothing() -> bool {
    super::gemm::available()
}

/// [`dense`] on a weight laid out by [`DenseWeight`].
pub fn dense_weight(x: &[f32], batch: usize, w: &DenseWeight, epilogue: &Epilogue, y: &mut [f32], team: &Team) {
    let (n_in, n_out) = (w.in_features, w.out_features);
    match &w.layout {
        Layout::Rows(rows) => dense(x, batch, n_in, rows, n_out, epilogue, y, team),
        Layout::Panels(panels) => {
            debug_assert_eq!(x.len(), batch * n_in);
            debug_assert_eq!(y.len(), batch * n_out);
            debug_assert!(epilogue.fits(n_out) && epilogue.residual.is_none());
            let fits = x.len() >= batch * n_in && y.len() >= batch * n_out;
            if fits && batch > 0 && n_out > 0 {
                panel::dense(x, batch, panels, epilogue, y, team);
            }
        }
    }
}

/// Batches up to this size take the GEMV path (measured on the 800×750
/// layer: GEMV 183 µs at batch 4, ~40 µs per further sample; SGEMM ~290 µs
/// at batch 5 to 8).
pub const GEMV_MAX_BATCH: usize = 6;
/// Partial sums of the GEMV's dot products: four SSE registers, enough
/// independent additions to hide their latency.
const LANES: usize = 16;
/// Multiply-adds a part must have before another one is worth starting
/// (handing a part to a spinning worker costs ~1 µs, ~60k multiply-adds).
pub(crate) const WORK_PER_THREAD: usize = 1 << 16;

/// y[b, o] = epilogue_o( Σ_i x[b, i] · w[o, i] ) for b < batch; w is [out, in] row-major (PyTorch layout).
#[allow(clippy::too_many_arguments)]
pub fn dense(
    x: &[f32],
    batch: usize,
    in_features: usize,
    weight: &[f32],
    out_features: usize,
    epilogue: &Epilogue,
    y: &mut [f32],
    team: &Team,
) {
    debug_assert_eq!(x.len(), batch * in_features);
    debug_assert_eq!(weight.len(), out_features * in_features);
    debug_assert_eq!(y.len(), batch * out_features);
    debug_assert!(epilogue.fits(out_features) && epilogue.residual.is_none());
    if batch == 0 || out_features == 0 {
        return;
    }
    if in_features == 0 {
        // An empty sum: every output is the epilogue of 0.
        y.fill(0.0);
        y.chunks_exact_mut(out_features)
            .for_each(|row| epilogue.apply_row(row, 0));
        return;
    }
    let layer = Layer {
        in_features,
        weight,
        out_features,
        epilogue,
    };
    if batch <= GEMV_MAX_BATCH {
        gemv_threaded(&layer, x, batch, y, team);
    } else {
        gemm_threaded(&layer, x, batch, y, team);
    }
}

/// The parameters of one dense layer.
struct Layer<'a> {
    in_features: usize,
    weight: &'a [f32],
    out_features: usize,
    epilogue: &'a Epilogue<'a>,
}

/// The `part`-th of `parts` near-equal ranges of `0..n`, with boundaries on
/// multiples of `align` (except the end).
pub(crate) fn split(n: usize, parts: usize, part: usize, align: usize) -> Range<usize> {
    let blocks = n.div_ceil(align);
    let at = |p: usize| (blocks * p / parts * align).min(n);
    at(part)..at(part + 1)
}

/// The GEMV path: threads take contiguous ranges of output features.
fn gemv_threaded(layer: &Layer, x: &[f32], batch: usize, y: &mut [f32], team: &Team) {
    let out = layer.out_features;
    let parts = team
        .threads()
        .min(batch * out * layer.in_features / WORK_PER_THREAD)
        .max(1);
    let y = Disjoint::new(y);
    team.run(parts, &|t| {
        let outputs = split(out, parts, t, 16);
        // Part t's columns of every sample's row.
        let mut mine: [&mut [f32]; GEMV_MAX_BATCH] = Default::default();
        for (b, slot) in mine.iter_mut().enumerate().take(batch) {
            // SAFETY: parts own disjoint column ranges of each row.
            *slot = unsafe { y.piece(b * out + outputs.start..b * out + outputs.end) };
        }
        gemv(layer, x, batch, outputs, &mut mine);
    });
}

/// Output features `outputs` of samples `0..batch`; `y[b]` is that part of
/// sample b's output row. One weight row at a time, for every sample while
/// the row is in L1: a single sequential stream through the weights.
fn gemv(layer: &Layer, x: &[f32], batch: usize, outputs: Range<usize>, y: &mut [&mut [f32]; GEMV_MAX_BATCH]) {
    let n = layer.in_features;
    let first = outputs.start;
    let weight = &layer.weight[first * n..outputs.end * n];
    for (o, row) in weight.chunks_exact(n).enumerate() {
        for (yb, xb) in y.iter_mut().zip(x.chunks_exact(n)).take(batch) {
            yb[o] = dot(row, xb);
        }
    }
    for yb in y.iter_mut().take(batch) {
        layer.epilogue.apply_row(yb, first);
    }
}

/// A dot product with `LANES` independent partial sums, so that the loop
/// vectorises without reassociating. (Interleaving several rows against one
/// `x` makes LLVM's SLP vectoriser pack across rows with shuffles instead,
/// at less than half the speed.)
#[inline(always)]
pub(crate) fn dot(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (wc, xc) in w.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += wc[l] * xc[l];
        }
    }
    let tail = w
        .chunks_exact(LANES)
        .remainder()
        .iter()
        .zip(x.chunks_exact(LANES).remainder());
    horizontal_sum(acc) + tail.map(|(w, x)| w * x).sum::<f32>()
}

/// Pairwise sum of the partial sums.
#[inline(always)]
fn horizontal_sum(acc: [f32; LANES]) -> f32 {
    let mut width = LANES;
    let mut acc = acc;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    acc[0]
}

/// The GEMM path: threads take contiguous ranges of samples.
fn gemm_threaded(layer: &Layer, x: &[f32], batch: usize, y: &mut [f32], team: &Team) {
    let (n_in, out) = (layer.in_features, layer.out_features);
    let work = batch * out * n_in / WORK_PER_THREAD;
    let parts = team.threads().min(batch.div_ceil(16)).min(work).max(1);
    let y = Disjoint::new(y);
    team.run(parts, &|t| {
        let rows = split(batch, parts, t, 8);
        // SAFETY: parts own disjoint ranges of rows.
        let mine = unsafe { y.piece(rows.start * out..rows.end * out) };
        gemm_with_epilogue(layer, &x[rows.start * n_in..rows.end * n_in], mine);
    });
}

/// The product into `y`, then the epilogue on each block of rows as soon as
/// the product has finished it, while it is in cache.
fn gemm_with_epilogue(layer: &Layer, x: &[f32], y: &mut [f32]) {
    let (n_in, out) = (layer.in_features, layer.out_features);
    let rows = y.len() / out.max(1);
    let epilogue = |_: usize, block: &mut [f32]| {
        for row in block.chunks_exact_mut(out) {
            layer.epilogue.apply_row(row, 0);
        }
    };
    // C[rows, out] = X[rows, in] · Wᵀ, Wᵀ read in place as [in, out] with strides (1, in).
    sgemm_then(
        Gemm {
            m: rows,
            k: n_in,
            n: out,
        },
        x,
        (n_in, 1),
        layer.weight,
        (1, n_in),
        y,
        out,
        &epilogue,
    );
}

/// The sizes of a product `C[m, n] = A[m, k] · B[k, n]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// `C = A · B` with `C` row-major with row stride `rsc` and A, B given by
/// their (row, column) strides. Writes nothing if a slice is too short for
/// the strides (the callers check lengths in debug builds).
#[cfg(test)]
pub(crate) fn sgemm(g: Gemm, a: &[f32], sa: (usize, usize), b: &[f32], sb: (usize, usize), c: &mut [f32], rsc: usize) {
    product(g, a, sa, b, sb, c, rsc, 0.0, &|_, _| {});
}

/// [`sgemm`], then `then(first_row, rows)` on each block of rows of C as soon
/// as it is final, while it is in cache (all of C at the end where nnc's own
/// SGEMM does not run).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_then(
    g: Gemm,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
    rsc: usize,
    then: super::gemm::Then<'_>,
) {
    product(g, a, sa, b, sb, c, rsc, 0.0, then);
}

/// `C += A · B`, as [`sgemm`] otherwise: what parameter gradients, summed
/// over the steps that have one, accumulate with.
pub(crate) fn sgemm_add(
    g: Gemm,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    c: &mut [f32],
    rsc: usize,
) {
    product(g, a, sa, b, sb, c, rsc, 1.0, &|_, _| {});
}

/// `C = A · B + beta · C`, beta 0 (C not read) or 1, then `then` on C's
/// finished rows.
#[allow(clippy::too_many_arguments)]
fn product(
    g: Gemm,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
    rsc: usize,
    beta: f32,
    then: super::gemm::Then<'_>,
) {
    if g.m == 0 || g.n == 0 {
        return;
    }
    // The last element each operand's strides reach, which must be in bounds.
    let a_end = (g.m - 1) * rsa + g.k.saturating_sub(1) * csa;
    let b_end = g.k.saturating_sub(1) * rsb + (g.n - 1) * csb;
    let c_end = (g.m - 1) * rsc + g.n - 1;
    let fits = (g.k == 0 || (a_end < a.len() && b_end < b.len())) && c_end < c.len();
    debug_assert!(fits, "sgemm operands too short for {g:?}");
    if !fits {
        return;
    }
    if g.k == 0 {
        if beta == 0.0 {
            c.chunks_mut(rsc).take(g.m).for_each(|row| row[..g.n].fill(0.0));
        }
        then(0, c);
        return;
    }
    if super::gemm::available() {
        super::gemm::sgemm(g, a, (rsa, csa), b, (rsb, csb), c, rsc, beta, then);
        return;
    }
    let as_isize = |s: usize| isize::try_from(s).unwrap_or(isize::MAX);
    // SAFETY: every element matrixmultiply touches is at `i·rs + j·cs` for
    // i < rows, j < cols of its operand; the largest such offset is a_end,
    // b_end or c_end, each checked above to be inside its slice, strides fit
    // in isize because the offsets fit in a slice. A and B are only read; C
    // is a unique borrow, so nothing aliases it; with beta = 0, C's previous
    // contents are not read (matrixmultiply does not read C when beta = 0),
    // with beta = 1 they are read inside the same checked range.
    unsafe {
        matrixmultiply::sgemm(
            g.m,
            g.k,
            g.n,
            1.0,
            a.as_ptr(),
            as_isize(rsa),
            as_isize(csa),
            b.as_ptr(),
            as_isize(rsb),
            as_isize(csb),
            beta,
            c.as_mut_ptr(),
            as_isize(rsc),
            1,
        );
    }
    then(0, c);
}

/// The input gradient of [`dense`]: `dx[b, i] = Σ_o dy[b, o] · w[o, i]`
/// (overwrites `dx`); threads take ranges of samples.
#[allow(clippy::too_many_arguments)]
pub fn dense_grad_input(
    dy: &[f32],
    batch: usize,
    weight: &[f32],
    out_features: usize,
    in_features: usize,
    dx: &mut [f32],
    team: &Team,
) {
    dense_grad_input_then(dy, batch, weight, out_features, in_features, dx, &|_, _| {}, team);
}

/// [`dense_grad_input`], then `then(first_row, rows)` on each tile of rows
/// of `dx` right after its product, while it is in cache: where the
/// derivative of the activation before the layer is applied
/// (`fuse-activation-backward`).
#[allow(clippy::too_many_arguments)]
pub fn dense_grad_input_then(
    dy: &[f32],
    batch: usize,
    weight: &[f32],
    out_features: usize,
    in_features: usize,
    dx: &mut [f32],
    then: &(dyn Fn(usize, &mut [f32]) + Sync),
    team: &Team,
) {
    debug_assert_eq!(dy.len(), batch * out_features);
    debug_assert_eq!(weight.len(), out_features * in_features);
    debug_assert_eq!(dx.len(), batch * in_features);
    let (out, n_in) = (out_features, in_features.max(1));
    let work = batch * out * n_in / WORK_PER_THREAD;
    let parts = team.threads().min(batch.div_ceil(8)).min(work).max(1);
    let dx = Disjoint::new(dx);
    team.run(parts, &|t| {
        let rows = split(batch, parts, t, 8);
        // SAFETY: parts own disjoint ranges of rows.
        let mine = unsafe { dx.piece(rows.start * n_in..rows.end * n_in) };
        let g = Gemm {
            m: rows.len(),
            k: out,
            n: n_in,
        };
        let first = rows.start;
        let then = |row: usize, block: &mut [f32]| then(first + row, block);
        sgemm_then(
            g,
            &dy[first * out..rows.end * out],
            (out, 1),
            weight,
            (n_in, 1),
            mine,
            n_in,
            &then,
        );
    });
}

/// The parameter gradients of [`dense`]: `dw[o, i] += Σ_b dy[b, o]·x[b, i]`
/// and `db[o] += Σ_b dy[b, o]`; threads take ranges of output features.
#[allow(clippy::too_many_arguments)]
pub fn dense_grad_weight(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    in_features: usize,
    out_features: usize,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    team: &Team,
) {
    debug_assert_eq!(x.len(), batch * in_features);
    debug_assert_eq!(dy.len(), batch * out_features);
    debug_assert_eq!(dw.len(), out_features * in_features);
    let (out, n_in) = (out_features, in_features);
    let work = batch * out * n_in / WORK_PER_THREAD;
    let parts = team.threads().min(out.div_ceil(16)).min(work).max(1);
    let dw = Disjoint::new(dw);
    team.run(parts, &|t| {
        let outputs = split(out, parts, t, 16);
        // SAFETY: parts own disjoint ranges of weight rows.
        let mine = unsafe { dw.piece(outputs.start * n_in..outputs.end * n_in) };
        let g = Gemm {
            m: outputs.len(),
            k: batch,
            n: n_in,
        };
        // dyᵀ read in place: row o of dyᵀ is column o of dy, strides (1, out).
        let a = dy.get(outputs.start..).unwrap_or_default();
        sgemm_add(g, a, (1, out), x, (n_in, 1), mine, n_in);
    });
    if let Some(db) = db {
        for row in dy.chunks_exact(out.max(1)).take(batch) {
            for (b, d) in db.iter_mut().zip(row) {
                *b += d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::act::Activation;
    use crate::kernels::epilogue::EpilogueStep;
    use crate::Rng;

    fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    /// The reference: a triple loop in f64, then the epilogue in f64 where
    /// it is linear and via `Activation::apply` where it is not. Also returns
    /// each output's Σ|x·w|, which bounds the f32 rounding of the sum.
    fn reference(x: &[f32], batch: usize, n_in: usize, w: &[f32], out: usize, e: &Epilogue) -> (Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0f64; batch * out];
        let mut magnitude = vec![0.0f64; batch * out];
        for b in 0..batch {
            for o in 0..out {
                let products = (0..n_in).map(|i| x[b * n_in + i] as f64 * w[o * n_in + i] as f64);
                magnitude[b * out + o] = products.clone().map(f64::abs).sum();
                let mut s: f64 = products.sum::<f64>() + e.bias.map_or(0.0, |bias| bias[o] as f64);
                for step in e.steps {
                    s = match *step {
                        EpilogueStep::Affine { scale, shift } => s * scale[o] as f64 + shift[o] as f64,
                        EpilogueStep::Act(Activation::Tanh) => s.tanh(),
                        EpilogueStep::Act(act) => act.apply(s as f32, o) as f64,
                    };
                }
                y[b * out + o] = s;
            }
        }
        (y, magnitude)
    }

    /// Within 1e-5 relative, plus a few f32 roundings of the sum's terms.
    fn assert_close(got: &[f32], (want, magnitude): &(Vec<f64>, Vec<f64>), what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let tol = 1e-5 * w.abs().max(1.0) + 8.0 * f32::EPSILON as f64 * magnitude[i];
            assert!((*g as f64 - w).abs() <= tol, "{what}: element {i}: got {g}, want {w}");
        }
    }

    fn check(batch: usize, n_in: usize, out: usize, with_bias: bool, steps: &[EpilogueStep]) {
        let mut rng = Rng::new(3, (batch * 1000 + n_in * 10 + out) as u64);
        let x = random(&mut rng, batch * n_in);
        let w = random(&mut rng, out * n_in);
        let bias = random(&mut rng, out);
        let epilogue = Epilogue {
            bias: with_bias.then_some(&bias[..]),
            steps,
            residual: None,
        };
        let want = reference(&x, batch, n_in, &w, out, &epilogue);
        let mut layouts = vec![("rows", DenseWeight::rows(&w, out, n_in))];
        if DenseWeight::has_panels() {
            layouts.push(("panels", DenseWeight::new(&w, out, n_in)));
        }
        for threads in [1, 2, 3] {
            let team = Team::new(threads).unwrap();
            let mut y = vec![f32::NAN; batch * out];
            dense(&x, batch, n_in, &w, out, &epilogue, &mut y, &team);
            let what = format!("batch {batch}, {n_in}→{out}, threads {threads}, {steps:?}");
            assert_close(&y, &want, &what);
            for (name, weight) in &layouts {
                let mut y = vec![f32::NAN; batch * out];
                dense_weight(&x, batch, weight, &epilogue, &mut y, &team);
                assert_close(&y, &want, &format!("{name}: {what}"));
            }
        }
    }

    #[test]
    fn panel_edges() {
        // Partial last panels (out % 32 ≠ 0), every micro-tile height,
        // several KC slices, and more samples than one row tile holds.
        for (batch, n_in, out) in [(9, 300, 33), (15, 257, 31), (17, 1, 64), (300, 1100, 70), (2, 600, 95)] {
            check(batch, n_in, out, true, &[EpilogueStep::Act(Activation::Tanh)]);
        }
        if !DenseWeight::has_panels() {
            eprintln!("no AVX-512 here: the panel layout was not exercised");
        }
    }

    #[test]
    fn plain_product_at_every_batch_size() {
        for batch in [1, 2, 3, 4, 5, 7, 64, 300] {
            for (n_in, out) in [(37, 29), (1, 1), (8, 4), (800, 130), (3, 200)] {
                check(batch, n_in, out, false, &[]);
                check(batch, n_in, out, true, &[]);
            }
        }
    }

    #[test]
    fn every_epilogue_step() {
        let mut rng = Rng::new(5, 0);
        let (scale, shift, slopes) = (random(&mut rng, 29), random(&mut rng, 29), random(&mut rng, 29));
        let acts = [
            Activation::Identity,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::Prelu { slopes: &slopes },
            Activation::Prelu { slopes: &[0.25] },
            Activation::Elu { alpha: 1.5 },
            Activation::Selu,
            Activation::Softplus { beta: 2.0 },
            Activation::Gelu,
            Activation::Silu,
        ];
        for act in acts {
            let steps = [
                EpilogueStep::Affine {
                    scale: &scale,
                    shift: &shift,
                },
                EpilogueStep::Act(act),
            ];
            for batch in [1, 2, 3, 7, 64, 300] {
                check(batch, 37, 29, true, &steps[1..]);
                check(batch, 37, 29, true, &steps);
                check(batch, 37, 29, false, &steps);
            }
        }
    }

    #[test]
    fn big_enough_to_split_between_threads() {
        // Over WORK_PER_THREAD per thread, so threads 2 and 3 really split the work.
        // The last two are big enough for every thread to take its own rows,
        // the very last one with fewer panels than threads.
        for (batch, n_in, out) in [
            (1, 2049, 4099),
            (3, 1030, 2900),
            (40, 300, 700),
            (1100, 37, 70),
            (1100, 37, 20),
        ] {
            assert!(batch * n_in * out >= 2 * WORK_PER_THREAD);
            check(batch, n_in, out, true, &[EpilogueStep::Act(Activation::Tanh)]);
        }
    }

    #[test]
    fn zero_inputs_give_the_epilogue_of_zero() {
        let bias = [1.0, -2.0];
        let steps = [EpilogueStep::Act(Activation::Relu)];
        let epilogue = Epilogue {
            bias: Some(&bias),
            steps: &steps,
            residual: None,
        };
        for batch in [1, 9] {
            let mut y = vec![f32::NAN; batch * 2];
            dense(&[], batch, 0, &[], 2, &epilogue, &mut y, &Team::new(2).unwrap());
            assert!(y.chunks(2).all(|r| r == [1.0, 0.0]), "{y:?}");
        }
    }

    #[test]
    fn split_covers_the_range_once() {
        for (n, parts, align) in [(10, 3, 4), (750, 2, 4), (3, 4, 8), (0, 2, 1)] {
            let ranges: Vec<_> = (0..parts).map(|p| split(n, parts, p, align)).collect();
            assert_eq!(ranges.first().map(|r| r.start), Some(0));
            assert_eq!(ranges.last().map(|r| r.end), Some(n));
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}
