//! The input gradient of a strided conv by phases (the sub-pixel form of
//! a transposed convolution): input position `(py + s·a, px + s·b)` is
//! reached only by the taps `ky ≡ py + top`, `kx ≡ px + left (mod s)`, so
//! each of the `s²` phases of `dx` is a stride-1 correlation of `dy` as it
//! is (not spread out with zeros) with the taps of the flipped weights
//! that reach it, a sub-kernel of up to `⌈k/s⌉` rows and columns. For a
//! 3 × 3 stride-2 conv the four phases take 2 × 2, 2 × 1, 1 × 2 and 1 × 1
//! taps: the forward's multiply-adds, where the kernel on a map spread to
//! four times its size did four times as many; a phase that no tap reaches
//! (a 1 × 1 stride-2 shortcut's three) is only zeros.
//!
//! Each phase runs the direct kernel on a few samples at a time into the
//! scratch, whose outputs are then placed `s` apart in `dx`.

use super::direct::{self, Direct, Grid, Shape};
use super::ConvGeometry;
use crate::aligned::LINE;
use crate::kernels::dense::split;
use crate::kernels::epilogue::Epilogue;
use crate::team::{Disjoint, Team};

/// Samples a phase runs on at once, per thread: enough units to share,
/// a scratch that does not grow with the batch.
const SAMPLES_PER_THREAD: usize = 4;

/// One phase of `dx`: the input positions `(py + s·a, px + s·b)`.
#[derive(Clone, Copy)]
struct Phase {
    py: usize,
    px: usize,
    /// Its correlation; none where no tap reaches it.
    taps: Option<Reached>,
}

/// A phase's correlation: the residues of the taps that reach it (`ky =
/// ry + s·j`), the grid it runs on, its tile shape, and the floats of its
/// packed weights.
#[derive(Clone, Copy)]
struct Reached {
    residues: (usize, usize),
    grid: Grid,
    shape: Shape,
    packed_len: usize,
}

impl ConvGeometry {
    /// Whether the input gradient runs by phases: a stride above 1, no
    /// dilation (a dilated tap's residue would change with the tap), and
    /// more than one input channel a group (a depthwise conv's phases are
    /// units of a channel's few positions, whose overhead cost more than
    /// the spread-out map's zeros: 2.2 ms against 1.2 on mobile_mini's
    /// stride-2 depthwise layer).
    pub(super) fn grad_input_by_phases(&self) -> bool {
        self.stride > 1 && self.dilation <= 1 && self.in_channels / self.groups.max(1) > 1
    }

    fn phases(&self) -> impl Iterator<Item = Phase> + '_ {
        let s = self.stride;
        (0..s * s).map(move |p| {
            let (py, px) = (p / s, p % s);
            // Per axis: the taps' residue, how many taps there are, how
            // far the sub-kernel's reads start before the phase's output
            // (its padding), and the phase's size.
            let axis = |at: usize, pad: usize, size: usize| {
                let (r, q) = ((at + pad) % s, (at + pad) / s);
                let taps = self.kernel.saturating_sub(r).div_ceil(s);
                let len = if at < size { (size - at).div_ceil(s) } else { 0 };
                (r, taps, taps as isize - 1 - q as isize, len)
            };
            let (ry, kh, top, out_h) = axis(py, self.pads[0], self.height);
            let (rx, kw, left, out_w) = axis(px, self.pads[1], self.width);
            let reached = kh * kw * out_h * out_w > 0;
            let grid = Grid {
                channels: self.out_channels / self.groups.max(1),
                src_h: self.out_height(),
                src_w: self.out_width(),
                spread: 1,
                top,
                left,
                kernel: [kh, kw],
                dilation: 1,
                stride: 1,
                out_h,
                out_w,
                phase_h: out_h + kh.max(1) - 1,
                phase_w: out_w + kw.max(1) - 1,
            };
            let in_group = self.in_channels / self.groups.max(1);
            let shape = Shape::pick(in_group, &grid);
            Phase {
                py,
                px,
                taps: reached.then(|| Reached {
                    residues: (ry, rx),
                    grid,
                    shape,
                    packed_len: direct::packed_len(shape, self.groups.max(1), in_group, grid.depth()),
                }),
            }
        })
    }

    /// The phases that taps reach.
    fn reached(&self) -> impl Iterator<Item = Reached> + '_ {
        self.phases().filter_map(|p| p.taps)
    }

    /// Floats of [`grad_input_by_phases`]' scratch: each phase's packed
    /// weights, the phase outputs of a few samples, and the direct
    /// kernel's scratch per thread.
    pub(super) fn phases_scratch_len(&self, threads: usize) -> usize {
        let (groups, in_group) = (self.groups.max(1), self.in_channels / self.groups.max(1));
        let packed: usize = self.reached().map(|r| r.packed_len.next_multiple_of(LINE)).sum();
        let per_thread = self
            .reached()
            .map(|r| Direct::scratch_per_thread(&r.grid, r.shape, groups, in_group))
            .max()
            .unwrap_or(0);
        packed + self.phase_outputs_len(threads).next_multiple_of(LINE) + threads.max(1) * per_thread
    }

    /// Floats of the largest phase's outputs for the samples run at once.
    fn phase_outputs_len(&self, threads: usize) -> usize {
        let phase = self.height.div_ceil(self.stride) * self.width.div_ceil(self.stride);
        SAMPLES_PER_THREAD * threads.max(1) * self.in_channels * phase
    }
}

