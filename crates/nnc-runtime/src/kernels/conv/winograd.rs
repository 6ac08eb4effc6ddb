//! Winograd's F(2 × 2, 3 × 3) for 3 × 3 stride-1 convs (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015): each 2 × 2
//! block of outputs from the 4 × 4 block of inputs under it, as
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, 16 multiplies per input channel where the
//! direct conv has 36. Summed over the input channels, the 16 products of
//! a block are 16 matrix products, one per position ξ of the 4 × 4
//! transformed block: `M_ξ[o, t] = Σ_c U_ξ[o, c] · V_ξ[c, t]` over the
//! tiles `t`, which the direct kernel runs as a pointwise conv of 16
//! groups (`U`, the transformed weights, packed once as its weights).
//! A sample's tiles go a block of tile rows at a time (a small map's, a
//! few samples' whole maps at a time, side by side): its inputs
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
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m512;

use crate::kernels::epilogue::{ChannelSteps, Epilogue, LaneSteps};
use crate::kernels::simd::{low_lanes, Level};
use crate::team::{Disjoint, Team};

/// Positions of a transformed block (4 × 4): the groups of the product.
const XI: usize = 16;
/// Floats of a block's `V` and `M` together at most: a block is as many
/// tile rows as fit (at least one), so that both stay in L2.
const BLOCK_CAP: usize = 192 * 1024;
/// Floats after each group of `V` and of `M` (a line): the groups' rows
/// are a multiple of 4 KiB long where the channels are a power of two,
/// and the transforms, which write (and read) the same place of all 16
/// groups at once, then had all 16 in one set of L1's.
const GAP: usize = LINE;

/// Where a unit's tiles are in `V` (or `M`): a row of `ld` positions per
/// channel, a group's rows then [`GAP`] floats, one sample's block from
/// position `at` of the rows.
#[derive(Clone, Copy, Debug)]
struct Place {
    ld: usize,
    at: usize,
}

impl Place {
    /// Floats from a group's first row to the next group's.
    fn group(self, channels: usize) -> usize {
        channels * self.ld + GAP
    }

    /// Floats of all 16 groups.
    fn len(self, channels: usize) -> usize {
        XI * self.group(channels)
    }
}

/// `G`, which takes a kernel row (or column) of 3 to the 4 of a block.
const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];

/// Whether a conv runs as Winograd: 3 × 3, stride 1, undilated, one
/// group, on AVX-512, with channels enough that the product saved pays
/// for the transforms. The product's work falls by `in · out` a tile,
/// the transforms' grows as `in + out` a vector of tiles, so the rule is
/// `in · out · lane_use ≥ 32 · (in + out)`, `lane_use` the share of a
/// vector's lanes the transforms fill ([`lane_use`]). It is drawn from
/// cifar_vgg's layers in the conv bench on a Zen 4 (batch 1 and 64, one
/// and two threads): 128 → 128 on 8 × 8 (at the line) ran 1.1–1.3 × and
/// 64 → 64 on 16 × 16 (at the line) 1.1–1.26 × faster than the direct
/// kernel, where 64 → 128 on 8 × 8 (21 against 32) lost at batch 64,
/// and 32 → 32 on 32 × 32 and 32 → 64 on 16 × 16 lost everywhere (to
/// 1.5 × slower). On AVX2 the same transforms in 8 lanes made 128 → 128
/// on 8 × 8 slower than the direct kernel (293 against 197 µs).
pub(super) fn applies(g: &ConvGeometry) -> bool {
    let (cin, cout, ow) = (g.in_channels, g.out_channels, g.out_width());
    (g.kernel, g.stride.max(1), g.dilation.max(1), g.groups.max(1)) == (3, 1, 1, 1)
        && Level::detect() == Level::Avx512
        && g.out_height() > 0
        && ow > 0
        && (cin.saturating_mul(cout) as f64) * lane_use(ow.div_ceil(2)) >= (32 * (cin + cout)) as f64
}

/// The share of the 16 lanes of the transforms' vectors that hold tiles,
/// for rows of `tiles_w` tiles: two rows a vector where [`in_pairs`].
fn lane_use(tiles_w: usize) -> f64 {
    let (tiles, vectors) = match in_pairs(tiles_w) {
        true => ((2 * tiles_w).min(16), 1),
        false => (tiles_w, tiles_w.div_ceil(16)),
    };
    tiles as f64 / (16 * vectors) as f64
}

