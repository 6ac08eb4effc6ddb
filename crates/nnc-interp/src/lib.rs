//! The interpreter: runs a function of an nnc module on the runtime's
//! kernels.
//!
//! Loading does the one-time work: it takes the stored parameters from a
//! weight file, evaluates derived parameters (folded batch norms) in f64,
//! and plans which buffer each value lives in (a value's buffer is reused
//! once its last reader has run). Running allocates only when the batch
//! size or thread count grows; a forward pass at a planned size allocates
//! nothing. The `infer` function uses running statistics and no dropout;
//! the `train` function's forward pass uses batch statistics (updating the
//! running ones with PyTorch's momentum rule) and draws dropout masks and
//! RReLU slopes from the seed.

mod audit;
mod backward;
mod derive;
mod exec;
mod footprint;
mod init;
mod plan;

pub use audit::audit_weights;
pub use backward::{class_label, target_kind, Gradients, TargetKind, Targets};
pub use footprint::{Footprint, Part};
pub use init::init_weights;

use nnc_ir::{Function, Mode, Module, Op, ParamSource};
use nnc_runtime::io::weights::Weights;
use nnc_runtime::kernels::conv::ConvWeight;
use nnc_runtime::kernels::dense::DenseWeight;
use nnc_runtime::Team;
use plan::Plan;
use std::fmt;

/// A weight laid out once for this CPU's kernel.
#[derive(Clone, Debug)]
enum LaidOut {
    Dense(DenseWeight),
    Conv(ConvWeight),
}

/// A function ready to run, with its parameters and buffers.
pub struct Interpreter {
    func: Function,
    /// Every parameter's values, indexed by `ParamId`.
    params: Vec<Vec<f32>>,
    /// Weights laid out for this CPU's kernel, indexed by `ParamId`
    /// (`None` for parameters that are not a dense or conv layer's weight).
    laid_out: Vec<Option<LaidOut>>,
    names: Vec<String>,
    /// The threads of the planned thread count, kept between runs so that
    /// no forward pass starts a thread.
    team: Team,
    plan: Plan,
    /// Samples a thread an inference pass takes through every op at a
    /// time, if not the whole batch ([`nnc_ir::samples_per_pass`]).
    per_pass: Option<usize>,
    /// Buffers for `planned_batch` samples (scratch also for the team's
    /// thread count); one per plan slot.
    buffers: Vec<nnc_runtime::AlignedBuf>,
    scratch: nnc_runtime::AlignedBuf,
    planned_batch: usize,
    /// Per op, what it records for a backward (masks, slopes, statistics);
    /// all empty unless the interpreter runs for one.
    records: Vec<Vec<f32>>,
    /// Per op, a max pool's arg-maxes for a backward.
    argmax: Vec<Vec<u32>>,
    /// Whether ops record for a backward.
    recording: bool,
}

/// The first place a forward pass holds non-finite values.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// `the input` or `layer `conv1` (conv2d at 3:5)`.
    pub origin: String,
    /// How many of the `of` values there are NaN or ±inf.
    pub count: usize,
    pub of: usize,
}

/// How many values are NaN or ±inf.
pub fn non_finite(values: &[f32]) -> usize {
    values.iter().filter(|v| !v.is_finite()).count()
}

