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
    model: Model,
    /// Every parameter's values, indexed by `ParamId`.
    params: Vec<Vec<f32>>,
    names: Vec<String>,
    /// Samples a thread an inference pass takes through every op at a
    /// time, if not the whole batch ([`nnc_ir::samples_per_pass`]).
    per_pass: Option<usize>,
    /// Whether ops record for a backward.
    recording: bool,
    /// The calling thread's team (of the planned thread count, kept between
    /// runs so that no forward pass starts a thread) and buffers.
    state: State,
    /// Where an inference goes in passes on several threads, a lane per
    /// thread: each takes its passes through every op alone
    /// ([`Team::per_lane`]), in buffers of its own.
    lanes: Vec<State>,
}

/// What every lane of a forward pass reads.
pub(crate) struct Model {
    func: Function,
    plan: Plan,
    /// Weights laid out for this CPU's kernel, indexed by `ParamId`
    /// (`None` for parameters that are not a dense or conv layer's weight).
    laid_out: Vec<Option<LaidOut>>,
}

/// What a forward pass writes: its team, its buffers for `planned_batch`
/// samples (one per plan slot; scratch also for the team's thread count)
/// and, when it runs for a backward, what each op records.
pub(crate) struct State {
    team: Team,
    buffers: Vec<nnc_runtime::AlignedBuf>,
    scratch: nnc_runtime::AlignedBuf,
    planned_batch: usize,
    /// Per op, what it records for a backward (masks, slopes, statistics);
    /// all empty unless the interpreter runs for one.
    records: Vec<Vec<f32>>,
    /// Per op, a max pool's arg-maxes for a backward.
    argmax: Vec<Vec<u32>>,
}

/// The parameters as the ops of a pass read them: shared by the lanes of
/// an inference, writable in training (where a batch norm moves its
/// running statistics).
pub(crate) enum Params<'a> {
    Read(&'a [Vec<f32>]),
    Write(&'a mut [Vec<f32>]),
}

impl Params<'_> {
    fn values(&self) -> &[Vec<f32>] {
        match self {
            Params::Read(values) => values,
            Params::Write(values) => values,
        }
    }

    /// The same parameters for a shorter borrow.
    fn reborrow(&mut self) -> Params<'_> {
        match self {
            Params::Read(values) => Params::Read(values),
            Params::Write(values) => Params::Write(values),
        }
    }
}

/// The first error of work shared among threads (the other parts run on).
#[derive(Default)]
pub(crate) struct Failed(std::sync::Mutex<Option<Error>>);

impl Failed {
    fn keep(&self, result: Result<(), Error>) {
        if let Err(e) = result {
            *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
        }
    }

