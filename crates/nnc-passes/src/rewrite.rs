//! Queries and edits the passes share: borrowing a function beside the rest
//! of its module, a [`Sweep`] that finds readers and removes ops in time
//! linear in the function, adding derived parameters under fresh names.

use foldhash::HashSet;
use nnc_ir::{
    Derivation, Epilogue, EpilogueStep, Function, Mode, Module, Op, OpData, ParamData, ParamId, ParamRole, ValueId,
};

/// One pass's walk over a function, with every query and removal in
/// constant or amortised-constant time, so a pass stays linear in the
/// number of ops (a scan per query made `check` quadratic, issue 11).
///
/// Removed ops are only marked, and readers of a removed op's result are
/// redirected through a forwarding table; [`Sweep::finish`] applies both in
/// one pass over the function. Until then, read an op's arguments through
/// [`Sweep::arg`].
pub(crate) struct Sweep {
    /// Per value: the ops reading it, one entry per argument slot, with
    /// removed ops' readers moved to what they now read.
    readers: Readers,
    /// Per value: the op defining it.
    producer: Vec<Option<usize>>,
    /// Per value: the value that replaced it (itself if none did).
    forward: Vec<ValueId>,
    /// Per op: removed.
    removed: Vec<bool>,
}

/// Runs `rewrite` on the function of `mode` with the rest of the module
/// beside it, so a pass can add parameters while it edits ops. False (and
/// nothing run) when the module has no function of that mode.
pub(crate) fn with_function(
    module: &mut Module,
    mode: Mode,
    rewrite: impl FnOnce(&mut Module, &mut Function) -> bool,
) -> bool {
    let Some(index) = module.functions.iter().position(|f| f.mode == mode) else {
        return false;
    };
    // Taken out and put back at the same place, so function order is kept.
    let mut function = module.functions.remove(index);
    let changed = rewrite(module, &mut function);
    module.functions.insert(index, function);
    changed
}

/// Runs `visit(f, sweep, index)` on each op of the `mode` function in
/// order, then applies the sweep: true if an op was removed. Nothing
/// outside infer mode, where the backward pass reads the values that the
/// fusions keep in registers.
pub(crate) fn sweep_infer(
    module: &mut Module,
    mode: Mode,
    mut visit: impl FnMut(&mut Function, &mut Sweep, usize),
) -> bool {
    if mode != Mode::Infer {
        return false;
    }
    let Some(f) = module.function_mut(mode) else {
        return false;
    };
    let mut sweep = Sweep::new(f);
    for index in 0..f.ops.len() {
        visit(f, &mut sweep, index);
    }
    sweep.finish(f)
}

/// Appends `step` to the epilogue of the linear or conv at `index`, which
/// takes the locations of the op at `absorbed` (removed by the sweep).
pub(crate) fn push_step(f: &mut Function, index: usize, absorbed: usize, step: EpilogueStep) {
    let locs = f.ops[absorbed].locs.clone();
    let fused = &mut f.ops[index];
    if let Op::Linear { epilogue, .. } | Op::Conv2d { epilogue, .. } = &mut fused.op {
        epilogue.steps.push(step);
    }
    fused.absorb_locs(&locs);
}

impl Sweep {
    /// Indexes `f`'s readers and producers. Ids out of range (broken IR,
    /// the verifier's to report) are left out of the index.
    pub(crate) fn new(f: &Function) -> Sweep {
        let n = f.values.len();
        let mut readers = Readers::new(n, f.ops.iter().map(|o| o.args.len()).sum());
        let mut producer = vec![None; n];
        for (i, op) in f.ops.iter().enumerate() {
            for arg in &op.args {
                readers.push(arg.0 as usize, i);
            }
            if let Some(p) = producer.get_mut(op.result.0 as usize) {
                *p = Some(i);
            }
        }
        Sweep {
            readers,
            producer,
            forward: (0..n as u32).map(ValueId).collect(),
            removed: vec![false; f.ops.len()],
        }
    }

    /// What a read of `value` reads now.
    pub(crate) fn resolve(&self, mut value: ValueId) -> ValueId {
        while let Some(&next) = self.forward.get(value.0 as usize) {
            if next == value {
                break;
            }
            value = next;
        }
        value
    }

    /// Argument `k` of the op at `index`, as it reads now.
    pub(crate) fn arg(&self, f: &Function, index: usize, k: usize) -> Option<ValueId> {
        let arg = *f.ops.get(index)?.args.get(k)?;
        Some(self.resolve(arg))
    }

    pub(crate) fn is_removed(&self, index: usize) -> bool {
        self.removed.get(index).copied().unwrap_or(true)
    }

