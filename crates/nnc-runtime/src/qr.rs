//! The thin QR factorisation `A = Q·R` of a tall f64 matrix, with R's
//! diagonal positive (so Q is unique), for orthogonal initialisation.
//!
//! Blocked Householder (Golub & Van Loan, *Matrix Computations*, §5.2.3;
//! LAPACK's `dgeqrf` and `dorgqr`): each panel of [`BLOCK`] columns is
//! factored column by column, its reflectors gathered into the compact WY
//! form `H₁⋯H_b = I − V·T·Vᵀ` (Schreiber & Van Loan 1989, LAPACK's
//! `dlarft`), and applied to the columns after it as three matrix
//! products, which are nearly all of the ~⁸⁄₃n³ operations. Q is then
//! accumulated from the reflectors backwards, the same way.
//!
//! The bits are the same on every machine and for every thread count: each
//! product's output element is summed by one thread in ascending order of
//! the summation index, with separate multiplies and adds (Rust never fuses
//! them), whatever the vector width the loop was compiled for or the column
//! range a thread takes; dot products keep eight partial sums combined in a
//! fixed tree. The only function called is `sqrt`, which IEEE 754 rounds
//! exactly.

use crate::kernels::simd::Level;

/// Columns per panel: small enough that the panel's own column-by-column
/// factorisation is a minor cost, large enough that the products dominate
/// and the trailing matrix is swept few times.
const BLOCK: usize = 64;
/// A product's register tile: `MR` output rows by `NR` output columns
/// (twelve 4-lane accumulators of the 16 AVX2 registers).
const MR: usize = 6;
const NR: usize = 8;
/// The summation index runs in chunks of `KC`, so that both operands'
/// packed chunks stay in cache while they are reused; an accumulating
/// product continues each sum from the value stored, which changes no bit.
const KC: usize = 256;
/// Output columns per packed block of the right operand.
const JC: usize = 128;
/// Columns of the trailing matrix that the three products of a block
/// reflector update together, so that they are still in cache when the
/// last product comes back to them (a column's bits are the same in any group).
const GROUP: usize = 64;
/// Below this many multiply-adds per block update, one thread does it all.
const PARALLEL_WORK: usize = 1 << 18;

/// A column-major `rows × cols` f64 matrix.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub(crate) fn at(&self, r: usize, c: usize) -> f64 {
        self.data[c * self.rows + r]
    }
}

/// The thin QR of `a` (`rows ≥ cols`): Q `rows × cols` with orthonormal
/// columns and R `cols × cols` upper triangular with a positive diagonal
/// (non-negative where a column depends on the ones before it).
/// `threads` changes the time, never a bit.
pub(crate) fn thin_qr(mut a: Matrix, threads: usize) -> (Matrix, Matrix) {
    assert!(a.rows >= a.cols, "thin_qr of a wide matrix");
    let (m, n) = (a.rows, a.cols);
    let mut taus = vec![0.0; n];
    let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
    for &start in &starts {
        factor_panel(&mut a, start, &mut taus, threads);
    }
    // R, before the reflectors below it are overwritten by Q.
    let mut r = Matrix {
        rows: n,
        cols: n,
        data: vec![0.0; n * n],
    };
    for (j, column) in r.data.chunks_exact_mut(n).enumerate() {
        column[..=j].copy_from_slice(&a.data[j * m..j * m + j + 1]);
    }
    for &start in starts.iter().rev() {
        accumulate_q(&mut a, start, &taus, threads);
    }
    // Signs: R's row i and Q's column i flip together, so Q·R is unchanged.
    for i in 0..n {
        if r.data[i * n + i] < 0.0 {
            r.data[i * n + i..].iter_mut().step_by(n).for_each(|v| *v = -*v);
            a.data[i * m..(i + 1) * m].iter_mut().for_each(|v| *v = -*v);
        }
    }
    (a, r)
}

/// Factors columns `start..start + b` of `a` (Householder, as `dgeqr2`),
/// leaving R on and above the diagonal and the reflectors below it (their
/// leading 1 implicit), and applies the panel's `Qᵀ` to the columns after it.
fn factor_panel(a: &mut Matrix, start: usize, taus: &mut [f64], threads: usize) {
    let (m, n) = (a.rows, a.cols);
    let end = (start + BLOCK).min(n);
    for j in start..end {
        let (done, rest) = a.data.split_at_mut((j + 1) * m);
        let column = &mut done[j * m + j..];
        taus[j] = make_reflector(column);
        let beta = std::mem::replace(&mut column[0], 1.0);
        for other in rest.chunks_exact_mut(m).take(end - j - 1) {
            reflect(column, taus[j], &mut other[j..]);
        }
        column[0] = beta;
    }
    if end < n {
        let panel = Panel::new(a, start, end, &taus[start..end]);
        panel.apply(a, end, Side::Transposed, threads);
    }
}

