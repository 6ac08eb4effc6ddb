//! The depthwise kernel on AVX2, which has no masked loads of its own
//! worth the name and no lane compress: each plane goes through a
//! zero-bordered copy of a band of its rows, small enough to stay in L1
//! beside the plane's reads, so that every tap is a plain load. With
//! stride 2 a tap loads the 16 inputs under 8 outputs and keeps the even
//! ones with one in-lane shuffle; the sums stay in the shuffle's order
//! (outputs 0 1 4 5 2 3 6 7) until one permute on the way out. A 3 × 3
//! kernel at stride 1 runs down the band's columns instead ([`column`]):
//! an input vector loaded once serves the three output rows above it.
//!
//! The direct kernel took these convs through a padded copy of a whole
//! sample read from L2, and its epilogue in a second pass: 2.5–3.7× ONNX
//! Runtime's time on the depthwise layers of `mobile_mini.nn` on a Zen 1.

use super::Depthwise;
use crate::kernels::conv::direct::zero_run;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::epilogue::ChannelSteps;
use crate::kernels::simd::Lanes;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Floats of the band copy: 24 KiB, so that it stays in a 32 KiB L1 with
/// the plane's inputs streaming past.
const BAND_FLOATS: usize = 6 * 1024;

/// Output vectors of a band at most: their places, worked out once per
/// band for every plane, are a table on the stack.
const BAND_VECTORS: usize = 128;

/// How a plane lies in the band copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Band {
    /// Floats per row of the copy: the padded input row, and room for the
    /// reads of a last vector of outputs past the row's end.
    pitch: usize,
    /// Output rows per band.
    rows: usize,
}

impl Band {
    /// The band for `g`, or `None` where not even one output row's input
    /// rows fit in the copy (rows of thousands of pixels: the direct kernel
    /// takes those).
    pub fn of(g: &ConvGeometry) -> Option<Band> {
        let (s, span) = (g.stride.max(1), g.span());
        let per_row = g.out_width().div_ceil(8);
        // The last vector of a row reads `s · 8` floats from its first
        // output's first input, plus the kernel's span.
        let pitch = s * 8 * per_row + span - 1;
        let fit = BAND_FLOATS / pitch.max(1);
        (fit >= span && per_row <= BAND_VECTORS).then(|| Band {
            pitch,
            rows: ((fit - span) / s + 1)
                .min(BAND_VECTORS / per_row.max(1))
                .min(g.out_height().max(1)),
        })
    }

    /// Input rows the copy holds for `rows` output rows.
    fn input_rows(&self, g: &ConvGeometry, rows: usize) -> usize {
        g.stride.max(1) * (rows - 1) + g.span()
    }
}

thread_local! {
    /// Each thread's band copy: 24 KiB, not zeroed on the stack per call.
    static BAND: RefCell<[f32; BAND_FLOATS]> = const { RefCell::new([0.0; BAND_FLOATS]) };
}

