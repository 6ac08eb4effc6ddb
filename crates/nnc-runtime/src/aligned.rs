//! Activation buffers that start on a cache line.
//!
//! The conv kernels store rows of whole 16-float vectors; where a buffer
//! starts 16 bytes past a line (what the allocator gives a large `Vec`:
//! glibc's mapped chunks begin 16 bytes into a page) every one of those
//! stores, and every load of the epilogue after them, spans two lines. A
//! pointwise conv on such an output took 18–22 % longer than on one that
//! starts on a line, the first conv of cifar_vgg 20 %.

use std::ops::{Deref, DerefMut};

/// Floats per cache line (and per AVX-512 vector).
pub const LINE: usize = 16;

/// A zeroed buffer of `f32` whose first element starts a 64-byte line. It
/// derefs to its slice; moving it (`std::mem::take`) keeps the alignment,
/// as the heap block does not move.
#[derive(Clone, Debug, Default)]
pub struct AlignedBuf {
    block: Vec<f32>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros from a line boundary.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let block = vec![0.0; len + LINE - 1];
        let start = line_offset(block.as_ptr());
        AlignedBuf { block, start, len }
    }
}

impl Deref for AlignedBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.block[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.block[self.start..self.start + self.len]
    }
}

/// Floats from `p` to the next line boundary (0 if `p` is on one).
pub fn line_offset(p: *const f32) -> usize {
    (p as usize).wrapping_neg() % (4 * LINE) / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_moves_with_it() {
        for len in [0, 1, 15, 16, 1000, 1 << 16] {
            let mut buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr() as usize % 64, 0, "{len}");
            buf.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            let moved = std::mem::take(&mut buf);
            assert_eq!((buf.len(), moved.len()), (0, len));
            assert_eq!(moved.as_ptr() as usize % 64, 0);
            assert!(moved.iter().enumerate().all(|(i, v)| *v == i as f32));
        }
    }
}