/// Overwrites columns `start..start + b` of `a`, which hold the panel's
/// reflectors, with those columns of Q, after applying the panel's block
/// reflector to the columns of Q already formed after them (LAPACK's
/// `dorgqr` and `dorg2r`).
fn accumulate_q(a: &mut Matrix, start: usize, taus: &[f64], threads: usize) {
    let (m, n) = (a.rows, a.cols);
    let end = (start + BLOCK).min(n);
    if end < n {
        let panel = Panel::new(a, start, end, &taus[start..end]);
        panel.apply(a, end, Side::Plain, threads);
    }
    // The panel's columns: H_j⋯H_b applied to e_j, from the last j back.
    for j in (start..end).rev() {
        let (done, rest) = a.data.split_at_mut((j + 1) * m);
        let column = &mut done[j * m..];
        column[j] = 1.0;
        for other in rest.chunks_exact_mut(m).take(end - j - 1) {
            reflect(&column[j..], taus[j], &mut other[j..]);
        }
        column[j + 1..].iter_mut().for_each(|v| *v *= -taus[j]);
        column[j] = 1.0 - taus[j];
        // Above the diagonal, where R was.
        column[..j].fill(0.0);
    }
}

/// Turns `x` into the Householder vector of `H = I − τ·v·vᵀ` with
/// `H·x = β·e₁` (LAPACK's `dlarfg`): `x[0]` becomes β, `x[1..]` the tail of
/// v (whose head is 1); returns τ (0 when x already is a multiple of e₁).
fn make_reflector(x: &mut [f64]) -> f64 {
    let tail = dot(&x[1..], &x[1..]);
    if tail == 0.0 {
        return 0.0;
    }
    let alpha = x[0];
    let norm = (alpha * alpha + tail).sqrt();
    // β has the sign opposite to α, so that α − β does not cancel.
    let beta = if alpha >= 0.0 { -norm } else { norm };
    let scale = 1.0 / (alpha - beta);
    x[1..].iter_mut().for_each(|v| *v *= scale);
    x[0] = beta;
    (beta - alpha) / beta
}

/// `y ← (I − τ·v·vᵀ)·y`.
fn reflect(v: &[f64], tau: f64, y: &mut [f64]) {
    let w = tau * dot(v, y);
    y.iter_mut().zip(v).for_each(|(y, v)| *y -= w * v);
}

/// The dot product with eight partial sums (lane `i mod 8`) added in a
/// fixed tree: the same bits for any vector width.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (xs, ys) = (a.chunks_exact(8), b.chunks_exact(8));
    let (x_rest, y_rest) = (xs.remainder(), ys.remainder());
    for (x, y) in xs.zip(ys) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in x_rest.iter().zip(y_rest).enumerate() {
        lanes[l] += x * y;
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = lanes;
    ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
}

/// Which of a panel's block reflectors to apply: `Qᵀ = I − V·Tᵀ·Vᵀ` while
/// factoring, `Q = I − V·T·Vᵀ` while accumulating Q.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Transposed,
    Plain,
}

/// A panel's reflectors, in the forms the products read.
struct Panel {
    /// The panel's first row (and column) and width.
    start: usize,
    width: usize,
    /// V (`rows − start` rows; reflector p is zero above its row p and 1
    /// on it) packed once as the left operand of `Vᵀ·C` and the right one
    /// of `Wᵀ·Vᵀ`, which every column group reads.
    v_left: Vec<f64>,
    v_right: Vec<f64>,
    /// The upper-triangular T of `H₁⋯H_b = I − V·T·Vᵀ`, row-major.
    t: Vec<f64>,
}