    /// How many places read `value`: argument slots, plus one if it is the
    /// function's output.
    pub(crate) fn use_count(&self, f: &Function, value: ValueId) -> usize {
        let slots = self.readers.count(value.0 as usize);
        slots + usize::from(self.resolve(f.output) == value)
    }

    /// The op defining `value`, if one does and it is still there.
    pub(crate) fn producer(&self, value: ValueId) -> Option<usize> {
        let p = (*self.producer.get(value.0 as usize)?)?;
        (!self.is_removed(p)).then_some(p)
    }

    /// The index of the only op that reads `value`, when exactly one argument
    /// slot reads it and it is not the function's output.
    pub(crate) fn sole_user(&self, f: &Function, value: ValueId) -> Option<usize> {
        if self.use_count(f, value) != 1 {
            return None;
        }
        self.readers.first(value.0 as usize)
    }

    /// The op that alone reads the result of the linear or conv at `index`,
    /// after it, while that op's epilogue can take another step: what a
    /// fusion pass absorbs. An epilogue that ends in a pool takes none (a
    /// step after it would run before it); another reader, or the
    /// function's output, needs the value before the step; and a reader
    /// before its producer is broken IR, the verifier's to report.
    pub(crate) fn epilogue_reader(&self, f: &Function, index: usize) -> Option<usize> {
        match &f.ops[index].op {
            Op::Linear { .. } => {}
            Op::Conv2d { epilogue, .. } if epilogue.pool_window().is_none() => {}
            _ => return None,
        }
        if self.is_removed(index) {
            return None;
        }
        self.sole_user(f, f.ops[index].result).filter(|&user| user > index)
    }

    /// Removes the op at `index` and makes every reader of its result read
    /// its first argument instead: the op becomes the identity. Returns the
    /// removed op (for its locations).
    pub(crate) fn remove_forwarding<'f>(&mut self, f: &'f Function, index: usize) -> Option<&'f OpData> {
        let arg = self.arg(f, index, 0)?;
        self.remove_replacing(f, index, arg)
    }

    /// Removes the op at `index` and makes every reader of its result read
    /// `value` instead. Returns the removed op (for its locations).
    pub(crate) fn remove_replacing<'f>(&mut self, f: &'f Function, index: usize, value: ValueId) -> Option<&'f OpData> {
        if self.is_removed(index) {
            return None;
        }
        let op = &f.ops[index];
        self.unread(f, index);
        self.readers.move_all(op.result.0 as usize, value.0 as usize);
        if let Some(slot) = self.forward.get_mut(op.result.0 as usize) {
            *slot = value;
        }
        self.removed[index] = true;
        Some(op)
    }

    /// Gives the op at `index` one more argument, `value`.
    pub(crate) fn push_arg(&mut self, f: &mut Function, index: usize, value: ValueId) {
        self.readers.push(value.0 as usize, index);
        f.ops[index].args.push(value);
    }

    /// Removes the op at `index`, whose result nothing reads.
    pub(crate) fn remove_dead(&mut self, f: &Function, index: usize) {
        if self.is_removed(index) {
            return;
        }
        self.unread(f, index);
        self.removed[index] = true;
    }

    /// Points every value straight at what it resolves to, so chains of
    /// removed ops (a run of batch norms folded backwards) cost their
    /// length once, not once per reader.
    fn compress(&mut self) {
        let mut path = Vec::new();
        for start in 0..self.forward.len() {
            let mut v = ValueId(start as u32);
            while let Some(&next) = self.forward.get(v.0 as usize) {
                if next == v {
                    break;
                }
                path.push(v);
                v = next;
            }
            for p in path.drain(..) {
                self.forward[p.0 as usize] = v;
            }
        }
    }

    /// Takes the op at `index` off the reader lists of its arguments.
    fn unread(&mut self, f: &Function, index: usize) {
        for k in 0..f.ops[index].args.len() {
            if let Some(arg) = self.arg(f, index, k) {
                self.readers.remove(arg.0 as usize, index);
            }
        }
    }

    /// Applies the removals and redirections to `f`; true if an op was removed.
    pub(crate) fn finish(mut self, f: &mut Function) -> bool {
        self.compress();
        for op in &mut f.ops {
            for arg in &mut op.args {
                *arg = self.resolve(*arg);
            }
        }
        f.output = self.resolve(f.output);
        let mut index = 0;
        let before = f.ops.len();
        f.ops.retain(|_| {
            index += 1;
            !self.removed[index - 1]
        });
        f.ops.len() != before
    }
}

/// Per value, the argument slots reading it, as linked lists in flat
/// arrays: one allocation per array rather than one per value.
struct Readers {
    /// Per value: its first reading slot.
    head: Vec<u32>,
    /// Per value: how many slots read it.
    count: Vec<u32>,
    /// Per slot: the next slot reading the same value.
    next: Vec<u32>,
    /// Per slot: the op it is an argument of.
    op: Vec<u32>,
}

