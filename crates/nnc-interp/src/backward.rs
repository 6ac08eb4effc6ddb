//! Gradients: a training-mode forward pass that keeps what the backward
//! reads, then the module's backward function, step by step. The one place
//! where a VJP meets its kernels: an exhaustive `match` over the forward
//! op, as `exec.rs` is for the forward.

use crate::exec::activation;
use crate::plan::{conv_geometry, pool_geometry};
use crate::{Error, Interpreter};
use nnc_ir::grad::rules::{rule, Read, Rule};
use nnc_ir::grad::{Backward, Loss, StepKind, Target};
use nnc_ir::{Act, Mode, Module, Op, ParamId, ValueId};
use nnc_runtime::io::weights::Weights;
use nnc_runtime::kernels::act::{maxout_grad, softmax_grad, From};
use nnc_runtime::kernels::conv::{conv2d_grad_input, conv2d_grad_weight};
use nnc_runtime::kernels::dense::{dense_grad_input, dense_grad_input_then, dense_grad_weight};
use nnc_runtime::kernels::dropout::mask_grad;
pub use nnc_runtime::kernels::loss::Targets;
use nnc_runtime::kernels::loss::{bce, bce_with_logits, mse, penalty, softmax_cross_entropy};
pub use nnc_runtime::kernels::loss::{class_label, TargetKind};
use nnc_runtime::kernels::norm::{
    add, affine_grad, batch_norm_grad, group_norm_grad, instance_norm_grad, layer_norm_grad, lrn_grad,
};
use nnc_runtime::kernels::pool::{avg_pool2d_grad, global_avg_pool_grad, max_pool2d_grad};

/// A module's train function and backward, loaded with weights.
pub struct Gradients {
    forward: Interpreter,
    backward: Backward,
    /// Per forward value, the op defining it.
    producers: nnc_ir::Producers,
    /// Per forward op, its gradient rule.
    rules: Vec<Rule>,
    /// Per backward value, its slot; per slot, its per-sample length.
    slot_of: Vec<usize>,
    slot_len: Vec<usize>,
    buffers: Vec<nnc_runtime::AlignedBuf>,
    /// Per parameter, its gradient (empty for parameters not trained).
    grads: Vec<Vec<f32>>,
    trained: Vec<ParamId>,
    names: Vec<String>,
    /// Per parameter, its `l1=` and `l2=` penalties.
    penalties: Vec<(f32, f32)>,
    scratch: nnc_runtime::AlignedBuf,
    output: Vec<f32>,
    loss: f64,
    planned_batch: usize,
    planned_threads: usize,
}

