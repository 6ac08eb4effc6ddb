//! Which vector extension to compile a loop for.
//!
//! The crate is built for baseline x86-64 (SSE2), so a plain loop over
//! `tanh_fast` runs 4 lanes at a time. A kernel that wants more keeps its
//! body in an `#[inline(always)]` function and calls it from thin wrappers
//! marked `#[target_feature(enable = "avx512f")]` and `"avx2,fma"`, chosen
//! by [`Level::detect`]; the body and everything it inlines (mark the helpers
//! `#[inline(always)]` too) is then vectorised for 16 or 8 lanes. (A closure
//! passed to such a wrapper is not inlined into it, so that shortcut fails.)

/// A mask of the lowest `n` of 16 lanes (an AVX-512 vector of `f32`).
pub(crate) fn low_lanes(n: usize) -> u16 {
    ((1u32 << n.min(16)) - 1) as u16
}

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
            // Every AVX-512 CPU has POPCNT; the copies' masked moves count lanes with it.
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("popcnt") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Base
    }
}

/// Runs `$f(args…)` compiled for this CPU's widest vectors: the body, an
/// `#[inline(always)]` function, inlined into a wrapper with the level's
/// target features (see `simd`'s module comment).
macro_rules! at_level {
    ($f:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            use $crate::kernels::simd::Level;
            match Level::detect() {
                // SAFETY: the CPU has the level's features.
                Level::Avx512 => unsafe { $f::avx512($($arg),*) },
                Level::Avx2 => unsafe { $f::avx2($($arg),*) },
                Level::Base => $f::body($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f::body($($arg),*)
        }
    }};
}

/// Declares `mod $name` with the `body` of a kernel and its `avx512` and
/// `avx2` wrappers, for [`at_level!`].
macro_rules! leveled {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[inline(always)]
            pub(super) fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            pub(super) unsafe fn avx512($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn avx2($($arg: $ty),*) -> $ret {
                body($($arg),*)
            }
        }
    };
}
pub(crate) use at_level;
pub(crate) use leveled;

/// A vector of `N` floats, for micro-kernels written once for every width
/// (their body `#[inline(always)]`, instantiated in the wrappers above).
pub(crate) trait Lanes: Copy {
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// The first `n < N` floats at `p` (only those are read), zeros after.
    unsafe fn load_low(p: *const f32, n: usize) -> Self;
    /// The floats at `p + l` for each lane `l` set in `lanes` (only those
    /// are read: `p` itself may be outside the slice), zeros elsewhere.
    unsafe fn load_lanes(p: *const f32, lanes: u16) -> Self;
    unsafe fn splat(p: *const f32) -> Self;
    unsafe fn fma(a: Self, b: Self, acc: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// Every lane `x`.
    unsafe fn value(x: f32) -> Self;
    /// ReLU per lane, as [`relu`](super::act::relu): NaN kept, −0 to 0.
    unsafe fn relu(self) -> Self;
    /// Leaky ReLU per lane: what is not ≥ 0 (NaN too) times `slope`.
    unsafe fn leaky(self, slope: f32) -> Self;
}

#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        std::arch::x86_64::_mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::arch::x86_64::_mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_low(p: *const f32, n: usize) -> Self {
        std::arch::x86_64::_mm512_maskz_loadu_ps(low_lanes(n), p)
    }
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lanes: u16) -> Self {
        std::arch::x86_64::_mm512_maskz_loadu_ps(lanes, p)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        std::arch::x86_64::_mm512_set1_ps(*p)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, acc: Self) -> Self {
        std::arch::x86_64::_mm512_fmadd_ps(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        std::arch::x86_64::_mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        std::arch::x86_64::_mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::arch::x86_64::_mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn value(x: f32) -> Self {
        std::arch::x86_64::_mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        use std::arch::x86_64::{_mm512_cmp_ps_mask, _mm512_maskz_mov_ps, _mm512_setzero_ps, _CMP_NLE_UQ};
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(self, _mm512_setzero_ps()), self)
    }
    #[inline(always)]
    unsafe fn leaky(self, slope: f32) -> Self {
        use std::arch::x86_64::{_mm512_cmp_ps_mask, _mm512_mask_mov_ps, _mm512_setzero_ps, _CMP_GE_OQ};
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(self, _mm512_setzero_ps());
        _mm512_mask_mov_ps(Self::mul(self, Self::value(slope)), keep, self)
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m256 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        std::arch::x86_64::_mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_low(p: *const f32, n: usize) -> Self {
        use std::arch::x86_64::{_mm256_cmpgt_epi32, _mm256_maskload_ps, _mm256_set1_epi32, _mm256_setr_epi32};
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes))
    }
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lanes: u16) -> Self {
        std::mem::transmute::<[f32; 8], Self>(Portable::load_lanes(p, lanes).0)
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        std::arch::x86_64::_mm256_broadcast_ss(&*p)
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, acc: Self) -> Self {
        std::arch::x86_64::_mm256_fmadd_ps(a, b, acc)
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        std::arch::x86_64::_mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        std::arch::x86_64::_mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::arch::x86_64::_mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn value(x: f32) -> Self {
        std::arch::x86_64::_mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        use std::arch::x86_64::{_mm256_and_ps, _mm256_cmp_ps, _mm256_setzero_ps, _CMP_NLE_UQ};
        _mm256_and_ps(self, _mm256_cmp_ps::<_CMP_NLE_UQ>(self, _mm256_setzero_ps()))
    }
    #[inline(always)]
    unsafe fn leaky(self, slope: f32) -> Self {
        use std::arch::x86_64::{_mm256_blendv_ps, _mm256_cmp_ps, _mm256_setzero_ps, _CMP_GE_OQ};
        let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(self, _mm256_setzero_ps());
        _mm256_blendv_ps(Self::mul(self, Self::value(slope)), self, keep)
    }
}

/// Eight floats in plain Rust, for CPUs without AVX2 (the compiler
/// vectorises what it can).
#[derive(Clone, Copy)]
pub(crate) struct Portable([f32; 8]);

impl Lanes for Portable {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable([0.0; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Portable(std::ptr::read_unaligned(p.cast()))
    }
    #[inline(always)]
    unsafe fn load_low(p: *const f32, n: usize) -> Self {
        Portable(std::array::from_fn(|i| if i < n { *p.add(i) } else { 0.0 }))
    }
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lanes: u16) -> Self {
        Portable(std::array::from_fn(|i| {
            if lanes >> i & 1 == 1 {
                *p.wrapping_add(i)
            } else {
                0.0
            }
        }))
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        Portable([*p; 8])
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, acc: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] * b.0[i] + acc.0[i]))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] + b.0[i]))
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| a.0[i] * b.0[i]))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p.cast(), self.0)
    }
    #[inline(always)]
    unsafe fn value(x: f32) -> Self {
        Portable([x; 8])
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        Portable(self.0.map(super::act::relu))
    }
    #[inline(always)]
    unsafe fn leaky(self, slope: f32) -> Self {
        Portable(self.0.map(|v| if v >= 0.0 { v } else { v * slope }))
    }
}
