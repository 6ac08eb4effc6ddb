//! How the 3 × 3 depthwise shapes that run in registers on AVX-512 read
//! their input: for each output vector, the 16 inputs under each tap, in
//! the order that loads each input once. The forward multiplies them by
//! the tap's weight into the output vector's sum; the weight gradient
//! multiplies them by the output vector's gradient into the tap's sum
//! (`super::grad`). Both walk the input the same way, so the walks are
//! written once, as macros that hand each tap's inputs to the caller's
//! block: macros, not a trait, because the sums must stay in registers,
//! which they do only when the loops unroll in the caller's body (a
//! generic walk over a trait kept them on the stack: half the speed).
//!
//! The shapes ([`Walk`]) and, for each, a macro taking
//! `|o, tap, x| { … }`: `x` is tap `tap`'s inputs (kernel row × 3 +
//! column; zeros where they fall in the padding) under output vector `o`
//! of the block, every index fixed once the loops unroll.

use super::super::ConvGeometry;

/// The shapes that walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(in crate::kernels::conv) enum Walk {
    /// Stride 1 with a pixel of padding all round, on rows of whole
    /// vectors ([`rows_taps`]).
    Rows,
    /// Stride 1 with a pixel of padding all round, on rows of 8 and at most
    /// 8 of them ([`row_pair_taps`]).
    RowPairs,
    /// Stride 2 on rows of 16 with SAME padding (a pixel at the bottom and
    /// right) and an even number of rows ([`halved_taps`]).
    Halved,
}

impl Walk {
    /// The walk of a depthwise conv of geometry `g`, if it has one.
    pub fn of(g: &ConvGeometry) -> Option<Walk> {
        let (h, w) = (g.height, g.width);
        let at = |stride, pads| (g.kernel, g.stride, g.dilation.max(1), g.pads) == (3, stride, 1, pads);
        if at(1, [1; 4]) && w.is_multiple_of(16) && w * h > 0 {
            Some(Walk::Rows)
        } else if at(1, [1; 4]) && w == 8 && (1..=8).contains(&h) {
            Some(Walk::RowPairs)
        } else if at(2, [0, 0, 1, 1]) && w == 16 && h > 0 && h.is_multiple_of(2) {
            Some(Walk::Halved)
        } else {
            None
        }
    }
}

/// `$body` with `$n` (1 to 8; more is 8) as the constant `$N`: the walks
/// unroll their blocks' loops for a given number of rows.
macro_rules! up_to_eight {
    ($n:expr, $N:ident => $body:expr) => {
        match $n {
            1 => up_to_eight!(@at 1, $N => $body),
            2 => up_to_eight!(@at 2, $N => $body),
            3 => up_to_eight!(@at 3, $N => $body),
            4 => up_to_eight!(@at 4, $N => $body),
            5 => up_to_eight!(@at 5, $N => $body),
            6 => up_to_eight!(@at 6, $N => $body),
            7 => up_to_eight!(@at 7, $N => $body),
            _ => up_to_eight!(@at 8, $N => $body),
        }
    };
    (@at $value:literal, $N:ident => $body:expr) => {{
        const $N: usize = $value;
        $body
    }};
}
pub(super) use up_to_eight;

/// Output rows a block of the forward's [`rows_taps`]: eight chains of
/// sums at once.
pub(super) const ROWS: usize = 8;

/// [`Walk::Rows`], the block of `rows` output rows from `r0` (a vector
/// each; those past the plane's `h` rows get taps too) at vector `v` of
/// the rows (`w` wide): a vector of 16 outputs reads the input rows above,
/// at and below it, and each input row's vectors under the kernel's three
/// columns (at the outputs, a column left, a column right: the masks leave
/// out the columns past the row's ends and are the same for every row) are
/// loaded once and used by each of the up to three output rows that read
/// them. Input rows past the plane's are `outside: skipped` (a branch), or
/// `outside: zeros` (loaded as zeros: no branch, where the branches made
/// LLVM keep a sum on the stack).
macro_rules! rows_taps {
    ($at:tt, rows: $rows:expr, outside: skipped, $($take:tt)*) => {
        rows_taps!(@walk $at, $rows, true, $($take)*)
    };
    ($at:tt, rows: $rows:expr, outside: zeros, $($take:tt)*) => {
        rows_taps!(@walk $at, $rows, false, $($take)*)
    };
    (@walk ($input:expr, ($h:expr, $w:expr), $v:expr, $r0:expr), $rows:expr, $skip:expr, |$o:ident, $tap:ident, $x:ident| $take:block) => {{
        let (input, h, w, v, r0): (&[f32], usize, usize, usize, usize) = ($input, $h, $w, $v, $r0);
        let (block, skip): (usize, bool) = ($rows, $skip);
        let first: u16 = if v == 0 { 0xFFFE } else { 0xFFFF };
        let last: u16 = if v + 1 == w / 16 { 0x7FFF } else { 0xFFFF };
        for j in 0..block + 2 {
            // Input row `r0 + j − 1`, if inside the plane.
            let row = (r0 + j).wrapping_sub(1);
            if skip && row >= h {
                continue;
            }
            let inside: u16 = if row < h { 0xFFFF } else { 0 };
            let at = input.as_ptr().wrapping_add(row.wrapping_mul(w) + 16 * v);
            // Lane l: input column l − 1, l, then l + 1.
            // SAFETY: the masks load only floats of the row, if it is in
            // the plane.
            let columns = unsafe {
                [
                    _mm512_maskz_loadu_ps(first & inside, at.wrapping_sub(1)),
                    _mm512_maskz_loadu_ps(inside, at),
                    _mm512_maskz_loadu_ps(last & inside, at.wrapping_add(1)),
                ]
            };
            // Output row `r0 + o` reads it with kernel row `j − o`.
            for ki in 0..3 {
                if j >= ki && j - ki < block {
                    let $o = j - ki;
                    for (kj, &$x) in columns.iter().enumerate() {
                        let $tap = 3 * ki + kj;
                        $take
                    }
                }
            }
        }
    }};
}
pub(super) use rows_taps;

