//! Drawing parameters from their initialisers. Every draw is made in f64
//! from the parameter's own [`Rng`] stream and rounded once, with only IEEE
//! operations and fixed loop orders, so a seed gives the same bytes on
//! every machine.

use crate::io::weights::Tensor;
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
        Distribution::Orthogonal { gain } => orthogonal(shape, f64::from(gain), rng, out),
    }
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

/// Orthogonal init: QR of a Gaussian `big × small` matrix by modified
/// Gram–Schmidt, columns signed like diag(R) (so the result is unique, as in
/// PyTorch's `orthogonal_`), transposed when there are fewer rows than
/// columns.
fn orthogonal(shape: &[usize], gain: f64, rng: &mut Rng, out: &mut [f32]) {
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let cols = (out.len() / rows).max(1);
    let (big, small) = (rows.max(cols), rows.min(cols));
    // q holds `small` columns of length `big`, column-major.
    let mut q: Vec<f64> = (0..big * small).map(|_| rng.normal()).collect();
    for j in 0..small {
        for k in 0..j {
            let dot: f64 = (0..big).map(|i| q[k * big + i] * q[j * big + i]).sum();
            for i in 0..big {
                q[j * big + i] -= dot * q[k * big + i];
            }
        }
        // The norm is R's diagonal, positive: the sign convention holds.
        let norm = (0..big).map(|i| q[j * big + i].powi(2)).sum::<f64>().sqrt();
        let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        for i in 0..big {
            q[j * big + i] *= inv;
        }
    }
    for r in 0..rows {
        for c in 0..cols {
            // rows ≥ cols: W = Q (big = rows); otherwise W = Qᵀ.
            let v = if rows >= cols { q[c * big + r] } else { q[r * big + c] };
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
}
