//! 2-D convolution (NCHW, square kernels), forward and backward.
//!
//! The forward and the input gradient run the direct kernel of [`direct`]:
//! register tiles of output channels × output positions, read straight from
//! a padded, stride-phased copy of one sample's input, weights packed into
//! strips (once, in a [`ConvWeight`], for a weight that stays fixed; per
//! call into the scratch otherwise). The input gradient is the transposed
//! convolution: the same kernel on the output gradient with the kernel
//! flipped, at a stride above 1 phase by phase ([`phases`]: each of the
//! stride² phases of the input a correlation of the output gradient with
//! the taps that reach it), with dilation on the output gradient spread
//! out by the stride. The weight gradient is a correlation of
//! the output gradient with the input, per sample and group a product read
//! in place from the same copy ([`weight_grad`]).
//!
//! A 3 × 3 stride-1 forward with channels enough for its map (64 → 64 on
//! 16 × 16, 128 → 128 on 8 × 8) runs on AVX-512 as Winograd's F(2 × 2,
//! 3 × 3) instead ([`winograd`]): transformed input tiles, a product of
//! 16 groups on the direct kernel, and the outputs transformed back, 16
//! multiplies a tile and channel pair where the direct conv has 36.
//!
//! A depthwise forward (one input and one output channel per group, stride
//! 1 or 2) on AVX-512 runs [`depthwise`] instead: vectors of one channel's
//! outputs read in place with masked loads, no copy, no tile buffer.

mod depthwise;
mod direct;
mod phases;
mod weight_grad;
mod winograd;

use self::depthwise::Depthwise;
use self::direct::{Direct, Grid, Shape};
use self::weight_grad::{reduce_lanes, transpose, transposed_len, Correlation, DepthwiseTaps, LANES, PITCH};
use super::dense::split;
use super::epilogue::{Epilogue, Residual};
use super::pool::{max_pool2d, PoolGeometry};
use super::simd::{at_level, leveled};
use crate::aligned::LINE;
use crate::team::{Disjoint, Team};
use crate::AlignedBuf;
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
    /// The window (and stride) of a max pool over each output plane,
    /// fused after the epilogue, unpadded and in floor mode: 1 for none.
    /// The forward only; `y` is then the pooled map.
    pub pool: usize,
}

impl ConvGeometry {
    pub fn out_height(&self) -> usize {
        out_size(self.height, self.pads[0] + self.pads[2], self.span(), self.stride)
    }

    pub fn out_width(&self) -> usize {
        out_size(self.width, self.pads[1] + self.pads[3], self.span(), self.stride)
    }

    /// The height of `y`: the conv's outputs, pooled where it pools.
    pub fn pooled_height(&self) -> usize {
        self.out_height() / self.pool.max(1)
    }

    /// The width of `y`: the conv's outputs, pooled where it pools.
    pub fn pooled_width(&self) -> usize {
        self.out_width() / self.pool.max(1)
    }

    /// Whether the direct kernel pools each unit's outputs as it finishes
    /// them (from its tile buffer), given that the epilogue adds no
    /// residual; otherwise a fused pool runs a sample at a time after the
    /// conv, on a copy of its outputs ([`forward_then_pool`]): after a
    /// depthwise conv, a channels-in-vectors one, or one that adds a
    /// residual.
    fn pools_in_units(&self) -> bool {
        self.pool > 1 && !Depthwise::applies(self) && !winograd::applies(self) && !self.shape().across()
    }

    /// Without its pool.
    fn unpooled(&self) -> ConvGeometry {
        ConvGeometry { pool: 1, ..*self }
    }

    /// f32s of scratch [`conv2d`] needs for `threads` threads (the
    /// weights packed once per call, and each thread's copy of a sample and
    /// its output tiles); [`conv2d_packed`] needs [`Self::packed_scratch_len`].
    pub fn scratch_len(&self, threads: usize) -> usize {
        self.packed_len().next_multiple_of(LINE) + self.packed_scratch_len(threads)
    }

    /// f32s of scratch [`conv2d_packed`] needs for `threads` threads.
    /// A conv with a fused pool also has room to run a sample at a time
    /// and pool after it ([`forward_then_pool`], one sample's outputs and
    /// the conv's own scratch), which it does with a residual: whether the
    /// epilogue adds one is not known here.
    pub fn packed_scratch_len(&self, threads: usize) -> usize {
        if self.pool > 1 {
            let sample = self.out_channels * self.out_height() * self.out_width();
            let after = sample.next_multiple_of(LINE) + self.unpooled().packed_scratch_len(threads);
            return match self.pools_in_units() {
                true => after.max(self.unit_scratch_len(threads)),
                false => after,
            };
        }
        if Depthwise::applies(self) {
            return 0;
        }
        if winograd::applies(self) {
            return winograd::Plan::new(self).scratch_len(threads);
        }
        self.unit_scratch_len(threads)
    }

    /// The direct kernel's scratch for `threads` threads.
    fn unit_scratch_len(&self, threads: usize) -> usize {
        let groups = self.groups.max(1);
        let grid = self.forward_grid();
        threads.max(1) * Direct::scratch_per_thread(&grid, self.shape(), groups, self.out_group(), self.pool)
    }

    /// f32s of scratch [`conv2d_grad_input`] and [`conv2d_grad_weight`]
    /// need for `threads` threads.
    pub fn grad_scratch_len(&self, threads: usize) -> usize {
        let threads = threads.max(1);
        if let Some(t) = self.depthwise_transposed() {
            let flipped = self.in_channels * self.kernel * self.kernel;
            return (flipped.next_multiple_of(LINE) + self.spread_len(&t)).max(threads * self.weight_grad_per_thread());
        }
        // Winograd's input gradient where a batch is large enough, the
        // direct kernel's below that.
        let winograd = self.winograd_transposed().map_or(0, |t| {
            let plan = winograd::Plan::new(&t);
            plan.packed_len().next_multiple_of(LINE) + plan.scratch_len(threads)
        });
        if self.grad_input_by_phases() {
            return self
                .phases_scratch_len(threads)
                .max(threads * self.weight_grad_per_thread());
        }
        let transposed = self.transposed_grid();
        let in_group = self.in_channels / self.groups.max(1);
        let shape = Shape::pick(in_group, &transposed);
        let dx = direct::packed_len(shape, self.groups.max(1), in_group, transposed.depth())
            + threads * Direct::scratch_per_thread(&transposed, shape, self.groups.max(1), in_group, 1);
        dx.max(winograd).max(threads * self.weight_grad_per_thread())
    }

    /// The input gradient as a conv that Winograd takes ([`winograd::applies`]):
    /// a 3 × 3 stride-1 conv's is one on the output gradient, with the
    /// kernel flipped, the channels swapped and each padding `2 − pad`.
    fn winograd_transposed(&self) -> Option<ConvGeometry> {
        let plain = (
            self.kernel,
            self.stride.max(1),
            self.dilation.max(1),
            self.groups.max(1),
            self.pool.max(1),
        );
        if plain != (3, 1, 1, 1, 1) || self.pads.iter().any(|&p| p > 2) {
            return None;
        }
        let t = ConvGeometry {
            in_channels: self.out_channels,
            out_channels: self.in_channels,
            height: self.out_height(),
            width: self.out_width(),
            pads: self.pads.map(|p| 2 - p),
            ..*self
        };
        (winograd::applies(&t) && (t.out_height(), t.out_width()) == (self.height, self.width)).then_some(t)
    }

    /// The weight gradient's scratch per thread: the copy of a sample's
    /// group, its output gradient (on the copy's row width for a depthwise
    /// conv, else transposed, [`weight_grad`]), and the sums of the
    /// thread's samples (a whole `dW`, or `dWᵀ` with rows `PITCH`-wide).
    fn weight_grad_per_thread(&self) -> usize {
        let (grid, depthwise) = self.weight_grad_grid();
        if depthwise {
            let positions = grid.out_h * grid.phase_w;
            return grid.source_len() + grid.channels * positions + self.out_channels * self.col_rows() * LANES;
        }
        // Swapped, `x` transposed fits where `dy` would (the same positions, fewer channels).
        let dy_t = transposed_len(
            self.out_height() * self.out_width(),
            self.out_group().next_multiple_of(PITCH),
        );
        let (rows, pitch) = self.weight_grad_sums();
        grid.source_len() + dy_t + self.groups.max(1) * rows * pitch
    }

