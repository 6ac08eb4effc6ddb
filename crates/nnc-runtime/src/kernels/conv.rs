//! 2-D convolution (NCHW, square kernels) by im2col + GEMM, with the dense
//! epilogue applied to each output channel's plane straight after its product.
//!
//! For each sample and group, the receptive fields are unrolled into a
//! `[in/groups · k · k, out_h · out_w]` column matrix in the scratch buffer
//! (skipped for a 1×1, stride-1, unpadded conv, whose input already is that
//! matrix), and `y_group = w_group · col` is one SGEMM whose output is the
//! group's output planes in place. Where the CPU has AVX-512 the columns
//! are packed into panels and multiplied by the dense kernel's micro-kernel
//! (which needs no allocation); elsewhere matrixmultiply's SGEMM runs.
//!
//! The backward runs the same unrolling the other way: the input gradient is
//! `w_groupᵀ · dy_group` folded back by `col2im`, the weight gradient
//! `dy_group · colᵀ`.

use super::dense::{sgemm, sgemm_add, split, Gemm};
use super::epilogue::Epilogue;
use super::panel;
use crate::team::{Disjoint, Team};

/// The shape of a conv2d: input `[in_channels, height, width]` per sample,
/// `out_channels` square `kernel`s, and the padding added around the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub groups: usize,
    /// top, left, bottom, right
    pub pads: [usize; 4],
}

impl ConvGeometry {
    pub fn out_height(&self) -> usize {
        out_size(self.height, self.pads[0] + self.pads[2], self.span(), self.stride)
    }

    pub fn out_width(&self) -> usize {
        out_size(self.width, self.pads[1] + self.pads[3], self.span(), self.stride)
    }

    /// f32s of scratch conv2d needs for `threads` threads
    pub fn scratch_len(&self, threads: usize) -> usize {
        threads.max(1) * self.scratch_per_thread()
    }

    /// f32s of scratch [`conv2d_grad_input`] and [`conv2d_grad_weight`]
    /// need for `threads` threads.
    pub fn grad_scratch_len(&self, threads: usize) -> usize {
        threads.max(1) * self.grad_scratch_per_thread()
    }

    /// A column matrix, and a whole weight gradient: each thread but the
    /// first sums its samples' `dW` there, and the parts are added up after.
    fn grad_scratch_per_thread(&self) -> usize {
        let k = self.col_rows();
        k * self.out_height() * self.out_width() + self.out_channels * k
    }

    /// The column matrix (none for a pointwise conv), and where the panel
    /// kernel runs, the same columns packed into panels.
    fn scratch_per_thread(&self) -> usize {
        let (k, pixels) = (self.col_rows(), self.out_height() * self.out_width());
        let col = if self.is_pointwise() { 0 } else { k * pixels };
        let packed = if panel::available() {
            panel::packed_len(k, pixels)
        } else {
            0
        };
        col + packed
    }

    /// The extent of one dilated kernel: `dilation·(kernel − 1) + 1`.
    fn span(&self) -> usize {
        self.dilation.max(1) * self.kernel.saturating_sub(1) + 1
    }

    /// Rows of the column matrix: the inputs of one group times the kernel area.
    fn col_rows(&self) -> usize {
        self.in_channels / self.groups.max(1) * self.kernel * self.kernel
    }

    /// A 1×1, stride-1, unpadded conv: the input planes already are the columns.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.pads == [0; 4]
    }
}

fn out_size(input: usize, pads: usize, span: usize, stride: usize) -> usize {
    (input + pads)
        .checked_sub(span)
        .map_or(0, |room| room / stride.max(1) + 1)
}

/// NCHW conv; weight [out, in/groups, k, k]; epilogue per output channel; scratch from scratch_len.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    weight: &[f32],
    epilogue: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    let groups = g.groups.max(1);
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    debug_assert_eq!((g.in_channels % groups, g.out_channels % groups), (0, 0));
    debug_assert_eq!(x.len(), batch * g.in_channels * in_plane);
    debug_assert_eq!(weight.len(), g.out_channels * g.col_rows());
    debug_assert_eq!(y.len(), batch * g.out_channels * out_plane);
    debug_assert!(scratch.len() >= g.scratch_len(team.threads()));
    debug_assert!(epilogue.fits(g.out_channels));
    if batch == 0 || g.out_channels == 0 || out_plane == 0 {
        return;
    }
    let conv = Conv { g, weight, epilogue };
    let (x_len, y_len) = (g.in_channels * in_plane, g.out_channels * out_plane);
    let col_len = g.scratch_per_thread();
    per_sample(team, batch, (x, x_len), (y, y_len), (scratch, col_len), |x, y, col| {
        conv.sample(x, y, col)
    });
}

