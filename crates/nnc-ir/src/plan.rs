//! Buffer planning: every value gets a slot; a slot is reused once the last
//! reader of its value has run, so a chain of layers needs two or three
//! buffers whatever its depth. The interpreter allocates the slots per
//! batch size; generated code sizes them as constants.

use crate::grad::Backward;
use crate::{Function, Mode, Module, ValueId};

/// Floats of one thread's L2 that an inference pass's activations may
/// take when it goes a few samples at a time ([`samples_per_pass`]):
/// 512 KiB, a Zen 1 core's whole L2 and half a Zen 4's.
const PASS_FLOATS: usize = 128 * 1024;
/// Floats of weights a pass may read again on each of its passes: 4 MiB,
/// which stay in L3 from one to the next. A model with more (a large
/// dense head) reads them once, for the whole batch.
const PASS_WEIGHTS: usize = 1 << 20;

/// Which buffer each value of a function lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferPlan {
    /// Slot of each value id (`usize::MAX` for values no op defines).
    slot_of: Vec<usize>,
    /// The largest per-sample size each slot must hold.
    pub slot_len: Vec<usize>,
}

impl BufferPlan {
    /// Plans `func`'s values; `None` if an op reads a value id the function
    /// does not have (the verifier rules that out).
    pub fn new(func: &Function) -> Option<BufferPlan> {
        BufferPlan::keeping(func, &[])
    }

    /// Plans `func`'s values so that the output and every value in `kept`
    /// (what a backward reads) keep their own slots to the end.
    pub fn keeping(func: &Function, kept: &[ValueId]) -> Option<BufferPlan> {
        let n_values = func.values.len();
        let mut last_use = vec![0usize; n_values];
        for (i, op) in func.ops.iter().enumerate() {
            for a in &op.args {
                *last_use.get_mut(a.0 as usize)? = i;
            }
        }
        let never_free = usize::MAX;
        for v in kept.iter().chain([&func.output]) {
            if let Some(l) = last_use.get_mut(v.0 as usize) {
                *l = never_free;
            }
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
                if last_use[a.0 as usize] == i && !free.contains(&s) {
                    free.push(s);
                }
            }
        }
        Some(BufferPlan { slot_of, slot_len })
    }

    /// The slot `value` lives in.
    pub fn slot(&self, value: ValueId) -> usize {
        self.slot_of[value.0 as usize]
    }
}

/// How many samples per thread an inference pass takes through all its
/// ops at a time, where a whole batch's activations would leave L2
/// between one layer and the next and a few samples' stay: a CNN at batch
/// 64 (a 32-channel 32 × 32 layer's output is 8 MiB), where the layers
/// ran 3–7 % slower per sample than at batch 1. `None`: the whole batch
/// at once (training, whose backward reads every sample's activations; a
/// model whose samples are small; one with more weights than
/// [`PASS_WEIGHTS`], which each pass reads again).
///
/// The rule is by measurement on a Zen 4 (1 MiB of L2 a core): cifar_vgg
/// and resnet_mini (a 32-channel 32 × 32 map is 128 KiB a sample) one
/// sample a pass, 2–4 % faster at batch 64 on one thread; and on a Xeon
/// (2 MiB) for mobile_mini, four (below).
pub fn samples_per_pass(module: &Module, func: &Function, plan: &BufferPlan) -> Option<usize> {
    if func.mode != Mode::Infer {
        return None;
    }
    let mut read: Vec<_> = func.ops.iter().flat_map(|op| op.op.params()).collect();
    read.sort_unstable_by_key(|p| p.0);
    read.dedup();
    let weights: usize = read
        .iter()
        .filter_map(|p| module.params.get(p.0 as usize))
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    let per_sample = plan.slot_len.iter().sum::<usize>() + func.value_type(func.input).numel();
    let samples = (PASS_FLOATS / per_sample.max(1)).max(1);
    // Only samples that take a quarter of the room or more. Since the
    // passes run in a lane per thread, mobile_mini's four samples a pass
    // at batch 64 are 12–15 % faster than the whole batch on one thread
    // and 7–10 % on two (on a Xeon with 2 MiB of L2; before the lanes,
    // each pass woke the team once an op, and they were a third slower
    // on two threads); digits_cnn's nine were 7–10 % slower on two
    // threads, the seed MLP's 55 2–6 % on either.
    (weights <= PASS_WEIGHTS && samples <= 4).then_some(samples)
}

/// Which buffer each gradient value of a backward lives in: a slot is
/// reused once the last step reading its value has run (the interpreter
/// and generated code plan alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradientPlan {
    /// Slot of each gradient value (`usize::MAX` for values no step defines).
    pub slot_of: Vec<usize>,
    /// The largest per-sample size each slot must hold.
    pub slot_len: Vec<usize>,
}

impl GradientPlan {
    pub fn new(backward: &Backward) -> GradientPlan {
        let n = backward.values.len();
        let mut last_use = vec![0usize; n];
        for (i, step) in backward.steps.iter().enumerate() {
            for a in &step.args {
                if let Some(l) = last_use.get_mut(a.0 as usize) {
                    *l = i;
                }
            }
        }
        let mut slot_of = vec![usize::MAX; n];
        let mut slot_len: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        for (i, step) in backward.steps.iter().enumerate() {
            if let Some(r) = step.result {
                let len = backward.values.get(r.0 as usize).map_or(0, |t| t.numel());
                let slot = match free.iter().position(|s| slot_len[*s] >= len) {
                    Some(at) => free.swap_remove(at),
                    None => match free.pop() {
                        Some(s) => s,
                        None => {
                            slot_len.push(0);
                            slot_len.len() - 1
                        }
                    },
                };
                slot_len[slot] = slot_len[slot].max(len);
                slot_of[r.0 as usize] = slot;
            }
            for a in &step.args {
                let s = slot_of[a.0 as usize];
                if last_use[a.0 as usize] == i && !free.contains(&s) && Some(*a) != step.result {
                    free.push(s);
                }
            }
        }
        GradientPlan { slot_of, slot_len }
    }
}
