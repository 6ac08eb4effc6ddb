//! Buffer planning: every value gets a slot; a slot is reused once the last
//! reader of its value has run, so a chain of layers needs two or three
//! buffers whatever its depth.

use crate::Error;
use nnc_ir::{Function, Op, ValueId};
use nnc_runtime::kernels::conv::ConvGeometry;

pub(crate) struct Plan {
    /// Slot of each value id (`usize::MAX` for values no op defines).
    slot_of: Vec<usize>,
    /// The largest per-sample size each slot must hold.
    slot_len: Vec<usize>,
}

impl Plan {
    pub(crate) fn new(func: &Function) -> Result<Plan, Error> {
        let n_values = func.values.len();
        let mut last_use = vec![0usize; n_values];
        for (i, op) in func.ops.iter().enumerate() {
            for a in &op.args {
                let Some(l) = last_use.get_mut(a.0 as usize) else {
                    return Err(Error::Unsupported(format!("op {i} reads an undefined value")));
                };
                *l = i;
            }
        }
        let never_free = usize::MAX;
        if let Some(l) = last_use.get_mut(func.output.0 as usize) {
            *l = never_free;
        }
        let mut slot_of = vec![usize::MAX; n_values];
        let mut slot_len: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut assign = |value: ValueId, slot_of: &mut Vec<usize>, free: &mut Vec<usize>| {
            let len = func.value_type(value).numel();
            // Prefer a free slot already large enough; else grow one; else a new one.
            let pick = free
                .iter()
                .position(|s| slot_len[*s] >= len)
                .or(if free.is_empty() { None } else { Some(0) });
            let slot = match pick {
                Some(at) => free.swap_remove(at),
                None => {
                    slot_len.push(0);
                    slot_len.len() - 1
                }
            };
            slot_len[slot] = slot_len[slot].max(len);
            slot_of[value.0 as usize] = slot;
        };
        assign(func.input, &mut slot_of, &mut free);
        for (i, op) in func.ops.iter().enumerate() {
            assign(op.result, &mut slot_of, &mut free);
            for a in &op.args {
                let s = slot_of[a.0 as usize];
                if last_use[a.0 as usize] == i && !free.contains(&s) && *a != func.output {
                    free.push(s);
                }
            }
        }
        Ok(Plan { slot_of, slot_len })
    }

    pub(crate) fn slot(&self, value: ValueId) -> usize {
        self.slot_of[value.0 as usize]
    }

    /// One buffer per slot, for `batch` samples.
    pub(crate) fn allocate(&self, _func: &Function, batch: usize) -> Vec<Vec<f32>> {
        self.slot_len.iter().map(|len| vec![0.0; len * batch]).collect()
    }

    /// Scratch for the op that needs the most: im2col columns, DropBlock
    /// masks, DropConnect's masked weights.
    pub(crate) fn scratch_len(&self, func: &Function, params: &[Vec<f32>], batch: usize, threads: usize) -> usize {
        func.ops
            .iter()
            .map(|op| {
                let x = func.value_type(op.args[0]);
                match &op.op {
                    Op::Conv2d {
                        geometry,
                        weight,
                        dropconnect,
                        ..
                    } => {
                        let g = conv_geometry(
                            x.dims.as_slice(),
                            params[weight.0 as usize].len(),
                            geometry,
                            &func.value_type(op.result).dims,
                        );
                        g.scratch_len(threads) + dropconnect.map_or(0, |_| params[weight.0 as usize].len())
                    }
                    Op::Linear {
                        weight,
                        dropconnect: Some(_),
                        ..
                    } => params[weight.0 as usize].len(),
                    Op::DropBlock { .. } => x.numel() * batch,
                    _ => 0,
                }
            })
            .max()
            .unwrap_or(0)
    }
}

/// The runtime's view of a conv op: input `[C, H, W]`, output `[O, ..]`.
pub(crate) fn conv_geometry(
    input: &[usize],
    _weight_len: usize,
    g: &nnc_ir::ConvGeometry,
    output: &[usize],
) -> ConvGeometry {
    let dim = |d: &[usize], i: usize| d.get(i).copied().unwrap_or(1);
    ConvGeometry {
        in_channels: dim(input, 0),
        height: dim(input, 1),
        width: dim(input, 2),
        out_channels: dim(output, 0),
        kernel: g.kernel as usize,
        stride: g.stride as usize,
        dilation: g.dilation as usize,
        groups: g.groups as usize,
        pads: g.pads.map(|p| p as usize),
    }
}