/// Eight lanes on, eight off: the mask of a vector's first `n` lanes
/// starts at `8 − n`.
static STORE_MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Where one output vector reads (in the band copy, before the tap's
/// offset) and writes (in the output plane), and how many outputs it holds.
#[derive(Clone, Copy, Default)]
struct Spot {
    from: usize,
    to: usize,
    n: usize,
}

/// How a tile leaves its registers.
#[derive(Clone, Copy)]
enum Finish {
    /// As they are (the epilogue, if any, runs after the kernel).
    Sums,
    /// Plus a bias, then ReLU: a conv with its batch norm folded in.
    BiasRelu(f32),
    Steps(ChannelSteps),
}

impl Depthwise<'_> {
    /// [`Depthwise::forward`]'s planes on AVX2: `planes` of `[batch ·
    /// channels]`, their inputs `src` and outputs `out`, with the epilogue
    /// where it is [`ChannelSteps`].
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn planes_avx2(&self, src: &[f32], planes: std::ops::Range<usize>, out: &mut [f32]) {
        let g = &self.g;
        let Some(band) = Band::of(g) else {
            debug_assert!(false, "Depthwise::applies takes only convs whose band fits");
            return;
        };
        BAND.with_borrow_mut(|copy| {
            // The copy's padding columns are zeroed here and never written
            // again: a plane writes its rows' inputs between them.
            copy[..band.pitch * band.input_rows(g, band.rows)].fill(0.0);
            // SAFETY: as this function's.
            unsafe { self.bands(band, src, planes, out, copy) }
        });
    }

    /// The body of [`Depthwise::planes_avx2`], with the band copy: band by
    /// band, the places of its vectors worked out once, then every plane.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn bands(
        &self,
        band: Band,
        src: &[f32],
        planes: std::ops::Range<usize>,
        out: &mut [f32],
        copy: &mut [f32; BAND_FLOATS],
    ) {
        let g = &self.g;
        let (channels, taps, d) = (g.out_channels, g.kernel * g.kernel, g.dilation.max(1));
        let (in_plane, out_plane) = (g.height * g.width, self.out_h * self.out_w);
        let mut tap_at = [0; super::MAX_TAPS];
        for (t, at) in tap_at.iter_mut().take(taps).enumerate() {
            *at = (t / g.kernel) * d * band.pitch + (t % g.kernel) * d;
        }
        let tap_at = &tap_at[..taps];
        let per_row = self.out_w.div_ceil(8);
        let bias_relu = self.form.as_ref().and_then(|form| form.bias_relu());
        // A 3 × 3 kernel at stride 1 goes down columns of the band.
        let columns = (g.kernel, g.stride, d) == (3, 1, 1);
        // (A short last tile repeats the band's last vector: the same
        // outputs, stored twice.)
        let mut spots = [Spot::default(); BAND_VECTORS + 8];
        for r0 in (0..self.out_h).step_by(band.rows) {
            let rows = band.rows.min(self.out_h - r0);
            // The copy's rows that hold inputs (the others are zero).
            let top = (g.stride * r0) as isize - g.pads[0] as isize;
            let input_rows = band.input_rows(g, rows);
            // (A band may lie wholly in a wide padding.)
            let first = (-top).clamp(0, input_rows as isize);
            let last = (g.height as isize - top).clamp(first, input_rows as isize);
            let inside = first as usize..last as usize;
            for i in (0..inside.start).chain(inside.end..input_rows) {
                zero_run(&mut copy[i * band.pitch..(i + 1) * band.pitch]);
            }
            let vectors = rows * per_row;
            // (The column tiles work out their own places.)
            for (v, spot) in spots[..if columns { 0 } else { vectors + 8 }].iter_mut().enumerate() {
                let v = v.min(vectors - 1);
                let (r, q) = (v / per_row, v % per_row * 8);
                *spot = Spot {
                    from: r * g.stride * band.pitch + g.stride * q,
                    to: (r0 + r) * self.out_w + q,
                    n: 8.min(self.out_w - q),
                };
            }
            let mut channel = planes.start % channels;
            for i in 0..planes.len() {
                let input = &src[i * in_plane..(i + 1) * in_plane];
                let plane = &mut out[i * out_plane..(i + 1) * out_plane];
                // (Pointers, not slices: bounds checks a row were a tenth
                // of an 8 × 8 plane's instructions, and `copy_run`'s per
                // move 15–20 % of its time.)
                if !inside.is_empty() {
                    debug_assert!(inside.end as isize + top <= g.height as isize);
                    let mut to = copy.as_mut_ptr().wrapping_add(inside.start * band.pitch + g.pads[1]);
                    let mut from = input
                        .as_ptr()
                        .wrapping_add((top + inside.start as isize) as usize * g.width);
                    for _ in inside.clone() {
                        // SAFETY: AVX2; the rows inside the plane are `width`
                        // floats of the input, and of the copy after the left
                        // padding (`Band::of` makes its rows wide enough).
                        unsafe { copy_floats(to, from, g.width) };
                        (to, from) = (to.wrapping_add(band.pitch), from.wrapping_add(g.width));
                    }
                }
                let finish = match (&self.form, bias_relu) {
                    (None, _) => Finish::Sums,
                    (_, Some(bias)) => Finish::BiasRelu(bias[channel]),
                    (Some(form), None) => Finish::Steps(form.at(channel)),
                };
                let weights = &self.weights[channel * taps..][..taps];
                channel = if channel + 1 == channels { 0 } else { channel + 1 };
                if let (true, Ok(weights)) = (columns, <&[f32; 9]>::try_from(weights)) {
                    let read = (copy.as_ptr(), weights, finish, band.pitch, self.out_w);
                    // SAFETY: AVX2 and FMA (the caller's promise); the
                    // band's `rows + 2` input rows are in the copy, the
                    // plane's rows `r0 … r0 + rows − 1` in `plane`.
                    unsafe { columns_of_band(read, r0..r0 + rows, plane.as_mut_ptr()) };
                    continue;
                }
                let read = (copy.as_ptr(), tap_at, weights, finish);
                let mut at = 0;
                while at < vectors {
                    macro_rules! tile {
                        ($nv:literal) => {{
                            // (Always whole: the table runs 8 past the band.)
                            let Some(these) = spots[at..].first_chunk::<$nv>() else {
                                break;
                            };
                            // SAFETY: AVX2 and FMA (the caller's promise);
                            // the reads stay in the copy (`Band::of` makes
                            // its rows wide enough for a last vector) and
                            // the writes in the plane.
                            unsafe {
                                if g.stride == 2 {
                                    tile::<$nv, true>(read, these, plane.as_mut_ptr())
                                } else {
                                    tile::<$nv, false>(read, these, plane.as_mut_ptr())
                                }
                            }
                            at += $nv;
                        }};
                    }
                    // Up to 8 sums in flight (an FMA's latency by its
                    // throughput), the rest of the 16 registers for reads.
                    match vectors - at {
                        1 => tile!(1),
                        2 => tile!(2),
                        3..=4 => tile!(4),
                        _ => tile!(8),
                    }
                }
            }
        }
    }
}