/// [`Walk::RowPairs`] on a plane of `$rows` rows (a constant), from the
/// pointer `$input`: vector `m` holds output rows `2m` and `2m + 1`, and
/// kernel row `ki` reads them from the two input rows from `2m + ki − 1`,
/// 16 floats in a row in memory: one load for each kernel column, a column
/// on either side masked where it falls past a row's end, and the rows
/// past the plane's masked too. The two rows from an odd row serve two
/// vectors (kernel rows 2 and 0), so an 8 × 8 plane takes 27 loads for 36
/// multiply-adds.
macro_rules! row_pair_taps {
    (($input:expr, $rows:expr), |$o:ident, $tap:ident, $x:ident| $take:block) => {{
        let input: *const f32 = $input;
        let vectors = ($rows as usize).div_ceil(2);
        let inside = |r: isize| (0..$rows as isize).contains(&r);
        for r in -1..2 * vectors as isize {
            // Rows `r` and `r + 1`, each where it is in the plane.
            let low: u16 = if inside(r) { 0x00FF } else { 0 };
            let rows = low | if inside(r + 1) { 0xFF00 } else { 0 };
            if rows == 0 {
                continue;
            }
            let at = input.wrapping_offset(8 * r);
            // SAFETY: the masks load only floats of the plane (a
            // masked-off lane does not fault).
            let columns = unsafe {
                [
                    _mm512_maskz_loadu_ps(rows & 0xFEFE, at.wrapping_sub(1)),
                    _mm512_maskz_loadu_ps(rows, at),
                    _mm512_maskz_loadu_ps(rows & 0x7F7F, at.wrapping_add(1)),
                ]
            };
            // Vector `m` reads them with kernel row `r + 1 − 2m`.
            for $o in 0..vectors {
                let ki = r + 1 - 2 * $o as isize;
                if (0..3).contains(&ki) {
                    for (kj, &$x) in columns.iter().enumerate() {
                        let $tap = 3 * ki as usize + kj;
                        $take
                    }
                }
            }
        }
    }};
}
pub(super) use row_pair_taps;

/// [`Walk::Halved`], output rows `o0..o0 + R` of the plane `$input` (`R`
/// a constant; outputs 8 wide): vector `m` holds output rows `o0 + 2m` and
/// `o0 + 2m + 1`, and after its nine taps, `$done` runs for it. Kernel
/// column 0 reads the even input columns, 1 the odd ones, 2 the even ones
/// a column on (the column past the row's end is padding); kernel row 0
/// reads input rows `4m` and `4m + 2` (from the block's first), 1 the rows
/// under those, 2 the rows `4m + 2` and `4m + 4`. Input rows `4m` and
/// `4m + 2` give their even columns (and their odd ones) in one permute;
/// the rows under them likewise; kernel row 2's are the high half of
/// vector `m`'s and the low half of vector `m + 1`'s (one lane shift), and
/// kernel column 2's are kernel column 0's a lane on: 4 two-row permutes
/// and 5 one-vector shuffles for 9 multiply-adds, all in registers.
macro_rules! halved_taps {
    (($input:expr, $o0:expr, $r:expr), |$o:ident, $tap:ident, $x:ident| $take:block, |$m:ident| $done:block) => {{
        let (input, o0): (&[f32], usize) = ($input, $o0);
        let h = input.len() / 16;
        let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let row = |r: usize| {
            if r < h {
                _mm512_loadu_ps(input[r * 16..r * 16 + 16].as_ptr())
            } else {
                _mm512_setzero_ps()
            }
        };
        // A lane on in each half (lanes 7 and 15, the padding column, zeroed).
        let column_on = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15, 0);
        // Even and odd columns of input rows `r` and `r + 2`, then of the
        // rows under them.
        let pair = |r: usize| {
            let (a, b, c, d) = (row(r), row(r + 2), row(r + 1), row(r + 3));
            [
                _mm512_permutex2var_ps(a, evens, b),
                _mm512_permutex2var_ps(a, odds, b),
                _mm512_permutex2var_ps(c, evens, d),
                _mm512_permutex2var_ps(c, odds, d),
            ]
        };
        // The high half of `a`, then the low half of `b`.
        let halves = |a: __m512, b: __m512| {
            _mm512_castsi512_ps(_mm512_alignr_epi32::<8>(_mm512_castps_si512(b), _mm512_castps_si512(a)))
        };
        let mut now = pair(2 * o0);
        for $o in 0..($r as usize).div_ceil(2) {
            let next = pair(2 * o0 + 4 * $o + 4);
            let [even, odd, even_under, odd_under] = now;
            // Kernel row `ki`'s even and odd columns.
            let rows = [
                (even, odd),
                (even_under, odd_under),
                (halves(even, next[0]), halves(odd, next[1])),
            ];
            for (ki, &(evens, odds)) in rows.iter().enumerate() {
                let x = [evens, odds, _mm512_maskz_permutexvar_ps(0x7F7F, column_on, evens)];
                for (kj, &$x) in x.iter().enumerate() {
                    let $tap = 3 * ki + kj;
                    $take
                }
            }
            now = next;
            let $m = $o;
            $done
        }
    }};
}
pub(super) use halved_taps;