    /// Whether the weight gradient's product runs with its operands
    /// swapped: for a pointwise conv (1 × 1, stride 1, unpadded) with
    /// fewer input channels than output channels, `dW[o, c] = Σ_p dy[o, p]
    /// · x[c, p]` is the same product with `dy` as the rows and `x`
    /// transposed, the smaller of the two (32 → 64 on 16 × 16: 8 K floats a
    /// sample, not 16 K), and its sums come out in `dW`'s own layout.
    fn weight_grad_swapped(&self) -> bool {
        let (grid, depthwise) = self.weight_grad_grid();
        let in_group = self.in_channels / self.groups.max(1);
        !depthwise && self.kernel == 1 && grid.is_plain() && in_group < self.out_group()
    }

    /// A group's weight-gradient sums: `(rows, pitch)` of `dWᵀ` (rows an
    /// input channel and a tap, `pitch` the output channels rounded up to
    /// whole vectors), or swapped, of `dW` (rows the output channels).
    fn weight_grad_sums(&self) -> (usize, usize) {
        let in_group = self.in_channels / self.groups.max(1);
        match self.weight_grad_swapped() {
            true => (self.out_group(), in_group.next_multiple_of(PITCH)),
            false => (self.col_rows(), self.out_group().next_multiple_of(PITCH)),
        }
    }

    /// The copy the weight gradient reads: one group's, or for a depthwise
    /// conv (one input and one output channel per group) every channel's,
    /// laid out at once.
    fn weight_grad_grid(&self) -> (Grid, bool) {
        let mut grid = Grid::forward(self);
        let groups = self.groups.max(1);
        let depthwise = groups > 1 && self.in_channels == groups && self.out_channels == groups;
        if depthwise {
            grid.channels = groups;
        }
        (grid, depthwise)
    }

    fn out_group(&self) -> usize {
        self.out_channels / self.groups.max(1)
    }

    /// The direct kernel's tile for this conv's forward.
    fn shape(&self) -> Shape {
        Shape::pick(self.out_group(), &self.forward_grid())
    }

    /// The grid the forward's direct kernel runs on.
    fn forward_grid(&self) -> Grid {
        Grid::forward(&self.planes_as_rows())
    }

    /// The grid the input gradient's direct kernel runs on.
    fn transposed_grid(&self) -> Grid {
        Grid::transposed(&self.planes_as_rows())
    }

    /// A pointwise conv (1 × 1, stride 1, no padding) as one on maps of a
    /// single row: the same product, whose vectors of positions fill up
    /// across the map's rows (an 8 × 8 map is four whole vectors, not eight
    /// half ones), forward and backward. Not with a fused pool, which
    /// pools the map's own rows.
    fn planes_as_rows(&self) -> ConvGeometry {
        let pointwise = self.kernel == 1 && self.stride == 1 && self.pads == [0; 4];
        if !pointwise || self.pool > 1 {
            return *self;
        }
        ConvGeometry {
            height: 1,
            width: self.height * self.width,
            ..*self
        }
    }

    /// Floats of a [`ConvWeight`]: the weight packed for this CPU's kernel
    /// (whole strips of output channels).
    pub fn packed_weight_len(&self) -> usize {
        self.packed_len()
    }

    /// Floats of the forward's packed weights.
    fn packed_len(&self) -> usize {
        if winograd::applies(self) {
            return winograd::Plan::new(self).packed_len();
        }
        direct::packed_len(self.shape(), self.groups.max(1), self.out_group(), self.col_rows())
    }

    /// Packs `weight` `[out, in/groups, k, k]` for the forward into `out`.
    fn pack_forward(&self, weight: &[f32], out: &mut [f32]) {
        if winograd::applies(self) {
            return winograd::Plan::new(self).pack(weight, out);
        }
        let (out_group, depth, taps) = (self.out_group(), self.col_rows(), self.kernel * self.kernel);
        let at = move |group: usize, c: usize, t: usize| group * out_group * depth + c * taps + t;
        let channels = self.in_channels / self.groups.max(1);
        direct::pack(
            self.shape(),
            self.groups.max(1),
            out_group,
            (channels, taps),
            (weight, depth, at),
            out,
        );
    }

    /// A depthwise conv's input gradient as a depthwise conv of its own,
    /// which the depthwise kernel runs: on `dy` (spread out by the stride,
    /// zeros between its pixels, when the stride is above 1: four times
    /// the multiply-adds at stride 2, but on the depthwise kernel, where
    /// the direct kernel's phases were slower still), the kernel flipped,
    /// padded by `span − 1 − pad` at the top and left and by what makes the
    /// output the input's size at the bottom and right (where no pad is
    /// wider).
    fn depthwise_transposed(&self) -> Option<ConvGeometry> {
        let (span, s) = (self.span(), self.stride.max(1));
        let (oh, ow) = (self.out_height(), self.out_width());
        if oh == 0 || ow == 0 {
            return None;
        }
        let (height, width) = ((oh - 1) * s + 1, (ow - 1) * s + 1);
        let top = (span - 1).checked_sub(self.pads[0])?;
        let left = (span - 1).checked_sub(self.pads[1])?;
        let bottom = (self.height + span - 1).checked_sub(top + height)?;
        let right = (self.width + span - 1).checked_sub(left + width)?;
        let t = ConvGeometry {
            in_channels: self.out_channels,
            height,
            width,
            out_channels: self.in_channels,
            stride: 1,
            pads: [top, left, bottom, right],
            ..*self
        };
        let fits = (t.out_height(), t.out_width()) == (self.height, self.width);
        (fits && Depthwise::applies(self) && Depthwise::applies(&t)).then_some(t)
    }

    /// Floats of `dy` spread out by the stride for [`Self::depthwise_transposed`]
    /// (none at stride 1).
    fn spread_len(&self, t: &ConvGeometry) -> usize {
        if self.stride.max(1) == 1 {
            return 0;
        }
        t.in_channels * t.height * t.width
    }

    /// The extent of one dilated kernel: `dilation·(kernel − 1) + 1`.
    fn span(&self) -> usize {
        self.dilation.max(1) * self.kernel.saturating_sub(1) + 1
    }

    /// Rows of the column matrix: the inputs of one group times the kernel area.
    fn col_rows(&self) -> usize {
        self.in_channels / self.groups.max(1) * self.kernel * self.kernel
    }
}

fn out_size(input: usize, pads: usize, span: usize, stride: usize) -> usize {
    (input + pads)
        .checked_sub(span)
        .map_or(0, |room| room / stride.max(1) + 1)
}

/// A conv layer's weight `[out, in/groups, k, k]`, packed once for this
/// CPU's direct kernel.
#[derive(Clone, Debug)]
pub struct ConvWeight {
    geometry: ConvGeometry,
    /// On a cache line: the channels-in-vectors tiles load the weights as
    /// whole vectors.
    packed: AlignedBuf,
}

impl ConvWeight {
    pub fn new(weight: &[f32], g: &ConvGeometry) -> ConvWeight {
        debug_assert_eq!(weight.len(), g.out_channels * g.col_rows());
        let mut packed = AlignedBuf::zeroed(g.packed_len());
        g.pack_forward(weight, &mut packed);
        ConvWeight { geometry: *g, packed }
    }
}

/// NCHW conv; weight [out, in/groups, k, k]; epilogue per output channel;
/// scratch from [`ConvGeometry::scratch_len`]. Packs the weight on every
/// call: a weight that stays fixed is faster as a [`ConvWeight`].
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
    debug_assert_eq!(weight.len(), g.out_channels * g.col_rows());
    debug_assert!(scratch.len() >= g.scratch_len(team.threads()));
    // The threads' scratch after the packed weight, on a cache line.
    let (packed, rest) = scratch.split_at_mut(g.packed_len().next_multiple_of(LINE));
    let packed = &mut packed[..g.packed_len()];
    g.pack_forward(weight, packed);
    forward(x, batch, g, packed, epilogue, y, rest, team);
}

/// [`conv2d`] with the weight packed once; scratch from
/// [`ConvGeometry::packed_scratch_len`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_packed(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    weight: &ConvWeight,
    epilogue: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    debug_assert_eq!(&weight.geometry, g);
    forward(x, batch, g, &weight.packed, epilogue, y, scratch, team);
}

