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
#[cfg(target_arch = "x86_64")]
use crate::kernels::simd::Level;
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
            .map(|r| Direct::scratch_per_thread(&r.grid, r.shape, groups, in_group, 1))
            .max()
            .unwrap_or(0);
        packed + self.phase_outputs_len(threads).next_multiple_of(LINE) + threads.max(1) * per_thread
    }

    /// Floats of the phase outputs held at once: the largest phase's for
    /// the samples run at once, in [`ConvGeometry::phase_slots`] slots.
    fn phase_outputs_len(&self, threads: usize) -> usize {
        let phase = self.height.div_ceil(self.stride) * self.width.div_ceil(self.stride);
        self.phase_slots() * SAMPLES_PER_THREAD * threads.max(1) * self.in_channels * phase
    }

    /// Phases whose outputs are held at once: at stride 2 a row's two
    /// ([`place_pair`]), else one.
    fn phase_slots(&self) -> usize {
        if self.stride == 2 {
            2
        } else {
            1
        }
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
        let offset = move |group: usize, o: usize, tap: usize| {
            let (ky, kx) = (ry + s * (kh - 1 - tap / kw), rx + s * (kw - 1 - tap % kw));
            ((group * out_group + o) * in_group * k + ky) * k + kx
        };
        debug_assert_eq!(r.grid.depth(), out_group * kh * kw);
        direct::pack(
            r.shape,
            groups,
            in_group,
            (out_group, kh * kw),
            (w, k * k, offset),
            &mut packs[at..at + r.packed_len],
        );
        at += r.packed_len.next_multiple_of(LINE);
    }
    let at_once = SAMPLES_PER_THREAD * team.threads();
    let pairs = g.phase_slots() == 2;
    let slot_len = g.phase_outputs_len(team.threads()) / g.phase_slots();
    let (left_slot, right_slot) = outputs.split_at_mut(slot_len);
    for first in (0..batch).step_by(at_once) {
        let n = at_once.min(batch - first);
        let dy = &dy[first * y_len..(first + n) * y_len];
        let dx = &mut dx[first * x_len..(first + n) * x_len];
        let mut at = 0;
        // At stride 2, a row's left phase waits for its right one.
        let mut left = None;
        for phase in g.phases() {
            let slot: &mut [f32] = if pairs && phase.px == 1 { right_slot } else { left_slot };
            let grid = phase.taps.map(|r| {
                let packed = &packs[at..at + r.packed_len];
                at += r.packed_len.next_multiple_of(LINE);
                let out = &mut slot[..n * g.in_channels * r.grid.out_h * r.grid.out_w];
                Direct::new(r.grid, r.shape, groups, in_group, packed, &Epilogue::NONE).run(dy, n, out, work, team);
                r.grid
            });
            if !pairs {
                place(
                    g,
                    (phase.py, phase.px),
                    grid.map(|grid| (&*left_slot, grid)),
                    n,
                    dx,
                    team,
                );
            } else if phase.px == 0 {
                left = Some(grid);
            } else {
                let left = left.take().flatten().map(|grid| (&*left_slot, grid));
                place_pair(g, phase.py, [left, grid.map(|grid| (&*right_slot, grid))], n, dx, team);
            }
        }
    }
}

/// At stride 2, puts a row of phases (`py`, `px` 0 and 1; each its outputs
/// and grid, or zeros where no tap reaches it) into `dx`: with AVX-512 the
/// two interleaved in registers and each row of `dx` stored whole, where
/// the phases a float at a time were an eighth of the 64 → 128 stride-2
/// layer's input gradient (and masked stores of every other lane slower
/// still); otherwise a phase at a time.
fn place_pair(g: &ConvGeometry, py: usize, phases: [Option<(&[f32], Grid)>; 2], n: usize, dx: &mut [f32], team: &Team) {
    #[cfg(target_arch = "x86_64")]
    if Level::detect() == Level::Avx512 {
        let rows = g.height.saturating_sub(py).div_ceil(2);
        each_plane(g, n, dx, team, &|p, plane| {
            let from =
                phases.map(|phase| phase.map(|(outputs, grid)| (&outputs[p * grid.out_h * grid.out_w..], grid.out_w)));
            // SAFETY: the CPU has AVX-512; each phase's plane holds `rows`
            // rows of its columns of `dx` (`w.div_ceil(2)` and `w / 2`).
            unsafe { interleave_rows_avx512(plane, (py, rows, g.width), from) };
        });
        return;
    }
    for (px, phase) in phases.into_iter().enumerate() {
        place(g, (py, px), phase, n, dx, team);
    }
}