/// One tile of `NV` output vectors of a plane: every tap's read (a load,
/// or two and a shuffle with stride 2) times its weight, the epilogue,
/// the stores.
///
/// # Safety
/// The CPU has AVX2 and FMA; each spot's reads (`from + tap_at[t]` and 8
/// floats on, 16 with stride 2) are inside the copy, and its `n` outputs
/// from `to` inside the plane at `out`.
#[inline(always)]
unsafe fn tile<const NV: usize, const S2: bool>(
    (copy, tap_at, weights, finish): (*const f32, &[usize], &[f32], Finish),
    spots: &[Spot; NV],
    out: *mut f32,
) {
    let mut sums = [_mm256_setzero_ps(); NV];
    for (&at, w) in tap_at.iter().zip(weights) {
        let w = _mm256_set1_ps(*w);
        for (sum, spot) in sums.iter_mut().zip(spots) {
            let p = copy.add(spot.from + at);
            let x = if S2 {
                // Lanes: inputs 0 2 8 10 | 4 6 12 14 of the 16.
                _mm256_shuffle_ps::<0b10_00_10_00>(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
            } else {
                _mm256_loadu_ps(p)
            };
            *sum = _mm256_fmadd_ps(x, w, *sum);
        }
    }
    finish_sums(&mut sums, finish);
    for (&sum, spot) in sums.iter().zip(spots) {
        // Back to the outputs' order: 64-bit pairs 0 2 1 3.
        let v = if S2 {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(sum)))
        } else {
            sum
        };
        store(v, out.add(spot.to), spot.n);
    }
}

/// A band's output rows `rows` of a plane by [`column`] tiles: down each
/// vector of columns, eight rows a tile, then four, two and one.
///
/// # Safety
/// The CPU has AVX2 and FMA; the copy holds the band's `rows.len() + 2`
/// input rows (rows `pitch` apart, each wide enough for a row's last
/// vector), and `out` the plane's rows of `out_w` outputs.
#[inline(always)]
unsafe fn columns_of_band(
    read: (*const f32, &[f32; 9], Finish, usize, usize),
    rows: std::ops::Range<usize>,
    out: *mut f32,
) {
    let (pitch, out_w) = (read.3, read.4);
    for q in (0..out_w).step_by(8) {
        let mut r = 0;
        while r < rows.len() {
            let at = Spot {
                from: r * pitch + q,
                to: (rows.start + r) * out_w + q,
                n: 8.min(out_w - q),
            };
            // (Rows `r … r + R + 1` of the copy: among its `rows + 2`.)
            r += match rows.len() - r {
                8.. => column::<8>(read, at, out),
                4..=7 => column::<4>(read, at, out),
                2..=3 => column::<2>(read, at, out),
                _ => column::<1>(read, at, out),
            };
        }
    }
}