/// One conv layer's parameters.
struct Conv<'a> {
    g: &'a ConvGeometry,
    weight: &'a [f32],
    epilogue: &'a Epilogue<'a>,
}

impl Conv<'_> {
    /// One sample: `x` is `[in_channels, H, W]`, `y` is `[out_channels, oh, ow]`.
    fn sample(&self, x: &[f32], y: &mut [f32], col: &mut [f32]) {
        let g = self.g;
        let groups = g.groups.max(1);
        let (in_group, out_group) = (g.in_channels / groups, g.out_channels / groups);
        let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
        let k = g.col_rows();
        let (col, packed) = col.split_at_mut(if g.is_pointwise() { 0 } else { k * out_plane });
        for group in 0..groups {
            let xg = &x[group * in_group * in_plane..(group + 1) * in_group * in_plane];
            let columns: &[f32] = if g.is_pointwise() {
                xg
            } else {
                im2col(g, xg, in_group, col);
                col
            };
            let channels = group * out_group..(group + 1) * out_group;
            let wg = &self.weight[channels.start * k..channels.end * k];
            let yg = &mut y[channels.start * out_plane..channels.end * out_plane];
            if panel::available() {
                // The columns change with every sample, so they are the
                // operand packed here; the weight rows are broadcast from.
                panel::pack_columns(columns, k, out_plane, packed);
                panel::matmul(wg, out_group, k, packed, out_plane, yg, out_plane);
            } else {
                sgemm(
                    Gemm {
                        m: out_group,
                        k,
                        n: out_plane,
                    },
                    wg,
                    (k, 1),
                    columns,
                    (out_plane, 1),
                    yg,
                    out_plane,
                );
            }
            for (plane, channel) in yg.chunks_exact_mut(out_plane).zip(channels) {
                self.epilogue.apply_channel(plane, channel);
            }
        }
    }
}

/// The input gradient of [`conv2d`] (without epilogue): the transposed
/// convolution of `dy` `[batch, out_channels, oh, ow]` with `w`, which
/// overwrites `dx` `[batch, in_channels, H, W]`. Per sample and group the
/// columns' gradient `w_groupᵀ · dy_group` is one SGEMM, folded back onto the
/// input planes by [`col2im`] (a pointwise conv's columns are the planes).
/// Samples are shared among the team; scratch from
/// [`ConvGeometry::grad_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_grad_input(
    dy: &[f32],
    batch: usize,
    g: &ConvGeometry,
    w: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    let (x_len, y_len) = (g.in_channels * in_plane, g.out_channels * out_plane);
    debug_assert_eq!(dy.len(), batch * y_len);
    debug_assert_eq!(w.len(), g.out_channels * g.col_rows());
    debug_assert_eq!(dx.len(), batch * x_len);
    debug_assert!(scratch.len() >= g.grad_scratch_len(team.threads()));
    if y_len == 0 {
        // No output: nothing reaches the input.
        dx.fill(0.0);
        return;
    }
    if batch == 0 || x_len == 0 {
        return;
    }
    let per_thread = g.grad_scratch_per_thread();
    per_sample(
        team,
        batch,
        (dy, y_len),
        (dx, x_len),
        (scratch, per_thread),
        |dy, dx, col| grad_input_sample(g, w, dy, dx, col),
    );
}