impl Panel {
    /// The reflectors stored in columns `start..end` of `a` below the
    /// diagonal, with their τ, and T by `dlarft`'s forward recurrence:
    /// `T[..j, j] = −τ_j · T[..j, ..j] · (Vᵀ·v_j)[..j]`.
    fn new(a: &Matrix, start: usize, end: usize, taus: &[f64]) -> Panel {
        let (m, width) = (a.rows - start, end - start);
        let mut v_cols = vec![0.0; width * m];
        for (p, v) in v_cols.chunks_exact_mut(m).enumerate() {
            let column = &a.data[(start + p) * a.rows + start..(start + p + 1) * a.rows];
            v[p] = 1.0;
            v[p + 1..].copy_from_slice(&column[p + 1..]);
        }
        let mut v_rows = vec![0.0; m * width];
        for (p, v) in v_cols.chunks_exact(m).enumerate() {
            for (i, x) in v.iter().enumerate() {
                v_rows[i * width + p] = *x;
            }
        }
        let mut t = vec![0.0; width * width];
        for j in 0..width {
            // vᵀ_q·v_j over rows j.., where v_j is not zero.
            let v_j = &v_cols[j * m + j..(j + 1) * m];
            let products: Vec<f64> = (0..j).map(|q| dot(&v_cols[q * m + j..(q + 1) * m], v_j)).collect();
            for p in 0..j {
                let sum = (p..j).fold(0.0, |s, q| s + t[p * width + q] * products[q]);
                t[p * width + j] = -taus[j] * sum;
            }
            t[j * width + j] = taus[j];
        }
        let (mut v_left, mut chunk) = (Vec::new(), Vec::new());
        for k0 in (0..m).step_by(KC) {
            Strided::new(&v_rows, width, 1).pack::<MR>(k0, KC.min(m - k0), 0, width, &mut chunk);
            v_left.extend_from_slice(&chunk);
        }
        let mut v_right = Vec::new();
        Strided::new(&v_cols, m, 1).pack::<NR>(0, width, 0, m, &mut v_right);
        Panel {
            start,
            width,
            v_left,
            v_right,
            t,
        }
    }

    /// `C ← (I − V·T'·Vᵀ)·C` on `C = a[start.., first_col..]`, T' = Tᵀ or T
    /// by `side`, the columns of C split among `threads`.
    fn apply(&self, a: &mut Matrix, first_col: usize, side: Side, threads: usize) {
        let m = a.rows;
        let n = a.cols - first_col;
        let work = (m - self.start) * n * self.width;
        let parts = if work < PARALLEL_WORK { 1 } else { threads.clamp(1, n) };
        // Whole columns per part; a column's bits do not depend on its part.
        let mut rest = &mut a.data[first_col * m..];
        let mut pieces = Vec::with_capacity(parts);
        for p in 0..parts {
            let cols = n * (p + 1) / parts - n * p / parts;
            let (piece, after) = rest.split_at_mut(cols * m);
            pieces.push(piece);
            rest = after;
        }
        let update = |piece: &mut [f64]| {
            for group in piece.chunks_mut(GROUP * m) {
                self.apply_columns(group, m, side);
            }
        };
        if parts == 1 {
            return pieces.into_iter().for_each(update);
        }
        let update = &update;
        std::thread::scope(|scope| {
            for piece in pieces {
                scope.spawn(move || update(piece));
            }
        });
    }

    /// [`Panel::apply`] on `columns`, whole columns of `m` rows, as
    /// `W = Vᵀ·C`, `W ← T'·W`, `C ← C − V·W`.
    fn apply_columns(&self, columns: &mut [f64], m: usize, side: Side) {
        let (b, rows, cols) = (self.width, m - self.start, columns.len() / m);
        let c = &mut columns[self.start..];
        // W = Vᵀ·C, W[p, j] = Σ_i V[i, p]·C[i, j]; C[i, j] is c[j·m + i].
        let mut w = vec![0.0; b * cols];
        product(
            Out::Accumulate(&mut w, cols),
            (b, cols, rows),
            Source::Packed(&self.v_left),
            Source::Strided(Strided::new(c, 1, m)),
        );
        // W ← T'·W: row p of T·W mixes rows q ≥ p, of Tᵀ·W rows q ≤ p.
        let mut tw = vec![0.0; b * cols];
        for (p, out) in tw.chunks_exact_mut(cols).enumerate() {
            let terms = match side {
                Side::Plain => p..b,
                Side::Transposed => 0..p + 1,
            };
            for q in terms {
                let coefficient = match side {
                    Side::Plain => self.t[p * b + q],
                    Side::Transposed => self.t[q * b + p],
                };
                let row = &w[q * cols..(q + 1) * cols];
                out.iter_mut().zip(row).for_each(|(o, v)| *o += coefficient * v);
            }
        }
        // C ← C − V·W, computed as Cᵀ ← Cᵀ − Wᵀ·Vᵀ so that the output's
        // rows are C's contiguous columns: Cᵀ[j, i] −= Σ_p W[p, j]·V[i, p].
        product(
            Out::Subtract(c, m),
            (cols, rows, b),
            Source::Strided(Strided::new(&tw, cols, 1)),
            Source::Packed(&self.v_right),
        );
    }
}

