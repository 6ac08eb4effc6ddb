//! Winograd's F(2 × 2, 3 × 3) for 3 × 3 stride-1 convs (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015): each 2 × 2
//! block of outputs from the 4 × 4 block of inputs under it, as
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, 16 multiplies per input channel where the
//! direct conv has 36. Summed over the input channels, the 16 products of
//! a block are 16 matrix products, one per position ξ of the 4 × 4
//! transformed block: `M_ξ[o, t] = Σ_c U_ξ[o, c] · V_ξ[c, t]` over the
//! tiles `t`, which the direct kernel runs as a pointwise conv of 16
//! groups (`U`, the transformed weights, packed once as its weights).
//! A sample's tiles go a block of tile rows at a time: its inputs
//! transformed (`V`), the product (`M`), its outputs transformed back
//! into `y` with the epilogue, all in a thread's scratch, in L2.
//!
//! The transforms' constants are 0, ±1 and ±½, so the rounding stays
//! near the direct conv's (F(4 × 4, 3 × 3), a quarter of the
//! multiplies, has constants up to 8 and its error grows with them).

use std::ops::Range;

use super::direct::{self, lane_range, Direct, Grid, Shape};
use super::ConvGeometry;
use crate::aligned::LINE;
use crate::kernels::epilogue::Epilogue;
use crate::kernels::simd::{at_level, leveled, low_lanes, Level};
use crate::team::{Disjoint, Team};

/// Positions of a transformed block (4 × 4): the groups of the product.
const XI: usize = 16;
/// Floats of a block's `V` and `M` together at most: a block is as many
/// tile rows as fit (at least one), so that both stay in L2.
const BLOCK_CAP: usize = 192 * 1024;

/// `G`, which takes a kernel row (or column) of 3 to the 4 of a block.
const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// Whether a conv runs as Winograd: 3 × 3, stride 1, undilated, one
/// group, with enough channels in and out that the product, not the
/// transforms (whose work grows as `in + out` where the product's grows
/// as `in · out`), is most of the work: `in · out ≥ 64 · (in + out)`,
/// 128 → 128 and up. In the conv bench on a Zen 4, cifar_vgg's layers
/// at batch 1 and 64, one and two threads: 128 → 128 on 8 × 8 ran
/// 1.1–1.3 × faster than the direct kernel in every cell; 64 → 64 on 16
/// × 16 and 64 → 128 on 8 × 8 won some cells and lost others; 32 → 32
/// on 32 × 32 and 32 → 64 on 16 × 16 lost every cell (to 1.5 × slower).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    let (cin, cout) = (g.in_channels, g.out_channels);
    (g.kernel, g.stride.max(1), g.dilation.max(1), g.groups.max(1)) == (3, 1, 1, 1)
        && cin.saturating_mul(cout) >= 64 * (cin + cout)
        && g.out_height() > 0
        && g.out_width() > 0
}

/// How a conv's samples are tiled, blocked and multiplied.
pub(super) struct Plan {
    cin: usize,
    cout: usize,
    /// The source map.
    h: usize,
    w: usize,
    /// The output map.
    oh: usize,
    ow: usize,
    top: usize,
    left: usize,
    /// Tiles down and across (2 × 2 outputs each).
    tiles_h: usize,
    tiles_w: usize,
    /// Tile rows per block, and tiles (positions of the product) per block.
    block_rows: usize,
    tb: usize,
    /// The product: a pointwise conv of 16 groups on a row of `tb` positions.
    grid: Grid,
    shape: Shape,
}

