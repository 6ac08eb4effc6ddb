//! Evaluates derived parameters (folded batch norms) once, at load, with the
//! runtime's f64 folding; the derivation's shapes are checked first, so a
//! hand-written IR file with a bad one is an error, not a wrong number.

use nnc_ir::{BinaryOp, Derivation};
use nnc_runtime::fold::Folded;

/// Evaluates `d` given every parameter's shape and values (indexed by
/// `ParamId`; derived ones already evaluated if `d` reads them).
pub(crate) fn evaluate(d: &Derivation, shapes: &[&[usize]], values: &[Vec<f32>]) -> Result<Vec<f32>, String> {
    d.shape(shapes).map_err(|e| e.to_string())?;
    Ok(eval(d, shapes, values)?.finish().data)
}

fn eval(d: &Derivation, shapes: &[&[usize]], values: &[Vec<f32>]) -> Result<Folded, String> {
    Ok(match d {
        Derivation::Param(p) => {
            let i = p.0 as usize;
            let (Some(shape), Some(data)) = (shapes.get(i), values.get(i)) else {
                return Err(format!("derivation reads parameter #{i}, which has no value"));
            };
            Folded::of(shape, data)
        }
        Derivation::Const(c) => Folded::scalar(*c),
        Derivation::Sqrt(x) => eval(x, shapes, values)?.sqrt(),
        Derivation::Binary { op, lhs, rhs } => {
            let (a, b) = (eval(lhs, shapes, values)?, eval(rhs, shapes, values)?);
            match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div => a / b,
            }
        }
        Derivation::ScaleRows { matrix, scale } => {
            eval(matrix, shapes, values)?.scale_rows(eval(scale, shapes, values)?)
        }
        Derivation::ScaleCols { matrix, scale } => {
            eval(matrix, shapes, values)?.scale_cols(eval(scale, shapes, values)?)
        }
        Derivation::MatVec { matrix, vector } => eval(matrix, shapes, values)?.mat_vec(eval(vector, shapes, values)?),
    })
}
