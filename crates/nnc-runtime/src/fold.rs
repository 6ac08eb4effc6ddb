//! Derived parameters (folded batch norms), computed once at load in f64 so
//! that folding is as exact as the f32 it ends in. The interpreter maps the
//! IR's derivations onto these operations, and generated code spells them
//! out; both trust the compiler's verifier to have checked the shapes.

use crate::io::weights::{Tensor, Weights};
use std::ops::{Add, Div, Mul, Sub};

/// A tensor being computed: its shape (`[]` for a scalar) and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Folded {
    /// A stored tensor, widened.
    pub fn of(shape: &[usize], data: &[f32]) -> Folded {
        Folded {
            shape: shape.to_vec(),
            data: data.iter().map(|x| f64::from(*x)).collect(),
        }
    }

    /// The tensor `name` of `weights` (empty if absent: loading checked it).
    pub fn param(weights: &Weights, name: &str) -> Folded {
        match weights.tensors.get(name) {
            Some(t) => Folded::of(&t.shape, &t.data),
            None => Folded {
                shape: vec![0],
                data: Vec::new(),
            },
        }
    }

    pub fn scalar(value: f32) -> Folded {
        Folded {
            shape: Vec::new(),
            data: vec![f64::from(value)],
        }
    }

    pub fn sqrt(mut self) -> Folded {
        self.data.iter_mut().for_each(|x| *x = x.sqrt());
        self
    }

    /// `W[o, ...] · s[o]`: scales each output row.
    pub fn scale_rows(mut self, scale: Folded) -> Folded {
        let per_row = self.data.len() / scale.data.len().max(1);
        for (row, chunk) in self.data.chunks_mut(per_row.max(1)).enumerate() {
            let k = scale.data.get(row).copied().unwrap_or(1.0);
            chunk.iter_mut().for_each(|x| *x *= k);
        }
        self
    }

    /// `W[o, i, ...] · s[i]`: scales each input column.
    pub fn scale_cols(mut self, scale: Folded) -> Folded {
        let (cols, inner) = cols_and_inner(&self.shape);
        for (j, chunk) in self.data.chunks_mut(inner.max(1)).enumerate() {
            let k = scale.data.get(j % cols.max(1)).copied().unwrap_or(1.0);
            chunk.iter_mut().for_each(|x| *x *= k);
        }
        self
    }

    /// `Σ_i Σ_rest W[o, i, rest] · v[i]` → `[OUT]`.
    pub fn mat_vec(self, vector: Folded) -> Folded {
        let rows = self.shape.first().copied().unwrap_or(0);
        let (cols, inner) = cols_and_inner(&self.shape);
        let per_row = cols * inner;
        let data = self
            .data
            .chunks(per_row.max(1))
            .take(rows)
            .map(|row| {
                row.chunks(inner.max(1))
                    .enumerate()
                    .map(|(i, c)| c.iter().sum::<f64>() * vector.data.get(i).copied().unwrap_or(0.0))
                    .sum()
            })
            .collect();
        Folded {
            shape: vec![rows],
            data,
        }
    }

    /// Rounds to the f32 tensor the kernels read.
    pub fn finish(self) -> Tensor {
        Tensor {
            data: self.data.iter().map(|x| *x as f32).collect(),
            shape: self.shape,
        }
    }

    /// Element-wise on equal shapes, or with a scalar on either side.
    fn zip(self, other: Folded, f: impl Fn(f64, f64) -> f64) -> Folded {
        if self.shape.is_empty() && self.data.len() == 1 {
            let a = self.data[0];
            return Folded {
                data: other.data.iter().map(|b| f(a, *b)).collect(),
                shape: other.shape,
            };
        }
        if other.shape.is_empty() && other.data.len() == 1 {
            let b = other.data[0];
            return Folded {
                data: self.data.iter().map(|a| f(*a, b)).collect(),
                shape: self.shape,
            };
        }
        Folded {
            data: self.data.iter().zip(&other.data).map(|(a, b)| f(*a, *b)).collect(),
            shape: self.shape,
        }
    }
}

macro_rules! arithmetic {
    ($($trait:ident $method:ident $op:tt),*) => {$(
        impl $trait for Folded {
            type Output = Folded;
            fn $method(self, rhs: Folded) -> Folded {
                self.zip(rhs, |a, b| a $op b)
            }
        }
    )*};
}

arithmetic!(Add add +, Sub sub -, Mul mul *, Div div /);

/// For a weight `[O, I, rest...]`: I, and the product of `rest` (1 for dense).
fn cols_and_inner(shape: &[usize]) -> (usize, usize) {
    let cols = shape.get(1).copied().unwrap_or(1);
    let inner = shape.iter().skip(2).product::<usize>();
    (cols, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_a_batch_norm_into_rows_by_hand() {
        // W = [[1, 2], [3, 4]], γ = [2, 0.5], var = [3, 15], eps = 1:
        // scale = γ / sqrt(var + eps) = [1, 0.125].
        let w = Folded::of(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let scale = Folded::of(&[2], &[2.0, 0.5]) / (Folded::of(&[2], &[3.0, 15.0]) + Folded::scalar(1.0)).sqrt();
        assert_eq!(scale.data, vec![1.0, 0.125]);
        let rows = w.clone().scale_rows(scale.clone());
        assert_eq!(rows.data, vec![1.0, 2.0, 0.375, 0.5]);
        let cols = w.clone().scale_cols(scale);
        assert_eq!(cols.data, vec![1.0, 0.25, 3.0, 0.5]);
        let v = w.mat_vec(Folded::of(&[2], &[1.0, -1.0]));
        assert_eq!((v.shape, v.data), (vec![2], vec![-1.0, -1.0]));
        assert_eq!(
            (Folded::scalar(1.0) - Folded::of(&[1], &[3.0])).finish().data,
            vec![-2.0]
        );
    }
}