/// The product's grid: a pointwise conv of 16 groups, `cin` → `cout`
/// each, on a row of `tb` positions.
fn product_grid(cin: usize, cout: usize, tb: usize) -> Grid {
    Grid::forward(&ConvGeometry {
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
    })
}

/// How a conv's samples are tiled, blocked and multiplied.
#[derive(Clone, Copy, Debug)]
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
    /// Tile rows per block, and tiles per block.
    block_rows: usize,
    tb: usize,
    /// Samples whose blocks a unit multiplies together, side by side in
    /// the rows of `V` and `M` (`samples · tb` positions a row), where a
    /// sample is one block too small for whole register tiles.
    samples: usize,
    /// The product's register tiles, on rows of `samples · tb` positions.
    shape: Shape,
}

impl Plan {
    pub(super) fn new(g: &ConvGeometry) -> Plan {
        let (oh, ow) = (g.out_height(), g.out_width());
        let (tiles_h, tiles_w) = (oh.div_ceil(2), ow.div_ceil(2));
        let (cin, cout) = (g.in_channels, g.out_channels);
        // Blocks whose tiles fill two of the product's register tiles
        // (of 48 positions), where that fits; else as many rows as fit.
        let fits = |tiles: usize| XI * (cin + cout) * tiles <= BLOCK_CAP;
        let block_rows = (1..=tiles_h)
            .find(|&r| (r * tiles_w).is_multiple_of(96) || r == tiles_h)
            .filter(|&r| r == 1 || fits(r * tiles_w))
            .unwrap_or_else(|| (1..=tiles_h).take_while(|&r| fits(r * tiles_w)).last().unwrap_or(1));
        let tb = block_rows * tiles_w;
        let shape = Shape::pick(cout, &product_grid(cin, cout, tb));
        // A small map's tiles (an 8 × 8 map's 16, one vector) leave the
        // register tile of 8 channels by 3 vectors one vector wide, 8
        // multiply-adds to 9 loads, which ran the product at half the FMA
        // peak on a Xeon: a unit takes as many samples as fill whole
        // tiles, where they fit.
        let samples = match block_rows == tiles_h {
            true => (1..=12)
                .find(|&s| (s * tb).is_multiple_of(shape.tile()) && fits(s * tb))
                .unwrap_or(1),
            false => 1,
        };
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
            samples,
            shape,
        }
    }

    #[cfg(test)]
    pub(super) fn samples(&self) -> usize {
        self.samples
    }

    /// Where a batch has fewer blocks than `threads`, the plan with a
    /// sample's map in a block for each thread, so that each thread
    /// transforms, multiplies and writes out its own rows of tiles, its
    /// `V` and `M` its own; if each block still fills two vectors.
    pub(super) fn shared(&self, batch: usize, threads: usize) -> Option<Plan> {
        if batch * self.blocks() >= threads || self.samples > 1 && batch > 1 {
            return None;
        }
        let block_rows = self.tiles_h.div_ceil(threads);
        let tb = block_rows * self.tiles_w;
        (tb >= 2 * self.shape.lanes() && block_rows < self.block_rows).then_some(Plan {
            block_rows,
            tb,
            samples: 1,
            ..*self
        })
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
        let cin = self.cin;
        self.pack_taps(|o, c| &weight[(o * cin + c) * 9..][..9], false, out);
    }

    /// [`Plan::pack`] on the kernel `taps(o, c)` of output channel `o` on
    /// input channel `c`, its 9 taps turned half a turn where `flipped`
    /// (an input gradient's kernel).
    pub(super) fn pack_taps<'w>(&self, taps: impl Fn(usize, usize) -> &'w [f32], flipped: bool, out: &mut [f32]) {
        let (cin, cout, mr) = (self.cin, self.cout, self.shape.mr);
        let strips = self.shape.strips(cout);
        let out = &mut out[..self.packed_len()];
        // Strip slots past the last channel stay zero.
        out.fill(0.0);
        for o in 0..cout {
            for c in 0..cin {
                let g = taps(o, c);
                let g = |t: usize| g[if flipped { 8 - t } else { t }];
                // G g (4 × 3), then (G g) Gᵀ (4 × 4), in f64.
                let mut gg = [[0.0f64; 3]; 4];
                for (i, row) in gg.iter_mut().enumerate() {
                    for (b, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|a| G[i][a] * g(a * 3 + b) as f64).sum();
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

    /// Where a unit of `samples` samples' blocks lies, its `j`th block.
    fn place(&self, samples: usize, j: usize) -> Place {
        Place {
            ld: samples * self.tb,
            at: j * self.tb,
        }
    }

    fn v_floats(&self) -> usize {
        self.place(self.samples, 0).len(self.cin)
    }

    fn m_floats(&self) -> usize {
        self.place(self.samples, 0).len(self.cout)
    }

    /// The product of `samples` samples' blocks.
    fn product<'a>(&self, samples: usize, packed: &'a [f32]) -> Direct<'a> {
        let grid = product_grid(self.cin, self.cout, samples * self.tb);
        Direct::gapped(grid, self.shape, (XI, self.cout), packed, [GAP; 2])
    }

    /// Floats of the direct kernel's scratch, a thread's: the most any
    /// unit's product needs (a last unit of fewer samples may not store
    /// whole vectors, and so needs a buffer where the others do not).
    fn direct_len(&self) -> usize {
        (1..=self.samples)
            .map(|k| {
                let grid = product_grid(self.cin, self.cout, k * self.tb);
                Direct::scratch_per_thread(&grid, self.shape, XI, self.cout, 1)
            })
            .max()
            .unwrap_or(0)
            .next_multiple_of(LINE)
    }

    /// Scratch for `threads` threads: each thread's `V` and `M` and the
    /// direct kernel's scratch.
    pub(super) fn scratch_len(&self, threads: usize) -> usize {
        threads.max(1) * (self.v_len() + self.m_len() + self.direct_len())
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
    // The transforms are AVX-512's alone (`applies`).
    assert_eq!(Level::detect(), Level::Avx512, "Winograd's transforms need AVX-512");
    let (v_len, m_len, direct_len) = (plan.v_len(), plan.m_len(), plan.direct_len());
    let (vm, directs) = scratch.split_at_mut(threads * (v_len + m_len));
    let (vm, directs) = (Disjoint::new(vm), Disjoint::new(directs));
    let y = Disjoint::new(y);
    let shared = plan.shared(batch, threads);
    let plan = shared.as_ref().unwrap_or(plan);
    let (sample_in, blocks) = (plan.cin * plan.h * plan.w, plan.blocks());
    // Samples a unit, as many as leave a unit for each thread.
    let samples = plan.samples.min(batch.div_ceil(threads)).max(1);
    let units = batch.div_ceil(samples) * blocks;
    if units >= threads {
        let product = plan.product(samples, packed);
        // Each part its own units, start to end.
        let parts = threads.min(units);
        team.run(parts, &|t| {
            // SAFETY: each part has its own scratch.
            let (own_vm, own_direct) = unsafe {
                (
                    vm.piece(t * (v_len + m_len)..(t + 1) * (v_len + m_len)),
                    directs.piece(t * direct_len..(t + 1) * direct_len),
                )
            };
            let (v, m) = own_vm.split_at_mut(v_len);
            for unit in crate::kernels::dense::split(units, parts, t, 1) {
                let (first, block) = (unit / blocks * samples, unit % blocks);
                let k = samples.min(batch - first);
                let place = |j: usize| plan.place(k, j);
                let (v, m) = (&mut v[..place(0).len(plan.cin)], &mut m[..place(0).len(plan.cout)]);
                let v_parts = Disjoint::new(v);
                for (j, n) in (first..first + k).enumerate() {
                    let x = &x[n * sample_in..(n + 1) * sample_in];
                    transform_inputs(x, plan, block, 0..plan.cin, (&v_parts, place(j)));
                }
                match k == samples {
                    true => ALONE.with(|alone| product.run(v, 1, m, own_direct, alone)),
                    false => ALONE.with(|alone| plan.product(k, packed).run(v, 1, m, own_direct, alone)),
                }
                for (j, n) in (first..first + k).enumerate() {
                    output_block((m, place(j)), plan, (n, block), 0..plan.cout, epilogue, &y);
                }
            }
        });
        return;
    }
    // Fewer units than threads (a small map at batch 1): each block's
    // three steps shared among the threads, the transforms by channels,
    // the product by its groups.
    // SAFETY: part 0's `V` and `M`; the other parts' go unused.
    let (v, m) = unsafe { vm.piece(0..v_len + m_len) }.split_at_mut(v_len);
    let place = plan.place(1, 0);
    let (v, m) = (&mut v[..place.len(plan.cin)], &mut m[..place.len(plan.cout)]);
    let product = plan.product(1, packed);
    // SAFETY: the direct kernel's scratch, every thread's.
    let direct_all = unsafe { directs.piece(0..threads * direct_len) };
    for unit in 0..units {
        let (n, block) = (unit / blocks, unit % blocks);
        let x = &x[n * sample_in..(n + 1) * sample_in];
        let v_parts = Disjoint::new(v);
        team.run(threads, &|t| {
            let channels = crate::kernels::dense::split(plan.cin, threads, t, 1);
            transform_inputs(x, plan, block, channels, (&v_parts, place));
        });
        product.run(v, 1, m, direct_all, team);
        let m: &[f32] = m;
        team.run(threads, &|t| {
            let channels = crate::kernels::dense::split(plan.cout, threads, t, 1);
            output_block((m, place), plan, (n, block), channels, epilogue, &y);
        });
    }
}

/// `V_ξ` of block `block`'s tiles, for source channels `channels` (a
/// part's own) of sample `x`, into `v` (`[ξ, cin, ld]` at `place`):
/// `Bᵀ d B` of each tile's 4 × 4 inputs.
fn transform_inputs(x: &[f32], plan: &Plan, block: usize, channels: Range<usize>, (v, place): (&Disjoint<'_>, Place)) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 (`forward`'s assert); the channels' runs
    // of `v` are the caller's alone.
    unsafe {
        input_block_avx512(x, plan, block, channels, (v, place))
    };
}

/// Whether the AVX-512 transforms take two tile rows a vector (a row's
/// tiles in lanes 0–7, the next row's in lanes 8–15), for maps of a few
/// tiles across: an 8 × 8 map's four tiles a row would fill a quarter of
/// a vector. (At 5–7 tiles a row, the next row's outputs would straddle
/// two vectors of the interleaved output.)
fn in_pairs(tiles_w: usize) -> bool {
    tiles_w <= 4 || tiles_w == 8
}

/// [`transform_inputs`] in AVX-512, 16 tiles a vector (of one tile row, or of
/// two, [`in_pairs`]): each of a tile's 4 input rows loaded (masked to
/// the source row: zeros in the padding) and split into the tiles'
/// columns 2j, 2j + 1 by a permute of two loads (a row's two halves, or
/// two rows), and 2j + 2, 2j + 3 by the same on loads two further on;
/// then the transform on the 16 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_block_avx512(
    x: &[f32],
    plan: &Plan,
    block: usize,
    channels: Range<usize>,
    (v, place): (&Disjoint<'_>, Place),
) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32,
        _mm512_setzero_ps, _mm512_sub_ps,
    };
    let (tw, tb, cin, h, w) = (plan.tiles_w, plan.tb, plan.cin, plan.h, plan.w);
    let (ld, at, group) = (place.ld, place.at, place.group(cin));
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let w_i = w as isize;
    let pairs = in_pairs(tw);
    let (step, tile_rows) = (1 + pairs as usize, plan.rows_of(block));
    assert!(channels.end <= cin && x.len() >= cin * h * w && v.len() >= place.len(cin) && at + tb <= ld);
    for t0 in (0..tw).step_by(16) {
        // Lane l of the first load reads source column `first + l`.
        let first = (2 * t0) as isize - plan.left as isize;
        let masks = [0, 16, 2, 18].map(|shift| lane_range(-first - shift, w_i - first - shift));
        for c in channels.clone() {
            let plane = x.as_ptr().add(c * h * w);
            for r in (0..tile_rows.len()).step_by(step) {
                let ti = tile_rows.start + r;
                let second = pairs && r + 1 < tile_rows.len();
                // d[a][k]: column k of each tile's row a.
                let mut d = [[_mm512_setzero_ps(); 4]; 4];
                for (a, da) in d.iter_mut().enumerate() {
                    let row_of = |ti: usize| {
                        let i = (2 * ti + a).checked_sub(plan.top).filter(|&i| i < h)?;
                        Some(plane.add(i * w).wrapping_offset(first))
                    };
                    let (low, high) = match (row_of(ti), pairs) {
                        (low, false) => (low, low.map(|row| row.wrapping_add(16))),
                        (low, true) => (low, row_of(ti + 1).filter(|_| second)),
                    };
                    if low.is_none() && high.is_none() {
                        continue;
                    }
                    // A missing row is zeros, not loaded (a load of no
                    // lanes from a bad address costs an assist).
                    let (mut lo, mut lo2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                    if let Some(p) = low {
                        // SAFETY: the lanes read are inside the row (the masks).
                        (lo, lo2) = (
                            _mm512_maskz_loadu_ps(masks[0], p),
                            _mm512_maskz_loadu_ps(masks[2], p.wrapping_add(2)),
                        );
                    }
                    let (mut hi, mut hi2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                    if let Some(p) = high {
                        let high_masks = if pairs {
                            [masks[0], masks[2]]
                        } else {
                            [masks[1], masks[3]]
                        };
                        // SAFETY: as above.
                        (hi, hi2) = (
                            _mm512_maskz_loadu_ps(high_masks[0], p),
                            _mm512_maskz_loadu_ps(high_masks[1], p.wrapping_add(2)),
                        );
                    }
                    *da = [
                        _mm512_permutex2var_ps(lo, even, hi),
                        _mm512_permutex2var_ps(lo, odd, hi),
                        _mm512_permutex2var_ps(lo2, even, hi2),
                        _mm512_permutex2var_ps(lo2, odd, hi2),
                    ];
                }
                // (No closures on vectors: one is not compiled with this
                // function's AVX-512, and stays a call.)
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
                        let run = v.as_mut_ptr().add((4 * i + k) * group + c * ld + at);
                        // SAFETY: runs of channel c (this part's), inside v
                        // (the assert): row r's tiles, and in pairs row r +
                        // 1's from lane 8 (its pointer 8 before them).
                        _mm512_mask_storeu_ps(run.add(r * tw + t0), low_lanes(tw - t0), value);
                        if second {
                            let at = run.add((r + 1) * tw).wrapping_sub(8);
                            _mm512_mask_storeu_ps(at, low_lanes(tw) << 8, value);
                        }
                    }
                }
            }
        }
    }
}