/// `R` output vectors one below the other (rows `r … r + R − 1` of a
/// band, at the same columns) of a 3 × 3 kernel at stride 1: each input
/// vector of the `R + 2` rows under them is loaded once per kernel column
/// and feeds the (up to) three outputs whose window holds its row, with
/// that column's three weights in registers. Returns `R`.
///
/// A tile of positions across a row ([`tile`]) loads one vector per
/// multiply-add; on a Zen 1, whose two 128-bit load ports take a whole
/// cycle per 256-bit load, that ran at a third of the FMA peak.
///
/// # Safety
/// As [`tile`]'s, for rows `0 … R + 1` below `at.from` (rows `pitch`
/// apart) and `R` rows of `at.n` outputs from `at.to` (rows `out_w` apart).
#[inline(always)]
unsafe fn column<const R: usize>(
    (copy, weights, finish, pitch, out_w): (*const f32, &[f32; 9], Finish, usize, usize),
    at: Spot,
    out: *mut f32,
) -> usize {
    let mut sums = [_mm256_setzero_ps(); R];
    for kj in 0..3 {
        let w: [__m256; 3] = std::array::from_fn(|ki| _mm256_set1_ps(weights[ki * 3 + kj]));
        for i in 0..R + 2 {
            let x = _mm256_loadu_ps(copy.add(at.from + i * pitch + kj));
            // Output row `i − ki` reads input row `i` under kernel row `ki`.
            for (ki, w) in w.iter().enumerate() {
                if let Some(sum) = i.checked_sub(ki).and_then(|o| sums.get_mut(o)) {
                    *sum = _mm256_fmadd_ps(x, *w, *sum);
                }
            }
        }
    }
    finish_sums(&mut sums, finish);
    for (o, &sum) in sums.iter().enumerate() {
        store(sum, out.add(at.to + o * out_w), at.n);
    }
    R
}

/// The epilogue on a tile's sums, its branches once a tile.
#[inline(always)]
unsafe fn finish_sums<const NV: usize>(sums: &mut [__m256; NV], finish: Finish) {
    match finish {
        Finish::Sums => {}
        Finish::BiasRelu(bias) => {
            let bias = _mm256_set1_ps(bias);
            for sum in sums {
                *sum = _mm256_add_ps(*sum, bias).relu();
            }
        }
        Finish::Steps(steps) => {
            for sum in sums {
                *sum = steps.apply(*sum);
            }
        }
    }
}

/// The first `n` lanes of `v` to `to`.
#[inline(always)]
unsafe fn store(v: __m256, to: *mut f32, n: usize) {
    if n == 8 {
        v.store(to);
    } else {
        _mm256_maskstore_ps(to, store_mask(n), v);
    }
}

/// `n` floats from `src` to `dst` in vectors, the last few masked: the
/// pointer and AVX2 form of [`copy_run`](crate::kernels::conv::direct::copy_run)
/// for the copy's hot loop.
///
/// # Safety
/// The CPU has AVX2; `src` and `dst` hold `n` floats.
#[inline(always)]
unsafe fn copy_floats(dst: *mut f32, src: *const f32, n: usize) {
    let mut k = 0;
    while k + 8 <= n {
        _mm256_storeu_ps(dst.add(k), _mm256_loadu_ps(src.add(k)));
        // (No `memcpy` call: as in `copy_run`.)
        std::arch::asm!("", options(nomem, nostack, preserves_flags));
        k += 8;
    }
    if k < n {
        let mask = store_mask(n - k);
        _mm256_maskstore_ps(dst.add(k), mask, _mm256_maskload_ps(src.add(k), mask));
    }
}

/// The mask of a vector's first `n` lanes (of 8).
#[inline(always)]
unsafe fn store_mask(n: usize) -> __m256i {
    _mm256_loadu_si256(STORE_MASKS.as_ptr().add(8 - n).cast())
}
