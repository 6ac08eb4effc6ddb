//! Training-mode dropouts and RReLU. Every draw comes from the caller's
//! [`Rng`], element by element in order, so a seed fixes every mask.
//! Inference callers skip these: there, all of them are the identity.
//! A dropped NaN or ±∞ stays NaN, as in PyTorch, whose masks multiply
//! (`x · 0`) rather than select.

use crate::kernels::act::{SELU_ALPHA, SELU_LAMBDA};
use crate::Rng;

/// Inverted dropout: keep with probability 1 − p and scale by 1/(1 − p).
pub fn dropout(x: &[f32], p: f32, rng: &mut Rng, y: &mut [f32]) {
    dropout_save(x, p, rng, y, &mut []);
}

/// [`dropout`] that also records each element's factor (0 or 1/(1 − p)) in
/// `mask`, for the backward (an empty `mask` records nothing).
pub fn dropout_save(x: &[f32], p: f32, rng: &mut Rng, y: &mut [f32], mask: &mut [f32]) {
    let scale = 1.0 / (1.0 - p);
    let mut mask = mask.iter_mut();
    for (out, v) in y.iter_mut().zip(x) {
        let factor = if rng.uniform() < p { 0.0 } else { scale };
        *out = v * factor;
        if let Some(m) = mask.next() {
            *m = factor;
        }
    }
}

/// Alpha dropout (Klambauer et al. 2017, as PyTorch's `AlphaDropout`):
/// dropped units take SELU's negative saturation α' = −λα, then `a·y + b`
/// with `a = ((1 − p)(1 + p·α'²))^(−1/2)`, `b = −a·α'·p` restores mean 0 and
/// variance 1.
pub fn alpha_dropout(x: &[f32], p: f32, rng: &mut Rng, y: &mut [f32]) {
    alpha_dropout_save(x, p, rng, y, &mut []);
}

/// [`alpha_dropout`] that also records each element's derivative `a·keep`
/// in `mask` (an empty `mask` records nothing).
pub fn alpha_dropout_save(x: &[f32], p: f32, rng: &mut Rng, y: &mut [f32], mask: &mut [f32]) {
    let saturation = -f64::from(SELU_LAMBDA) * f64::from(SELU_ALPHA);
    let pd = f64::from(p);
    let a = ((1.0 - pd) * (1.0 + pd * saturation * saturation)).powf(-0.5);
    let b = -a * saturation * pd;
    let mut mask = mask.iter_mut();
    for (out, v) in y.iter_mut().zip(x) {
        // x·keep + α'·(1 − keep), keep ∈ {0, 1}: a dropped NaN stays NaN.
        let keep = if rng.uniform() < p { 0.0 } else { 1.0 };
        *out = (a * (f64::from(*v) * keep + saturation * (1.0 - keep)) + b) as f32;
        if let Some(m) = mask.next() {
            *m = (a * keep) as f32;
        }
    }
}

/// The backward of every dropout: `dx = dy·mask` with the factors the
/// forward recorded.
pub fn mask_grad(dy: &[f32], mask: &[f32], dx: &mut [f32]) {
    for ((d, g), m) in dx.iter_mut().zip(dy).zip(mask) {
        *d = g * m;
    }
}

/// DropBlock (Ghiasi et al. 2018) as torchvision's `drop_block2d`: block
/// seeds are drawn with rate `γ = p·H·W / (B²·(H−B+1)(W−B+1))` where a whole
/// block fits, each seed drops the B×B square centred on it, and the kept
/// values are scaled by (all elements / kept elements). `mask` (`n·c·h·w`)
/// ends holding each element's factor, what the backward multiplies by.
#[allow(clippy::too_many_arguments)]
pub fn dropblock(
    x: &[f32],
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    p: f32,
    block: usize,
    rng: &mut Rng,
    y: &mut [f32],
    mask: &mut [f32],
) {
    let block = block.max(1);
    let (fit_h, fit_w) = ((height + 1).saturating_sub(block), (width + 1).saturating_sub(block));
    let total = n * channels * height * width;
    let gamma = if fit_h * fit_w == 0 {
        0.0
    } else {
        f64::from(p) * (height * width) as f64 / ((block * block) as f64 * (fit_h * fit_w) as f64)
    };
    let mask = &mut mask[..total];
    mask.fill(1.0);
    for plane in mask.chunks_mut((height * width).max(1)) {
        for i in 0..fit_h {
            for j in 0..fit_w {
                if rng.uniform_f64() >= gamma {
                    continue;
                }
                // The seed sits at (i + B/2, j + B/2); its square starts at (i, j).
                for di in 0..block.min(height - i) {
                    for dj in 0..block.min(width - j) {
                        plane[(i + di) * width + (j + dj)] = 0.0;
                    }
                }
            }
        }
    }
    let kept: f64 = mask.iter().map(|m| f64::from(*m)).sum();
    let scale = if kept > 0.0 { (total as f64 / kept) as f32 } else { 0.0 };
    // m ∈ {0, 1}, so m·scale is exactly 0 or scale and x·(m·scale) is the
    // x·m·scale it replaces, bit for bit.
    for m in mask.iter_mut() {
        *m *= scale;
    }
    for ((out, v), m) in y.iter_mut().zip(x).zip(mask.iter()) {
        *out = v * m;
    }
}

/// DropConnect (Wan et al. 2013): masks weights with drop probability p and
/// scales the kept ones by 1/(1 − p).
pub fn dropconnect(weight: &[f32], p: f32, rng: &mut Rng, masked: &mut [f32]) {
    dropout(weight, p, rng, masked);
}