impl Plan {
    pub(super) fn new(g: &ConvGeometry) -> Plan {
        let (oh, ow) = (g.out_height(), g.out_width());
        let (tiles_h, tiles_w) = (oh.div_ceil(2), ow.div_ceil(2));
        let (cin, cout) = (g.in_channels, g.out_channels);
        // Blocks whose tiles fill the product's register tiles (48
        // positions on AVX-512), where that fits; else as many rows as fit.
        let tile = match Level::detect() {
            Level::Avx512 => 96,
            _ => 16,
        };
        let fits = |rows: usize| rows == 1 || XI * (cin + cout) * rows * tiles_w <= BLOCK_CAP;
        let block_rows = (1..=tiles_h)
            .find(|&r| (r * tiles_w).is_multiple_of(tile) || r == tiles_h)
            .filter(|&r| fits(r))
            .unwrap_or_else(|| (1..=tiles_h).take_while(|&r| fits(r)).last().unwrap_or(1));
        let tb = block_rows * tiles_w;
        let product = ConvGeometry {
            in_channels: XI * cin,
            height: 1,
            width: tb,
            out_channels: XI * cout,
            kernel: 1,
            stride: 1,
            dilation: 1,
            groups: XI,
            pads: [0; 4],
            pool: 1,
        };
        let grid = Grid::forward(&product);
        Plan {
            cin,
            cout,
            h: g.height,
            w: g.width,
            oh,
            ow,
            top: g.pads[0],
            left: g.pads[1],
            tiles_h,
            tiles_w,
            block_rows,
            tb,
            grid,
            shape: Shape::pick(cout, &grid),
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.tiles_h.div_ceil(self.block_rows)
    }

    /// The tile rows of block `b`.
    fn rows_of(&self, b: usize) -> Range<usize> {
        b * self.block_rows..((b + 1) * self.block_rows).min(self.tiles_h)
    }

    /// Floats of the packed, transformed weights.
    pub(super) fn packed_len(&self) -> usize {
        direct::packed_len(self.shape, XI, self.cout, self.cin)
    }

    /// Packs `weight` `[out, in, 3, 3]` as `U_ξ = G g Gᵀ`, the product's
    /// weights (group ξ, its output channel `o` on input channel `c`).
    pub(super) fn pack(&self, weight: &[f32], out: &mut [f32]) {
        let (cin, cout, mr) = (self.cin, self.cout, self.shape.mr);
        let strips = self.shape.strips(cout);
        let out = &mut out[..self.packed_len()];
        // Strip slots past the last channel stay zero.
        out.fill(0.0);
        for (o, filters) in weight.chunks_exact(cin * 9).take(cout).enumerate() {
            for (c, g) in filters.chunks_exact(9).enumerate() {
                // G g (4 × 3), then (G g) Gᵀ (4 × 4), in f64.
                let mut gg = [[0.0f64; 3]; 4];
                for (i, row) in gg.iter_mut().enumerate() {
                    for (b, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|a| G[i][a] * g[a * 3 + b] as f64).sum();
                    }
                }
                for xi in 0..XI {
                    let (i, k) = (xi / 4, xi % 4);
                    let u: f64 = (0..3).map(|b| gg[i][b] * G[k][b]).sum();
                    // Group ξ, strip o / mr, depth c, lane o % mr ([`direct::pack`]'s layout).
                    out[((xi * strips + o / mr) * cin + c) * mr + o % mr] = u as f32;
                }
            }
        }
    }

    /// Floats of `V` and of `M`, a block's each.
    fn v_len(&self) -> usize {
        self.v_floats().next_multiple_of(LINE)
    }

    fn m_len(&self) -> usize {
        self.m_floats().next_multiple_of(LINE)
    }

    fn v_floats(&self) -> usize {
        XI * self.cin * self.tb
    }

    fn m_floats(&self) -> usize {
        XI * self.cout * self.tb
    }

    /// Floats of a thread's rows for the transforms.
    fn rows_len(&self) -> usize {
        let pw = self.padded_w();
        (8 * pw + 2 * (self.tiles_w + 1) + 8 * self.tiles_w + 2 * pw).next_multiple_of(LINE)
    }

    /// Floats of the direct kernel's scratch, a thread's.
    fn direct_len(&self) -> usize {
        Direct::scratch_per_thread(&self.grid, self.shape, XI, self.cout, 1).next_multiple_of(LINE)
    }

    /// Scratch for `threads` threads: each thread's `V`, `M`, rows and
    /// the direct kernel's scratch.
    pub(super) fn scratch_len(&self, threads: usize) -> usize {
        threads.max(1) * (self.v_len() + self.m_len() + self.rows_len() + self.direct_len())
    }

    /// A padded source row: the tiles' columns and the two past them.
    fn padded_w(&self) -> usize {
        2 * self.tiles_w + 2
    }
}

thread_local! {
    /// The team of one a part runs its units' products on.
    static ALONE: Team = Team::single();
}