/// `f(sample of src, sample of dst, scratch)` for each of `batch` samples
/// (`src_len` and `dst_len` floats each), the samples shared among the
/// team, each thread with `per_thread` floats of scratch of its own.
fn per_sample(
    team: &Team,
    batch: usize,
    (src, src_len): (&[f32], usize),
    (dst, dst_len): (&mut [f32], usize),
    (scratch, per_thread): (&mut [f32], usize),
    f: impl Fn(&[f32], &mut [f32], &mut [f32]) + Sync,
) {
    let parts = team.threads().min(batch);
    let (dst, scratch) = (Disjoint::new(dst), Disjoint::new(scratch));
    team.run(parts, &|t| {
        let samples = split(batch, parts, t, 1);
        // SAFETY: parts own disjoint samples of dst and their own scratch.
        let (dsts, own) = unsafe {
            (
                dst.piece(samples.start * dst_len..samples.end * dst_len),
                scratch.piece(t * per_thread..(t + 1) * per_thread),
            )
        };
        let srcs = &src[samples.start * src_len..samples.end * src_len];
        for (s, d) in srcs.chunks_exact(src_len).zip(dsts.chunks_exact_mut(dst_len)) {
            f(s, d, own);
        }
    });
}

/// One sample of [`conv2d_grad_input`]: `dy` `[out_channels, oh, ow]`, `dx`
/// `[in_channels, H, W]`.
fn grad_input_sample(g: &ConvGeometry, w: &[f32], dy: &[f32], dx: &mut [f32], col: &mut [f32]) {
    let groups = g.groups.max(1);
    let (in_group, out_group) = (g.in_channels / groups, g.out_channels / groups);
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    let k = g.col_rows();
    let col = &mut col[..k * out_plane];
    for group in 0..groups {
        let wg = &w[group * out_group * k..(group + 1) * out_group * k];
        let dyg = &dy[group * out_group * out_plane..(group + 1) * out_group * out_plane];
        let dxg = &mut dx[group * in_group * in_plane..(group + 1) * in_group * in_plane];
        // [k, pixels] = w_groupᵀ [k, out_group] · dy_group [out_group, pixels].
        let gemm = Gemm {
            m: k,
            k: out_group,
            n: out_plane,
        };
        if g.is_pointwise() {
            sgemm(gemm, wg, (1, k), dyg, (out_plane, 1), dxg, out_plane);
        } else {
            sgemm(gemm, wg, (1, k), dyg, (out_plane, 1), col, out_plane);
            dxg.fill(0.0);
            col2im(g, col, in_group, dxg);
        }
    }
}

/// The parameter gradients of [`conv2d`] (without epilogue): `dw +=
/// Σ_samples dy_group · colᵀ`, the correlation of `dy` with `x`, and, when
/// given, `db[o] += Σ` of `dy` over samples and pixels. Accumulates into the
/// caller's buffers. Samples are shared among the team; scratch from
/// [`ConvGeometry::grad_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_grad_weight(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    g: &ConvGeometry,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    scratch: &mut [f32],
    team: &Team,
) {
    let groups = g.groups.max(1);
    let (in_group, out_group) = (g.in_channels / groups, g.out_channels / groups);
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    let (x_len, y_len) = (g.in_channels * in_plane, g.out_channels * out_plane);
    let k = g.col_rows();
    debug_assert_eq!(x.len(), batch * x_len);
    debug_assert_eq!(dy.len(), batch * y_len);
    debug_assert_eq!(dw.len(), g.out_channels * k);
    debug_assert!(scratch.len() >= g.grad_scratch_len(team.threads()));
    if let Some(db) = db {
        bias_grad(dy, batch, g.out_channels, out_plane, db);
    }
    if batch == 0 || x_len == 0 || y_len == 0 {
        return;
    }
    // Samples are shared among the team: the first thread adds straight
    // into `dw`, each other one into a part of its own, summed at the end.
    let per_thread = g.grad_scratch_per_thread();
    let w_len = g.out_channels * k;
    let parts = team.threads().min(batch).max(1);
    {
        let (dw, scratch) = (Disjoint::new(dw), Disjoint::new(scratch));
        team.run(parts, &|t| {
            let samples = split(batch, parts, t, 1);
            // SAFETY: each part has its own scratch; only part 0 writes dw.
            let (col, partial) =
                unsafe { scratch.piece(t * per_thread..(t + 1) * per_thread) }.split_at_mut(k * out_plane);
            let acc: &mut [f32] = if t == 0 {
                // SAFETY: as above.
                unsafe { dw.piece(0..w_len) }
            } else {
                let acc = &mut partial[..w_len];
                acc.fill(0.0);
                acc
            };
            for n in samples {
                let xs = &x[n * x_len..(n + 1) * x_len];
                let dys = &dy[n * y_len..(n + 1) * y_len];
                for group in 0..groups {
                    let xg = &xs[group * in_group * in_plane..(group + 1) * in_group * in_plane];
                    let columns: &[f32] = if g.is_pointwise() {
                        xg
                    } else {
                        im2col(g, xg, in_group, col);
                        col
                    };
                    let dyg = &dys[group * out_group * out_plane..(group + 1) * out_group * out_plane];
                    // dW_group [out_group, k] += dy_group [out_group, pixels] · colᵀ [pixels, k].
                    let gemm = Gemm {
                        m: out_group,
                        k: out_plane,
                        n: k,
                    };
                    let dwg = &mut acc[group * out_group * k..(group + 1) * out_group * k];
                    sgemm_add(gemm, dyg, (out_plane, 1), columns, (1, out_plane), dwg, k);
                }
            }
        });
    }
    for t in 1..parts {
        let start = t * per_thread + k * out_plane;
        for (d, p) in dw.iter_mut().zip(&scratch[start..start + w_len]) {
            *d += p;
        }
    }
}