/// Output channel `o` of the tile rows `tiles` (a block) from `M` (its
/// tiles at `place`) into `out` (the block's
/// output rows), `Aᵀ M A` of each tile: 16 tiles a
/// vector (of one tile row, or two, [`in_pairs`]), along the columns of
/// the 4 × 4 first, then along its rows; the two columns of each tile
/// interleaved by two permutes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn untransform_channel_avx512(
    (m, place): (&[f32], Place),
    plan: &Plan,
    tiles: Range<usize>,
    o: usize,
    out: &mut [f32],
    finish: &Option<Finish<'_>>,
) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps, _mm512_setr_epi32, _mm512_setzero_ps,
        _mm512_sub_ps,
    };
    // (Matches, not closures: a closure is not compiled with this
    // function's AVX-512.)
    #[allow(clippy::manual_map)]
    let finish = match finish {
        Some(f) => Some(LaneFinish {
            steps: f.steps.in_lanes(),
            residual: match f.residual {
                Some((values, then)) => Some((values, then.in_lanes())),
                None => None,
            },
        }),
        None => None,
    };
    let (tw, tb, cout, ow) = (plan.tiles_w, plan.tb, plan.cout, plan.ow);
    let (ld, group) = (place.ld, place.group(cout));
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let pairs = in_pairs(tw);
    let step = 1 + pairs as usize;
    // Output rows of the block (its last tile row may have one).
    let rows = (plan.oh - 2 * tiles.start).min(2 * tiles.len());
    assert!(m.len() >= place.len(cout) && place.at + tb <= ld && o < cout && out.len() >= rows * ow);
    for r in (0..tiles.len()).step_by(step) {
        let second = pairs && r + 1 < tiles.len();
        for t0 in (0..tw).step_by(16) {
            let lanes = match second {
                true => low_lanes(2 * tw),
                false => low_lanes(tw - t0),
            };
            let from = m.as_ptr().add(o * ld + place.at + r * tw + t0);
            let mut q = [[_mm512_setzero_ps(); 2]; 4];
            for (i, qi) in q.iter_mut().enumerate() {
                // SAFETY: the lanes read are tiles of the block, inside m.
                let [m0, m1, m2, m3] =
                    [0, 1, 2, 3].map(|k| _mm512_maskz_loadu_ps(lanes, from.add((4 * i + k) * group)));
                *qi = [
                    _mm512_add_ps(_mm512_add_ps(m0, m1), m2),
                    _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3),
                ];
            }
            for a in 0..2 {
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
                let (first, next) = (
                    _mm512_permutex2var_ps(y0, low, y1),
                    _mm512_permutex2var_ps(y0, high, y1),
                );
                let col = 2 * t0;
                let cols = ow as isize - col as isize;
                // SAFETY (of the stores): the lanes stored are columns of
                // output rows of the block (`rows`, the assert).
                let row = 2 * r + a;
                if row < rows {
                    let at = row * ow + col;
                    let to = out.as_mut_ptr().add(at);
                    store_finished(first, lane_range(0, cols), to, at as isize, &finish);
                    if !pairs {
                        store_finished(next, lane_range(0, cols - 16), to.add(16), at as isize + 16, &finish);
                    }
                }
                let row = row + 2;
                if second && row < rows {
                    // The next tile row's interleaved outputs from lane 2·tw.
                    let at = row * ow;
                    let to = out.as_mut_ptr().add(at);
                    match tw {
                        8 => store_finished(next, lane_range(0, cols), to, at as isize, &finish),
                        _ => store_finished(
                            first,
                            lane_range(2 * tw as isize, (2 * tw + ow) as isize),
                            to.wrapping_sub(2 * tw),
                            at as isize - 2 * tw as isize,
                            &finish,
                        ),
                    }
                }
            }
        }
    }
}