/// A product's operand: element `(k, x)` at `data[k·k_stride + x·x_stride]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f64],
    k_stride: usize,
    x_stride: usize,
}

impl<'a> Strided<'a> {
    fn new(data: &'a [f64], k_stride: usize, x_stride: usize) -> Strided<'a> {
        Strided {
            data,
            k_stride,
            x_stride,
        }
    }

    /// Elements `(k0 + k, x0 + x)` for `k < kc`, `x < count`, as strips of
    /// `S` values of x: strip s holds `[k][x] = (k0 + k, x0 + s·S + x)`,
    /// zero past `count`.
    fn pack<const S: usize>(&self, k0: usize, kc: usize, x0: usize, count: usize, out: &mut Vec<f64>) {
        out.clear();
        out.resize(count.div_ceil(S) * kc * S, 0.0);
        for (s, strip) in out.chunks_exact_mut(kc * S).enumerate() {
            let valid = S.min(count - s * S);
            let first = x0 + s * S;
            if self.x_stride == 1 {
                for (k, step) in strip.chunks_exact_mut(S).enumerate() {
                    let from = &self.data[(k0 + k) * self.k_stride + first..];
                    match from.first_chunk::<S>() {
                        Some(whole) if valid == S => step.copy_from_slice(whole),
                        _ => step[..valid].copy_from_slice(&from[..valid]),
                    }
                }
            } else {
                // Down each x's run of k (contiguous when k_stride is 1).
                for x in 0..valid {
                    let base = (first + x) * self.x_stride + k0 * self.k_stride;
                    let run = self.data[base..].iter().step_by(self.k_stride).take(kc);
                    for (step, v) in strip.chunks_exact_mut(S).zip(run) {
                        step[x] = *v;
                    }
                }
            }
        }
    }
}

/// A product's operand as given, or already packed as [`product`] packs
/// it (its chunks of the summation index one after the other, each strips
/// over all of x).
#[derive(Clone, Copy)]
enum Source<'a> {
    Strided(Strided<'a>),
    Packed(&'a [f64]),
}

impl Source<'_> {
    /// The strips of `S` over x `x0..x0 + count` (x0 a multiple of S) of
    /// the chunk `k0..k0 + kc` of a product over `total` values of x whose
    /// chunks before are `chunk` deep: packed into `buffer`, or read where
    /// they already are.
    fn strips<'s, const S: usize>(
        &'s self,
        (k0, kc, chunk): (usize, usize, usize),
        (x0, count, total): (usize, usize, usize),
        buffer: &'s mut Vec<f64>,
    ) -> &'s [f64] {
        match self {
            Source::Strided(operand) => {
                operand.pack::<S>(k0, kc, x0, count, buffer);
                buffer
            }
            Source::Packed(data) => {
                let start = k0 / chunk * chunk * total.div_ceil(S) * S + x0 / S * kc * S;
                &data[start..start + count.div_ceil(S) * kc * S]
            }
        }
    }
}