/// `db[o] += Σ` of output channel `o` of `dy` over samples and pixels, in f64.
fn bias_grad(dy: &[f32], batch: usize, out_channels: usize, out_plane: usize, db: &mut [f32]) {
    for (o, d) in db.iter_mut().enumerate().take(out_channels) {
        let sum: f64 = (0..batch)
            .flat_map(|n| {
                let start = (n * out_channels + o) * out_plane;
                &dy[start..start + out_plane]
            })
            .map(|v| f64::from(*v))
            .sum();
        *d += sum as f32;
    }
}

/// The adjoint of [`im2col`]: adds each entry of `col` `[channels · k · k,
/// oh · ow]` into the input pixel it was read from in `x` (entries read from
/// the padding are dropped). `x` must be zeroed first to get the gradient.
fn col2im(g: &ConvGeometry, col: &[f32], channels: usize, x: &mut [f32]) {
    let (oh, ow) = (g.out_height(), g.out_width());
    let (stride, dilation) = (g.stride.max(1), g.dilation.max(1));
    let [pad_top, pad_left, ..] = g.pads;
    let mut rows = col.chunks_exact(oh * ow);
    for plane in x.chunks_exact_mut(g.height * g.width).take(channels) {
        for ki in 0..g.kernel {
            for kj in 0..g.kernel {
                let Some(row) = rows.next() else { return };
                let Some(taps) = Taps::new(ow, stride, kj * dilation, pad_left, g.width) else {
                    continue;
                };
                for (r, out_row) in row.chunks_exact(ow).enumerate() {
                    let ih = (r * stride + ki * dilation)
                        .checked_sub(pad_top)
                        .filter(|&ih| ih < g.height);
                    if let Some(ih) = ih {
                        taps.add(out_row, &mut plane[ih * g.width..(ih + 1) * g.width]);
                    }
                }
            }
        }
    }
}