/// [`super::conv2d_grad_input`] by phases (`g.grad_input_by_phases()`).
pub(super) fn grad_input(
    dy: &[f32],
    batch: usize,
    g: &ConvGeometry,
    w: &[f32],
    dx: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    let (groups, in_group, out_group, k) = (
        g.groups.max(1),
        g.in_channels / g.groups.max(1),
        g.out_group(),
        g.kernel,
    );
    let s = g.stride;
    let (x_len, y_len) = (
        g.in_channels * g.height * g.width,
        g.out_channels * g.out_height() * g.out_width(),
    );
    let packed_total: usize = g.reached().map(|r| r.packed_len.next_multiple_of(LINE)).sum();
    let (packs, rest) = scratch.split_at_mut(packed_total);
    let (outputs, work) = rest.split_at_mut(g.phase_outputs_len(team.threads()).next_multiple_of(LINE));
    // Every reached phase's weights, packed once, one after another:
    // output channel c of the phase's correlation, depth (o, jy, jx),
    // takes the forward's weight of o on c at the tap (ry + s·(kh − 1 −
    // jy), rx + s·(kw − 1 − jx)).
    let mut at = 0;
    for r in g.reached() {
        let ((ry, rx), [kh, kw]) = (r.residues, r.grid.kernel);
        let weight = move |group: usize, c: usize, o: usize, tap: usize| {
            let (ky, kx) = (ry + s * (kh - 1 - tap / kw), rx + s * (kw - 1 - tap % kw));
            w[(((group * out_group + o) * in_group + c) * k + ky) * k + kx]
        };
        debug_assert_eq!(r.grid.depth(), out_group * kh * kw);
        direct::pack(
            r.shape,
            groups,
            in_group,
            (out_group, kh * kw),
            weight,
            &mut packs[at..at + r.packed_len],
        );
        at += r.packed_len.next_multiple_of(LINE);
    }
    let at_once = SAMPLES_PER_THREAD * team.threads();
    for first in (0..batch).step_by(at_once) {
        let n = at_once.min(batch - first);
        let dy = &dy[first * y_len..(first + n) * y_len];
        let dx = &mut dx[first * x_len..(first + n) * x_len];
        let mut at = 0;
        for phase in g.phases() {
            let Some(r) = phase.taps else {
                place(g, phase, None, n, dx, team);
                continue;
            };
            let packed = &packs[at..at + r.packed_len];
            at += r.packed_len.next_multiple_of(LINE);
            let out = &mut outputs[..n * g.in_channels * r.grid.out_h * r.grid.out_w];
            Direct::new(r.grid, r.shape, groups, in_group, packed, &Epilogue::NONE).run(dy, n, out, work, team);
            place(g, phase, Some((&*out, r.grid)), n, dx, team);
        }
    }
}

/// Puts a phase's outputs (`[n, in_channels, out_h, out_w]`, or zeros
/// where no tap reaches it) at its positions of `dx`, `s` apart; the
/// samples shared among the team.
fn place(g: &ConvGeometry, phase: Phase, outputs: Option<(&[f32], Grid)>, n: usize, dx: &mut [f32], team: &Team) {
    let (s, (h, w)) = (g.stride, (g.height, g.width));
    let (rows, cols) = (
        h.saturating_sub(phase.py).div_ceil(s),
        w.saturating_sub(phase.px).div_ceil(s),
    );
    if rows * cols == 0 {
        // A phase past the map's edge (a map narrower than the stride).
        return;
    }
    let planes = n * g.in_channels;
    let parts = team.threads().min(planes).max(1);
    let dx = Disjoint::new(dx);
    team.run(parts, &|t| {
        let mine = split(planes, parts, t, 1);
        // SAFETY: the parts place disjoint planes.
        let dx = unsafe { dx.piece(mine.start * h * w..mine.end * h * w) };
        for (p, plane) in mine.zip(dx.chunks_exact_mut(h * w)) {
            for a in 0..rows {
                let row = &mut plane[(phase.py + s * a) * w..][..w];
                let to = row[phase.px..].iter_mut().step_by(s).take(cols);
                match outputs {
                    Some((outputs, grid)) => {
                        let from = &outputs[(p * grid.out_h + a) * grid.out_w..][..cols];
                        to.zip(from).for_each(|(d, v)| *d = *v);
                    }
                    None => to.for_each(|d| *d = 0.0),
                }
            }
        }
    });
}