/// `y` `[batch, cout, oh, ow]` from `x` `[batch, cin, h, w]` with the
/// weights [`Plan::pack`] packed, the epilogue applied.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    x: &[f32],
    batch: usize,
    plan: &Plan,
    packed: &[f32],
    epilogue: &Epilogue,
    y: &mut [f32],
    scratch: &mut [f32],
    team: &Team,
) {
    let threads = team.threads();
    let (v_len, m_len, rows_len, direct_len) = (plan.v_len(), plan.m_len(), plan.rows_len(), plan.direct_len());
    let (vm, rest) = scratch.split_at_mut(threads * (v_len + m_len));
    let (rows, directs) = rest.split_at_mut(threads * rows_len);
    let (vm, rows, directs) = (Disjoint::new(vm), Disjoint::new(rows), Disjoint::new(directs));
    let y = Disjoint::new(y);
    let product = Direct::new(plan.grid, plan.shape, XI, plan.cout, packed, &Epilogue::NONE);
    let (sample_in, blocks) = (plan.cin * plan.h * plan.w, plan.blocks());
    let units = batch * blocks;
    if units >= threads {
        // Each part its own units, start to end.
        let parts = threads.min(units);
        team.run(parts, &|t| {
            // SAFETY: each part has its own scratch.
            let (own_vm, own_rows, own_direct) = unsafe {
                (
                    vm.piece(t * (v_len + m_len)..(t + 1) * (v_len + m_len)),
                    rows.piece(t * rows_len..(t + 1) * rows_len),
                    directs.piece(t * direct_len..(t + 1) * direct_len),
                )
            };
            let (v, m) = own_vm.split_at_mut(v_len);
            let (v, m) = (&mut v[..plan.v_floats()], &mut m[..plan.m_floats()]);
            for unit in crate::kernels::dense::split(units, parts, t, 1) {
                let (n, block) = (unit / blocks, unit % blocks);
                let x = &x[n * sample_in..(n + 1) * sample_in];
                transform_inputs(x, plan, block, 0..plan.cin, &Disjoint::new(v), own_rows);
                ALONE.with(|alone| product.run(v, 1, m, own_direct, alone));
                output_block(m, plan, (n, block), 0..plan.cout, epilogue, &y, own_rows);
            }
        });
        return;
    }
    // Fewer units than threads (a small map at batch 1): each block's
    // three steps shared among the threads, the transforms by channels,
    // the product by its groups.
    // SAFETY: part 0's `V` and `M`; the other parts' go unused.
    let (v, m) = unsafe { vm.piece(0..v_len + m_len) }.split_at_mut(v_len);
    let (v, m) = (&mut v[..plan.v_floats()], &mut m[..plan.m_floats()]);
    // SAFETY: the direct kernel's scratch, every thread's.
    let direct_all = unsafe { directs.piece(0..threads * direct_len) };
    for unit in 0..units {
        let (n, block) = (unit / blocks, unit % blocks);
        let x = &x[n * sample_in..(n + 1) * sample_in];
        let v_parts = Disjoint::new(v);
        team.run(threads, &|t| {
            // SAFETY: each part has its own rows.
            let own_rows = unsafe { rows.piece(t * rows_len..(t + 1) * rows_len) };
            let channels = crate::kernels::dense::split(plan.cin, threads, t, 1);
            transform_inputs(x, plan, block, channels, &v_parts, own_rows);
        });
        product.run(v, 1, m, direct_all, team);
        let m: &[f32] = m;
        team.run(threads, &|t| {
            // SAFETY: each part has its own rows.
            let own_rows = unsafe { rows.piece(t * rows_len..(t + 1) * rows_len) };
            let channels = crate::kernels::dense::split(plan.cout, threads, t, 1);
            output_block(m, plan, (n, block), channels, epilogue, &y, own_rows);
        });
    }
}

/// [`input_block`], in AVX-512 where the CPU has it.
fn transform_inputs(x: &[f32], plan: &Plan, block: usize, channels: Range<usize>, v: &Disjoint<'_>, rows: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Level::detect() == Level::Avx512 {
        // SAFETY: the CPU has AVX-512; the caller's channels are its own.
        return unsafe { input_block_avx512(x, plan, block, channels, v) };
    }
    at_level!(input_block(x, plan, block, channels, v, rows))
}

