//! Drawing parameters from their initialisers. Every draw is made in f64
//! from the parameter's own [`Rng`] stream and rounded once, with only IEEE
//! operations and fixed loop orders, so a seed gives the same bytes on
//! every machine.

use crate::io::weights::Tensor;
use crate::qr::{thin_qr, Matrix};
use crate::Rng;

/// A distribution resolved to numbers (the runtime's mirror of the IR's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Constant(f32),
    Normal {
        mean: f32,
        std: f32,
    },
    /// A normal redrawn outside `[low, high]`.
    TruncatedNormal {
        mean: f32,
        std: f32,
        low: f32,
        high: f32,
    },
    Uniform {
        low: f32,
        high: f32,
    },
    /// A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014), the
    /// tensor viewed as `shape[0]` rows of the product of the rest.
    Orthogonal {
        gain: f32,
    },
}

/// Fills `out`, a row-major tensor of `shape`, from `dist`.
pub fn fill(dist: &Distribution, shape: &[usize], rng: &mut Rng, out: &mut [f32]) {
    match *dist {
        Distribution::Constant(v) => out.fill(v),
        Distribution::Normal { mean, std } => out
            .iter_mut()
            .for_each(|o| *o = (f64::from(mean) + f64::from(std) * rng.normal()) as f32),
        Distribution::TruncatedNormal { mean, std, low, high } => {
            for o in out.iter_mut() {
                *o = truncated(rng, f64::from(mean), f64::from(std), f64::from(low), f64::from(high)) as f32;
            }
        }
        Distribution::Uniform { low, high } => {
            let (lo, hi) = (f64::from(low), f64::from(high));
            out.iter_mut()
                .for_each(|o| *o = (lo + (hi - lo) * rng.uniform_f64()) as f32)
        }
        Distribution::Orthogonal { gain } => orthogonal(shape, f64::from(gain), rng, out, init_threads()),
    }
}

/// Threads for orthogonal init, whose QR is the only draw worth sharing
/// out: the cores there are (the result is the same for any number).
fn init_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The parameter `name` of `shape`, drawn from `dist` with its own stream
/// of `seed`: what `nnc init` writes for it, whoever draws it.
pub fn draw(dist: &Distribution, name: &str, shape: &[usize], seed: u64) -> Tensor {
    let mut data = vec![0.0; shape.iter().product()];
    fill(dist, shape, &mut Rng::for_name(seed, name), &mut data);
    Tensor {
        shape: shape.to_vec(),
        data,
    }
}

/// A normal draw inside `[low, high]` by rejection; at ±2σ about one draw in
/// twenty is redrawn. After many misses (bounds far in a tail), clamp.
fn truncated(rng: &mut Rng, mean: f64, std: f64, low: f64, high: f64) -> f64 {
    for _ in 0..1000 {
        let v = mean + std * rng.normal();
        if (low..=high).contains(&v) {
            return v;
        }
    }
    mean.clamp(low, high)
}

