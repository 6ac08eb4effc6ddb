//! The one place IR ops meet kernels: an exhaustive `match` from
//! `nnc_ir::Op` onto `nnc_runtime` calls.

use crate::plan::{conv_geometry, pool_geometry};
use crate::{Error, Failed, LaidOut, Model, Params, State};
use nnc_ir::{Act, EpilogueStep as IrStep, Mode, Op, ParamId, ValueId, ValueType};
use nnc_runtime::kernels::act::{maxout, softmax, Activation};
use nnc_runtime::kernels::conv::{conv2d, conv2d_packed};
use nnc_runtime::kernels::dense::{dense, dense_weight};
use nnc_runtime::kernels::dropout::{alpha_dropout_save, dropblock, dropconnect_save, dropout_save, rrelu_train_save};
use nnc_runtime::kernels::epilogue::{Epilogue, EpilogueStep, Residual};
use nnc_runtime::kernels::norm::{
    add, affine, batch_norm_infer, batch_norm_train, batch_norm_train_save, group_norm, group_norm_save, instance_norm,
    instance_norm_save, layer_norm, layer_norm_save, lrn,
};
use nnc_runtime::kernels::pool::{avg_pool2d, global_avg_pool, max_pool2d, max_pool2d_argmax, PoolGeometry};
use nnc_runtime::Rng;

/// The longest epilogue the interpreter runs without allocating.
const MAX_STEPS: usize = 16;