/// [`input_block`] in AVX-512, 16 tiles of a tile row a vector: each of
/// the tile's 4 input rows loaded (masked to the source row: zeros in
/// the padding) as its columns 2j, 2j + 1, 2j + 2 and 2j + 3 by two
/// permutes of two loads, shifted by two for the last two, then the
/// transform on the 16 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_block_avx512(x: &[f32], plan: &Plan, block: usize, channels: Range<usize>, v: &Disjoint<'_>) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32,
        _mm512_setzero_ps, _mm512_sub_ps,
    };
    let (tw, tb, cin, h, w) = (plan.tiles_w, plan.tb, plan.cin, plan.h, plan.w);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let w_i = w as isize;
    assert!(channels.end <= cin && x.len() >= cin * h * w && v.len() >= XI * cin * tb);
    for t0 in (0..tw).step_by(16) {
        // Lane l of the first load reads source column `first + l`.
        let first = (2 * t0) as isize - plan.left as isize;
        let masks = [0, 16, 2, 18].map(|shift| lane_range(-first - shift, w_i - first - shift));
        let store = low_lanes(tw - t0);
        for c in channels.clone() {
            let plane = x.as_ptr().add(c * h * w);
            for (r, ti) in plan.rows_of(block).enumerate() {
                // d[a][k]: column k of each tile's row a.
                let mut d = [[_mm512_setzero_ps(); 4]; 4];
                for (a, da) in d.iter_mut().enumerate() {
                    let Some(i) = (2 * ti + a).checked_sub(plan.top).filter(|&i| i < h) else {
                        continue;
                    };
                    let row = plane.add(i * w).wrapping_offset(first);
                    // SAFETY: the lanes read are inside row i (the masks).
                    let (lo, hi, lo2, hi2) = (
                        _mm512_maskz_loadu_ps(masks[0], row),
                        _mm512_maskz_loadu_ps(masks[1], row.wrapping_add(16)),
                        _mm512_maskz_loadu_ps(masks[2], row.wrapping_add(2)),
                        _mm512_maskz_loadu_ps(masks[3], row.wrapping_add(18)),
                    );
                    *da = [
                        _mm512_permutex2var_ps(lo, even, hi),
                        _mm512_permutex2var_ps(lo, odd, hi),
                        _mm512_permutex2var_ps(lo2, even, hi2),
                        _mm512_permutex2var_ps(lo2, odd, hi2),
                    ];
                }
                // (No closures: one is not compiled with this function's
                // AVX-512, and stays a call.)
                let mut s = [[_mm512_setzero_ps(); 4]; 4];
                for (k, sk) in s.iter_mut().enumerate() {
                    *sk = [
                        _mm512_sub_ps(d[0][k], d[2][k]),
                        _mm512_add_ps(d[1][k], d[2][k]),
                        _mm512_sub_ps(d[2][k], d[1][k]),
                        _mm512_sub_ps(d[1][k], d[3][k]),
                    ];
                }
                // (`s` is indexed across: column k, row i.)
                #[allow(clippy::needless_range_loop)]
                for i in 0..4 {
                    let (s0, s1, s2, s3) = (s[0][i], s[1][i], s[2][i], s[3][i]);
                    let out: [__m512; 4] = [
                        _mm512_sub_ps(s0, s2),
                        _mm512_add_ps(s1, s2),
                        _mm512_sub_ps(s2, s1),
                        _mm512_sub_ps(s1, s3),
                    ];
                    for (k, value) in out.into_iter().enumerate() {
                        let at = ((4 * i + k) * cin + c) * tb + r * tw + t0;
                        // SAFETY: a run of channel c (this part's), inside v (the assert).
                        _mm512_mask_storeu_ps(v.as_mut_ptr().add(at), store, value);
                    }
                }
            }
        }
    }
}

