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

    /// The elements per channel: `H·W` for images, 1 for features (what a
    /// per-channel kernel walks for each channel).
    pub fn inner(&self) -> usize {
        self.dims.iter().skip(1).product()
    }

    /// An image's height (1 for features).
    pub fn height(&self) -> usize {
        self.dims.get(1).copied().unwrap_or(1)
    }

    /// An image's width (1 for features).
    pub fn width(&self) -> usize {
        self.dims.get(2).copied().unwrap_or(1)
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