/// Runs op `index` of the model's function on `batch` samples, in `it`'s
/// buffers.
pub(crate) fn run_op(
    m: &Model,
    mut params: Params<'_>,
    it: &mut State,
    input: &[f32],
    index: usize,
    batch: usize,
    seed: u64,
) -> Result<(), Error> {
    let train = m.func.mode == Mode::Train;
    let op = &m.func.ops[index];
    let x_ty = m.func.value_type(op.args[0]);
    let y_ty = m.func.value_type(op.result);
    let (channels, inner) = (x_ty.channels(), x_ty.inner());
    let x_len = batch * x_ty.numel();
    let y_len = batch * y_ty.numel();
    // The output buffer leaves the table while the op writes it, so the
    // inputs can be borrowed from the table at the same time (no copy: an
    // empty Vec does not allocate).
    let out_slot = m.plan.slot(op.result);
    let mut out = std::mem::take(&mut it.buffers[out_slot]);
    let y = &mut out[..y_len];
    // The function's input is read where the caller holds it, not copied in.
    let read = |v: ValueId| {
        if v == m.func.input {
            &input[..x_len]
        } else {
            &it.buffers[m.plan.slot(v)][..x_len]
        }
    };
    let x = read(op.args[0]);
    let values = params.values();
    let p = |id: &ParamId| values[id.0 as usize].as_slice();
    // What the op records for a backward: empty unless the interpreter
    // runs for one (the `_save` kernels then record nothing).
    let record: &mut [f32] = it.records.get_mut(index).map_or(&mut [], |r| r.as_mut_slice());
    // Only ops that draw (in training) build their generator.
    let rng = || Rng::new(seed, (1 << 63) | index as u64);
    if !train && op.op.shared_by_samples() {
        // Inference: the op's samples (a pool's planes) are independent;
        // share them.
        let units = op.op.units_per_sample(x_ty);
        let failed = Failed::default();
        it.team.per_samples(batch * units, x, y, &|x, n, y| {
            failed.keep(sample_op(&op.op, values, (x_ty, units), x, n, y));
        });
        it.buffers[out_slot] = out;
        return failed.result();
    }
    let result = match &op.op {
        Op::Linear {
            weight,
            bias,
            dropconnect: drop,
            epilogue,
        } => {
            let (n_out, n_in) = (y_ty.channels(), x_ty.numel());
            let mut steps = [EpilogueStep::Act(Activation::Identity); MAX_STEPS];
            let n = epilogue_steps(&epilogue.steps, values, &mut steps)?;
            let ep = Epilogue {
                bias: bias.as_ref().map(p),
                steps: &steps[..n],
                residual: None,
            };
            match (drop, &m.laid_out[weight.0 as usize]) {
                (Some(rate), _) if train => {
                    // A fresh mask each pass, so the masked weight is used once, as rows.
                    let masked = &mut it.scratch[..p(weight).len()];
                    dropconnect_save(p(weight), *rate, &mut rng(), masked, record);
                    dense(x, batch, n_in, &it.scratch[..p(weight).len()], n_out, &ep, y, &it.team);
                }
                (_, Some(LaidOut::Dense(laid_out))) => dense_weight(x, batch, laid_out, &ep, y, &it.team),
                _ => dense(x, batch, n_in, p(weight), n_out, &ep, y, &it.team),
            }
            Ok(())
        }
        Op::Conv2d {
            weight,
            bias,
            geometry,
            dropconnect: drop,
            epilogue,
        } => {
            let g = conv_geometry(x_ty, geometry, y_ty, epilogue.pool_window());
            let (before, after) = epilogue.split_at_sum();
            let mut steps = [EpilogueStep::Act(Activation::Identity); MAX_STEPS];
            let mut then = [EpilogueStep::Act(Activation::Identity); MAX_STEPS];
            let n = epilogue_steps(before, values, &mut steps)?;
            let n_then = epilogue_steps(after.unwrap_or(&[]), values, &mut then)?;
            // The residual is of the output's type (the shape rule).
            let residual = match (after, op.args.get(1)) {
                (Some(_), Some(r)) if *r == m.func.input => Some(&input[..y_len]),
                (Some(_), Some(r)) => Some(&it.buffers[m.plan.slot(*r)][..y_len]),
                _ => None,
            };
            let ep = Epilogue {
                bias: bias.as_ref().map(p),
                steps: &steps[..n],
                residual: residual.map(|values| Residual {
                    values,
                    then: &then[..n_then],
                }),
            };
            let threads = it.team.threads();
            match (drop, &m.laid_out[weight.0 as usize]) {
                (Some(rate), _) if train => {
                    // A fresh mask each pass, applied to the weight as stored.
                    let (masked, cols) = it.scratch.split_at_mut(p(weight).len());
                    dropconnect_save(p(weight), *rate, &mut rng(), masked, record);
                    conv2d(
                        x,
                        batch,
                        &g,
                        masked,
                        &ep,
                        y,
                        &mut cols[..g.scratch_len(threads)],
                        &it.team,
                    );
                }
                (_, Some(LaidOut::Conv(laid_out))) => {
                    let scratch = &mut it.scratch[..g.packed_scratch_len(threads)];
                    conv2d_packed(x, batch, &g, laid_out, &ep, y, scratch, &it.team);
                }
                _ => conv2d(
                    x,
                    batch,
                    &g,
                    p(weight),
                    &ep,
                    y,
                    &mut it.scratch[..g.scratch_len(threads)],
                    &it.team,
                ),
            }
            Ok(())
        }
        Op::MaxPool(g) if it.argmax.get(index).is_some_and(|a| !a.is_empty()) => {
            let argmax = &mut it.argmax[index];
            max_pool2d_argmax(x, batch, &pool_geometry(x_ty, g), y, argmax);
            Ok(())
        }
        Op::Flatten => {
            y.copy_from_slice(x);
            Ok(())
        }
        Op::Act(act) => run_act(act, x, batch, channels, inner, values, train, rng, y, record),
        Op::BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            momentum,
        } if train => {
            let Params::Write(params) = &mut params else {
                return Err(Error::Unsupported("a training batch norm on shared parameters".into()));
            };
            // The running statistics leave the table while the kernel
            // updates them; γ and β are read from it meanwhile.
            let mut mean = std::mem::take(&mut params[running_mean.0 as usize]);
            let mut var = std::mem::take(&mut params[running_var.0 as usize]);
            let (gamma, beta) = (&params[weight.0 as usize], &params[bias.0 as usize]);
            if record.is_empty() {
                batch_norm_train(
                    x, batch, channels, inner, gamma, beta, &mut mean, &mut var, *eps, *momentum, y, &it.team,
                );
            } else {
                batch_norm_train_save(
                    x, batch, channels, inner, gamma, beta, &mut mean, &mut var, *eps, *momentum, y, record, &it.team,
                );
            }
            params[running_mean.0 as usize] = mean;
            params[running_var.0 as usize] = var;
            Ok(())
        }
        // The recording forms of the per-sample norms.
        Op::LayerNorm { weight, bias, eps } if !record.is_empty() => {
            layer_norm_save(x, batch, x_ty.numel(), p(weight), p(bias), *eps, y, record);
            Ok(())
        }
        Op::InstanceNorm { weight, bias, eps } if !record.is_empty() => {
            instance_norm_save(x, batch, channels, inner, p(weight), p(bias), *eps, y, record);
            Ok(())
        }
        Op::GroupNorm {
            weight,
            bias,
            groups,
            eps,
        } if !record.is_empty() => {
            let g = *groups as usize;
            group_norm_save(x, batch, channels, inner, g, p(weight), p(bias), *eps, y, record);
            Ok(())
        }
        Op::MaxPool(_)
        | Op::AvgPool(_)
        | Op::GlobalAvgPool
        | Op::BatchNorm { .. }
        | Op::LayerNorm { .. }
        | Op::InstanceNorm { .. }
        | Op::GroupNorm { .. }
        | Op::Lrn { .. }
        | Op::Affine { .. } => sample_op(&op.op, values, (x_ty, 1), x, batch, y),
        Op::Dropout { p: rate } if train => {
            dropout_save(x, *rate, &mut rng(), y, record);
            Ok(())
        }
        Op::AlphaDropout { p: rate } if train => {
            alpha_dropout_save(x, *rate, &mut rng(), y, record);
            Ok(())
        }
        Op::DropBlock { p: rate, block } if train => {
            let (h, w) = (x_ty.height(), x_ty.width());
            // Recording keeps the mask for the backward; else it is scratch.
            let mask = if record.is_empty() {
                &mut it.scratch[..x_len]
            } else {
                record
            };
            dropblock(x, batch, channels, h, w, *rate, *block as usize, &mut rng(), y, mask);
            Ok(())
        }
        // Inference: every dropout is the identity.
        Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => {
            y.copy_from_slice(x);
            Ok(())
        }
        Op::Add => {
            let b = read(op.args[1]);
            add(x, b, y);
            Ok(())
        }
    };
    it.buffers[out_slot] = out;
    result
}