#[allow(clippy::too_many_arguments)]
fn forward(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    packed: &[f32],
    epilogue: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    let groups = g.groups.max(1);
    let (in_plane, out_plane) = (g.height * g.width, g.pooled_height() * g.pooled_width());
    debug_assert_eq!((g.in_channels % groups, g.out_channels % groups), (0, 0));
    debug_assert_eq!(x.len(), batch * g.in_channels * in_plane);
    debug_assert_eq!(y.len(), batch * g.out_channels * out_plane);
    debug_assert!(scratch.len() >= g.packed_scratch_len(team.threads()));
    debug_assert!(epilogue.fits(g.out_channels));
    if g.pool > 1 && !(g.pools_in_units() && epilogue.residual.is_none()) {
        return forward_then_pool(x, batch, g, packed, epilogue, y, scratch, team);
    }
    if Depthwise::applies(g) {
        // (The packed weight of a depthwise conv is `[channels, k²]`.)
        return Depthwise::new(g, packed, epilogue).forward(x, batch, y, team);
    }
    if winograd::applies(g) {
        return winograd::forward(x, batch, &winograd::Plan::new(g), packed, epilogue, y, scratch, team);
    }
    Direct::new(g.forward_grid(), g.shape(), groups, g.out_group(), packed, epilogue)
        .pooled(g.pool)
        .run(x, batch, y, scratch, team);
}

/// A conv with a fused pool that its kernel does not pool unit by unit:
/// each sample's conv into the scratch, then its pool into `y`.
#[allow(clippy::too_many_arguments)]
fn forward_then_pool(
    x: &[f32],
    batch: usize,
    g: &ConvGeometry,
    packed: &[f32],
    epilogue: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    let conv = g.unpooled();
    let (oh, ow) = (g.out_height(), g.out_width());
    let sample_in = g.in_channels * g.height * g.width;
    let sample_out = g.out_channels * oh * ow;
    let pooled = g.out_channels * g.pooled_height() * g.pooled_width();
    let (outputs, rest) = scratch.split_at_mut(sample_out.next_multiple_of(LINE));
    let outputs = &mut outputs[..sample_out];
    let pool = PoolGeometry {
        channels: g.out_channels,
        height: oh,
        width: ow,
        kernel: g.pool,
        stride: g.pool,
        pads: [0; 4],
    };
    for n in 0..batch {
        let residual = epilogue.residual.map(|r| Residual {
            values: &r.values[n * sample_out..(n + 1) * sample_out],
            ..r
        });
        let sample = Epilogue { residual, ..*epilogue };
        let x = &x[n * sample_in..(n + 1) * sample_in];
        forward(x, 1, &conv, packed, &sample, outputs, rest, team);
        max_pool2d(outputs, 1, &pool, &mut y[n * pooled..(n + 1) * pooled]);
    }
}

/// Output positions over the batch from which a 3 × 3 stride-1 conv's
/// input gradient runs as Winograd: its weights are transformed on every
/// call (`Plan::pack`, 0.2 ms for 64 × 64 channels and 0.9 for 128 × 128
/// on the Xeon), which a batch of 64 on 16 × 16 maps repays (64 → 64: 7.1–7.5
/// → 5.1 ms on one thread) and one of 64 on 8 × 8 only just (128 → 128:
/// 6.4–6.7 → 5.6), where at batch 1 it was 2–7 times slower.
const WINOGRAD_DX_OUTPUTS: usize = 4096;

/// The input gradient of [`conv2d`] (without epilogue): the transposed
/// convolution of `dy` `[batch, out_channels, oh, ow]` with `w`, which
/// overwrites `dx` `[batch, in_channels, H, W]`: the direct kernel on `dy`,
/// with the kernel flipped and its input and output channels swapped; at
/// a stride above 1 one phase of `dx` at a time ([`phases`]), with
/// dilation on `dy` spread out by the stride. Scratch from
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
    #[cfg(target_arch = "x86_64")]
    if depthwise::walk_of(g) == Some(depthwise::walks::Walk::Halved) {
        // SAFETY: the CPU has AVX-512F and `g` walks halved (`walk_of`).
        return unsafe { depthwise::grad::grad_input_halved(dy, batch, g, w, dx, team) };
    }
    if let Some(t) = g.depthwise_transposed() {
        // The kernel flipped, as the depthwise kernel's `[channels, k²]`.
        let taps = g.kernel * g.kernel;
        let (flipped, rest) = scratch.split_at_mut((g.in_channels * taps).next_multiple_of(LINE));
        let flipped = &mut flipped[..g.in_channels * taps];
        for (f, w) in flipped.chunks_exact_mut(taps).zip(w.chunks_exact(taps)) {
            f.iter_mut().zip(w.iter().rev()).for_each(|(f, w)| *f = *w);
        }
        let depthwise = Depthwise::new(&t, flipped, &Epilogue::NONE);
        let spread_len = g.spread_len(&t);
        if spread_len == 0 {
            return depthwise.forward(dy, batch, dx, team);
        }
        // Sample by sample on `dy` spread out; the zeros between its
        // pixels are written once, each sample overwrites the same pixels.
        let spread = &mut rest[..spread_len];
        spread.fill(0.0);
        let s = g.stride;
        for (dy_n, dx_n) in dy.chunks_exact(y_len).zip(dx.chunks_exact_mut(x_len)).take(batch) {
            for (plane, wide) in dy_n
                .chunks_exact(out_plane)
                .zip(spread.chunks_exact_mut(t.height * t.width))
            {
                for (row, wide_row) in plane.chunks_exact(g.out_width()).zip(wide.chunks_mut(s * t.width)) {
                    for (v, at) in row.iter().zip(wide_row.iter_mut().step_by(s)) {
                        *at = *v;
                    }
                }
            }
            depthwise.forward(spread, 1, dx_n, team);
        }
        return;
    }
    let outputs = batch.saturating_mul(g.out_height() * g.out_width());
    if let Some(t) = g.winograd_transposed().filter(|_| outputs >= WINOGRAD_DX_OUTPUTS) {
        // Output channel c of the transposed conv on source channel o: the
        // forward's kernel of o on c turned half a turn, packed as
        // Winograd's U, a step's weights.
        let plan = winograd::Plan::new(&t);
        let (packed, rest) = scratch.split_at_mut(plan.packed_len().next_multiple_of(LINE));
        let packed = &mut packed[..plan.packed_len()];
        let cin = g.in_channels;
        plan.pack_taps(|c, o| &w[(o * cin + c) * 9..][..9], true, packed);
        return winograd::forward(dy, batch, &plan, packed, &Epilogue::NONE, dx, rest, team);
    }
    if g.grad_input_by_phases() {
        return phases::grad_input(dy, batch, g, w, dx, scratch, team);
    }
    let groups = g.groups.max(1);
    let (in_group, out_group, k) = (g.in_channels / groups, g.out_group(), g.kernel);
    let grid = g.transposed_grid();
    let shape = Shape::pick(in_group, &grid);
    let depth = grid.depth();
    let (packed, rest) = scratch.split_at_mut(direct::packed_len(shape, groups, in_group, depth));
    // Output channel c of the transposed conv, source channel o, tap t:
    // the forward's weight of o on c at the flipped tap, (k − 1 − ki,
    // k − 1 − kj), which is tap k² − 1 − t.
    let taps = k * k;
    let flipped = move |group: usize, o: usize, t: usize| (group * out_group + o) * in_group * taps + (taps - 1 - t);
    debug_assert_eq!(depth, out_group * taps);
    direct::pack(shape, groups, in_group, (out_group, taps), (w, taps, flipped), packed);
    Direct::new(grid, shape, groups, in_group, packed, &Epilogue::NONE).run(dy, batch, dx, rest, team);
}