/// Where a product goes: element `(r, c)` at `[r·stride + c]`, either
/// accumulated (`out += Σ`, continuing the sum stored there) or subtracted
/// (`out −= Σ`, the sum formed first).
enum Out<'a> {
    Accumulate(&'a mut [f64], usize),
    Subtract(&'a mut [f64], usize),
}

/// `out(r, c) ±= Σ_k left(k, r)·right(k, c)` for `r < rows`, `c < cols`,
/// `k < depth`; every sum in ascending k, one multiply and one add per term.
///
/// Each chunk of the summation index is packed, the left operand in strips
/// of `MR` rows and the right in strips of `NR` columns, each `[k][MR or
/// NR]` and contiguous: copying changes no value, and a strip's zero
/// padding only feeds outputs that are not stored. A subtracting product
/// forms each sum whole, so its depth is not chunked.
fn product(mut out: Out, (rows, cols, depth): (usize, usize, usize), left: Source, right: Source) {
    let level = Level::detect();
    let chunk = match out {
        Out::Accumulate(..) => KC,
        Out::Subtract(..) => depth.max(1),
    };
    let (mut left_buffer, mut right_buffer) = (Vec::new(), Vec::new());
    for k0 in (0..depth).step_by(chunk) {
        let kc = chunk.min(depth - k0);
        let packed_left = left.strips::<MR>((k0, kc, chunk), (0, rows, rows), &mut left_buffer);
        for c0 in (0..cols).step_by(JC) {
            let width = JC.min(cols - c0);
            let packed_right = right.strips::<NR>((k0, kc, chunk), (c0, width, cols), &mut right_buffer);
            for (t, l) in packed_left.chunks_exact(kc * MR).enumerate() {
                for (s, r) in packed_right.chunks_exact(kc * NR).enumerate() {
                    let tile = Tile {
                        r0: t * MR,
                        c0: c0 + s * NR,
                        rows: MR.min(rows - t * MR),
                        cols: NR.min(width - s * NR),
                    };
                    tile.run(&mut out, l, r, level);
                }
            }
        }
    }
}

/// One `MR × NR` block of a product's output, `rows × cols` of it inside
/// the matrix.
struct Tile {
    r0: usize,
    c0: usize,
    rows: usize,
    cols: usize,
}

/// A tile's sums, in registers while they run.
type Accumulators = [[f64; NR]; MR];

impl Tile {
    /// The tile from packed strips `left` (`[k][MR]`) and `right` (`[k][NR]`).
    fn run(&self, out: &mut Out, left: &[f64], right: &[f64], level: Level) {
        let (data, stride, accumulate) = match out {
            Out::Accumulate(data, stride) => (&mut **data, *stride, true),
            Out::Subtract(data, stride) => (&mut **data, *stride, false),
        };
        let at = |r: usize| (self.r0 + r) * stride + self.c0;
        let mut acc: Accumulators = [[0.0; NR]; MR];
        if accumulate {
            for (r, sums) in acc.iter_mut().enumerate().take(self.rows) {
                sums[..self.cols].copy_from_slice(&data[at(r)..at(r) + self.cols]);
            }
        }
        multiply_add(&mut acc, left, right, level);
        for (r, sums) in acc.iter().enumerate().take(self.rows) {
            let row = &mut data[at(r)..at(r) + self.cols];
            if accumulate {
                row.copy_from_slice(&sums[..self.cols]);
            } else {
                row.iter_mut().zip(sums).for_each(|(v, s)| *v -= s);
            }
        }
    }
}

/// `acc[i][j] += left[k][i] · right[k][j]` for every k in order, compiled
/// for the widest vectors `level` allows (the same bits for each).
#[inline]
fn multiply_add(acc: &mut Accumulators, left: &[f64], right: &[f64], level: Level) {
    #[cfg(target_arch = "x86_64")]
    match level {
        // SAFETY: `level` is this CPU's, so it has the variant's features.
        Level::Avx512 => return unsafe { multiply_add_avx512(acc, left, right) },
        Level::Avx2 => return unsafe { multiply_add_avx2(acc, left, right) },
        Level::Base => {}
    }
    let _ = level;
    multiply_add_any(acc, left, right);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn multiply_add_avx512(acc: &mut Accumulators, left: &[f64], right: &[f64]) {
    multiply_add_any(acc, left, right);
}

// AVX2 alone: without `fma` enabled nothing could be fused even by mistake.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn multiply_add_avx2(acc: &mut Accumulators, left: &[f64], right: &[f64]) {
    multiply_add_any(acc, left, right);
}

/// The body of [`multiply_add`]: constant bounds and a local copy of the
/// sums, so that they live in registers.
#[inline(always)]
fn multiply_add_any(acc: &mut Accumulators, left: &[f64], right: &[f64]) {
    let mut sums = *acc;
    for (l, r) in left.chunks_exact(MR).zip(right.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                sums[i][j] += l[i] * r[j];
            }
        }
    }
    *acc = sums;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn gaussian(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut rng = Rng::new(seed, 3);
        Matrix {
            rows,
            cols,
            data: (0..rows * cols).map(|_| rng.normal()).collect(),
        }
    }

    /// The definition, in f64: Q·R = A, QᵀQ = I, R upper triangular with a
    /// positive diagonal; shapes around the block and tile sizes, square
    /// and tall, on one and several threads.
    #[test]
    fn q_times_r_is_the_matrix_and_q_is_orthonormal() {
        for (rows, cols) in [
            (1, 1),
            (5, 1),
            (7, 7),
            (33, 33),
            (64, 31),
            (100, 70),
            (97, 65),
            (200, 129),
        ] {
            let a = gaussian(rows, cols, (rows * 1000 + cols) as u64);
            for threads in [1, 3] {
                let (q, r) = thin_qr(a.clone(), threads);
                assert_eq!((q.rows, q.cols, r.rows, r.cols), (rows, cols, cols, cols));
                let mut worst = (0f64, 0f64);
                for i in 0..rows {
                    for j in 0..cols {
                        let qr: f64 = (0..=j).map(|k| q.at(i, k) * r.at(k, j)).sum();
                        worst.0 = worst.0.max((qr - a.at(i, j)).abs());
                    }
                }
                for i in 0..cols {
                    assert!(r.at(i, i) > 0.0, "{rows}×{cols}: R[{i}][{i}] = {}", r.at(i, i));
                    assert!((0..i).all(|j| r.at(i, j) == 0.0), "R is not upper triangular");
                    for j in 0..cols {
                        let qtq: f64 = (0..rows).map(|k| q.at(k, i) * q.at(k, j)).sum();
                        worst.1 = worst.1.max((qtq - if i == j { 1.0 } else { 0.0 }).abs());
                    }
                }
                assert!(
                    worst.0 < 1e-12 && worst.1 < 1e-13,
                    "{rows}×{cols}, {threads} threads: {worst:?}"
                );
            }
        }
    }

    /// A column that depends on the ones before it: R's diagonal has a 0
    /// there (up to rounding) and nothing is NaN.
    #[test]
    fn a_dependent_column_gives_no_nan() {
        let mut a = gaussian(6, 3, 1);
        a.data.copy_within(0..6, 12);
        let (q, r) = thin_qr(a, 1);
        assert!(q.data.iter().chain(&r.data).all(|v| v.is_finite()));
        assert!(r.at(2, 2).abs() < 1e-12, "{}", r.at(2, 2));
    }

    /// The bits do not depend on the thread count, and the micro-kernel
    /// compiled for this CPU's vectors gives the bits of the one for
    /// baseline x86-64.
    #[test]
    fn threads_and_vector_width_change_no_bit() {
        let a = gaussian(300, 161, 7);
        let one = thin_qr(a.clone(), 1);
        for threads in [2, 3, 8] {
            assert!(thin_qr(a.clone(), threads) == one, "{threads} threads");
        }
        let depth = 300;
        let l: Vec<f64> = (0..MR * depth).map(|i| (i as f64).sin()).collect();
        let r: Vec<f64> = (0..NR * depth).map(|i| (i as f64).cos()).collect();
        let (mut wide, mut base) = ([[0.5; NR]; MR], [[0.5; NR]; MR]);
        multiply_add(&mut wide, &l, &r, Level::detect());
        multiply_add(&mut base, &l, &r, Level::Base);
        assert!(wide == base, "{:?} and baseline x86-64 differ", Level::detect());
    }

    /// A product is, bit for bit, the sums in ascending order written out,
    /// on sizes that are not multiples of the tiles or the chunk.
    #[test]
    fn a_product_is_its_sums_in_order() {
        let (rows, cols, depth) = (37, 45, 300);
        let left = gaussian(depth, rows, 8).data;
        // Right stored column-major, as C is in the first product.
        let right = gaussian(depth, cols, 9).data;
        let start = gaussian(rows, cols, 10).data;
        for accumulate in [false, true] {
            let mut got = start.clone();
            let out = match accumulate {
                true => Out::Accumulate(&mut got, cols),
                false => Out::Subtract(&mut got, cols),
            };
            product(
                out,
                (rows, cols, depth),
                Source::Strided(Strided::new(&left, rows, 1)),
                Source::Strided(Strided::new(&right, 1, depth)),
            );
            for i in 0..rows {
                for j in 0..cols {
                    let first = if accumulate { start[i * cols + j] } else { 0.0 };
                    let sum = (0..depth).fold(first, |s, k| s + left[k * rows + i] * right[j * depth + k]);
                    let want = if accumulate { sum } else { start[i * cols + j] - sum };
                    assert_eq!(
                        got[i * cols + j].to_bits(),
                        want.to_bits(),
                        "accumulate {accumulate}: ({i}, {j})"
                    );
                }
            }
        }
    }

    /// Every f64 bit of one factorisation, pinned (the f32 weights hide
    /// most last-bit differences): a machine, vector width or compiler that
    /// rounds anything differently fails here.
    #[test]
    fn the_bits_are_pinned() {
        let (q, r) = thin_qr(gaussian(150, 140, 12), 2);
        let hash = q.data.iter().chain(&r.data).fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ v.to_bits()).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(hash, 12_150_847_311_977_276_485, "FNV-1a of the f64 bits of Q and R");
    }
}