/// The end of a list.
const NONE: u32 = u32::MAX;

impl Readers {
    fn new(values: usize, slots: usize) -> Readers {
        Readers {
            head: vec![NONE; values],
            count: vec![0; values],
            next: Vec::with_capacity(slots),
            op: Vec::with_capacity(slots),
        }
    }

    /// A new slot of op `op` reading `value` (ignored out of range).
    fn push(&mut self, value: usize, op: usize) {
        let Some(head) = self.head.get_mut(value) else {
            return;
        };
        self.next.push(*head);
        self.op.push(op as u32);
        *head = (self.op.len() - 1) as u32;
        self.count[value] += 1;
    }

    fn count(&self, value: usize) -> usize {
        self.count.get(value).map_or(0, |&c| c as usize)
    }

    /// The op of the first slot reading `value`.
    fn first(&self, value: usize) -> Option<usize> {
        let head = *self.head.get(value)?;
        self.op.get(head as usize).map(|&op| op as usize)
    }

    /// Takes one slot of op `op` off `value`'s list.
    fn remove(&mut self, value: usize, op: usize) {
        let Some(&head) = self.head.get(value) else {
            return;
        };
        let (mut previous, mut slot) = (NONE, head);
        while slot != NONE {
            let after = self.next[slot as usize];
            if self.op[slot as usize] as usize == op {
                match previous {
                    NONE => self.head[value] = after,
                    p => self.next[p as usize] = after,
                }
                self.count[value] -= 1;
                return;
            }
            (previous, slot) = (slot, after);
        }
    }

    /// Moves every slot reading `from` to `to`'s list.
    fn move_all(&mut self, from: usize, to: usize) {
        let (Some(&first), true) = (self.head.get(from), to < self.head.len() && from != to) else {
            return;
        };
        if first == NONE {
            return;
        }
        let mut last = first;
        while self.next[last as usize] != NONE {
            last = self.next[last as usize];
        }
        self.next[last as usize] = self.head[to];
        self.head[to] = first;
        self.count[to] += self.count[from];
        self.head[from] = NONE;
        self.count[from] = 0;
    }
}

/// Parameter names in use, for naming derived parameters without a scan of
/// the table per name. Gathered when the first name is asked for.
#[derive(Default)]
pub(crate) struct ParamNames(Option<HashSet<String>>);

impl ParamNames {
    /// `base`, else `base'`, `base''`, … (derived parameters are primed
    /// versions of their source), now taken.
    fn fresh(&mut self, module: &Module, base: &str) -> String {
        let taken = self
            .0
            .get_or_insert_with(|| module.params.iter().map(|p| p.name.clone()).collect());
        let mut name = base.to_string();
        while taken.contains(&name) {
            name.push('\'');
        }
        taken.insert(name.clone());
        name
    }
}

/// A parameter by id, or `None` for an id outside the table (broken IR the
/// verifier reports; a pass just declines).
pub(crate) fn param(module: &Module, id: ParamId) -> Option<&ParamData> {
    module.params.get(id.0 as usize)
}

/// Adds a derived parameter named `base`, primed until the name is free.
pub(crate) fn add_derived(
    module: &mut Module,
    names: &mut ParamNames,
    base: &str,
    shape: Vec<usize>,
    role: ParamRole,
    derivation: Derivation,
) -> ParamId {
    let name = names.fresh(module, base);
    module.add_param(ParamData::derived(name, shape, role, derivation))
}

/// The weight and bias of a linear or conv, the two ops with weights.
pub(crate) fn weights(op: &Op) -> Option<(ParamId, Option<ParamId>)> {
    match op {
        Op::Linear { weight, bias, .. } | Op::Conv2d { weight, bias, .. } => Some((*weight, *bias)),
        _ => None,
    }
}

/// Sets the weight and bias of a linear or conv; false for other ops.
pub(crate) fn set_weights(op: &mut Op, new_weight: ParamId, new_bias: Option<ParamId>) -> bool {
    match op {
        Op::Linear { weight, bias, .. } | Op::Conv2d { weight, bias, .. } => {
            *weight = new_weight;
            *bias = new_bias;
            true
        }
        _ => false,
    }
}

/// The epilogue of a linear or conv, the two ops that have one.
pub(crate) fn epilogue(op: &Op) -> Option<&Epilogue> {
    match op {
        Op::Linear { epilogue, .. } | Op::Conv2d { epilogue, .. } => Some(epilogue),
        _ => None,
    }
}

/// True for a linear or conv with nothing after its bias: what a batch norm
/// right after it can cancel into or fold into.
pub(crate) fn is_bare_weights(op: &Op) -> bool {
    epilogue(op).is_some_and(Epilogue::is_empty)
}