/// [`dropconnect`] that also records each weight's factor in `mask`.
pub fn dropconnect_save(weight: &[f32], p: f32, rng: &mut Rng, masked: &mut [f32], mask: &mut [f32]) {
    dropout_save(weight, p, rng, masked, mask);
}

/// RReLU in training: each negative element gets a slope drawn from
/// U(lower, upper).
pub fn rrelu_train(x: &[f32], lower: f32, upper: f32, rng: &mut Rng, y: &mut [f32]) {
    rrelu_train_save(x, lower, upper, rng, y, &mut []);
}

/// [`rrelu_train`] that also records each element's derivative (1, or the
/// slope it drew) in `slopes` (an empty `slopes` records nothing).
pub fn rrelu_train_save(x: &[f32], lower: f32, upper: f32, rng: &mut Rng, y: &mut [f32], slopes: &mut [f32]) {
    let mut slopes = slopes.iter_mut();
    for (out, v) in y.iter_mut().zip(x) {
        let slope = lower + (upper - lower) * rng.uniform();
        let factor = if *v >= 0.0 { 1.0 } else { slope };
        *out = if *v >= 0.0 { *v } else { v * slope };
        if let Some(s) = slopes.next() {
            *s = factor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
        (mean, v.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn alpha_dropout_keeps_mean_zero_and_variance_one() {
        let mut rng = Rng::new(1, 0);
        let x: Vec<f32> = (0..200_000).map(|_| rng.normal() as f32).collect();
        let mut y = vec![0.0; x.len()];
        alpha_dropout(&x, 0.2, &mut rng, &mut y);
        let (mean, var) = stats(&y);
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
    }

    #[test]
    fn dropblock_drops_about_p_in_whole_squares() {
        let (n, c, h, w, b) = (4, 8, 32, 32, 5);
        let x = vec![1.0f32; n * c * h * w];
        let (mut y, mut mask) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        dropblock(&x, n, c, h, w, 0.1, b, &mut Rng::new(3, 0), &mut y, &mut mask);
        let dropped = mask.iter().filter(|m| **m == 0.0).count() as f64 / mask.len() as f64;
        // Overlapping squares make it a little less than p.
        assert!((0.07..0.11).contains(&dropped), "dropped {dropped}");
        let (mean, _) = stats(&y);
        assert!((mean - 1.0).abs() < 1e-4, "kept values are rescaled: mean {mean}");
        // Every dropped pixel lies in some all-dropped B×B square.
        let plane = &mask[..h * w];
        for i in 0..h {
            for j in 0..w {
                if plane[i * w + j] != 0.0 {
                    continue;
                }
                let covered = (i.saturating_sub(b - 1)..=i.min(h - b)).any(|si| {
                    (j.saturating_sub(b - 1)..=j.min(w - b))
                        .any(|sj| (0..b).all(|di| (0..b).all(|dj| plane[(si + di) * w + sj + dj] == 0.0)))
                });
                assert!(covered, "pixel ({i}, {j}) dropped outside a block");
            }
        }
    }

    #[test]
    fn dropconnect_masks_like_dropout() {
        let w = vec![1.0f32; 10_000];
        let mut m = vec![0.0; w.len()];
        dropconnect(&w, 0.5, &mut Rng::new(0, 1), &mut m);
        let kept = m.iter().filter(|v| **v == 2.0).count();
        assert_eq!(kept + m.iter().filter(|v| **v == 0.0).count(), w.len());
        assert!((4_700..5_300).contains(&kept), "kept {kept}");
    }

    /// Every small map and block, blocks larger than the map included: no
    /// panic, nothing dropped where no block fits, the kept rescaled.
    #[test]
    fn dropblock_on_every_small_geometry() {
        let mut rng = Rng::new(9, 0);
        for (h, w) in (1..=6).flat_map(|h| (1..=6).map(move |w| (h, w))) {
            for block in 1..=7 {
                let x: Vec<f32> = (0..2 * h * w).map(|i| i as f32 + 1.0).collect();
                let (mut y, mut mask) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
                dropblock(&x, 1, 2, h, w, 0.5, block, &mut rng, &mut y, &mut mask);
                if block > h || block > w {
                    // No block fits: nothing dropped (torchvision's γ has no seed positions).
                    assert_eq!(y, x, "{h}×{w} block {block}");
                    continue;
                }
                let kept = mask.iter().filter(|m| **m == 1.0).count();
                for ((v, m), out) in x.iter().zip(&mask).zip(&y) {
                    let want = if *m == 0.0 {
                        0.0
                    } else {
                        v * x.len() as f32 / kept as f32
                    };
                    assert!((out - want).abs() <= 1e-5 * want.abs(), "{h}×{w} block {block}");
                }
            }
        }
    }

    #[test]
    fn a_dropped_nan_stays_nan_as_in_pytorch() {
        let x = [f32::NAN; 64];
        let mut y = [0.0; 64];
        dropout(&x, 0.5, &mut Rng::new(1, 0), &mut y);
        assert!(y.iter().all(|v| v.is_nan()));
        alpha_dropout(&x, 0.5, &mut Rng::new(1, 0), &mut y);
        assert!(y.iter().all(|v| v.is_nan()));
        rrelu_train(&x, 0.1, 0.3, &mut Rng::new(1, 0), &mut y);
        assert!(y.iter().all(|v| v.is_nan()));
        let mut mask = [0.0; 64];
        dropblock(&x, 1, 1, 8, 8, 0.5, 3, &mut Rng::new(1, 0), &mut y, &mut mask);
        assert!(y.iter().all(|v| v.is_nan()));
    }
}