/// The forms of the ops [`Op::shared_by_samples`] that record nothing (inference, or
/// a training forward that keeps no record), on `batch` units of
/// [`Op::units_per_sample`] (`units` a sample of `x_ty`: a unit's
/// channels are the sample's over `units`).
fn sample_op(
    op: &Op,
    params: &[Vec<f32>],
    (x_ty, units): (&ValueType, usize),
    x: &[f32],
    batch: usize,
    y: &mut [f32],
) -> Result<(), Error> {
    let p = |id: &ParamId| params[id.0 as usize].as_slice();
    let (channels, inner) = (x_ty.channels() / units.max(1), x_ty.inner());
    let pool = |g| PoolGeometry {
        channels,
        ..pool_geometry(x_ty, g)
    };
    match op {
        Op::MaxPool(g) => max_pool2d(x, batch, &pool(g), y),
        Op::AvgPool(g) => avg_pool2d(x, batch, &pool(g), y),
        Op::GlobalAvgPool => global_avg_pool(x, batch, channels, inner, y),
        Op::Act(act) => {
            let no_rng = || Rng::new(0, 0);
            return run_act(act, x, batch, channels, inner, params, false, no_rng, y, &mut []);
        }
        Op::BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            ..
        } => {
            let (mean, var) = (p(running_mean), p(running_var));
            batch_norm_infer(x, batch, channels, inner, p(weight), p(bias), mean, var, *eps, y);
        }
        Op::LayerNorm { weight, bias, eps } => layer_norm(x, batch, x_ty.numel(), p(weight), p(bias), *eps, y),
        Op::InstanceNorm { weight, bias, eps } => {
            instance_norm(x, batch, channels, inner, p(weight), p(bias), *eps, y);
        }
        Op::GroupNorm {
            weight,
            bias,
            groups,
            eps,
        } => group_norm(x, batch, channels, inner, *groups as usize, p(weight), p(bias), *eps, y),
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => lrn(x, batch, channels, inner, *size as usize, *alpha, *beta, *bias, y),
        Op::Affine { scale, shift } => affine(x, batch, channels, inner, p(scale), p(shift), y),
        other => return Err(Error::Unsupported(format!("{other:?} is not a per-sample op"))),
    }
    Ok(())
}