    fn result(self) -> Result<(), Error> {
        self.0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map_or(Ok(()), Err)
    }
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
                Op::Conv2d {
                    weight,
                    geometry,
                    epilogue,
                    ..
                } => {
                    let (x, y) = (func.value_type(op.args[0]), func.value_type(op.result));
                    let g = plan::conv_geometry(x, geometry, y, epilogue.pool_window());
                    (*weight, LaidOut::Conv(ConvWeight::new(&params[weight.0 as usize], &g)))
                }
                _ => continue,
            };
            laid_out[weight.0 as usize] = Some(layout);
        }
        let names = module.params.iter().map(|p| p.name.clone()).collect();
        Ok(Interpreter {
            model: Model { func, plan, laid_out },
            params,
            names,
            per_pass,
            recording,
            state: State::new(Team::single()),
            lanes: Vec::new(),
        })
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        let func = &self.model.func;
        &func.value_type(func.input).dims
    }

    /// The per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        let func = &self.model.func;
        &func.value_type(func.output).dims
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
        if let Some(per_pass) = self.per_pass.filter(|_| threads > 1 && batch > 1 && !self.recording) {
            return self.run_in_lanes(input, batch, per_pass, threads, seed, out);
        }
        // A few samples at a time, where the plan says so (here on one
        // thread, or a batch of one); the buffers are those of a pass.
        let pass = self.per_pass.unwrap_or(batch).min(batch);
        self.prepare(pass, threads)?;
        let (in_len, out_len) = (input.len() / batch, out.len() / batch);
        let mut params = Params::Write(&mut self.params);
        for (x, y) in input.chunks(pass * in_len).zip(out.chunks_mut(pass * out_len)) {
            forward(
                &self.model,
                params.reborrow(),
                &mut self.state,
                x,
                x.len() / in_len,
                seed,
                y,
            )?;
        }
        Ok(())
    }

    /// An inference of large samples on several threads: each takes
    /// `per_pass` samples at a time through every op, in a lane of its own.
    fn run_in_lanes(
        &mut self,
        input: &[f32],
        batch: usize,
        per_pass: usize,
        threads: usize,
        seed: u64,
        out: &mut [f32],
    ) -> Result<(), Error> {
        self.start_team(threads)?;
        if self.lanes.len() != threads {
            self.lanes = (0..threads).map(|_| State::new(Team::single())).collect();
        }
        for lane in &mut self.lanes {
            lane.plan(&self.model, &self.params, per_pass, false);
        }
        let (model, params, failed) = (&self.model, &self.params, Failed::default());
        self.state
            .team
            .per_lane(&mut self.lanes, batch, per_pass, input, out, &|lane, x, n, y| {
                failed.keep(forward(model, Params::Read(params), lane, x, n, seed, y));
            });
        failed.result()
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
        self.start_team(threads)?;
        self.state.plan(&self.model, &self.params, batch, self.recording);
        Ok(())
    }

    /// A team of `threads` threads, unless it is already that.
    fn start_team(&mut self, threads: usize) -> Result<(), Error> {
        let threads = threads.max(1);
        if self.state.team.threads() != threads {
            let team =
                Team::new(threads).map_err(|e| Error::Threads(format!("cannot start {threads} threads: {e}")))?;
            // Conv scratch is per thread: plan again.
            self.state = State::new(team);
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
        let (model, state) = (&self.model, &mut self.state);
        for index in 0..model.func.ops.len() {
            exec::run_op(model, Params::Write(&mut self.params), state, input, index, batch, seed)?;
            let op = &model.func.ops[index];
            let len = batch * model.func.value_type(op.result).numel();
            let count = non_finite(&state.buffers[model.plan.slot(op.result)][..len]);
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
}

impl State {
    fn new(team: Team) -> State {
        State {
            team,
            buffers: Vec::new(),
            scratch: nnc_runtime::AlignedBuf::default(),
            planned_batch: 0,
            records: Vec::new(),
            argmax: Vec::new(),
        }
    }

    /// Buffers (and, when `recording`, records) for `batch` samples on the
    /// team's threads, unless already planned.
    fn plan(&mut self, model: &Model, params: &[Vec<f32>], batch: usize, recording: bool) {
        if self.planned_batch == batch {
            return;
        }
        let func = &model.func;
        self.buffers = model.plan.allocate(batch);
        let param_len = |id: nnc_ir::ParamId| params[id.0 as usize].len();
        self.scratch =
            nnc_runtime::AlignedBuf::zeroed(model.plan.scratch_len(func, &param_len, batch, self.team.threads()));
        if recording {
            let is_max_pool = |op: &nnc_ir::OpData| matches!(op.op, Op::MaxPool(_));
            let len = |op| plan::record_len(func, op, &param_len, batch);
            self.records = func
                .ops
                .iter()
                .map(|op| {
                    if is_max_pool(op) {
                        Vec::new()
                    } else {
                        vec![0.0; len(op)]
                    }
                })
                .collect();
            self.argmax = func
                .ops
                .iter()
                .map(|op| if is_max_pool(op) { vec![0; len(op)] } else { Vec::new() })
                .collect();
        }
        self.planned_batch = batch;
    }
}

/// The forward pass of `batch` samples into `out`, with `state`'s buffers
/// already planned.
fn forward(
    model: &Model,
    mut params: Params<'_>,
    state: &mut State,
    input: &[f32],
    batch: usize,
    seed: u64,
    out: &mut [f32],
) -> Result<(), Error> {
    let func = &model.func;
    for index in 0..func.ops.len() {
        exec::run_op(model, params.reborrow(), state, input, index, batch, seed)?;
    }
    if func.output == func.input {
        out.copy_from_slice(input);
    } else {
        let output_slot = model.plan.slot(func.output);
        out.copy_from_slice(&state.buffers[output_slot][..out.len()]);
    }
    Ok(())
}