/// Why a module cannot be loaded or run.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The module has no function for the mode.
    NoFunction(Mode),
    /// A stored parameter is not among the weights.
    MissingParam(String),
    /// A derivation could not be evaluated (a compiler bug).
    Derivation { param: String, reason: String },
    /// The IR uses something the interpreter cannot run (a compiler bug or
    /// a hand-written IR file), naming the op.
    Unsupported(String),
    /// The input does not fit the function.
    Input(String),
    /// The worker threads could not be started.
    Threads(String),
    /// A weight's values cannot be right (a negative running variance).
    BadWeight { name: String, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoFunction(mode) => write!(f, "the module has no {mode} function"),
            Error::MissingParam(name) => write!(f, "parameter `{name}` has no value"),
            Error::Derivation { param, reason } => write!(f, "cannot compute `{param}`: {reason}"),
            Error::Unsupported(what) => write!(f, "cannot run {what}"),
            Error::Input(what) => write!(f, "bad input: {what}"),
            Error::Threads(why) => f.write_str(why),
            Error::BadWeight { name, reason } => write!(f, "tensor `{name}` {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Every parameter's values, indexed by `ParamId`: the stored ones from
/// `weights` (by their §7 names), the derived ones computed from them in
/// f64. What the interpreter runs with, and what `nnc build --embed` embeds.
pub fn param_values(module: &Module, weights: &Weights) -> Result<Vec<Vec<f32>>, Error> {
    let shapes = module.param_shapes();
    let mut params: Vec<Vec<f32>> = vec![Vec::new(); module.params.len()];
    // Stored first: derivations read them.
    for (i, p) in module.params.iter().enumerate() {
        if let ParamSource::Init(_) = p.source {
            let t = weights
                .tensors
                .get(&p.name)
                .ok_or_else(|| Error::MissingParam(p.name.clone()))?;
            params[i] = t.data.clone();
        }
    }
    // Derived parameters only read earlier ones (passes append them after
    // their sources), so table order is an evaluation order.
    for (i, p) in module.params.iter().enumerate() {
        if let ParamSource::Derived(d) = &p.source {
            params[i] = derive::evaluate(d, &shapes, &params).map_err(|reason| Error::Derivation {
                param: p.name.clone(),
                reason,
            })?;
        }
    }
    Ok(params)
}

impl Interpreter {
    /// Loads `module`'s `mode` function with stored parameters from
    /// `weights` (by their §7 names) and evaluates the derived ones.
    pub fn new(module: &Module, mode: Mode, weights: &Weights) -> Result<Interpreter, Error> {
        Interpreter::keeping(module, mode, weights, &[], false)
    }

    /// An interpreter whose `kept` values stay readable after a run, and
    /// whose ops record what a backward reads when `recording`.
    fn keeping(
        module: &Module,
        mode: Mode,
        weights: &Weights,
        kept: &[nnc_ir::ValueId],
        recording: bool,
    ) -> Result<Interpreter, Error> {
        let func = module.function(mode).ok_or(Error::NoFunction(mode))?.clone();
        let params = param_values(module, weights)?;
        let plan = Plan::keeping(&func, kept)?;
        let per_pass = plan.samples_per_pass(module, &func);
        let mut laid_out = vec![None; params.len()];
        // A training step reads the weights as stored (they change every
        // step, as in the generated `<Model>Train`); inference lays them
        // out for the CPU's kernel once.
        for op in func.ops.iter().filter(|_| !recording) {
            let (weight, layout) = match &op.op {
                Op::Linear { weight, .. } => {
                    let (out, n_in) = module.param(*weight).out_and_in();
                    (
                        *weight,
                        LaidOut::Dense(DenseWeight::new(&params[weight.0 as usize], out, n_in)),
                    )
                }
                Op::Conv2d { weight, geometry, .. } => {
                    let (x, y) = (func.value_type(op.args[0]), func.value_type(op.result));
                    let g = plan::conv_geometry(x, geometry, y);
                    (*weight, LaidOut::Conv(ConvWeight::new(&params[weight.0 as usize], &g)))
                }
                _ => continue,
            };
            laid_out[weight.0 as usize] = Some(layout);
        }
        let names = module.params.iter().map(|p| p.name.clone()).collect();
        Ok(Interpreter {
            func,
            params,
            laid_out,
            names,
            team: Team::single(),
            plan,
            per_pass,
            buffers: Vec::new(),
            scratch: nnc_runtime::AlignedBuf::default(),
            planned_batch: 0,
            records: Vec::new(),
            argmax: Vec::new(),
            recording,
        })
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.func.value_type(self.func.input).dims
    }

    /// The per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.func.value_type(self.func.output).dims
    }

    /// A parameter's current values (running statistics move in train mode).
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.params[i].as_slice())
    }

    /// Runs the function on `batch` samples of `input` (batch-major), with
    /// `threads` threads and, in train mode, masks drawn from `seed`;
    /// returns the output (batch-major).
    pub fn run(&mut self, input: &[f32], batch: usize, threads: usize, seed: u64) -> Result<Vec<f32>, Error> {
        let mut out = vec![0.0; batch * self.output_shape().iter().product::<usize>()];
        self.run_into(input, batch, threads, seed, &mut out)?;
        Ok(out)
    }

    /// [`Interpreter::run`] into a caller's buffer: once a batch size and
    /// thread count have been planned, this allocates nothing.
    pub fn run_into(
        &mut self,
        input: &[f32],
        batch: usize,
        threads: usize,
        seed: u64,
        out: &mut [f32],
    ) -> Result<(), Error> {
        self.check_input(input, batch)?;
        let out_len = batch * self.output_shape().iter().product::<usize>();
        if out.len() != out_len {
            return Err(Error::Input(format!(
                "an output buffer of {} values for {out_len}",
                out.len()
            )));
        }
        // A few samples a thread at a time, where the plan says so; the
        // buffers are those of a pass.
        let pass = self.per_pass.map_or(batch, |k| k * threads.max(1)).min(batch);
        self.prepare(pass, threads)?;
        let (in_len, out_len) = (input.len() / batch, out.len() / batch);
        for (x, y) in input.chunks(pass * in_len).zip(out.chunks_mut(pass * out_len)) {
            self.forward(x, x.len() / in_len, seed, y)?;
        }
        Ok(())
    }

    /// `input` holds `batch` (≥ 1) whole samples.
    fn check_input(&self, input: &[f32], batch: usize) -> Result<(), Error> {
        let per_sample: usize = self.input_shape().iter().product();
        if batch == 0 || input.len() != batch * per_sample {
            return Err(Error::Input(format!(
                "{} values for a batch of {batch} samples of {per_sample}",
                input.len()
            )));
        }
        Ok(())
    }

    /// Starts the team and plans the buffers for `batch` and `threads`,
    /// unless already done.
    fn prepare(&mut self, batch: usize, threads: usize) -> Result<(), Error> {
        let threads = threads.max(1);
        if self.team.threads() != threads {
            self.team =
                Team::new(threads).map_err(|e| Error::Threads(format!("cannot start {threads} threads: {e}")))?;
            // Conv scratch is per thread: plan again.
            self.planned_batch = 0;
        }
        if self.planned_batch != batch {
            self.buffers = self.plan.allocate(batch);
            let params = &self.params;
            let param_len = |id: nnc_ir::ParamId| params[id.0 as usize].len();
            self.scratch =
                nnc_runtime::AlignedBuf::zeroed(self.plan.scratch_len(&self.func, &param_len, batch, threads));
            if self.recording {
                let lens = self
                    .func
                    .ops
                    .iter()
                    .map(|op| plan::record_len(&self.func, op, &param_len, batch));
                let is_max_pool = |op: &nnc_ir::OpData| matches!(op.op, Op::MaxPool(_));
                self.records = lens
                    .zip(&self.func.ops)
                    .map(|(len, op)| if is_max_pool(op) { Vec::new() } else { vec![0.0; len] })
                    .collect();
                let lens = self
                    .func
                    .ops
                    .iter()
                    .map(|op| plan::record_len(&self.func, op, &param_len, batch));
                self.argmax = lens
                    .zip(&self.func.ops)
                    .map(|(len, op)| if is_max_pool(op) { vec![0; len] } else { Vec::new() })
                    .collect();
            }
            self.planned_batch = batch;
        }
        Ok(())
    }

    /// Where non-finite values (NaN, ±inf) first appear in a forward pass
    /// of `input`: already in the input, or the first op whose output holds
    /// some; `None` if the output is finite. Runs the pass again, op by op,
    /// so it is for explaining a bad output, not for every run.
    pub fn trace_non_finite(
        &mut self,
        input: &[f32],
        batch: usize,
        threads: usize,
        seed: u64,
    ) -> Result<Option<NonFinite>, Error> {
        self.check_input(input, batch)?;
        let count = non_finite(input);
        if count > 0 {
            return Ok(Some(NonFinite {
                origin: "the input".into(),
                count,
                of: input.len(),
            }));
        }
        self.prepare(batch, threads)?;
        for index in 0..self.func.ops.len() {
            exec::run_op(self, input, index, batch, seed)?;
            let op = &self.func.ops[index];
            let len = batch * self.func.value_type(op.result).numel();
            let count = non_finite(&self.buffers[self.plan.slot(op.result)][..len]);
            if count > 0 {
                return Ok(Some(NonFinite {
                    origin: footprint::describe(op),
                    count,
                    of: len,
                }));
            }
        }
        Ok(None)
    }

    /// The forward pass into `out`, with buffers already planned.
    fn forward(&mut self, input: &[f32], batch: usize, seed: u64, out: &mut [f32]) -> Result<(), Error> {
        for index in 0..self.func.ops.len() {
            exec::run_op(self, input, index, batch, seed)?;
        }
        if self.func.output == self.func.input {
            out.copy_from_slice(input);
        } else {
            let output_slot = self.plan.slot(self.func.output);
            out.copy_from_slice(&self.buffers[output_slot][..out.len()]);
        }
        Ok(())
    }
}