/// Output channels `channels` of block `block` of sample `n` from `M`
/// (`[ξ, cout, ld]`, the block's tiles at the place given): `Aᵀ M A` of each tile into `y`, then the epilogue
/// on the block's rows of each channel.
fn output_block(
    m: (&[f32], Place),
    plan: &Plan,
    (n, block): (usize, usize),
    channels: Range<usize>,
    epilogue: &Epilogue,
    y: &Disjoint<'_>,
) {
    let tiles = plan.rows_of(block);
    let out_rows = 2 * tiles.start..(2 * tiles.end).min(plan.oh);
    let out_plane = plan.oh * plan.ow;
    // The epilogue on the outputs' way out where it is a few steps per
    // channel, and a residual and a few more (a residual block's last
    // conv): one pass over them, not two or three (128 → 128 on 8 × 8
    // at batch 64 on one thread, 8.67–8.89 → 8.40–8.60 ms); else in
    // passes over the block's rows after them.
    let then = |values| Epilogue {
        bias: None,
        steps: values,
        residual: None,
    };
    let fused = match (epilogue.channel_form(), &epilogue.residual) {
        (Some(form), None) => Some((form, None)),
        (Some(form), Some(r)) => then(r.then).channel_form().map(|then| (form, Some((r.values, then)))),
        (None, _) => None,
    };
    for o in channels {
        let at = (n * plan.cout + o) * out_plane + out_rows.start * plan.ow;
        // SAFETY: units write disjoint (sample, channel, rows) pieces of y.
        let out = unsafe { y.piece(at..at + out_rows.len() * plan.ow) };
        let finish = fused.map(|(form, residual)| Finish {
            steps: form.at(o),
            residual: residual.map(|(values, then)| (&values[at..at + out.len()], then.at(o))),
        });
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512 (`forward`'s assert).
        unsafe {
            untransform_channel_avx512(m, plan, tiles.clone(), o, out, &finish)
        };
        if finish.is_none() {
            epilogue.apply_channel(out, o);
            epilogue.finish_channel(out, at, o);
        }
    }
}

/// A channel's epilogue applied as its outputs are stored: its steps,
/// then the residual (its values at the outputs' places) and the steps
/// after it.
struct Finish<'a> {
    steps: ChannelSteps,
    residual: Option<(&'a [f32], ChannelSteps)>,
}

/// Stores `v`'s `lanes` at `to`, `offset` floats into the block's
/// output rows, through `finish`.
///
/// # Safety
/// The CPU has AVX-512; the lanes are inside the output rows (and so
/// inside the residual's run, which is as long).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_finished(v: __m512, lanes: u16, to: *mut f32, offset: isize, finish: &Option<LaneFinish<'_>>) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps};
    let v = match finish {
        None => v,
        Some(finish) => {
            let v = finish.steps.apply(v);
            match finish.residual {
                None => v,
                Some((values, then)) => {
                    let r = _mm512_maskz_loadu_ps(lanes, values.as_ptr().wrapping_offset(offset));
                    then.apply(_mm512_add_ps(v, r))
                }
            }
        }
    };
    _mm512_mask_storeu_ps(to, lanes, v);
}

/// [`Finish`] with its steps in every lane.
#[cfg(target_arch = "x86_64")]
struct LaneFinish<'a> {
    steps: LaneSteps<__m512>,
    residual: Option<(&'a [f32], LaneSteps<__m512>)>,
}