/// The parameter gradients of [`conv2d`] (without epilogue): `dw +=
/// Σ_samples` the correlation of `dy` with `x`, and, when given, `db[o] +=
/// Σ` of `dy` over samples and pixels. Accumulates into the caller's
/// buffers. Per sample and group, `dWᵀ [in/groups·k², out/groups] += X · dyᵀ`
/// over the output positions, in register tiles ([`weight_grad`]) whose
/// rows `(c, tap)` are read in place from the padded, phased copy of the
/// input the forward reads, and whose columns are the output gradient,
/// transposed.
/// Samples are shared among the team, each part summing its own `dWᵀ`;
/// scratch from [`ConvGeometry::grad_scratch_len`].
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
    let (in_group, out_group) = (g.in_channels / groups, g.out_group());
    let (in_plane, out_plane) = (g.height * g.width, g.out_height() * g.out_width());
    let (x_len, y_len) = (g.in_channels * in_plane, g.out_channels * out_plane);
    let k = g.col_rows();
    debug_assert_eq!(x.len(), batch * x_len);
    debug_assert_eq!(dy.len(), batch * y_len);
    debug_assert_eq!(dw.len(), g.out_channels * k);
    debug_assert!(scratch.len() >= g.grad_scratch_len(team.threads()));
    #[cfg(target_arch = "x86_64")]
    if let Some(walk) = depthwise::walk_of(g) {
        // The bias's gradient on the way (`depthwise::grad`).
        return depthwise_walked(walk, (x, dy), batch, g, (dw, db), scratch, team);
    }
    if let Some(db) = db {
        at_level!(bias_grad(dy, batch, g.out_channels, out_plane, db));
    }
    if batch == 0 || x_len == 0 || y_len == 0 {
        return;
    }
    let (grid, depthwise) = g.weight_grad_grid();
    let per_thread = g.weight_grad_per_thread();
    let parts = team.threads().min(batch).max(1);
    let swapped = g.weight_grad_swapped();
    let (rows, pitch) = g.weight_grad_sums();
    // A part's sums: dW lane-wise (depthwise), else dWᵀ (or swapped, dW)
    // per group, rows `pitch` wide.
    let sums_len = if depthwise {
        dw.len() * LANES
    } else {
        groups * rows * pitch
    };
    direct::with_tap_offsets(&grid, false, |taps| {
        let scratch = Disjoint::new(&mut scratch[..parts * per_thread]);
        team.run(parts, &|t| {
            // SAFETY: each part has its own scratch.
            let own = unsafe { scratch.piece(t * per_thread..(t + 1) * per_thread) };
            let (source, rest) = own.split_at_mut(grid.source_len());
            let (dy_part, sums) = rest.split_at_mut(rest.len() - sums_len);
            sums.fill(0.0);
            // The channels past the group's stay zero from here on.
            dy_part.fill(0.0);
            for n in split(batch, parts, t, 1) {
                if depthwise {
                    // Every channel at once: dW[c, tap] += dy_c · (x_c under the tap).
                    grid.prepare(&x[n * x_len..(n + 1) * x_len], source);
                    let positions = grid.out_h * grid.phase_w;
                    let dy_wide = &mut dy_part[..grid.channels * positions];
                    Grid::widen(
                        &dy[n * y_len..(n + 1) * y_len],
                        (grid.out_h, grid.out_w),
                        grid.phase_w,
                        dy_wide,
                    );
                    let product = DepthwiseTaps {
                        source,
                        plane: grid.plane(),
                        taps,
                        dy: dy_wide,
                        positions,
                        row_pitch: grid.phase_w,
                        out_w: grid.out_w,
                    };
                    product.accumulate(sums);
                    continue;
                }
                for group in 0..groups {
                    let xg = &x[n * x_len + group * in_group * in_plane..][..in_group * in_plane];
                    let dyg = &dy[n * y_len + group * out_group * out_plane..][..out_group * out_plane];
                    let group_sums = &mut sums[group * rows * pitch..(group + 1) * rows * pitch];
                    // The product's rows and the operand it reads
                    // transposed: swapped, `dy` and `x` (a pointwise
                    // conv's grid is as much `dy`'s as `x`'s); else `x`
                    // (read in place where unpadded at stride 1, else its
                    // copy) and `dy`.
                    let (rows_of, transposed, channels) = if swapped {
                        (dyg, xg, out_group)
                    } else if grid.is_plain() {
                        (xg, dyg, in_group)
                    } else {
                        grid.prepare(xg, source);
                        (&*source, dyg, in_group)
                    };
                    let t = &mut dy_part[..transposed_len(out_plane, pitch)];
                    transpose(transposed, out_plane, pitch, t);
                    let product = Correlation {
                        source: rows_of,
                        plane: grid.plane(),
                        taps,
                        channels,
                        row_pitch: grid.phase_w,
                        out_h: grid.out_h,
                        out_w: grid.out_w,
                        dy_t: &t[..out_plane * pitch],
                        pitch,
                    };
                    product.accumulate(group_sums);
                }
            }
        });
    });
    let sums = |t: usize| &scratch[(t + 1) * per_thread - sums_len..(t + 1) * per_thread];
    if depthwise {
        for t in 0..parts {
            reduce_lanes(sums(t), dw);
        }
        return;
    }
    // dW[o, (c, tap)] += Σ over parts of dWᵀ[(c, tap), o] (or swapped, of
    // dW's rows), group by group.
    for t in 0..parts {
        for (group, sums) in sums(t).chunks_exact(rows * pitch).enumerate() {
            let dw = &mut dw[group * out_group * k..(group + 1) * out_group * k];
            if swapped {
                for (dw_row, sums_row) in dw.chunks_exact_mut(k).zip(sums.chunks_exact(pitch)) {
                    for (d, s) in dw_row.iter_mut().zip(sums_row) {
                        *d += s;
                    }
                }
            } else {
                add_transposed(sums, pitch, (out_group, k), dw);
            }
        }
    }
}

/// `dw[o · k + row] += sums[row · pitch + o]` for `o < out_group`, `row <
/// k`, in blocks of 16 × 16 whose lines stay in L1 (row by row of `sums`,
/// each float went to a line of `dw` of its own: two fifths of an 8 × 8
/// layer's weight gradient at batch 1).
fn add_transposed(sums: &[f32], pitch: usize, (out_group, k): (usize, usize), dw: &mut [f32]) {
    const BLOCK: usize = 16;
    for row0 in (0..k).step_by(BLOCK) {
        let rows = row0..(row0 + BLOCK).min(k);
        for o0 in (0..out_group).step_by(BLOCK) {
            for o in o0..(o0 + BLOCK).min(out_group) {
                let dw = &mut dw[o * k + rows.start..o * k + rows.end];
                for (d, row) in dw.iter_mut().zip(rows.clone()) {
                    *d += sums[row * pitch + o];
                }
            }
        }
    }
}

/// [`conv2d_grad_weight`] of a depthwise conv that walks in registers
/// (`depthwise::walk_of`): each part of the samples sums `dW` and `db` in
/// its own scratch, then the parts are added.
#[cfg(target_arch = "x86_64")]
fn depthwise_walked(
    walk: depthwise::walks::Walk,
    (x, dy): (&[f32], &[f32]),
    batch: usize,
    g: &ConvGeometry,
    (dw, mut db): (&mut [f32], Option<&mut [f32]>),
    scratch: &mut [f32],
    team: &Team,
) {
    let channels = g.in_channels;
    let parts = team.threads().min(batch).max(1);
    let per_part = dw.len() + channels;
    let sums = Disjoint::new(&mut scratch[..parts * per_part]);
    team.run(parts, &|t| {
        // SAFETY: each part has its own sums.
        let (dw, db) = unsafe { sums.piece(t * per_part..(t + 1) * per_part) }.split_at_mut(channels * 9);
        dw.fill(0.0);
        db.fill(0.0);
        // SAFETY: the CPU has AVX-512F and `g` is depthwise with this walk
        // (`walk_of`).
        unsafe { depthwise::grad::weight_grad(walk, g, (x, dy), split(batch, parts, t, 1), (dw, db)) };
    });
    for part in scratch[..parts * per_part].chunks_exact(per_part) {
        let (dw_part, db_part) = part.split_at(channels * 9);
        dw.iter_mut().zip(dw_part).for_each(|(dw, s)| *dw += s);
        if let Some(db) = db.as_deref_mut() {
            db.iter_mut().zip(db_part).for_each(|(db, s)| *db += s);
        }
    }
}

leveled! {
    /// `db[o] += Σ` of output channel `o` of `dy` over samples and pixels:
    /// each plane in 16 f32 lanes (vectors at the CPU's width), the planes'
    /// lanes in f64.
    fn bias_grad(dy: &[f32], batch: usize, out_channels: usize, out_plane: usize, db: &mut [f32]) -> () {
        // Blocks of channels, each sample's run of them read in order (a
        // channel's planes are a sample's size apart: read channel by
        // channel, they were a quarter of a depthwise conv's dW). Plain
        // loops: an iterator's `fold` is a function of its own, not
        // compiled with the wrapper's vector features.
        const BLOCK: usize = 64;
        let channels = out_channels.min(db.len());
        let db = &mut db[..channels];
        for (b, db) in db.chunks_mut(BLOCK).enumerate() {
            // Per channel, 16 lanes of f64 that each plane's f32 lanes are
            // added to (a reduction across lanes per plane was most of the
            // time of 8 × 8 maps).
            let mut sums = [[0.0f64; 16]; BLOCK];
            for n in 0..batch {
                let first = (n * out_channels + b * BLOCK) * out_plane;
                for (sum, plane) in sums.iter_mut().zip(dy[first..].chunks_exact(out_plane).take(db.len())) {
                    for (s, l) in sum.iter_mut().zip(plane_lanes(plane)) {
                        *s += f64::from(l);
                    }
                }
            }
            for (d, sum) in db.iter_mut().zip(&sums) {
                let mut total = 0.0;
                for s in sum {
                    total += s;
                }
                *d += total as f32;
            }
        }
    }
}