/// [`untransform_channel`] in AVX-512, 16 tiles a vector, the two
/// columns of each tile interleaved by two permutes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn untransform_channel_avx512(m: &[f32], plan: &Plan, tiles: Range<usize>, o: usize, out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32,
        _mm512_setzero_ps, _mm512_sub_ps,
    };
    let (tw, tb, cout, ow) = (plan.tiles_w, plan.tb, plan.cout, plan.ow);
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let first = tiles.start;
    assert!(m.len() >= XI * cout * tb && o < cout);
    for ti in tiles {
        let r = ti - first;
        for t0 in (0..tw).step_by(16) {
            let lanes = low_lanes(tw - t0);
            let at = m.as_ptr().add(o * tb + r * tw + t0);
            let mut q = [[_mm512_setzero_ps(); 2]; 4];
            for (i, qi) in q.iter_mut().enumerate() {
                // SAFETY: the lanes read are tiles of the block, inside m.
                let [m0, m1, m2, m3] =
                    [0, 1, 2, 3].map(|k| _mm512_maskz_loadu_ps(lanes, at.add((4 * i + k) * cout * tb)));
                *qi = [
                    _mm512_add_ps(_mm512_add_ps(m0, m1), m2),
                    _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3),
                ];
            }
            for a in 0..2 {
                let row = 2 * r + a;
                if 2 * first + row >= plan.oh {
                    break;
                }
                let (y0, y1) = match a {
                    0 => (
                        _mm512_add_ps(_mm512_add_ps(q[0][0], q[1][0]), q[2][0]),
                        _mm512_add_ps(_mm512_add_ps(q[0][1], q[1][1]), q[2][1]),
                    ),
                    _ => (
                        _mm512_sub_ps(_mm512_sub_ps(q[1][0], q[2][0]), q[3][0]),
                        _mm512_sub_ps(_mm512_sub_ps(q[1][1], q[2][1]), q[3][1]),
                    ),
                };
                let col = 2 * t0;
                let at = out.as_mut_ptr().add(row * ow + col);
                let cols = ow as isize - col as isize;
                debug_assert!((row + 1) * ow <= out.len());
                // SAFETY: the lanes stored are columns of the output row.
                _mm512_mask_storeu_ps(at, lane_range(0, cols), _mm512_permutex2var_ps(y0, low, y1));
                _mm512_mask_storeu_ps(
                    at.add(16),
                    lane_range(0, cols - 16),
                    _mm512_permutex2var_ps(y0, high, y1),
                );
            }
        }
    }
}

leveled! {
    /// `V_ξ` of block `block`'s tiles, for source channels `channels` of
    /// sample `x`, into `v` (`[ξ, cin, tb]`): `Bᵀ d B` of each tile's 4 × 4
    /// inputs, along the rows first (on whole padded rows, in vectors),
    /// then along the columns (each row split into its even and odd
    /// columns: a tile's four are e[j], o[j], e[j + 1], o[j + 1]).
    /// A part writes only its channels' runs of `v`.
    fn input_block(x: &[f32], plan: &Plan, block: usize, channels: Range<usize>, v: &Disjoint<'_>, rows: &mut [f32]) -> () {
        let (tw, pw, tb, cin) = (plan.tiles_w, plan.padded_w(), plan.tb, plan.cin);
        let (h, w) = (plan.h, plan.w);
        let (d, rest) = rows.split_at_mut(4 * pw);
        let (s, rest) = rest.split_at_mut(4 * pw);
        let (e, rest) = rest.split_at_mut(tw + 1);
        let o = &mut rest[..tw + 1];
        d.fill(0.0);
        for c in channels {
            let plane = &x[c * h * w..(c + 1) * h * w];
            for (r, ti) in plan.rows_of(block).enumerate() {
                for (a, row) in d.chunks_exact_mut(pw).enumerate() {
                    let i = (2 * ti + a).checked_sub(plan.top).filter(|&i| i < h);
                    let inside = &mut row[plan.left..plan.left + w];
                    match i {
                        Some(i) => inside.copy_from_slice(&plane[i * w..(i + 1) * w]),
                        None => inside.fill(0.0),
                    }
                }
                let (d01, d23) = d.split_at(2 * pw);
                let (d0, d1) = d01.split_at(pw);
                let (d2, d3) = d23.split_at(pw);
                let (s01, s23) = s.split_at_mut(2 * pw);
                let (s0, s1) = s01.split_at_mut(pw);
                let (s2, s3) = s23.split_at_mut(pw);
                for j in 0..pw {
                    s0[j] = d0[j] - d2[j];
                    s1[j] = d1[j] + d2[j];
                    s2[j] = d2[j] - d1[j];
                    s3[j] = d1[j] - d3[j];
                }
                for (i, srow) in s.chunks_exact(pw).enumerate() {
                    for j in 0..=tw {
                        e[j] = srow[2 * j];
                        o[j] = srow[2 * j + 1];
                    }
                    // SAFETY: runs of channel c, which is this part's.
                    let run = |k: usize| unsafe {
                        let at = ((4 * i + k) * cin + c) * tb + r * tw;
                        v.piece(at..at + tw)
                    };
                    let (e0, e1, o0, o1) = (&e[..tw], &e[1..], &o[..tw], &o[1..]);
                    for (j, out) in run(0).iter_mut().enumerate() {
                        *out = e0[j] - e1[j];
                    }
                    for (j, out) in run(1).iter_mut().enumerate() {
                        *out = o0[j] + e1[j];
                    }
                    for (j, out) in run(2).iter_mut().enumerate() {
                        *out = e1[j] - o0[j];
                    }
                    for (j, out) in run(3).iter_mut().enumerate() {
                        *out = o0[j] - o1[j];
                    }
                }
            }
        }
    }
}

