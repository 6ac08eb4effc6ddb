//! Which vector extension to compile a loop for.
//!
//! The crate is built for baseline x86-64 (SSE2), so a plain loop over
//! `tanh_fast` runs 4 lanes at a time. A kernel that wants more keeps its
//! body in an `#[inline(always)]` function and calls it from thin wrappers
//! marked `#[target_feature(enable = "avx512f")]` and `"avx2,fma"`, chosen
//! by [`Level::detect`]; the body and everything it inlines (mark the helpers
//! `#[inline(always)]` too) is then vectorised for 16 or 8 lanes. (A closure
//! passed to such a wrapper is not inlined into it, so that shortcut fails.)

/// The widest vector extension this CPU has, as far as the kernels care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512,
    Avx2,
    Base,
}

impl Level {
    /// The level the kernels run at: this CPU's, or lower where the
    /// environment variable `NNC_SIMD` (`avx2` or `base`) asks for it, so
    /// that the paths of CPUs without AVX-512 (or AVX2) can be tested and
    /// measured on one that has it. Read once per process.
    #[inline]
    pub(crate) fn detect() -> Level {
        static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let cpu = Level::cpu();
            match std::env::var("NNC_SIMD").as_deref() {
                Ok("base") => Level::Base,
                Ok("avx2") if cpu == Level::Avx512 => Level::Avx2,
                _ => cpu,
            }
        })
    }

    /// This CPU's level (the standard library caches the CPUID query).
    fn cpu() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Base
    }
}
