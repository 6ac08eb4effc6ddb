//! What a command will allocate, computed from the IR before it allocates
//! anything: the interpreter's copies of the parameters, its packed dense
//! weights, the planned buffers and the largest op's scratch; or, for
//! `nnc init`, the drawn tensors and the file they become. The CLI checks it
//! against `nnc_runtime::memory::Limit` so that a model too large for the
//! machine is an error naming the layer, not an abort.

use crate::plan::{conv_geometry, op_scratch_len, Plan};
use crate::Error;
use nnc_ir::{Mode, Module, Op, ParamId, ParamSource};
use nnc_runtime::memory::Bytes;

/// The memory a command needs, and its largest single part.
#[derive(Clone, Debug, PartialEq)]
pub struct Footprint {
    pub total: Bytes,
    pub largest: Part,
}

/// One named consumer of memory: an op's output and scratch, or a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    /// `layer `conv1` (conv2d at 3:5)` or `tensor `layer1.weight``.
    pub what: String,
    pub bytes: Bytes,
}

impl Footprint {
    /// Running `mode`'s function of `module` on `batch` samples with
    /// `threads` threads, weights already in memory (`Weights`), into an
    /// output vector of its own ([`crate::Interpreter::run`]).
    pub fn run(module: &Module, mode: Mode, batch: usize, threads: usize) -> Result<Footprint, Error> {
        let func = module.function(mode).ok_or(Error::NoFunction(mode))?;
        let plan = Plan::new(func)?;
        let param_len = |id: ParamId| module.param(id).shape.iter().product::<usize>();
        // The interpreter's own copy of every parameter, plus dense and
        // conv weights packed for the kernels.
        let params: Bytes = module
            .params
            .iter()
            .map(|p| Bytes::of_f32(p.shape.iter().product()))
            .sum();
        let packed: Bytes = func
            .ops
            .iter()
            .filter_map(|op| match &op.op {
                Op::Linear { weight, .. } => Some(Bytes::of_f32(param_len(*weight))),
                Op::Conv2d { geometry, epilogue, .. } => {
                    let (x, y) = (func.value_type(op.args[0]), func.value_type(op.result));
                    let g = conv_geometry(x, geometry, y, epilogue.pool_window());
                    Some(Bytes::of_f32(g.packed_weight_len()))
                }
                _ => None,
            })
            .sum();
        let buffers = Bytes::of_f32(plan.buffer_len(batch));
        let output = Bytes::of_f32(func.value_type(func.output).numel().saturating_mul(batch));
        let scratch = Bytes::of_f32(plan.scratch_len(func, &param_len, batch, threads));
        let largest = func
            .ops
            .iter()
            .map(|op| {
                let output = func.value_type(op.result).numel().saturating_mul(batch);
                let scratch = op_scratch_len(func, op, &param_len, batch, threads);
                Part {
                    what: describe(op),
                    bytes: Bytes::of_f32(output.saturating_add(scratch)),
                }
            })
            .max_by_key(|part| part.bytes)
            .unwrap_or(Part {
                what: "the input".into(),
                bytes: Bytes(0),
            });
        Ok(Footprint {
            total: params + packed + buffers + scratch + output,
            largest,
        })
    }

    /// Drawing every stored parameter (`nnc init`): each tensor, the file
    /// they are written into, and an orthogonal draw's f64 work matrix.
    pub fn init(module: &Module) -> Footprint {
        let stored = || {
            module.params.iter().filter_map(|p| match &p.source {
                ParamSource::Init(init) => Some((p, init)),
                ParamSource::Derived(_) => None,
            })
        };
        let tensors: Bytes = stored().map(|(p, _)| Bytes::of_f32(p.shape.iter().product())).sum();
        let work = stored()
            .filter(|(_, init)| matches!(init.dist, nnc_ir::Dist::Orthogonal { .. }))
            .map(|(p, _)| Bytes(Bytes::of_f32(p.shape.iter().product()).0.saturating_mul(2)))
            .max()
            .unwrap_or(Bytes(0));
        let largest = stored()
            .map(|(p, _)| Part {
                what: format!("tensor `{}` {:?}", p.name, p.shape),
                bytes: Bytes::of_f32(p.shape.iter().product()),
            })
            .max_by_key(|part| part.bytes)
            .unwrap_or(Part {
                what: "no tensor".into(),
                bytes: Bytes(0),
            });
        Footprint {
            total: tensors + tensors + work,
            largest,
        }
    }
}

/// An op as messages name it: `layer `conv1` (conv2d at 3:5)`, with the
/// place of the statement it came from when it has one.
pub(crate) fn describe(op: &nnc_ir::OpData) -> String {
    let at = op
        .locs
        .first()
        .map_or(String::new(), |l| format!(" at {}:{}", l.line, l.col));
    format!("layer `{}` ({}{at})", op.layer, op.op.name())
}