/// `plane`'s floats summed into 16 lanes, `plane[i]` into lane `i mod 16`.
#[inline(always)]
fn plane_lanes(plane: &[f32]) -> [f32; 16] {
    let mut lanes = [0.0f32; 16];
    let chunks = plane.chunks_exact(16);
    for (l, v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l = *v;
    }
    for chunk in chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::act::Activation;
    use crate::kernels::epilogue::{EpilogueStep, Residual};
    use crate::kernels::simd::Level;
    use crate::Rng;

    fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    /// The definition, in f64: every output position sums its kernel taps
    /// over the group's input channels, skipping taps in the padding; a
    /// fused pool is the max of each window of those outputs.
    fn reference(x: &[f32], batch: usize, g: &ConvGeometry, w: &[f32], e: &Epilogue) -> Vec<f64> {
        let y = unpooled_reference(x, batch, g, w, e);
        let (p, oh, ow) = (g.pool, g.out_height(), g.out_width());
        let (ph, pw) = (oh / p, ow / p);
        let mut pooled = vec![f64::NEG_INFINITY; batch * g.out_channels * ph * pw];
        for (at, m) in pooled.iter_mut().enumerate() {
            let (plane, r, q) = (at / (ph * pw), at / pw % ph, at % pw);
            for (i, j) in (0..p).flat_map(|i| (0..p).map(move |j| (i, j))) {
                *m = m.max(y[(plane * oh + r * p + i) * ow + q * p + j]);
            }
        }
        pooled
    }

    fn unpooled_reference(x: &[f32], batch: usize, g: &ConvGeometry, w: &[f32], e: &Epilogue) -> Vec<f64> {
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
                        let at = ((n * g.out_channels + o) * oh + r) * ow + q;
                        let step = |s: f64, step: &EpilogueStep| match *step {
                            EpilogueStep::Affine { scale, shift } => s * scale[o] as f64 + shift[o] as f64,
                            EpilogueStep::Act(Activation::Tanh) => s.tanh(),
                            EpilogueStep::Act(act) => act.apply(s as f32, o) as f64,
                        };
                        s = e.steps.iter().fold(s, step);
                        if let Some(residual) = &e.residual {
                            s = residual.then.iter().fold(s + residual.values[at] as f64, step);
                        }
                        y[at] = s;
                    }
                }
            }
        }
        y
    }

    fn check(g: ConvGeometry, with_epilogue: bool) {
        check_tail(g, if with_epilogue { Tail::AffinePrelu } else { Tail::Plain });
    }

    /// What follows the product in a checked conv.
    #[derive(Clone, Copy, PartialEq)]
    enum Tail {
        Plain,
        /// Bias, a folded batch norm and a per-channel PReLU: the form the
        /// kernels apply on registers.
        AffinePrelu,
        /// Bias and tanh: a second pass over the outputs.
        Tanh,
        /// Bias and ReLU (a batch norm folded into the weights): finished
        /// on the registers.
        BiasRelu,
        /// Bias, batch norm and PReLU, then a residual added and ReLU.
        Residual,
        /// Bias, then a residual added and ReLU (a batch norm folded into
        /// the weights): added on the registers.
        BiasResidualRelu,
        /// Bias, then a residual added, nothing after.
        BiasResidual,
    }

    fn check_tail(g: ConvGeometry, tail: Tail) {
        check_tail_of(g, tail, &|x, batch, g, w, epilogue, y, team| {
            let mut scratch = vec![f32::NAN; g.scratch_len(team.threads())];
            conv2d(x, batch, g, w, epilogue, y, &mut scratch, team);
        });
    }

    /// A conv's forward as [`conv2d`] takes it (the scratch its own).
    type Forward = dyn Fn(&[f32], usize, &ConvGeometry, &[f32], &Epilogue, &mut [f32], &crate::Team);

    /// [`check_tail`] of the forward `forward`.
    fn check_tail_of(g: ConvGeometry, tail: Tail, forward: &Forward) {
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
        let tanh = [EpilogueStep::Act(Activation::Tanh)];
        let relu = [EpilogueStep::Act(Activation::Relu)];
        let residual = random(&mut rng, 5 * g.out_channels * g.out_height() * g.out_width());
        let mut epilogue = match tail {
            Tail::Plain => Epilogue::NONE,
            Tail::AffinePrelu => Epilogue {
                bias: Some(&bias),
                steps: &steps,
                residual: None,
            },
            Tail::Tanh => Epilogue {
                bias: Some(&bias),
                steps: &tanh,
                residual: None,
            },
            Tail::BiasRelu => Epilogue {
                bias: Some(&bias),
                steps: &relu,
                residual: None,
            },
            Tail::Residual => Epilogue {
                bias: Some(&bias),
                steps: &steps,
                residual: None,
            },
            Tail::BiasResidualRelu | Tail::BiasResidual => Epilogue {
                bias: Some(&bias),
                steps: &[],
                residual: None,
            },
        };
        let then: &[EpilogueStep] = if tail == Tail::BiasResidual { &[] } else { &relu };
        assert!(g.out_height() > 0 && g.out_width() > 0, "{g:?} has an empty output");
        // Five samples: a pointwise conv on an 8 × 8 map runs units of
        // three (`Direct::span`), here a whole one and a short one.
        for batch in [1, 5] {
            let x = random(&mut rng, batch * g.in_channels * g.height * g.width);
            if matches!(tail, Tail::Residual | Tail::BiasResidualRelu | Tail::BiasResidual) {
                let values = &residual[..batch * g.out_channels * g.out_height() * g.out_width()];
                epilogue.residual = Some(Residual { values, then });
            }
            let want = reference(&x, batch, &g, &w, &epilogue);
            for threads in [1, 2] {
                // A guard after y: a kernel's store past its last plane
                // (a masked store's lanes past the end) lands there.
                const GUARD: usize = 64;
                let mut y_and_guard = vec![f32::NAN; want.len() + GUARD];
                let team = crate::Team::new(threads).unwrap();
                forward(&x, batch, &g, &w, &epilogue, &mut y_and_guard[..want.len()], &team);
                let (y, guard) = y_and_guard.split_at(want.len());
                assert!(guard.iter().all(|v| v.is_nan()), "{g:?} batch {batch}: a store past y");
                // Rounding errors of f32 sums grow as √depth, like a random walk.
                let depth_scale = (g.col_rows() as f64 / 64.0).sqrt().max(1.0);
                for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * want.abs().max(1.0) * depth_scale;
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
            pool: 1,
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

    /// Outputs whose rows are whole vectors (16 and 32 wide) and channels
    /// whole strips: the tiles store straight into y and take the
    /// epilogue in their registers, plain and depthwise, and (64 input
    /// channels of 3 × 3: two blocks of depth) only once the last block
    /// has added its part.
    #[test]
    fn tiles_stored_straight_into_the_output() {
        for (width, groups, in_channels) in [(16, 1, 5), (32, 1, 5), (16, 1, 64), (16, 16, 16), (32, 24, 24)] {
            let channels = if groups == 1 { 24 } else { groups };
            let g = ConvGeometry {
                in_channels,
                height: 3,
                width,
                out_channels: channels,
                kernel: 3,
                stride: 1,
                dilation: 1,
                groups,
                pads: [1, 1, 1, 1],
                pool: 1,
            };
            for e in [false, true] {
                check(g, e);
            }
        }
    }

    /// Maps whose padded planes (and a unit's tile positions) take more
    /// than one chunk of lane masks to copy in and out.
    #[test]
    fn large_maps() {
        for e in [false, true] {
            check(
                ConvGeometry {
                    pads: [1, 2, 1, 0],
                    ..geometry(2, 50, 3, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    pads: [1, 1, 1, 1],
                    ..geometry(1, 47, 1, 3)
                },
                e,
            );
            // Phase rows of more than one vector, at stride 2 and 3.
            for (stride, pads) in [(2, [1, 0, 1, 1]), (2, [0, 3, 2, 0]), (3, [2, 1, 0, 2])] {
                check(
                    ConvGeometry {
                        stride,
                        pads,
                        ..geometry(2, 50, 3, 3)
                    },
                    e,
                );
            }
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

    /// Small maps with channels in 32s and 64s (AVX-512 puts channels in
    /// its vectors there), output positions not a multiple of a tile.
    /// A residual added after the epilogue, then ReLU, on every way a
    /// conv's outputs leave its tiles: stored straight into the output
    /// (rows of whole vectors, channels in vectors), copied out of the
    /// tile buffer (rows that are not), pointwise, strided, grouped,
    /// depthwise.
    #[test]
    fn residual_after_the_epilogue() {
        let geometries = [
            ConvGeometry {
                height: 16,
                width: 16,
                pads: [1; 4],
                ..geometry(8, 16, 16, 3)
            },
            ConvGeometry {
                pads: [1; 4],
                ..geometry(5, 6, 64, 3)
            },
            ConvGeometry {
                pads: [1; 4],
                ..geometry(4, 7, 12, 3)
            },
            ConvGeometry {
                height: 8,
                width: 8,
                ..geometry(64, 8, 128, 1)
            },
            ConvGeometry {
                stride: 2,
                pads: [0, 0, 1, 1],
                ..geometry(6, 9, 10, 3)
            },
            ConvGeometry {
                groups: 2,
                pads: [1; 4],
                ..geometry(4, 6, 6, 3)
            },
            ConvGeometry {
                groups: 6,
                pads: [1; 4],
                ..geometry(6, 8, 6, 3)
            },
        ];
        for g in geometries {
            for tail in [Tail::Residual, Tail::BiasResidualRelu, Tail::BiasResidual] {
                check_tail(g, tail);
            }
        }
    }

    /// Bias and ReLU, which the tiles apply on their registers: pointwise
    /// (in spans of samples and not), 3 × 3 at stride 1 and 2, strips of 8
    /// and of 12 channels, rows of whole vectors and not, channels in
    /// vectors.
    #[test]
    fn bias_and_relu_on_the_registers() {
        // (in, size, out, kernel, stride, pads) on square maps; the last
        // two put channels in the vectors (strips of 64 and of 32).
        let shapes = [
            (64, 8, 128, 1, 1, [0; 4]),
            (32, 16, 64, 1, 1, [0; 4]),
            (8, 16, 16, 3, 1, [1; 4]),
            (5, 16, 36, 3, 1, [1; 4]),
            (3, 32, 32, 3, 2, [0, 0, 1, 1]),
            (16, 8, 128, 3, 1, [1; 4]),
            (8, 6, 32, 3, 1, [1; 4]),
        ];
        let geometries = shapes.map(|(c, size, o, k, stride, pads)| ConvGeometry {
            width: size,
            stride,
            pads,
            ..geometry(c, size, o, k)
        });
        // And one map that is not square (rows not of whole vectors).
        let geometries = geometries.into_iter().chain([ConvGeometry {
            pads: [1; 4],
            ..geometry(4, 7, 12, 3)
        }]);
        for g in geometries {
            for tail in [Tail::BiasRelu, Tail::BiasResidualRelu, Tail::BiasResidual] {
                check_tail(g, tail);
            }
        }
    }

    /// Winograd's F(2 × 2, 3 × 3), run directly whatever the channels
    /// (where the CPU has AVX-512): maps of odd sizes (a last tile half
    /// outside), of one pixel, of several blocks of tile rows (14 × 14:
    /// 6 + 1) and of one block (8 × 8: at batch 1, fewer units than
    /// threads), padding none, one, two, and SAME_UPPER's odd one, rows of
    /// 1–4, 7, 8 and 12 tiles (two rows of tiles a vector up to 4 and at
    /// 8, an odd row last), a sample's one block in two at batch 1 on two
    /// threads, channels not a multiple of a vector, a
    /// residual, a folded norm with PReLU, and 24 random small geometries;
    /// and through [`conv2d`], where it applies, with a fused pool (after
    /// the conv, a sample at a time).
    #[test]
    fn winograd_tiles_against_the_definition() {
        if Level::detect() != Level::Avx512 {
            return;
        }
        let winograd: &Forward = &|x, batch, g, w, epilogue, y, team| {
            let plan = winograd::Plan::new(g);
            let mut packed = vec![0.0; plan.packed_len()];
            plan.pack(w, &mut packed);
            let mut scratch = vec![f32::NAN; plan.scratch_len(team.threads())];
            winograd::forward(x, batch, &plan, &packed, epilogue, y, &mut scratch, team);
        };
        let map = |c: usize, (h, w): (usize, usize), o: usize, pads: [usize; 4]| ConvGeometry {
            height: h,
            width: w,
            pads,
            ..geometry(c, h, o, 3)
        };
        let cases = [
            map(16, (8, 8), 16, [1; 4]),
            map(20, (5, 7), 24, [1; 4]),
            map(33, (3, 4), 17, [0; 4]),
            map(16, (1, 1), 16, [1; 4]),
            map(17, (5, 3), 40, [2, 1, 2, 1]),
            map(16, (4, 4), 20, [0, 0, 1, 1]),
            map(24, (3, 16), 16, [1; 4]),
            map(16, (14, 14), 16, [1; 4]),
            map(16, (2, 24), 32, [1; 4]),
            // 12 tiles a sample, four samples a unit (`Plan::samples`): at
            // batch 5 a last unit of one, 12 positions, not whole vectors.
            map(16, (8, 6), 24, [1; 4]),
            // One block a sample, shared at batch 1 on two threads as a
            // block of rows for each (`Plan::shared`): 4 + 4 tile rows,
            // and 5 + 4.
            map(16, (16, 16), 16, [1; 4]),
            map(16, (18, 20), 24, [1; 4]),
        ];
        for g in &cases[10..] {
            let plan = winograd::Plan::new(g);
            assert!(
                plan.blocks() == 1 && plan.shared(1, 2).is_some_and(|p| p.blocks() == 2),
                "{g:?}"
            );
        }
        // 8 × 8: 16 tiles a sample, three samples a unit.
        assert_eq!(winograd::Plan::new(&cases[0]).samples(), 3);
        assert_eq!(winograd::Plan::new(&cases[9]).samples(), 4);
        for g in cases {
            // The epilogue on the outputs' way out (a residual: where its
            // values are read), or after them (tanh).
            for tail in [Tail::Plain, Tail::Residual, Tail::AffinePrelu, Tail::Tanh] {
                check_tail_of(g, tail, winograd);
            }
        }
        // Random small geometries: maps 1–12 a side, each pad 0–2, channels
        // 1–20 in and out.
        let mut rng = Rng::new(17, 3);
        let mut draw = |n: usize| (rng.uniform() * n as f32) as usize % n;
        for _ in 0..24 {
            let (h, w, cin, cout) = (1 + draw(12), 1 + draw(12), 1 + draw(20), 1 + draw(20));
            let pads = [draw(3), draw(3), draw(3), draw(3)];
            let g = ConvGeometry {
                out_channels: cout,
                ..map(cin, (h, w), cout, pads)
            };
            if g.out_height() > 0 && g.out_width() > 0 {
                check_tail_of(g, Tail::Residual, winograd);
            }
        }
        // Several blocks of tile rows: a map whose `V` and `M` outgrow a block.
        let blocks = map(128, (14, 14), 128, [1; 4]);
        assert!(winograd::Plan::new(&blocks).blocks() > 1);
        check_tail_of(blocks, Tail::BiasResidualRelu, winograd);
        // Where it applies (128 → 128 on 8 × 8), through conv2d, pooled.
        let wide = map(128, (8, 8), 128, [1; 4]);
        assert!(winograd::applies(&wide) && !winograd::applies(&map(64, (8, 8), 128, [1; 4])));
        check_tail(ConvGeometry { pool: 2, ..wide }, Tail::BiasRelu);
    }

    /// Pointwise convs run on each plane as one row: maps of whole
    /// vectors (8 × 8, 16 × 4) and not (7 × 7), with tiles of positions
    /// ending in one vector, several, or none.
    #[test]
    fn pointwise_planes_as_one_row() {
        for (size, width, channels, out) in [(8, 8, 64, 128), (7, 7, 32, 64), (16, 4, 24, 40), (8, 8, 128, 24)] {
            for e in [false, true] {
                check(
                    ConvGeometry {
                        height: size,
                        width,
                        ..geometry(channels, size, out, 1)
                    },
                    e,
                );
            }
        }
    }

    /// 3 × 3 convs at stride 1 whose tiles skip the kernel rows that read
    /// only padding: square maps of one, two and four vectors a row (one
    /// a row: the top and bottom rows are tiles of their own), 64 output
    /// channels on 32 × 32 so that units are blocks of rows (a block's
    /// first row is not the map's), rows narrower than a vector (tiles
    /// across rows), padding of two rows (a whole kernel row and more
    /// in it) and of none at the top, and maps of one or two rows (one
    /// of whole vectors: only the middle kernel row reads it).
    #[test]
    fn padding_rows_skipped() {
        let square = |c: usize, size: usize, o: usize, pads: [usize; 4]| ConvGeometry {
            width: size,
            pads,
            ..geometry(c, size, o, 3)
        };
        let cases = [
            square(3, 8, 8, [1; 4]),
            square(2, 16, 4, [1; 4]),
            square(2, 32, 64, [1; 4]),
            square(3, 7, 8, [1; 4]),
            square(2, 10, 4, [2, 1, 2, 1]),
            square(2, 8, 4, [0, 1, 2, 1]),
            square(2, 1, 4, [1; 4]),
            square(2, 2, 8, [2; 4]),
            // One row of whole vectors: the middle kernel row alone.
            ConvGeometry {
                height: 1,
                width: 16,
                pads: [1; 4],
                ..geometry(3, 1, 4, 3)
            },
        ];
        for g in cases {
            for tail in [
                Tail::Plain,
                Tail::BiasRelu,
                Tail::Residual,
                Tail::BiasResidualRelu,
                Tail::BiasResidual,
            ] {
                check_tail(g, tail);
            }
        }
    }

    /// 3 × 3 convs padded one column either side on rows of whole
    /// vectors, which AVX-512 reads in place, taking zeros for the padding
    /// through masked loads (`Direct::edges`): rows of one to four vectors
    /// (a vector at both edges, at one, at neither), one to seventeen rows
    /// with the top padded by 0, 1 or 2, depth in one block and in two
    /// (130 channels: the second block adds onto the first's sums), and
    /// the epilogues stored on the registers and after them. A mask that
    /// let a lane read its neighbour row's pixel, or the middle column's
    /// plain load on a map padded otherwise, fails here.
    #[test]
    fn padded_source_read_in_place() {
        let cases = [
            (3, 16, 1, [1, 1, 1, 1], 8),
            (5, 32, 5, [1, 1, 1, 1], 24),
            (2, 48, 3, [0, 1, 2, 1], 8),
            (4, 64, 2, [2, 1, 0, 1], 16),
            (130, 16, 4, [1, 1, 1, 1], 8),
            (9, 32, 17, [1, 1, 1, 1], 8),
            (3, 16, 6, [1, 1, 1, 1], 12),
        ];
        for (c, width, height, pads, o) in cases {
            let g = ConvGeometry {
                height,
                width,
                pads,
                ..geometry(c, height, o, 3)
            };
            for tail in [Tail::Plain, Tail::AffinePrelu, Tail::BiasRelu, Tail::BiasResidualRelu] {
                check_tail(g, tail);
            }
        }
    }

    /// Positions tiles over more channels than a block of depth holds
    /// (`DEPTH_BLOCK`): the tiles' sums go on from one block to the next,
    /// stored straight into y (rows of whole vectors) or into the tile
    /// buffer, and the epilogue runs once, after the last.
    #[test]
    fn positions_tiles_over_blocks_of_depth() {
        let cases = [
            (120, (16, 16), 16, 3, [1; 4]),
            (48, (12, 20), 24, 5, [2; 4]),
            (130, (9, 7), 8, 3, [0; 4]),
        ];
        for (c, (h, w), o, k, pads) in cases {
            let g = ConvGeometry {
                height: h,
                width: w,
                pads,
                ..geometry(c, h, o, k)
            };
            assert!(g.in_channels * k * k > direct::DEPTH_BLOCK, "{g:?}");
            for tail in [Tail::Plain, Tail::BiasRelu, Tail::AffinePrelu, Tail::BiasResidualRelu] {
                check_tail(g, tail);
            }
        }
    }

    /// Channels-in-vectors tiles (AVX-512, maps whose rows fill vectors
    /// badly) whose positions share a window of the kernel, the taps that
    /// read only padding skipped: 8 × 8 maps at 64 and 32 channels a strip
    /// (tiles of 6 and 12 positions), 7 × 7 (each edge's leftovers merged),
    /// uneven pads, pads wider than the kernel's reach (positions that
    /// read nothing), stride 2, dilation 2, a 5 × 5 kernel and groups.
    #[test]
    fn channels_in_vectors_skip_padding_taps() {
        let map = |c: usize, (h, w): (usize, usize), o: usize, k: usize, pads: [usize; 4]| ConvGeometry {
            height: h,
            width: w,
            pads,
            ..geometry(c, h, o, k)
        };
        let cases = [
            map(9, (8, 8), 64, 3, [1; 4]),
            map(9, (8, 8), 32, 3, [1; 4]),
            map(5, (7, 7), 64, 3, [1; 4]),
            map(4, (6, 9), 64, 3, [2, 1, 0, 2]),
            map(3, (4, 4), 32, 3, [3, 3, 3, 3]),
            ConvGeometry {
                stride: 2,
                ..map(6, (16, 16), 64, 3, [0, 0, 1, 1])
            },
            ConvGeometry {
                dilation: 2,
                ..map(3, (8, 8), 32, 3, [2; 4])
            },
            map(3, (6, 6), 64, 5, [2; 4]),
            ConvGeometry {
                groups: 2,
                ..map(6, (8, 8), 128, 3, [1; 4])
            },
        ];
        for g in cases {
            if Level::detect() == Level::Avx512 {
                assert!(g.shape().across(), "{g:?} does not put channels in vectors");
            }
            // And the residual tails, which these tiles leave to a pass
            // over the unit's outputs (with ReLU after the sum or not).
            for tail in [
                Tail::Plain,
                Tail::BiasRelu,
                Tail::AffinePrelu,
                Tail::BiasResidualRelu,
                Tail::BiasResidual,
                Tail::Residual,
            ] {
                check_tail(g, tail);
            }
        }
    }

    #[test]
    fn channels_in_vectors_on_small_maps() {
        for e in [false, true] {
            check(
                ConvGeometry {
                    pads: [1; 4],
                    ..geometry(5, 6, 64, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    stride: 2,
                    pads: [0, 0, 1, 1],
                    ..geometry(7, 9, 32, 3)
                },
                e,
            );
            check(
                ConvGeometry {
                    groups: 2,
                    pads: [1, 2, 1, 0],
                    ..geometry(4, 5, 128, 3)
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
            // Depthwise with channel multipliers of 4 and 8 (strips of 12
            // and 8 channels, several source channels to a strip or one).
            for out in [12, 24] {
                check(
                    ConvGeometry {
                        groups: 3,
                        pads: [1, 2, 2, 1],
                        ..geometry(3, 6, out, 4)
                    },
                    e,
                );
            }
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

    /// Depthwise 3 × 3 convs at stride 1 with a pixel of padding on rows of
    /// whole vectors (AVX-512's rows-of-vectors path): one, two and three
    /// vectors a row, heights that make whole blocks of eight rows, short
    /// ones and one row; on rows of 8, every height up to 8 (the row-pairs
    /// path: odd heights end on a half vector); and at stride 2 on rows of
    /// a vector (the halving path); every tail (on the registers, after
    /// them, and a residual).
    #[test]
    fn depthwise_rows_of_vectors() {
        let pairs = (1..=8).map(|height| ((1 + height % 3, height, 8), 1, [1; 4]));
        let one = [(3, 16, 16), (2, 9, 32), (1, 1, 48), (5, 2, 16), (2, 17, 16), (1, 7, 32)].map(|m| (m, 1, [1; 4]));
        // And at stride 2 on rows of 16 (SAME: a pixel at the bottom and
        // right): blocks of every number of output rows up to eight, and
        // maps of several blocks, the last short.
        let two = (2..=16)
            .step_by(2)
            .map(|height| (1 + height % 3, height, 16))
            .chain([(2, 20, 16), (1, 34, 16)])
            .map(|m| (m, 2, [0, 0, 1, 1]));
        for ((channels, height, width), stride, pads) in one.into_iter().chain(pairs).chain(two) {
            let g = ConvGeometry {
                in_channels: channels,
                height,
                width,
                out_channels: channels,
                kernel: 3,
                stride,
                dilation: 1,
                groups: channels,
                pads,
                pool: 1,
            };
            for tail in [
                Tail::Plain,
                Tail::AffinePrelu,
                Tail::Tanh,
                Tail::BiasRelu,
                Tail::Residual,
                Tail::BiasResidualRelu,
            ] {
                check_tail(g, tail);
            }
        }
    }

    /// Depthwise convs (one input and one output channel per group), which
    /// AVX-512 reads in place with masked loads: maps whose rows are as
    /// wide as the output's (vectors run on into the next rows) or not,
    /// wider and narrower than a vector, stride 1 and 2, dilation, SAME
    /// padding with the odd pixel at the bottom/right, channel counts that
    /// leave a remainder of the kernel's channels per step; and which AVX2
    /// reads through a copy of a band of rows (a 40 × 300 map takes several
    /// bands).
    #[test]
    fn depthwise_in_place() {
        let mut checked = 0;
        for (channels, height, width) in [
            (5, 16, 16),
            (16, 8, 8),
            (3, 7, 9),
            (2, 17, 17),
            (1, 3, 35),
            (1, 40, 300),
        ] {
            for (kernel, stride, dilation) in [(1, 1, 1), (3, 1, 1), (3, 2, 1), (3, 1, 2), (5, 2, 1), (3, 3, 1)] {
                let span = dilation * (kernel - 1) + 1;
                let same = |size: usize| (size.div_ceil(stride) - 1) * stride + span - size.min(span);
                let (th, tw) = (same(height), same(width));
                for pads in [[0; 4], [1; 4], [th / 2, tw / 2, th - th / 2, tw - tw / 2]] {
                    let g = ConvGeometry {
                        in_channels: channels,
                        height,
                        width,
                        out_channels: channels,
                        kernel,
                        stride,
                        dilation,
                        groups: channels,
                        pads,
                        pool: 1,
                    };
                    if g.out_height() == 0 || g.out_width() == 0 {
                        continue;
                    }
                    for tail in [Tail::Plain, Tail::AffinePrelu, Tail::Tanh, Tail::Residual] {
                        check_tail(g, tail);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 95, "{checked} geometries");
    }

    /// A max pool fused after the epilogue, against the definition's
    /// outputs pooled: pooled unit by unit from tiles stored direct (a
    /// 3 × 3 conv read in place; a pointwise one, in spans of samples and
    /// not), from tiles on the phase width (28 and 7 wide, stride 2), on
    /// blocks of rows (26 rows in two blocks, rounded to the window), with
    /// outputs the pool's floor leaves out, and a sample at a time after
    /// the conv where the kernel does not pool its units (depthwise,
    /// channels in vectors, a residual).
    #[test]
    fn fused_max_pool() {
        let square = |in_channels, size, out_channels, kernel, pads| ConvGeometry {
            height: size,
            width: size,
            pads,
            ..geometry(in_channels, size, out_channels, kernel)
        };
        let cases = [
            (square(3, 32, 32, 3, [1; 4]), 2),
            (square(32, 16, 32, 3, [1; 4]), 2),
            (square(16, 32, 64, 3, [1; 4]), 2),
            (square(16, 26, 64, 3, [1; 4]), 2),
            (square(16, 26, 64, 3, [1; 4]), 3),
            (square(1, 28, 16, 3, [1; 4]), 2),
            (square(4, 7, 12, 3, [1; 4]), 2),
            (square(5, 9, 8, 3, [0; 4]), 3),
            (
                ConvGeometry {
                    stride: 2,
                    ..square(8, 17, 16, 3, [1; 4])
                },
                2,
            ),
            (square(16, 8, 32, 1, [0; 4]), 2),
            (square(16, 16, 32, 1, [0; 4]), 2),
            (
                ConvGeometry {
                    groups: 16,
                    ..square(16, 16, 16, 3, [1; 4])
                },
                2,
            ),
            (square(64, 8, 64, 3, [1; 4]), 2),
        ];
        for (g, pool) in cases {
            let g = ConvGeometry { pool, ..g };
            // The larger maps with an epilogue applied on the tiles' way
            // out and one applied before the pool (fewer tails: unoptimised,
            // the definition is slow).
            let tails = match g.out_channels * g.height * g.width * g.col_rows() > 1 << 21 {
                true => &[Tail::Tanh, Tail::BiasRelu][..],
                false => &[Tail::Plain, Tail::AffinePrelu, Tail::Tanh, Tail::BiasRelu],
            };
            for tail in tails {
                check_tail(g, *tail);
            }
        }
        for (g, pool) in [cases[1], cases[4], cases[10]] {
            check_tail(ConvGeometry { pool, ..g }, Tail::Residual);
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
                    // Plain, two groups with two outputs each, depthwise.
                    for (groups, out_channels) in [(1, 2), (2, 4), (2, 2)] {
                        let mut g = ConvGeometry {
                            in_channels: 2,
                            height,
                            width,
                            out_channels,
                            kernel,
                            stride,
                            dilation,
                            groups,
                            pads,
                            pool: 1,
                        };
                        if g.out_height() == 0 || g.out_width() == 0 {
                            continue;
                        }
                        // A third of the sweep pools by 2, a third by 3,
                        // where the outputs have a window.
                        let pool = 1 + checked % 3;
                        if g.out_height().min(g.out_width()) >= pool {
                            g.pool = pool;
                        }
                        let w = random(&mut rng, g.out_channels * g.col_rows());
                        let bias = random(&mut rng, g.out_channels);
                        let epilogue = Epilogue {
                            bias: Some(&bias),
                            steps: &[],
                            residual: None,
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
                pool: 1,
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

    /// A row placed in a wider or narrower one (padding, cropping, the
    /// tile copy-out) is the definition, element by element, on every
    /// path the CPU has, for vector tails and masks at every offset.
    /// The bias gradient by blocks of 64 channels and 16 lanes: more
    /// channels than a block, planes with and without a tail of lanes.
    #[test]
    fn bias_gradient_sums_each_channel() {
        let mut rng = Rng::new(21, 0);
        for (batch, channels, plane) in [(1, 1, 1), (3, 70, 37), (2, 130, 64), (4, 5, 15)] {
            let dy = random(&mut rng, batch * channels * plane);
            let mut db = vec![0.25; channels];
            at_level!(bias_grad(&dy, batch, channels, plane, &mut db));
            for (o, d) in db.iter().enumerate() {
                let want: f64 = 0.25
                    + (0..batch)
                        .flat_map(|n| &dy[(n * channels + o) * plane..][..plane])
                        .map(|v| f64::from(*v))
                        .sum::<f64>();
                assert!(
                    (f64::from(*d) - want).abs() <= 1e-5,
                    "channel {o} of {channels}: {d} vs {want}"
                );
            }
        }
    }

    #[test]
    fn rows_are_placed_by_definition() {
        let src: Vec<f32> = (1..=40).map(|v| v as f32).collect();
        for m in [0, 1, 5, 16, 17, 33, 40] {
            for n in [0, 1, 3, 16, 18, 34, 47] {
                for offset in -20..20isize {
                    let want: Vec<f32> = (0..n as isize)
                        .map(|j| {
                            usize::try_from(j - offset)
                                .ok()
                                .filter(|&i| i < m)
                                .map_or(0.0, |i| src[i])
                        })
                        .collect();
                    let mut got = vec![f32::NAN; n];
                    direct::place_row(&mut got, &src[..m], offset);
                    assert_eq!(got, want, "portable: {m} into {n} at {offset}");
                    // Two rows at once, through the CPU's path.
                    let two: Vec<f32> = src[..m].iter().chain(&src[..m]).copied().collect();
                    let mut got = vec![f32::NAN; 2 * n];
                    direct::place_rows(&mut got, n, &two, m, offset);
                    if n > 0 && m > 0 {
                        assert_eq!(got, [want.clone(), want].concat(), "vectors: {m} into {n} at {offset}");
                    }
                }
            }
        }
    }
}