impl Gradients {
    /// Loads `module`'s train function and backward (the grad stage must
    /// have run) with stored parameters from `weights`.
    pub fn new(module: &Module, weights: &Weights) -> Result<Gradients, Error> {
        let backward = module
            .backward
            .clone()
            .ok_or_else(|| Error::Unsupported("gradients of a module without a backward function".into()))?;
        let train = module.function(Mode::Train).ok_or(Error::NoFunction(Mode::Train))?;
        let kept = backward.kept_values();
        let forward = Interpreter::keeping(module, Mode::Train, weights, &kept, true)?;
        let rules = train
            .ops
            .iter()
            .map(|o| rule(&o.op).map_err(|e| Error::Unsupported(format!("the gradient of {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let trained = backward.trained_params(train);
        let mut grads = vec![Vec::new(); module.params.len()];
        for id in &trained {
            let len = module.params.get(id.0 as usize).map_or(0, |p| p.shape.iter().product());
            grads[id.0 as usize] = vec![0.0; len];
        }
        let plan = nnc_ir::GradientPlan::new(&backward);
        let (slot_of, slot_len) = (plan.slot_of, plan.slot_len);
        Ok(Gradients {
            producers: train.producers(),
            forward,
            backward,
            rules,
            slot_of,
            slot_len,
            buffers: Vec::new(),
            grads,
            trained,
            names: module.params.iter().map(|p| p.name.clone()).collect(),
            penalties: module.params.iter().map(|p| (p.l1, p.l2)).collect(),
            scratch: nnc_runtime::AlignedBuf::default(),
            output: Vec::new(),
            loss: 0.0,
            planned_batch: 0,
            planned_threads: 0,
        })
    }

    /// The loss of the last [`Gradients::run`]: the batch mean plus the
    /// weight penalties.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The train function's output of the last run (batch-major).
    pub fn output(&self) -> &[f32] {
        &self.output
    }

    /// Every trained parameter's name and gradient, in table order.
    pub fn gradients(&self) -> Vec<(&str, &[f32])> {
        let mut ids = self.trained.clone();
        ids.sort();
        ids.iter()
            .map(|id| (self.names[id.0 as usize].as_str(), self.grads[id.0 as usize].as_slice()))
            .collect()
    }

    /// One parameter's gradient, if it is trained.
    pub fn gradient(&self, name: &str) -> Option<&[f32]> {
        let i = self.names.iter().position(|n| n == name)?;
        self.trained
            .contains(&ParamId(i as u32))
            .then(|| self.grads[i].as_slice())
    }

    /// What train op `index` recorded in the last run for the backward (see
    /// `nnc_ir::grad::rules::Record`), if it records anything but
    /// arg-maxes: masks, RReLU's slopes, a norm's statistics.
    pub fn record(&self, index: usize) -> Option<&[f32]> {
        self.forward
            .state
            .records
            .get(index)
            .filter(|r| !r.is_empty())
            .map(Vec::as_slice)
    }

    /// A parameter's current values (running statistics move in training).
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        self.forward.param(name)
    }

    /// The training-mode forward pass of [`Gradients::run`] alone, recording
    /// what a backward reads (masks and slopes from `seed`; running
    /// statistics move); returns the output (batch-major).
    pub fn train_forward(&mut self, input: &[f32], batch: usize, threads: usize, seed: u64) -> Result<&[f32], Error> {
        let out_len = batch * self.forward.output_shape().iter().product::<usize>();
        self.output.resize(out_len, 0.0);
        self.forward.check_input(input, batch)?;
        self.forward.prepare(batch, threads)?;
        crate::forward(
            &self.forward.model,
            crate::Params::Write(&mut self.forward.params),
            &mut self.forward.state,
            input,
            batch,
            seed,
            &mut self.output,
        )?;
        Ok(&self.output)
    }

    /// One training-mode forward pass on `batch` samples of `input` (masks
    /// and RReLU slopes from `seed`) and the backward from the loss against
    /// `targets`; returns the loss.
    pub fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        targets: Targets<'_>,
        threads: usize,
        seed: u64,
    ) -> Result<f64, Error> {
        self.check_targets(targets, batch)?;
        self.train_forward(input, batch, threads, seed)?;
        if self.planned_batch != batch || self.planned_threads != self.forward.state.team.threads() {
            self.buffers = self
                .slot_len
                .iter()
                .map(|len| nnc_runtime::AlignedBuf::zeroed(len * batch))
                .collect();
            self.scratch = nnc_runtime::AlignedBuf::zeroed(self.scratch_len(batch));
            self.planned_batch = batch;
            self.planned_threads = self.forward.state.team.threads();
        }
        for id in &self.trained {
            self.grads[id.0 as usize].fill(0.0);
        }
        self.loss = 0.0;
        // The accumulators leave `self` while the steps write them and read
        // the rest of it.
        let mut acc = Accumulators {
            grads: std::mem::take(&mut self.grads),
            scratch: std::mem::take(&mut self.scratch),
        };
        let outcome =
            (0..self.backward.steps.len()).try_for_each(|index| self.step(index, input, batch, targets, &mut acc));
        (self.grads, self.scratch) = (acc.grads, acc.scratch);
        outcome.map(|()| self.loss)
    }

    fn check_targets(&self, targets: Targets<'_>, batch: usize) -> Result<(), Error> {
        target_kind(&self.backward).check(targets, batch).map_err(Error::Input)
    }

    /// Scratch for the step that needs the most: DropConnect's masked
    /// weights and their gradient, a conv's columns, a norm's unneeded dx.
    fn scratch_len(&self, batch: usize) -> usize {
        let f = &self.forward;
        let threads = f.state.team.threads();
        f.model
            .func
            .ops
            .iter()
            .map(|op| {
                let x = f.model.func.value_type(op.args[0]);
                let w_len = |w: &ParamId| f.params.get(w.0 as usize).map_or(0, Vec::len);
                match &op.op {
                    Op::Linear {
                        weight,
                        dropconnect: Some(_),
                        ..
                    } => 2 * w_len(weight),
                    Op::Conv2d {
                        weight,
                        geometry,
                        dropconnect,
                        ..
                    } => {
                        let g = conv_geometry(x, geometry, f.model.func.value_type(op.result), None);
                        g.grad_scratch_len(threads) + dropconnect.map_or(0, |_| 2 * w_len(weight))
                    }
                    Op::Act(Act::Prelu { .. })
                    | Op::BatchNorm { .. }
                    | Op::LayerNorm { .. }
                    | Op::InstanceNorm { .. }
                    | Op::GroupNorm { .. }
                    | Op::Affine { .. } => batch * x.numel(),
                    _ => 0,
                }
            })
            .max()
            .unwrap_or(0)
    }

    /// A saved forward value, batch-major.
    fn saved<'a>(&'a self, input: &'a [f32], v: ValueId, batch: usize) -> &'a [f32] {
        let f = &self.forward;
        let len = batch * f.model.func.value_type(v).numel();
        if v == f.model.func.input {
            &input[..len]
        } else {
            &f.state.buffers[f.model.plan.slot(v)][..len]
        }
    }

    fn step(
        &mut self,
        index: usize,
        input: &[f32],
        batch: usize,
        targets: Targets<'_>,
        acc: &mut Accumulators,
    ) -> Result<(), Error> {
        let step = &self.backward.steps[index];
        let result = step.result;
        // The result's buffer leaves the table while the step writes it.
        let mut out = match result {
            Some(r) => std::mem::take(&mut self.buffers[self.slot_of[r.0 as usize]]),
            None => nnc_runtime::AlignedBuf::default(),
        };
        let out_len = result.map_or(0, |r| batch * self.backward.value_type(r).numel());
        let dx = &mut out[..out_len];
        let grad = |v: ValueId| {
            let len = batch * self.backward.value_type(v).numel();
            &self.buffers[self.slot_of[v.0 as usize]][..len]
        };
        let outcome = match &step.kind {
            StepKind::Loss { of, fused } => {
                let z = self.saved(input, *of, batch);
                let loss = match (self.backward.loss, targets, &self.backward.target) {
                    (Loss::CrossEntropy { label_smoothing }, Targets::Classes(labels), Target::Classes { classes }) => {
                        softmax_cross_entropy(z, batch, *classes, labels, label_smoothing, dx)
                    }
                    (Loss::Mse, Targets::Values(t), _) => mse(z, t, dx),
                    (Loss::Bce, Targets::Values(t), _) if *fused => bce_with_logits(z, t, dx),
                    (Loss::Bce, Targets::Values(t), _) => bce(z, t, dx),
                    _ => return Err(Error::Input("targets that do not fit the loss".into())),
                };
                self.loss += loss;
                Ok(())
            }
            StepKind::Sum => {
                let (a, b) = (grad(step.args[0]), grad(step.args[1]));
                add(a, b, dx);
                Ok(())
            }
            StepKind::Penalty { param } => {
                let p = param.0 as usize;
                let (l1, l2) = self.penalties.get(p).copied().unwrap_or((0.0, 0.0));
                let w = &self.forward.params[p];
                let Some(dw) = acc.grads.get_mut(p) else {
                    return Err(Error::Unsupported(format!("a penalty on parameter #{p}")));
                };
                self.loss += penalty(w, l1, l2, dw);
                Ok(())
            }
            StepKind::Vjp { of } => {
                let op_index = self.producers.index(*of);
                let op_index =
                    op_index.ok_or_else(|| Error::Unsupported(format!("a VJP of value %{} no op defines", of.0)))?;
                let dy = grad(step.args[0]);
                let dx = result.map(|_| &mut *dx);
                self.vjp(op_index, input, batch, dy, dx, &step.then, acc)
            }
        };
        if let Some(r) = result {
            self.buffers[self.slot_of[r.0 as usize]] = out;
        }
        outcome
    }

    /// The VJP of forward op `index`: `dx` from `dy` (when asked for), and
    /// the op's parameter gradients.
    #[allow(clippy::too_many_arguments)]
    fn vjp(
        &self,
        index: usize,
        input: &[f32],
        batch: usize,
        dy: &[f32],
        dx: Option<&mut [f32]>,
        then: &[ValueId],
        acc: &mut Accumulators,
    ) -> Result<(), Error> {
        let mut acts = [None; MAX_THEN];
        let acts = self.then_acts(then, input, batch, &mut acts)?;
        // A dense VJP applies the activations to each tile of dX it has
        // just computed; any other applies them after.
        let in_product = matches!(
            self.forward.model.func.ops[index].op,
            Op::Linear { dropconnect: None, .. }
        );
        let mut dx = dx;
        let fused = if in_product { acts } else { &[] };
        self.op_vjp(index, input, batch, dy, dx.as_deref_mut(), fused, acc)?;
        if let (false, Some(dx)) = (in_product, dx) {
            apply_then(acts, 0, dx);
        }
        Ok(())
    }

    /// The activations of a step's `then` list, ready to apply.
    fn then_acts<'a>(
        &'a self,
        then: &[ValueId],
        input: &'a [f32],
        batch: usize,
        out: &'a mut [Option<ThenAct<'a>>; MAX_THEN],
    ) -> Result<&'a [Option<ThenAct<'a>>], Error> {
        if then.len() > MAX_THEN {
            return Err(Error::Unsupported(format!(
                "{} fused activations (at most {MAX_THEN})",
                then.len()
            )));
        }
        for (slot, v) in out.iter_mut().zip(then) {
            let i = self.producers.index(*v);
            let i = i.ok_or_else(|| Error::Unsupported(format!("a fused VJP of %{}", v.0)))?;
            let op = &self.forward.model.func.ops[i];
            let Op::Act(act) = &op.op else {
                return Err(Error::Unsupported(format!("a fused {}", op.op.name())));
            };
            let ty = self.forward.model.func.value_type(op.result);
            let (from, value) = match self.rules[i].reads.first() {
                Some(Read::Output) => (From::Output, op.result),
                _ => (From::Input, op.args[0]),
            };
            *slot = Some(ThenAct {
                act: activation(act, &self.forward.params)?,
                from,
                saved: self.saved(input, value, batch),
                channels: ty.channels(),
                inner: ty.inner(),
                per_sample: ty.numel(),
            });
        }
        Ok(&out[..then.len()])
    }

    /// The VJP of forward op `index`; a dense one without DropConnect
    /// applies `acts` to each tile of dX it computes.
    #[allow(clippy::too_many_arguments)]
    fn op_vjp(
        &self,
        index: usize,
        input: &[f32],
        batch: usize,
        dy: &[f32],
        dx: Option<&mut [f32]>,
        acts: &[Option<ThenAct<'_>>],
        acc: &mut Accumulators,
    ) -> Result<(), Error> {
        let f = &self.forward;
        let op = &f.model.func.ops[index];
        let rule = &self.rules[index];
        let x_ty = f.model.func.value_type(op.args[0]);
        let y_ty = f.model.func.value_type(op.result);
        let (channels, inner) = (x_ty.channels(), x_ty.inner());
        let p = |id: &ParamId| f.params[id.0 as usize].as_slice();
        let saved = |read: Read| match read {
            Read::Input => self.saved(input, op.args[0], batch),
            Read::Output => self.saved(input, op.result, batch),
            Read::Record => f.state.records[index].as_slice(),
        };
        match &op.op {
            Op::Linear {
                weight,
                bias,
                dropconnect,
                ..
            } => {
                let (n_out, n_in) = (y_ty.channels(), x_ty.numel());
                let x = saved(Read::Input);
                let w_len = p(weight).len();
                let (dw, db, scratch) = acc.pair(*weight, *bias)?;
                match dropconnect {
                    None => {
                        if let Some(dx) = dx {
                            let then = |first_row: usize, rows: &mut [f32]| apply_then(acts, first_row, rows);
                            dense_grad_input_then(dy, batch, p(weight), n_out, n_in, dx, &then, &f.state.team);
                        }
                        dense_grad_weight(x, dy, batch, n_in, n_out, dw, db, &f.state.team);
                    }
                    Some(_) => {
                        // The forward used W·mask: so does dX, and dW is the
                        // masked weight's gradient times the mask.
                        let mask = saved(Read::Record);
                        let (masked, dmasked) = scratch[..2 * w_len].split_at_mut(w_len);
                        for ((m, w), k) in masked.iter_mut().zip(p(weight)).zip(mask) {
                            *m = w * k;
                        }
                        if let Some(dx) = dx {
                            dense_grad_input(dy, batch, masked, n_out, n_in, dx, &f.state.team);
                        }
                        dmasked.fill(0.0);
                        dense_grad_weight(x, dy, batch, n_in, n_out, dmasked, db, &f.state.team);
                        for ((g, d), k) in dw.iter_mut().zip(dmasked.iter()).zip(mask) {
                            *g += d * k;
                        }
                    }
                }
                Ok(())
            }
            Op::Flatten => {
                if let Some(dx) = dx {
                    dx.copy_from_slice(dy);
                }
                Ok(())
            }
            Op::Act(act) => {
                let Some(dx) = dx else {
                    // Only PReLU has a parameter; its slope gradient needs no dx.
                    return self.prelu_slopes_only(act, &saved, dy, channels, inner, acc);
                };
                match act {
                    Act::Softmax => softmax_grad(saved(Read::Output), dy, batch, channels, inner, dx),
                    Act::Maxout { pieces } => {
                        maxout_grad(saved(Read::Input), dy, batch, channels, inner, *pieces as usize, dx)
                    }
                    Act::Rrelu { .. } => mask_grad(dy, saved(Read::Record), dx),
                    elementwise => {
                        let a = activation(elementwise, &f.params)?;
                        let (from, v) = match rule.reads.first() {
                            Some(Read::Output) => (From::Output, saved(Read::Output)),
                            _ => (From::Input, saved(Read::Input)),
                        };
                        let dslopes = match act {
                            Act::Prelu { weight } => Some(acc.pair(*weight, None)?.0),
                            _ => None,
                        };
                        a.backward(v, from, dy, dx, channels, inner, dslopes);
                    }
                }
                Ok(())
            }
            Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => {
                if let Some(dx) = dx {
                    mask_grad(dy, saved(Read::Record), dx);
                }
                Ok(())
            }
            Op::Conv2d {
                weight,
                bias,
                geometry,
                dropconnect,
                ..
            } => {
                let g = conv_geometry(x_ty, geometry, y_ty, None);
                let x = saved(Read::Input);
                let w_len = p(weight).len();
                let (dw, db, scratch) = acc.pair(*weight, *bias)?;
                let work = g.grad_scratch_len(f.state.team.threads());
                match dropconnect {
                    None => {
                        let scratch = &mut scratch[..work];
                        if let Some(dx) = dx {
                            conv2d_grad_input(dy, batch, &g, p(weight), dx, scratch, &f.state.team);
                        }
                        conv2d_grad_weight(x, dy, batch, &g, dw, db, scratch, &f.state.team);
                    }
                    Some(_) => {
                        let mask = saved(Read::Record);
                        let (masked, rest) = scratch[..2 * w_len + work].split_at_mut(w_len);
                        let (dmasked, work) = rest.split_at_mut(w_len);
                        for ((m, w), k) in masked.iter_mut().zip(p(weight)).zip(mask) {
                            *m = w * k;
                        }
                        if let Some(dx) = dx {
                            conv2d_grad_input(dy, batch, &g, masked, dx, work, &f.state.team);
                        }
                        dmasked.fill(0.0);
                        conv2d_grad_weight(x, dy, batch, &g, dmasked, db, work, &f.state.team);
                        for ((gr, d), k) in dw.iter_mut().zip(dmasked.iter()).zip(mask) {
                            *gr += d * k;
                        }
                    }
                }
                Ok(())
            }
            Op::MaxPool(g) => {
                if let Some(dx) = dx {
                    max_pool2d_grad(dy, &f.state.argmax[index], batch, &pool_geometry(x_ty, g), dx);
                }
                Ok(())
            }
            Op::AvgPool(g) => {
                if let Some(dx) = dx {
                    avg_pool2d_grad(dy, batch, &pool_geometry(x_ty, g), dx);
                }
                Ok(())
            }
            Op::GlobalAvgPool => {
                if let Some(dx) = dx {
                    global_avg_pool_grad(dy, batch, channels, inner, dx);
                }
                Ok(())
            }
            Op::BatchNorm { weight, bias, .. }
            | Op::LayerNorm { weight, bias, .. }
            | Op::InstanceNorm { weight, bias, .. }
            | Op::GroupNorm { weight, bias, .. } => {
                let (x, stats) = (saved(Read::Input), saved(Read::Record));
                let (dgamma, dbeta, scratch) = acc.pair(*weight, Some(*bias))?;
                let dbeta = dbeta.unwrap_or_default();
                // The kernels compute dx with the parameter gradients: into
                // scratch when nothing needs dx.
                let dx = match dx {
                    Some(dx) => dx,
                    None => &mut scratch[..x.len()],
                };
                let gamma = p(weight);
                match &op.op {
                    Op::BatchNorm { .. } => batch_norm_grad(
                        x,
                        dy,
                        batch,
                        channels,
                        inner,
                        gamma,
                        stats,
                        dx,
                        dgamma,
                        dbeta,
                        &f.state.team,
                    ),
                    Op::LayerNorm { .. } => {
                        layer_norm_grad(x, dy, batch, x_ty.numel(), gamma, stats, dx, dgamma, dbeta)
                    }
                    Op::InstanceNorm { .. } => {
                        instance_norm_grad(x, dy, batch, channels, inner, gamma, stats, dx, dgamma, dbeta)
                    }
                    Op::GroupNorm { groups, .. } => group_norm_grad(
                        x,
                        dy,
                        batch,
                        channels,
                        inner,
                        *groups as usize,
                        gamma,
                        stats,
                        dx,
                        dgamma,
                        dbeta,
                    ),
                    _ => {}
                }
                Ok(())
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                if let Some(dx) = dx {
                    let x = saved(Read::Input);
                    lrn_grad(x, dy, batch, channels, inner, *size as usize, *alpha, *beta, *bias, dx);
                }
                Ok(())
            }
            Op::Affine { scale, shift } => {
                let x = saved(Read::Input);
                let (dscale, dshift, scratch) = acc.pair(*scale, Some(*shift))?;
                let dshift = dshift.unwrap_or_default();
                let dx = match dx {
                    Some(dx) => dx,
                    None => &mut scratch[..x.len()],
                };
                affine_grad(x, dy, batch, channels, inner, p(scale), dx, dscale, dshift);
                Ok(())
            }
            Op::Add => Err(Error::Unsupported(
                "a VJP step for add, whose gradient passes through".into(),
            )),
        }
    }

    /// PReLU's slope gradient when its input needs none.
    fn prelu_slopes_only<'a>(
        &'a self,
        act: &Act,
        saved: &dyn Fn(Read) -> &'a [f32],
        dy: &[f32],
        channels: usize,
        inner: usize,
        acc: &mut Accumulators,
    ) -> Result<(), Error> {
        if let Act::Prelu { weight } = act {
            let a = activation(act, &self.forward.params)?;
            let x = saved(Read::Input);
            let (dslopes, _, scratch) = acc.pair(*weight, None)?;
            a.backward(
                x,
                From::Input,
                dy,
                &mut scratch[..x.len()],
                channels,
                inner,
                Some(dslopes),
            );
        }
        Ok(())
    }
}