/// A standalone activation.
#[allow(clippy::too_many_arguments)]
fn run_act(
    act: &Act,
    x: &[f32],
    batch: usize,
    channels: usize,
    inner: usize,
    params: &[Vec<f32>],
    train: bool,
    rng: impl FnOnce() -> Rng,
    y: &mut [f32],
    record: &mut [f32],
) -> Result<(), Error> {
    match act {
        Act::Softmax => softmax(x, batch, channels, inner, y),
        Act::Maxout { pieces } => maxout(x, batch, channels, inner, *pieces as usize, y),
        Act::Rrelu { lower, upper } if train => rrelu_train_save(x, *lower, *upper, &mut rng(), y, record),
        elementwise => {
            let a = activation(elementwise, params)?;
            a.apply_into(x, y, channels, inner);
        }
    }
    Ok(())
}

/// The runtime's activation for an element-wise IR activation. RReLU here
/// is its inference form, the mean slope.
pub(crate) fn activation<'p>(act: &Act, params: &'p [Vec<f32>]) -> Result<Activation<'p>, Error> {
    Ok(match act {
        Act::Sigmoid => Activation::Sigmoid,
        Act::Tanh => Activation::Tanh,
        Act::Relu => Activation::Relu,
        Act::LeakyRelu { alpha } => Activation::LeakyRelu { alpha: *alpha },
        Act::Prelu { weight } => Activation::Prelu {
            slopes: &params[weight.0 as usize],
        },
        Act::Rrelu { lower, upper } => Activation::LeakyRelu {
            alpha: (lower + upper) / 2.0,
        },
        Act::Elu { alpha } => Activation::Elu { alpha: *alpha },
        Act::Selu => Activation::Selu,
        Act::Softplus { beta } => Activation::Softplus { beta: *beta },
        Act::Gelu => Activation::Gelu,
        Act::Silu => Activation::Silu,
        Act::Maxout { .. } | Act::Softmax => {
            return Err(Error::Unsupported(format!(
                "{} as an element-wise activation",
                act.name()
            )))
        }
    })
}

/// Fills `out` with the runtime form of an IR epilogue; returns how many.
fn epilogue_steps<'p>(
    steps: &[IrStep],
    params: &'p [Vec<f32>],
    out: &mut [EpilogueStep<'p>; MAX_STEPS],
) -> Result<usize, Error> {
    if steps.len() > MAX_STEPS {
        return Err(Error::Unsupported(format!(
            "an epilogue of {} steps (at most {MAX_STEPS})",
            steps.len()
        )));
    }
    for (slot, step) in out.iter_mut().zip(steps) {
        *slot = match step {
            IrStep::Affine { scale, shift } => EpilogueStep::Affine {
                scale: &params[scale.0 as usize],
                shift: &params[shift.0 as usize],
            },
            IrStep::Act(act) => EpilogueStep::Act(activation(act, params)?),
            // The caller splits the steps at the residual's sum, and
            // leaves out a pool (the kernel's geometry).
            IrStep::Add | IrStep::MaxPool { .. } => {
                return Err(Error::Unsupported(format!("{step:?} among the steps")))
            }
        };
    }
    Ok(steps.len())
}
