//! A tiny reference evaluator for the numeric checks: parameter values from a
//! fixed pseudo-random fill (derived ones by evaluating their derivation on
//! `Vec<f32>`), and one sample run through linear, conv, batch norm (infer)
//! and affine ops, written from the formulas rather than from the passes.

use nnc_ir::{BinaryOp, Derivation, EpilogueStep, Function, Module, Op, ParamId, ParamRole, ParamSource};

/// A dense row-major tensor; a scalar has shape `[]`.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Deterministic numbers in [-1, 1) (a 32-bit LCG), different per `seed`.
fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// The value of a parameter: stored ones are filled from their id (variances
/// kept positive), derived ones computed from their derivation.
pub fn param_value(m: &Module, id: ParamId) -> Tensor {
    let p = m.param(id);
    match &p.source {
        ParamSource::Derived(d) => derive(m, d),
        ParamSource::Init(_) => {
            let n = p.shape.iter().product();
            let mut data = fill(n, id.0 + 1);
            if p.role == ParamRole::RunningVar {
                data.iter_mut().for_each(|v| *v = v.abs() + 0.25);
            }
            Tensor {
                shape: p.shape.clone(),
                data,
            }
        }
    }
}

fn derive(m: &Module, d: &Derivation) -> Tensor {
    match d {
        Derivation::Param(p) => param_value(m, *p),
        Derivation::Const(c) => Tensor {
            shape: vec![],
            data: vec![*c],
        },
        Derivation::Sqrt(x) => {
            let mut t = derive(m, x);
            t.data.iter_mut().for_each(|v| *v = v.sqrt());
            t
        }
        Derivation::Binary { op, lhs, rhs } => {
            let (a, b) = (derive(m, lhs), derive(m, rhs));
            let shape = if a.shape.is_empty() {
                b.shape.clone()
            } else {
                a.shape.clone()
            };
            let n = a.data.len().max(b.data.len());
            let at = |t: &Tensor, i: usize| {
                if t.data.len() == 1 {
                    t.data[0]
                } else {
                    t.data[i]
                }
            };
            let data = (0..n)
                .map(|i| {
                    let (x, y) = (at(&a, i), at(&b, i));
                    match op {
                        BinaryOp::Add => x + y,
                        BinaryOp::Sub => x - y,
                        BinaryOp::Mul => x * y,
                        BinaryOp::Div => x / y,
                    }
                })
                .collect();
            Tensor { shape, data }
        }
        Derivation::ScaleRows { matrix, scale } => {
            let (mut w, s) = (derive(m, matrix), derive(m, scale));
            let inner = w.data.len() / w.shape[0];
            w.data.iter_mut().enumerate().for_each(|(i, v)| *v *= s.data[i / inner]);
            w
        }
        Derivation::ScaleCols { matrix, scale } => {
            let (mut w, s) = (derive(m, matrix), derive(m, scale));
            let rest: usize = w.shape[2..].iter().product();
            let cols = w.shape[1];
            w.data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v *= s.data[(i / rest) % cols]);
            w
        }
        Derivation::MatVec { matrix, vector } => {
            let (w, v) = (derive(m, matrix), derive(m, vector));
            let (rows, cols) = (w.shape[0], w.shape[1]);
            let rest: usize = w.shape[2..].iter().product();
            let data = (0..rows)
                .map(|o| {
                    (0..cols * rest)
                        .map(|j| w.data[o * cols * rest + j] * v.data[j / rest])
                        .sum()
                })
                .collect();
            Tensor {
                shape: vec![rows],
                data,
            }
        }
    }
}