/// Orthogonal init as PyTorch's `orthogonal_`: Q of the QR of a Gaussian
/// `big × small` matrix (drawn column after column), its columns signed
/// like diag(R) so that Q is unique and Haar-distributed (Mezzadri 2007),
/// transposed when there are fewer rows than columns. The QR is a blocked
/// Householder whose bits do not depend on the machine or the number of
/// threads (see [`crate::qr`]).
fn orthogonal(shape: &[usize], gain: f64, rng: &mut Rng, out: &mut [f32], threads: usize) {
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let cols = (out.len() / rows).max(1);
    let (big, small) = (rows.max(cols), rows.min(cols));
    // Column-major: column after column, as the draws come.
    let gaussian = Matrix {
        rows: big,
        cols: small,
        data: (0..big * small).map(|_| rng.normal()).collect(),
    };
    let (q, _) = thin_qr(gaussian, threads);
    for r in 0..rows {
        for c in 0..cols {
            // rows ≥ cols: W = Q (big = rows); otherwise W = Qᵀ.
            let v = if rows >= cols { q.at(r, c) } else { q.at(c, r) };
            if let Some(o) = out.get_mut(r * cols + c) {
                *o = (gain * v) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_columns_when_rows_exceed_columns() {
        let mut w = vec![0.0; 30 * 10];
        fill(
            &Distribution::Orthogonal { gain: 1.0 },
            &[30, 10],
            &mut Rng::new(2, 0),
            &mut w,
        );
        for a in 0..10 {
            for b in 0..10 {
                let dot: f64 = (0..30)
                    .map(|r| f64::from(w[r * 10 + a]) * f64::from(w[r * 10 + b]))
                    .sum();
                assert!((dot - if a == b { 1.0 } else { 0.0 }).abs() < 1e-5, "{a}·{b} = {dot}");
            }
        }
    }

    #[test]
    fn truncated_normal_stays_inside_and_has_the_published_spread() {
        let mut w = vec![0.0; 100_000];
        let d = Distribution::TruncatedNormal {
            mean: 0.0,
            std: 1.0,
            low: -2.0,
            high: 2.0,
        };
        fill(&d, &[100_000], &mut Rng::new(4, 0), &mut w);
        assert!(w.iter().all(|v| v.abs() <= 2.0));
        let sd = (w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        // The std of N(0, 1) truncated to [−2, 2] is 0.87962566103423978.
        assert!((sd - 0.879_625_661).abs() < 0.01, "{sd}");
    }

    /// The old orthogonal init (modified Gram–Schmidt, cubic with no
    /// blocking): on the same Gaussian draw, the same Q up to rounding.
    fn gram_schmidt(shape: &[usize], gain: f64, rng: &mut Rng, out: &mut [f32]) {
        let rows = shape[0];
        let cols = out.len() / rows;
        let (big, small) = (rows.max(cols), rows.min(cols));
        let mut q: Vec<f64> = (0..big * small).map(|_| rng.normal()).collect();
        for j in 0..small {
            for k in 0..j {
                let dot: f64 = (0..big).map(|i| q[k * big + i] * q[j * big + i]).sum();
                for i in 0..big {
                    q[j * big + i] -= dot * q[k * big + i];
                }
            }
            let norm = (0..big).map(|i| q[j * big + i].powi(2)).sum::<f64>().sqrt();
            for i in 0..big {
                q[j * big + i] /= norm;
            }
        }
        for r in 0..rows {
            for c in 0..cols {
                let v = if rows >= cols { q[c * big + r] } else { q[r * big + c] };
                out[r * cols + c] = (gain * v) as f32;
            }
        }
    }

    fn draw_orthogonal(shape: &[usize], threads: usize) -> Vec<f32> {
        let mut w = vec![0.0; shape.iter().product()];
        orthogonal(shape, 1.5, &mut Rng::new(6, 1), &mut w, threads);
        w
    }

    #[test]
    fn orthogonal_is_the_gram_schmidt_q_of_the_same_draw() {
        for shape in [
            [1, 1],
            [1, 5],
            [5, 1],
            [30, 10],
            [10, 30],
            [64, 64],
            [100, 33],
            [33, 100],
            [40, 7 * 9],
        ] {
            let mut old = vec![0.0; shape[0] * shape[1]];
            gram_schmidt(&shape, 1.5, &mut Rng::new(6, 1), &mut old);
            let new = draw_orthogonal(&shape, 2);
            for (i, (a, b)) in new.iter().zip(&old).enumerate() {
                // f32 rounding of two f64 results that differ in their last bits.
                assert!(
                    (a - b).abs() <= f32::EPSILON * b.abs() + 1e-12,
                    "{shape:?}: element {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn orthogonal_does_not_depend_on_the_thread_count() {
        for shape in [[257, 130], [130, 257], [96, 96]] {
            let one = draw_orthogonal(&shape, 1);
            for threads in [2, 3, 4, 7] {
                assert!(draw_orthogonal(&shape, threads) == one, "{shape:?}: {threads} threads");
            }
        }
    }

    /// The bits of one draw, pinned: a machine (or a vector width, or a
    /// compiler) that rounds anything differently fails here.
    #[test]
    fn orthogonal_bits_are_pinned() {
        let w = draw_orthogonal(&[70, 90], 2);
        let hash = w.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ u64::from(v.to_bits())).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(hash, 2_039_379_615_507_808_202, "FNV-1a of the f32 bits");
    }
}
