//! Value types: f32 tensors whose first axis is the symbolic batch `N`.

use std::fmt;

/// The type of an SSA value: f32 with shape `[N, dims...]`. Only the
/// per-sample dims are stored; the batch axis is always there and symbolic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueType {
    pub dims: Vec<usize>,
}

impl ValueType {
    pub fn new(dims: impl Into<Vec<usize>>) -> ValueType {
        ValueType { dims: dims.into() }
    }

    /// Features (`[F]`) or channels (`[C, H, W]`): the axis that per-feature
    /// and per-channel parameters run along.
    pub fn channels(&self) -> usize {
        self.dims.first().copied().unwrap_or(1)
    }

    /// The number of elements per sample (saturating: a count that does not
    /// fit is as good as infinite for every check that uses it).
    pub fn numel(&self) -> usize {
        self.dims
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(*d))
            .unwrap_or(usize::MAX)
    }

    /// True for `[C, H, W]` images.
    pub fn is_image(&self) -> bool {
        self.dims.len() == 3
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f32[N")?;
        for d in &self.dims {
            write!(f, ",{d}")?;
        }
        write!(f, "]")
    }
}

/// Prints a parameter shape (no batch axis): `f32[750,800]`.
pub fn fmt_param_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("f32[{}]", dims.join(","))
}
