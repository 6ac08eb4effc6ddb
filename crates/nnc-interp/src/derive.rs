//! Evaluates derived parameters (folded batch norms) once, at load, in f64:
//! folding is then as exact as the f32 it ends in.

use nnc_ir::{BinaryOp, Derivation};

/// A tensor being computed: its shape (`[]` for a scalar) and values.
pub(crate) struct Value {
    shape: Vec<usize>,
    data: Vec<f64>,
}

/// Evaluates `d` given every parameter's shape and values (indexed by
/// `ParamId`; derived ones already evaluated if `d` reads them).
pub(crate) fn evaluate(d: &Derivation, shapes: &[Vec<usize>], values: &[Vec<f32>]) -> Result<Vec<f32>, String> {
    let v = eval(d, shapes, values)?;
    Ok(v.data.iter().map(|x| *x as f32).collect())
}

fn eval(d: &Derivation, shapes: &[Vec<usize>], values: &[Vec<f32>]) -> Result<Value, String> {
    Ok(match d {
        Derivation::Param(p) => {
            let i = p.0 as usize;
            let (Some(shape), Some(data)) = (shapes.get(i), values.get(i)) else {
                return Err(format!("derivation reads parameter #{i}, which has no value"));
            };
            Value {
                shape: shape.clone(),
                data: data.iter().map(|x| f64::from(*x)).collect(),
            }
        }
        Derivation::Const(c) => Value {
            shape: Vec::new(),
            data: vec![f64::from(*c)],
        },
        Derivation::Sqrt(x) => {
            let mut v = eval(x, shapes, values)?;
            v.data.iter_mut().for_each(|x| *x = x.sqrt());
            v
        }
        Derivation::Binary { op, lhs, rhs } => {
            let (a, b) = (eval(lhs, shapes, values)?, eval(rhs, shapes, values)?);
            let f = |x: f64, y: f64| match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
            };
            match (a.data.len(), b.data.len()) {
                (1, _) if a.shape.is_empty() => Value {
                    data: b.data.iter().map(|y| f(a.data[0], *y)).collect(),
                    shape: b.shape,
                },
                (_, 1) if b.shape.is_empty() => Value {
                    data: a.data.iter().map(|x| f(*x, b.data[0])).collect(),
                    shape: a.shape,
                },
                (n, m) if n == m => Value {
                    data: a.data.iter().zip(&b.data).map(|(x, y)| f(*x, *y)).collect(),
                    shape: a.shape,
                },
                _ => return Err(format!("`{}` on shapes {:?} and {:?}", op.symbol(), a.shape, b.shape)),
            }
        }
        Derivation::ScaleRows { matrix, scale } => {
            let (mut m, s) = (eval(matrix, shapes, values)?, eval(scale, shapes, values)?);
            let rows = s.data.len().max(1);
            let per_row = m.data.len() / rows;
            for (row, chunk) in m.data.chunks_mut(per_row.max(1)).enumerate() {
                let k = s.data.get(row).copied().unwrap_or(1.0);
                chunk.iter_mut().for_each(|x| *x *= k);
            }
            m
        }
        Derivation::ScaleCols { matrix, scale } => {
            let (mut m, s) = (eval(matrix, shapes, values)?, eval(scale, shapes, values)?);
            let (cols, inner) = cols_and_inner(&m.shape);
            for (j, chunk) in m.data.chunks_mut(inner.max(1)).enumerate() {
                let k = s.data.get(j % cols.max(1)).copied().unwrap_or(1.0);
                chunk.iter_mut().for_each(|x| *x *= k);
            }
            m
        }
        Derivation::MatVec { matrix, vector } => {
            let (m, v) = (eval(matrix, shapes, values)?, eval(vector, shapes, values)?);
            let rows = m.shape.first().copied().unwrap_or(0);
            let (cols, inner) = cols_and_inner(&m.shape);
            let per_row = cols * inner;
            let data = (0..rows)
                .map(|o| {
                    let row = &m.data[o * per_row..(o + 1) * per_row];
                    row.chunks(inner.max(1))
                        .enumerate()
                        .map(|(i, c)| c.iter().sum::<f64>() * v.data.get(i).copied().unwrap_or(0.0))
                        .sum()
                })
                .collect();
            Value {
                shape: vec![rows],
                data,
            }
        }
    })
}

/// For a weight `[O, I, rest...]`: I, and the product of `rest` (1 for dense).
fn cols_and_inner(shape: &[usize]) -> (usize, usize) {
    let cols = shape.get(1).copied().unwrap_or(1);
    let inner = shape.iter().skip(2).product::<usize>();
    (cols, inner)
}