/// Rows `py + 2a` (`a < rows`) of a `w`-wide plane of `dx` from row `a`
/// of each phase's plane (its outputs and row length; zeros for a phase
/// that is `None`): `row[2j] = even[j]`, `row[2j + 1] = odd[j]`, sixteen
/// at a time (two loads, a two-source permute, a store). A plane a call:
/// a row a call cost as much again in calls as in the moves (an 8-wide
/// phase row is a single permute).
///
/// # Safety
/// The CPU has AVX-512F; `plane` holds `py + 2·(rows − 1) + 1` rows of
/// `w`; each phase holds `rows` rows of its row length, `w.div_ceil(2)`
/// for the even phase and `w / 2` for the odd.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave_rows_avx512(
    plane: &mut [f32],
    (py, rows, w): (usize, usize, usize),
    [even, odd]: [Option<(&[f32], usize)>; 2],
) {
    use crate::kernels::simd::low_lanes;
    use std::arch::x86_64::{
        _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps, _mm512_setzero_ps,
    };
    debug_assert!(even.is_none_or(|(_, len)| len == w.div_ceil(2)) && odd.is_none_or(|(_, len)| len == w / 2));
    debug_assert!(rows == 0 || plane.len() >= (py + 2 * (rows - 1) + 1) * w);
    // Lane 2i from the first source's lane i, lane 2i + 1 from the second's.
    const ZIP: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    let zip = _mm512_loadu_si512(ZIP.as_ptr().cast());
    let load = |phase: Option<(&[f32], usize)>, a: usize, j: usize| match phase {
        Some((from, len)) => {
            let row = &from[a * len..][..len];
            _mm512_maskz_loadu_ps(low_lanes(len.saturating_sub(j).min(8)), row.as_ptr().add(j))
        }
        None => _mm512_setzero_ps(),
    };
    for a in 0..rows {
        let row = &mut plane[(py + 2 * a) * w..][..w];
        for j in (0..w.div_ceil(2)).step_by(8) {
            let v = _mm512_permutex2var_ps(load(even, a, j), zip, load(odd, a, j));
            _mm512_mask_storeu_ps(row.as_mut_ptr().add(2 * j), low_lanes(w - 2 * j), v);
        }
    }
}

/// Puts a phase's outputs (`[n, in_channels, out_h, out_w]`, or zeros
/// where no tap reaches it) at its positions of `dx`, `s` apart; the
/// samples shared among the team.
fn place(
    g: &ConvGeometry,
    (py, px): (usize, usize),
    outputs: Option<(&[f32], Grid)>,
    n: usize,
    dx: &mut [f32],
    team: &Team,
) {
    let (s, (h, w)) = (g.stride, (g.height, g.width));
    let (rows, cols) = (h.saturating_sub(py).div_ceil(s), w.saturating_sub(px).div_ceil(s));
    if rows * cols == 0 {
        // A phase past the map's edge (a map narrower than the stride).
        return;
    }
    each_plane(g, n, dx, team, &|p, plane| {
        for a in 0..rows {
            let to = plane[(py + s * a) * w + px..].iter_mut().step_by(s).take(cols);
            match outputs {
                Some((outputs, grid)) => {
                    let from = &outputs[(p * grid.out_h + a) * grid.out_w..][..cols];
                    to.zip(from).for_each(|(d, v)| *d = *v);
                }
                None => to.for_each(|d| *d = 0.0),
            }
        }
    });
}

/// `f(p, plane)` for every plane `p` of `dx`'s `n` samples, the planes
/// shared among the team.
fn each_plane(g: &ConvGeometry, n: usize, dx: &mut [f32], team: &Team, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let plane_len = g.height * g.width;
    let planes = n * g.in_channels;
    let parts = team.threads().min(planes).max(1);
    let dx = Disjoint::new(dx);
    team.run(parts, &|t| {
        let mine = split(planes, parts, t, 1);
        // SAFETY: the parts place disjoint planes.
        let dx = unsafe { dx.piece(mine.start * plane_len..mine.end * plane_len) };
        for (p, plane) in mine.zip(dx.chunks_exact_mut(plane_len)) {
            f(p, plane);
        }
    });
}
