//! Shared by the gradient tests: a deterministic generator, central finite
//! differences of a float64 forward, and the comparison of an f32 kernel's
//! gradient with them.

#![allow(dead_code)]

/// xorshift64*: a tiny deterministic generator for test data.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` values uniform in [-1, 1), as f32.
    pub fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.uniform() as f32).collect()
    }

    /// `len` values in [lo, hi), as f32.
    pub fn vec_in(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..len)
            .map(|_| (lo + (self.uniform() + 1.0) / 2.0 * (hi - lo)) as f32)
            .collect()
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| f64::from(a)).collect()
}

/// The gradient of `L(p) = Σ r·forward(p)` by central differences, step
/// 1e-6 relative to each element.
pub fn numeric_grad(p: &[f32], r: &[f64], forward: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let loss = |q: &[f64]| -> f64 {
        let y = forward(q);
        assert_eq!(y.len(), r.len(), "the forward's output and r differ in length");
        y.iter().zip(r).map(|(a, b)| a * b).sum()
    };
    let mut q = to_f64(p);
    (0..q.len())
        .map(|i| {
            let v = q[i];
            let h = 1e-6 * v.abs().max(1.0);
            q[i] = v + h;
            let up = loss(&q);
            q[i] = v - h;
            let down = loss(&q);
            q[i] = v;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `got` matches `want` to `rtol` of the larger of the two's largest
/// magnitudes (a tiny floor keeps an all-zero gradient checkable).
pub fn assert_grad(what: &str, got: &[f32], want: &[f64], rtol: f64) {
    assert_grad_above(what, got, want, rtol, 1e-6);
}

/// [`assert_grad`] with the scale at least `floor`: for a gradient that is
/// a small difference of larger terms (a norm over two values), f32
/// rounding is relative to the terms, not to the difference.
pub fn assert_grad_above(what: &str, got: &[f32], want: &[f64], rtol: f64, floor: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = got
        .iter()
        .map(|v| f64::from(*v).abs())
        .chain(want.iter().map(|v| v.abs()))
        .fold(floor, f64::max);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= rtol * scale,
            "{what}: element {i}: kernel {g}, finite differences {w} (scale {scale})"
        );
    }
}

/// `a` is `b` to a relative 1e-5 of `b`'s largest magnitude.
pub fn assert_close_f32(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let scale = b.iter().map(|v| v.abs()).fold(1e-6f32, f32::max);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 * scale, "{what}: element {i}: {x} vs {y}");
    }
}

/// `v` doubled.
pub fn doubled(v: &[f32]) -> Vec<f32> {
    v.iter().map(|a| 2.0 * a).collect()
}