/// Runs one sample through `f`; panics on ops the checks do not use.
pub fn run(m: &Module, f: &Function, x: &Tensor) -> Tensor {
    let mut values: Vec<Option<Tensor>> = vec![None; f.values.len()];
    values[f.input.0 as usize] = Some(x.clone());
    for op in &f.ops {
        let x = values[op.args[0].0 as usize].clone().unwrap();
        let y = match &op.op {
            Op::Linear {
                weight, bias, epilogue, ..
            }
            | Op::Conv2d {
                weight, bias, epilogue, ..
            } => {
                let mut y = match &op.op {
                    Op::Conv2d { geometry, .. } => conv(&x, &param_value(m, *weight), geometry.pads),
                    _ => linear(&x, &param_value(m, *weight)),
                };
                if let Some(b) = bias {
                    y = per_channel(&y, &param_value(m, *b), |v, b| v + b);
                }
                for step in &epilogue.steps {
                    y = match step {
                        EpilogueStep::Affine { scale, shift } => affine(m, &y, *scale, *shift),
                        EpilogueStep::Act(a) => panic!("no evaluator for {}", a.name()),
                        EpilogueStep::Add => panic!("no evaluator for a residual's sum"),
                        EpilogueStep::MaxPool { .. } => panic!("no evaluator for a pool"),
                    };
                }
                y
            }
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                ..
            } => {
                let y = per_channel(&x, &param_value(m, *running_mean), |v, mu| v - mu);
                let var = param_value(m, *running_var);
                let y = per_channel(&y, &var, |v, var| v / (var + eps).sqrt());
                let y = per_channel(&y, &param_value(m, *weight), |v, g| v * g);
                per_channel(&y, &param_value(m, *bias), |v, b| v + b)
            }
            Op::Affine { scale, shift } => affine(m, &x, *scale, *shift),
            other => panic!("no evaluator for {}", other.name()),
        };
        values[op.result.0 as usize] = Some(y);
    }
    values[f.output.0 as usize].clone().unwrap()
}

/// The input a check feeds in: the fill for seed 1000.
pub fn input(shape: &[usize]) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data: fill(shape.iter().product(), 1000),
    }
}

pub fn assert_close(a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape, b.shape);
    for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
        assert!((x - y).abs() <= 1e-5, "element {i}: {x} vs {y}");
    }
}

fn affine(m: &Module, x: &Tensor, scale: ParamId, shift: ParamId) -> Tensor {
    let y = per_channel(x, &param_value(m, scale), |v, s| v * s);
    per_channel(&y, &param_value(m, shift), |v, t| v + t)
}

/// Applies `f(value, c[channel])` along the first axis.
fn per_channel(x: &Tensor, c: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    let inner = x.data.len() / x.shape[0];
    let data = x
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| f(*v, c.data[i / inner]))
        .collect();
    Tensor {
        shape: x.shape.clone(),
        data,
    }
}

fn linear(x: &Tensor, w: &Tensor) -> Tensor {
    let (out, inp) = (w.shape[0], w.shape[1]);
    let data = (0..out)
        .map(|o| (0..inp).map(|i| w.data[o * inp + i] * x.data[i]).sum())
        .collect();
    Tensor { shape: vec![out], data }
}

/// Stride 1, one group, zero padding `[top, left, bottom, right]`.
fn conv(x: &Tensor, w: &Tensor, pads: [u32; 4]) -> Tensor {
    let (c, h, wd) = (x.shape[0], x.shape[1] as isize, x.shape[2] as isize);
    let (out, k) = (w.shape[0], w.shape[2] as isize);
    let (top, left) = (pads[0] as isize, pads[1] as isize);
    let ho = h + top + pads[2] as isize - k + 1;
    let wo = wd + left + pads[3] as isize - k + 1;
    let mut data = Vec::new();
    for o in 0..out {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut sum = 0.0;
                for ci in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (oy + ky - top, ox + kx - left);
                            if iy < 0 || ix < 0 || iy >= h || ix >= wd {
                                continue;
                            }
                            let wi = ((o * c + ci) as isize * k + ky) * k + kx;
                            sum += w.data[wi as usize]
                                * x.data[(ci as isize * h + iy) as usize * wd as usize + ix as usize];
                        }
                    }
                }
                data.push(sum);
            }
        }
    }
    Tensor {
        shape: vec![out, ho as usize, wo as usize],
        data,
    }
}
