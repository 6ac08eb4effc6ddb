//! Training losses and their gradients, with PyTorch's definitions and
//! `reduction='mean'`: cross-entropy is a mean over the batch, MSE and BCE
//! over every element. Each returns the loss (summed in f64) and writes
//! d(loss)/d(its input). Weight penalties are here too: they are terms of
//! the loss.

use super::act::sigmoid;

/// What a loss compares a model's output with: a class index per sample
/// (cross-entropy), or values of the output's shape (mse, bce).
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    Classes(&'a [u32]),
    Values(&'a [f32]),
}

/// What a model's loss takes as targets, to check them before a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// One class index per sample, below `classes` (cross-entropy).
    Classes(usize),
    /// `per_sample` finite values per sample, each in [0, 1] with
    /// `unit_interval` (binary cross-entropy).
    Values { per_sample: usize, unit_interval: bool },
}

impl TargetKind {
    /// Whether `targets` fit this kind for `batch` samples; else why not,
    /// naming the first bad row.
    pub fn check(self, targets: Targets<'_>, batch: usize) -> Result<(), String> {
        match (self, targets) {
            (TargetKind::Classes(classes), Targets::Classes(labels)) => {
                if labels.len() != batch {
                    return Err(format!("{} class labels for {batch} samples", labels.len()));
                }
                for (row, label) in labels.iter().enumerate() {
                    class_label(row, i64::from(*label), classes)?;
                }
                Ok(())
            }
            (
                TargetKind::Values {
                    per_sample,
                    unit_interval,
                },
                Targets::Values(values),
            ) => {
                if values.len() != batch * per_sample {
                    return Err(format!(
                        "{} target values for {batch} samples of {per_sample}",
                        values.len()
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    check_value(i / per_sample.max(1), *v, unit_interval)?;
                }
                Ok(())
            }
            (TargetKind::Classes(_), Targets::Values(_)) => {
                Err("cross_entropy needs integer class labels, not values".into())
            }
            (TargetKind::Values { .. }, Targets::Classes(_)) => {
                Err("mse and bce need target values of the output's shape, not class labels".into())
            }
        }
    }
}

/// Sample `row`'s class index as the loss takes it: one of the model's
/// `classes`, else why not.
pub fn class_label(row: usize, label: i64, classes: usize) -> Result<u32, String> {
    u32::try_from(label)
        .ok()
        .filter(|l| (*l as usize) < classes)
        .ok_or_else(|| {
            format!(
                "row {row}: class {label} is not one of the model's {classes} classes (0 to {})",
                classes.saturating_sub(1)
            )
        })
}

/// A target value of sample `row`: finite, and in [0, 1] when
/// `unit_interval` (binary cross-entropy); else why not.
pub fn check_value(row: usize, v: f32, unit_interval: bool) -> Result<(), String> {
    let why = if v.is_nan() {
        "NaN"
    } else if v.is_infinite() {
        "infinite"
    } else if unit_interval && !(0.0..=1.0).contains(&v) {
        "outside [0, 1], which bce needs"
    } else {
        return Ok(());
    };
    Err(format!("row {row}: a target is {why} ({v})"))
}

/// Softmax cross-entropy of logits `z` (`[batch, classes]`) against class
/// indices (each below `classes`; the caller checks), PyTorch's
/// `CrossEntropyLoss`: with label smoothing ε the target distribution is
/// `(1 − ε)·onehot + ε/classes`. The gradient is `(softmax(z) − target)/batch`.
pub fn softmax_cross_entropy(
    z: &[f32],
    batch: usize,
    classes: usize,
    labels: &[u32],
    smoothing: f32,
    dz: &mut [f32],
) -> f64 {
    let eps = f64::from(smoothing);
    let uniform = eps / classes.max(1) as f64;
    let mut total = 0.0;
    for ((row, d), &label) in z
        .chunks_exact(classes.max(1))
        .zip(dz.chunks_exact_mut(classes.max(1)))
        .zip(labels)
        .take(batch)
    {
        let max = row
            .iter()
            .map(|v| f64::from(*v))
            .fold(f64::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a });
        let sum: f64 = row.iter().map(|v| (f64::from(*v) - max).exp()).sum();
        let log_sum = max + sum.ln();
        for (c, (v, g)) in row.iter().zip(d.iter_mut()).enumerate() {
            let log_p = f64::from(*v) - log_sum;
            let target = if c == label as usize {
                1.0 - eps + uniform
            } else {
                uniform
            };
            total -= target * log_p;
            *g = ((log_p.exp() - target) / batch as f64) as f32;
        }
    }
    total / batch.max(1) as f64
}

/// The mean over every element of `term(y, t)`, whose first part is the
/// element's loss and second its derivative, which (divided by the count)
/// goes into `dy`: PyTorch's `reduction='mean'`.
fn elementwise_mean(y: &[f32], target: &[f32], dy: &mut [f32], term: impl Fn(f64, f64) -> (f64, f64)) -> f64 {
    let count = y.len().max(1) as f64;
    let mut total = 0.0;
    for ((g, v), t) in dy.iter_mut().zip(y).zip(target) {
        let (loss, derivative) = term(f64::from(*v), f64::from(*t));
        total += loss;
        *g = (derivative / count) as f32;
    }
    total / count
}

/// Mean squared error over every element; the gradient is `2(y − t)/count`.
pub fn mse(y: &[f32], target: &[f32], dy: &mut [f32]) -> f64 {
    elementwise_mean(y, target, dy, |v, t| {
        let e = v - t;
        (e * e, 2.0 * e)
    })
}

/// Binary cross-entropy of logits (PyTorch's `BCEWithLogitsLoss`), over
/// every element: `max(z, 0) − z·t + log(1 + e^−|z|)`, gradient
/// `(σ(z) − t)/count`.
pub fn bce_with_logits(z: &[f32], target: &[f32], dz: &mut [f32]) -> f64 {
    elementwise_mean(z, target, dz, |v, t| {
        let loss = v.max(0.0) - v * t + (-v.abs()).exp().ln_1p();
        (loss, f64::from(sigmoid(v as f32)) - t)
    })
}

/// Binary cross-entropy of probabilities (PyTorch's `BCELoss`): each log
/// is clamped at −100 as PyTorch does, and the gradient
/// `(p − t) / max(p(1 − p), 1e-12) / count` likewise stays finite.
pub fn bce(p: &[f32], target: &[f32], dp: &mut [f32]) -> f64 {
    elementwise_mean(p, target, dp, |v, t| {
        let loss = -(t * v.ln().max(-100.0) + (1.0 - t) * (1.0 - v).ln().max(-100.0));
        (loss, (v - t) / (v * (1.0 - v)).max(1e-12))
    })
}

/// The penalty `l1·Σ|w| + l2·Σw²` (Keras's kernel regularisers), returned,
/// and its gradient `l1·sign(w) + 2·l2·w` added into `dw`.
pub fn penalty(w: &[f32], l1: f32, l2: f32, dw: &mut [f32]) -> f64 {
    let (l1d, l2d) = (f64::from(l1), f64::from(l2));
    let mut total = 0.0;
    for (g, v) in dw.iter_mut().zip(w) {
        let v64 = f64::from(*v);
        total += l1d * v64.abs() + l2d * v64 * v64;
        // sign(0) = 0, as PyTorch's.
        let sign = if *v > 0.0 {
            1.0
        } else if *v < 0.0 {
            -1.0
        } else {
            0.0
        };
        *g += l1 * sign + 2.0 * l2 * v;
    }
    total
}
