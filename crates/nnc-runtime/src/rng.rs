//! The one random-number source of the runtime: ChaCha8, seeded from a
//! `u64`, with an independent stream per use (a parameter's name, a
//! dropout op's index), so that the same seed gives the same numbers on
//! every machine and adding a parameter does not reshuffle the others.

use rand_chacha::rand_core::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded, portable generator.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// The generator for `seed` and stream `stream`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(stream);
        Rng { inner }
    }

    /// The generator for one named thing (a parameter): the stream is the
    /// FNV-1a hash of the name, which is stable across machines and versions.
    pub fn for_name(seed: u64, name: &str) -> Rng {
        Rng::new(seed, fnv1a(name.as_bytes()))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in [0, 1), from the top 24 bits (every f32 step equally likely).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [0, 1) in double precision, from the top 53 bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box–Muller in f64). Portable: besides IEEE
    /// operations it calls `ln` and `cos` from the `libm` crate, plain Rust
    /// with no run-time CPU dispatch, where the platform's libm (glibc's
    /// picks an FMA variant on CPUs that have one; macOS has its own) may
    /// round a last bit differently from machine to machine.
    pub fn normal(&mut self) -> f64 {
        // 1 − u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform_f64();
        let u2 = self.uniform_f64();
        (-2.0 * libm::log(u1)).sqrt() * libm::cos(std::f64::consts::TAU * u2)
    }
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_other_stream_other_numbers() {
        let draw = |mut r: Rng| (0..8).map(|_| r.next_u32()).collect::<Vec<_>>();
        assert_eq!(
            draw(Rng::for_name(7, "layer0.weight")),
            draw(Rng::for_name(7, "layer0.weight"))
        );
        assert_ne!(
            draw(Rng::for_name(7, "layer0.weight")),
            draw(Rng::for_name(7, "layer1.weight"))
        );
        assert_ne!(
            draw(Rng::for_name(7, "layer0.weight")),
            draw(Rng::for_name(8, "layer0.weight"))
        );
    }

    #[test]
    fn fnv1a_matches_the_published_test_vector() {
        // From the FNV reference test suite: FNV-1a 64 of "a".
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn normal_draws_have_mean_zero_and_unit_variance() {
        let mut rng = Rng::new(1, 0);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01, "mean {mean} var {var}");
    }
}