/// What `backward`'s loss takes as targets.
pub fn target_kind(backward: &Backward) -> TargetKind {
    match &backward.target {
        Target::Classes { classes } => TargetKind::Classes(*classes),
        Target::Values(ty) => TargetKind::Values {
            per_sample: ty.numel(),
            unit_interval: backward.loss == Loss::Bce,
        },
    }
}

/// What the steps write: each trained parameter's gradient, and scratch.
struct Accumulators {
    grads: Vec<Vec<f32>>,
    scratch: nnc_runtime::AlignedBuf,
}

impl Accumulators {
    /// The gradients of parameter `a` and of `b` (a different one, if
    /// any), and the scratch: what one VJP writes.
    #[allow(clippy::type_complexity)]
    fn pair(&mut self, a: ParamId, b: Option<ParamId>) -> Result<(&mut [f32], Option<&mut [f32]>, &mut [f32]), Error> {
        let missing = || Error::Unsupported(format!("gradients of parameters #{} and {b:?}", a.0));
        let (a, scratch) = (a.0 as usize, &mut *self.scratch);
        match b {
            None => {
                let ga = self.grads.get_mut(a).ok_or_else(missing)?;
                Ok((ga.as_mut_slice(), None, scratch))
            }
            Some(b) => {
                let [ga, gb] = self.grads.get_disjoint_mut([a, b.0 as usize]).map_err(|_| missing())?;
                Ok((ga.as_mut_slice(), Some(gb.as_mut_slice()), scratch))
            }
        }
    }
}

/// The most activations one step applies to its result.
const MAX_THEN: usize = 16;

/// One fused activation: its derivative, from what, on which layout.
#[derive(Clone, Copy)]
struct ThenAct<'a> {
    act: nnc_runtime::kernels::act::Activation<'a>,
    from: From,
    /// The whole batch's saved value.
    saved: &'a [f32],
    channels: usize,
    inner: usize,
    per_sample: usize,
}

/// Applies the fused activations, in order, to `rows` of a gradient that
/// start at sample `first_row`.
fn apply_then(acts: &[Option<ThenAct<'_>>], first_row: usize, rows: &mut [f32]) {
    for a in acts.iter().flatten() {
        let start = first_row * a.per_sample;
        if let Some(saved) = a.saved.get(start..start + rows.len()) {
            a.act.backward_in_place(saved, a.from, rows, a.channels, a.inner);
        }
    }
}