/// Unrolls the receptive fields of `channels` input planes into `col`
/// `[channels · k · k, oh · ow]`: row `(c, ki, kj)` holds, for each output
/// position, the input under kernel tap `(ki, kj)`, or 0 in the padding.
fn im2col(g: &ConvGeometry, x: &[f32], channels: usize, col: &mut [f32]) {
    let (oh, ow) = (g.out_height(), g.out_width());
    let (stride, dilation) = (g.stride.max(1), g.dilation.max(1));
    let [pad_top, pad_left, ..] = g.pads;
    let mut rows = col.chunks_exact_mut(oh * ow);
    for plane in x.chunks_exact(g.height * g.width).take(channels) {
        for ki in 0..g.kernel {
            for kj in 0..g.kernel {
                let Some(row) = rows.next() else { return };
                let taps = Taps::new(ow, stride, kj * dilation, pad_left, g.width);
                for (r, out_row) in row.chunks_exact_mut(ow).enumerate() {
                    let ih = (r * stride + ki * dilation)
                        .checked_sub(pad_top)
                        .filter(|&ih| ih < g.height);
                    match (ih, taps) {
                        (Some(ih), Some(taps)) => taps.copy(&plane[ih * g.width..(ih + 1) * g.width], out_row),
                        // The tap's row, or every one of its columns, is in the padding.
                        _ => out_row.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Where one kernel column's taps fall along an output row: output columns
/// `first..end` read input column `first·stride + offset − pad` onwards,
/// every `stride`-th; the columns outside that range read the padding.
#[derive(Clone, Copy)]
struct Taps {
    first: usize,
    end: usize,
    /// The input column of output column `first`.
    start: usize,
    stride: usize,
}

impl Taps {
    /// `None` when every output column reads the padding: the tap's offset
    /// lies more than the padding before or after the row, as when the
    /// padding is wider than the map (`k=5 pad=2` on a 1-pixel map).
    fn new(ow: usize, stride: usize, offset: usize, pad: usize, width: usize) -> Option<Taps> {
        // Output column q reads input column q·stride + offset − pad, inside
        // the row for ⌈(pad − offset)/stride⌉ ≤ q < ⌈(width + pad − offset)/stride⌉.
        let first = pad.saturating_sub(offset).div_ceil(stride).min(ow);
        let end = (width + pad)
            .checked_sub(offset)
            .map_or(0, |room| room.div_ceil(stride))
            .min(ow);
        // first < end implies first·stride + offset ≥ pad and the column < width.
        (first < end).then(|| Taps {
            first,
            end,
            start: first * stride + offset - pad,
            stride,
        })
    }

    fn copy(&self, input: &[f32], out_row: &mut [f32]) {
        let Taps {
            first,
            end,
            start,
            stride,
        } = *self;
        out_row[..first].fill(0.0);
        out_row[end..].fill(0.0);
        if stride == 1 {
            out_row[first..end].copy_from_slice(&input[start..start + (end - first)]);
        } else {
            let taps = input[start..].iter().step_by(stride);
            out_row[first..end].iter_mut().zip(taps).for_each(|(o, v)| *o = *v);
        }
    }

    /// The adjoint of `copy`: adds output columns `first..end` of `out_row`
    /// into the input columns they were copied from.
    fn add(&self, out_row: &[f32], input: &mut [f32]) {
        let Taps {
            first,
            end,
            start,
            stride,
        } = *self;
        let taps = input[start..].iter_mut().step_by(stride);
        taps.zip(&out_row[first..end]).for_each(|(i, v)| *i += v);
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

    /// The definition, in f64: every output position sums its kernel taps
    /// over the group's input channels, skipping taps in the padding.
    fn reference(x: &[f32], batch: usize, g: &ConvGeometry, w: &[f32], e: &Epilogue) -> Vec<f64> {
        let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
        let (icg, ocg) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let mut y = vec![0.0f64; batch * g.out_channels * oh * ow];
        for n in 0..batch {
            for o in 0..g.out_channels {
                let group = o / ocg;
                for r in 0..oh {
                    for q in 0..ow {
                        let mut s = 0.0f64;
                        for c in 0..icg {
                            for ki in 0..k {
                                for kj in 0..k {
                                    let ih = (r * g.stride + ki * g.dilation) as isize - g.pads[0] as isize;
                                    let iw = (q * g.stride + kj * g.dilation) as isize - g.pads[1] as isize;
                                    if ih < 0 || iw < 0 || ih >= g.height as isize || iw >= g.width as isize {
                                        continue;
                                    }
                                    let ic = group * icg + c;
                                    let xi =
                                        ((n * g.in_channels + ic) * g.height + ih as usize) * g.width + iw as usize;
                                    let wi = ((o * icg + c) * k + ki) * k + kj;
                                    s += x[xi] as f64 * w[wi] as f64;
                                }
                            }
                        }
                        s += e.bias.map_or(0.0, |b| b[o] as f64);
                        for step in e.steps {
                            s = match *step {
                                EpilogueStep::Affine { scale, shift } => s * scale[o] as f64 + shift[o] as f64,
                                EpilogueStep::Act(Activation::Tanh) => s.tanh(),
                                EpilogueStep::Act(act) => act.apply(s as f32, o) as f64,
                            };
                        }
                        y[((n * g.out_channels + o) * oh + r) * ow + q] = s;
                    }
                }
            }
        }
        y
    }

    fn check(g: ConvGeometry, with_epilogue: bool) {
        let mut rng = Rng::new(11, (g.in_channels * 7919 + g.kernel * 31 + g.groups) as u64);
        let w = random(&mut rng, g.out_channels * g.col_rows());
        let (bias, scale, shift, slopes) = (
            random(&mut rng, g.out_channels),
            random(&mut rng, g.out_channels),
            random(&mut rng, g.out_channels),
            random(&mut rng, g.out_channels),
        );
        let steps = [
            EpilogueStep::Affine {
                scale: &scale,
                shift: &shift,
            },
            EpilogueStep::Act(Activation::Prelu { slopes: &slopes }),
        ];
        let epilogue = if with_epilogue {
            Epilogue {
                bias: Some(&bias),
                steps: &steps,
            }
        } else {
            Epilogue::NONE
        };
        assert!(g.out_height() > 0 && g.out_width() > 0, "{g:?} has an empty output");
        for batch in [1, 3] {
            let x = random(&mut rng, batch * g.in_channels * g.height * g.width);
            let want = reference(&x, batch, &g, &w, &epilogue);
            for threads in [1, 2] {
                let mut y = vec![f32::NAN; want.len()];
                let mut scratch = vec![f32::NAN; g.scratch_len(threads)];
                conv2d(
                    &x,
                    batch,
                    &g,
                    &w,
                    &epilogue,
                    &mut y,
                    &mut scratch,
                    &crate::Team::new(threads).unwrap(),
                );
                for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * want.abs().max(1.0);
                    assert!(
                        (*got as f64 - want).abs() <= tol,
                        "{g:?} batch {batch} threads {threads}: element {i}: got {got}, want {want}"
                    );
                }
            }
        }
    }

    fn geometry(in_channels: usize, size: usize, out_channels: usize, kernel: usize) -> ConvGeometry {
        ConvGeometry {
            in_channels,
            height: size,
            width: size + 2,
            out_channels,
            kernel,
            stride: 1,
            dilation: 1,
            groups: 1,
            pads: [0; 4],
        }
    }

    #[test]
    fn output_sizes() {
        let g = ConvGeometry {
            stride: 2,
            pads: [0, 1, 1, 1],
            ..geometry(3, 7, 4, 3)
        };
        // (7 + 1 − 3) / 2 + 1 = 3 rows; (9 + 2 − 3) / 2 + 1 = 5 columns.
        assert_eq!((g.out_height(), g.out_width()), (3, 5));
        let dilated = ConvGeometry {
            dilation: 3,
            ..geometry(1, 7, 1, 3)
        };
        // span 7: one row, three columns.
        assert_eq!((dilated.out_height(), dilated.out_width()), (1, 3));
        assert_eq!(geometry(1, 2, 1, 3).out_height(), 0);
    }

    #[test]
    fn plain_and_pointwise() {
        for e in [false, true] {
            check(geometry(3, 6, 5, 3), e);
            check(geometry(4, 5, 7, 1), e);
            check(
                ConvGeometry {
                    pads: [1, 0, 0, 1],
                    ..geometry(4, 5, 7, 1)
                },
                e,
            );
        }
    }

    #[test]
    fn stride_padding_and_dilation() {
        for e in [false, true] {
            // SAME_UPPER-like: more padding at the bottom/right than at the top/left.
            check(
                ConvGeometry {
                    stride: 2,
                    pads: [0, 1, 1, 2],
                    ..geometry(3, 9, 4, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    stride: 2,
                    pads: [2, 2, 2, 2],
                    ..geometry(2, 8, 3, 5)
                },
                e,
            );
            check(
                ConvGeometry {
                    dilation: 2,
                    pads: [2, 1, 2, 3],
                    ..geometry(2, 9, 3, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    stride: 3,
                    dilation: 2,
                    pads: [1, 1, 0, 0],
                    ..geometry(2, 11, 2, 3)
                },
                e,
            );
            // Kernel larger than the stride, stride larger than the kernel.
            check(
                ConvGeometry {
                    stride: 2,
                    ..geometry(3, 10, 4, 4)
                },
                e,
            );
            check(
                ConvGeometry {
                    stride: 3,
                    pads: [1, 1, 1, 1],
                    ..geometry(3, 10, 4, 2)
                },
                e,
            );
        }
    }

    #[test]
    fn groups_and_depthwise() {
        for e in [false, true] {
            check(
                ConvGeometry {
                    groups: 2,
                    pads: [1; 4],
                    ..geometry(4, 6, 6, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    groups: 6,
                    pads: [1; 4],
                    stride: 2,
                    ..geometry(6, 7, 6, 3)
                },
                e,
            );
            // Depthwise with a channel multiplier of 2.
            check(
                ConvGeometry {
                    groups: 3,
                    pads: [0, 1, 2, 1],
                    ..geometry(3, 6, 6, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    groups: 2,
                    ..geometry(4, 5, 2, 1)
                },
                e,
            );
        }
    }

    /// Every small geometry, with the padding up to twice the map (taps
    /// wholly in the padding: issue 11, `k=5 pad=2` on a 1-pixel map
    /// panicked), symmetric and SAME_UPPER-like, against the definition.
    #[test]
    fn exhaustive_small_geometries_against_the_definition() {
        let teams = [crate::Team::new(1).unwrap(), crate::Team::new(2).unwrap()];
        let mut rng = Rng::new(5, 11);
        let mut checked = 0;
        for (height, width) in (1..=6).flat_map(|h| (1..=6).map(move |w| (h, w))) {
            for (kernel, stride, dilation) in
                (1..=5).flat_map(|k| (1..=3).flat_map(move |s| (1..=3).map(move |d| (k, s, d))))
            {
                for pads in (0..=4).flat_map(|p| [[p; 4], [p, p, p + 1, p + 1], [p, 0, p, 4 - p]]) {
                    for groups in [1, 2] {
                        let g = ConvGeometry {
                            in_channels: 2,
                            height,
                            width,
                            out_channels: 2 * groups,
                            kernel,
                            stride,
                            dilation,
                            groups,
                            pads,
                        };
                        if g.out_height() == 0 || g.out_width() == 0 {
                            continue;
                        }
                        let w = random(&mut rng, g.out_channels * g.col_rows());
                        let bias = random(&mut rng, g.out_channels);
                        let epilogue = Epilogue {
                            bias: Some(&bias),
                            steps: &[],
                        };
                        let batch = 2;
                        let x = random(&mut rng, batch * g.in_channels * height * width);
                        let want = reference(&x, batch, &g, &w, &epilogue);
                        for team in &teams {
                            let mut y = vec![f32::NAN; want.len()];
                            let mut scratch = vec![f32::NAN; g.scratch_len(team.threads())];
                            conv2d(&x, batch, &g, &w, &epilogue, &mut y, &mut scratch, team);
                            for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                                assert!(
                                    (f64::from(*got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                                    "{g:?}, {} thread(s): element {i}: got {got}, want {want}",
                                    team.threads()
                                );
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
        // Most of the sweep has an output (the rest is refused by `check`).
        assert!(checked > 20_000, "{checked} geometries");
    }

    #[test]
    fn the_issue_examples_read_zeros_from_the_padding() {
        // k=5 pad=2, 5×5 same and k=3 same dilation 2 on a 1×1 map; k=1 stride 3 pad 4 on 5×1.
        for (height, width, kernel, stride, dilation, pads) in [
            (1, 1, 5, 1, 1, [2; 4]),
            (1, 1, 3, 1, 2, [2; 4]),
            (5, 1, 1, 3, 1, [4; 4]),
        ] {
            let g = ConvGeometry {
                in_channels: 1,
                height,
                width,
                out_channels: 1,
                kernel,
                stride,
                dilation,
                groups: 1,
                pads,
            };
            let x: Vec<f32> = (1..=height * width).map(|v| v as f32).collect();
            let w = vec![1.0; kernel * kernel];
            let mut y = vec![f32::NAN; g.out_height() * g.out_width()];
            let mut scratch = vec![f32::NAN; g.scratch_len(1)];
            assert!(!y.is_empty());
            conv2d(
                &x,
                1,
                &g,
                &w,
                &Epilogue::NONE,
                &mut y,
                &mut scratch,
                &crate::Team::new(1).unwrap(),
            );
            // An all-ones kernel sums the pixels under it; each output sees
            // every pixel its taps reach, the rest is padding.
            let want = reference(&x, 1, &g, &w, &Epilogue::NONE);
            assert_eq!(y.iter().map(|v| f64::from(*v)).collect::<Vec<_>>(), want, "{g:?}");
        }
    }
}
