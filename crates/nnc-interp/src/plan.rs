//! The interpreter's buffers: the IR's slot plan, allocated per batch
//! size, and the scratch of the op that needs the most.

use crate::Error;
use nnc_ir::{BufferPlan, Function, Op, OpData, ParamId, ValueId, ValueType};
use nnc_runtime::kernels::conv::ConvGeometry;
use nnc_runtime::kernels::pool::PoolGeometry;
use nnc_runtime::AlignedBuf;

pub(crate) struct Plan {
    slots: BufferPlan,
}

impl Plan {
    pub(crate) fn new(func: &Function) -> Result<Plan, Error> {
        Plan::keeping(func, &[])
    }

    /// A plan in which `kept` values (what a backward reads) are never
    /// overwritten.
    pub(crate) fn keeping(func: &Function, kept: &[ValueId]) -> Result<Plan, Error> {
        let slots = BufferPlan::keeping(func, kept)
            .ok_or_else(|| Error::Unsupported("an op that reads an undefined value".into()))?;
        Ok(Plan { slots })
    }

    /// Samples a thread an inference pass takes at a time
    /// ([`nnc_ir::samples_per_pass`]).
    pub(crate) fn samples_per_pass(&self, module: &nnc_ir::Module, func: &Function) -> Option<usize> {
        nnc_ir::samples_per_pass(module, func, &self.slots)
    }

    pub(crate) fn slot(&self, value: ValueId) -> usize {
        self.slots.slot(value)
    }

    /// One buffer per slot, for `batch` samples.
    pub(crate) fn allocate(&self, batch: usize) -> Vec<AlignedBuf> {
        self.slots
            .slot_len
            .iter()
            .map(|len| AlignedBuf::zeroed(len * batch))
            .collect()
    }

    /// How many values the buffers of `batch` samples hold together.
    pub(crate) fn buffer_len(&self, batch: usize) -> usize {
        self.slots.slot_len.iter().map(|len| len.saturating_mul(batch)).sum()
    }

    /// Scratch for the op that needs the most.
    pub(crate) fn scratch_len(
        &self,
        func: &Function,
        param_len: &dyn Fn(ParamId) -> usize,
        batch: usize,
        threads: usize,
    ) -> usize {
        func.ops
            .iter()
            .map(|op| op_scratch_len(func, op, param_len, batch, threads))
            .max()
            .unwrap_or(0)
    }
}

/// The scratch one op needs: im2col columns, DropBlock masks, DropConnect's
/// masked weights.
pub(crate) fn op_scratch_len(
    func: &Function,
    op: &OpData,
    param_len: &dyn Fn(ParamId) -> usize,
    batch: usize,
    threads: usize,
) -> usize {
    let x = func.value_type(op.args[0]);
    match &op.op {
        Op::Conv2d {
            geometry,
            weight,
            dropconnect,
            epilogue,
            ..
        } => {
            let g = conv_geometry(x, geometry, func.value_type(op.result), epilogue.pool_window());
            g.scratch_len(threads) + dropconnect.map_or(0, |_| param_len(*weight))
        }
        Op::Linear {
            weight,
            dropconnect: Some(_),
            ..
        } => param_len(*weight),
        Op::DropBlock { .. } => x.numel() * batch,
        _ => 0,
    }
}

/// The numbers op `op` records in training for its backward at `batch`
/// samples (see [`nnc_ir::grad::rules::record_size`]).
pub(crate) fn record_len(func: &Function, op: &OpData, param_len: &dyn Fn(ParamId) -> usize, batch: usize) -> usize {
    nnc_ir::grad::rules::record_size(func, op, param_len).map_or(0, |(_, per_sample, fixed)| per_sample * batch + fixed)
}

/// The runtime's view of a pool op on input `[C, H, W]`.
pub(crate) fn pool_geometry(input: &ValueType, g: &nnc_ir::PoolGeometry) -> PoolGeometry {
    PoolGeometry {
        channels: input.channels(),
        height: input.height(),
        width: input.width(),
        kernel: g.kernel as usize,
        stride: g.stride as usize,
        pads: g.pads.map(|v| v as usize),
    }
}

/// The runtime's view of a conv op: input `[C, H, W]`, output `[O, ..]`.
pub(crate) fn conv_geometry(
    input: &ValueType,
    g: &nnc_ir::ConvGeometry,
    output: &ValueType,
    pool: Option<u32>,
) -> ConvGeometry {
    ConvGeometry {
        in_channels: input.channels(),
        height: input.height(),
        width: input.width(),
        out_channels: output.channels(),
        kernel: g.kernel as usize,
        stride: g.stride as usize,
        dilation: g.dilation as usize,
        groups: g.groups as usize,
        pads: g.pads.map(|p| p as usize),
        pool: pool.map_or(1, |p| p as usize),
    }
}