/// Output channels `channels` of block `block` of sample `n` from `M`
/// (`[ξ, cout, tb]`): `Aᵀ M A` of each tile into `y`, then the epilogue
/// on the block's rows of each channel.
fn output_block(
    m: &[f32],
    plan: &Plan,
    (n, block): (usize, usize),
    channels: Range<usize>,
    epilogue: &Epilogue,
    y: &Disjoint<'_>,
    rows: &mut [f32],
) {
    let tiles = plan.rows_of(block);
    let out_rows = 2 * tiles.start..(2 * tiles.end).min(plan.oh);
    let out_plane = plan.oh * plan.ow;
    for o in channels {
        let at = (n * plan.cout + o) * out_plane + out_rows.start * plan.ow;
        // SAFETY: units write disjoint (sample, channel, rows) pieces of y.
        let out = unsafe { y.piece(at..at + out_rows.len() * plan.ow) };
        #[cfg(target_arch = "x86_64")]
        if Level::detect() == Level::Avx512 {
            // SAFETY: the CPU has AVX-512.
            unsafe { untransform_channel_avx512(m, plan, tiles.clone(), o, out) };
            epilogue.apply_channel(out, o);
            epilogue.finish_channel(out, at, o);
            continue;
        }
        at_level!(untransform_channel(m, plan, tiles.clone(), o, out, rows));
        epilogue.apply_channel(out, o);
        epilogue.finish_channel(out, at, o);
    }
}

leveled! {
    /// Output channel `o` of the tile rows `tiles` (a block) from `M`
    /// into `out` (the block's output rows): along the columns of each
    /// tile's 4 × 4 first, then along its rows, in vectors of tiles; the
    /// two columns of a tile then interleaved into the output row.
    fn untransform_channel(m: &[f32], plan: &Plan, tiles: Range<usize>, o: usize, out: &mut [f32], rows: &mut [f32]) -> () {
        let (tw, tb, cout, ow) = (plan.tiles_w, plan.tb, plan.cout, plan.ow);
        let (q, rest) = rows.split_at_mut(8 * tw);
        let wide = &mut rest[..2 * tw];
        let first = tiles.start;
        for ti in tiles {
            let r = ti - first;
            let m_at = |xi: usize| &m[(xi * cout + o) * tb + r * tw..][..tw];
            for i in 0..4 {
                let (m0, m1, m2, m3) = (m_at(4 * i), m_at(4 * i + 1), m_at(4 * i + 2), m_at(4 * i + 3));
                let (q0, q1) = q[2 * i * tw..(2 * i + 2) * tw].split_at_mut(tw);
                for j in 0..tw {
                    q0[j] = m0[j] + m1[j] + m2[j];
                    q1[j] = m1[j] - m2[j] - m3[j];
                }
            }
            let q_at = |k: usize| &q[k * tw..(k + 1) * tw];
            for a in 0..2 {
                let row = 2 * r + a;
                if 2 * first + row >= plan.oh {
                    break;
                }
                for b in 0..2 {
                    let (q0, q1, q2, q3) = (q_at(b), q_at(2 + b), q_at(4 + b), q_at(6 + b));
                    if a == 0 {
                        for j in 0..tw {
                            wide[2 * j + b] = q0[j] + q1[j] + q2[j];
                        }
                    } else {
                        for j in 0..tw {
                            wide[2 * j + b] = q1[j] - q2[j] - q3[j];
                        }
                    }
                }
                out[row * ow..(row + 1) * ow].copy_from_slice(&wide[..ow]);
            }
        }
    }
}
