//! Modules, functions, ops and the ids that name them.

use crate::op::{Op, ShapeError};
use crate::param::{ParamData, ParamId, ParamSource};
use crate::types::ValueType;
use nnc_diag::Loc;
use std::fmt;

/// An SSA value: an index into [`Function::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// An op: an index into [`Function::ops`] (its position in program order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u32);

/// Which function of the module: the two modes differ in batch norm
/// (batch statistics vs running ones), dropout (masks vs identity) and RReLU
/// (random vs mean slope).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Train,
    Infer,
}

/// Everything one `.nn` model lowers to.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    /// The model's name: the generated Rust type.
    pub name: String,
    /// Notes that passes leave for the reader (`drop-redundant-bias` says
    /// which bias it removed); printed as `// note:` lines.
    pub notes: Vec<String>,
    pub params: Vec<ParamData>,
    pub functions: Vec<Function>,
    /// The gradients of the train function's loss (the grad stage).
    pub backward: Option<crate::grad::Backward>,
}

/// One straight-line SSA function.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub mode: Mode,
    /// The type of every value; values no op defines any more (after a pass
    /// removed their op) stay here unused: the printer renumbers.
    pub values: Vec<ValueType>,
    /// Ops in program (topological) order.
    pub ops: Vec<OpData>,
    pub input: ValueId,
    pub output: ValueId,
}

/// One op: what it computes, on which values, into which value, and where
/// it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct OpData {
    pub op: Op,
    pub args: Vec<ValueId>,
    pub result: ValueId,
    /// The layer (statement) name the op belongs to: `layer0`, `conv1`.
    pub layer: String,
    /// Source locations of every statement this op stands for, in order,
    /// without repeats.
    pub locs: Vec<Loc>,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Train, Mode::Infer];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
        }
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which op of a function defines each value: [`Function::producers`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Producers(Vec<Option<usize>>);

impl Producers {
    /// The index of the op defining `v`, if one does.
    pub fn index(&self, v: ValueId) -> Option<usize> {
        self.0.get(v.0 as usize).copied().flatten()
    }

    /// The op of `f` (the function these were built from) defining `v`.
    pub fn op<'f>(&self, f: &'f Function, v: ValueId) -> Option<&'f OpData> {
        self.index(v).and_then(|i| f.ops.get(i))
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

impl Module {
    pub fn new(name: impl Into<String>) -> Module {
        Module {
            name: name.into(),
            notes: Vec::new(),
            params: Vec::new(),
            functions: Vec::new(),
            backward: None,
        }
    }

    pub fn add_param(&mut self, param: ParamData) -> ParamId {
        self.params.push(param);
        ParamId(self.params.len() as u32 - 1)
    }

    /// The parameter with this id. Ids come from this module, so a miss is a
    /// compiler bug; the verifier checks ids before anything indexes.
    pub fn param(&self, id: ParamId) -> &ParamData {
        &self.params[id.0 as usize]
    }

    pub fn param_by_name(&self, name: &str) -> Option<ParamId> {
        self.params
            .iter()
            .position(|p| p.name == name)
            .map(|i| ParamId(i as u32))
    }

    /// A parameter name not yet in the table: `base`, else `base'`,
    /// `base''`, … (derived parameters are primed versions of their source).
    pub fn fresh_param_name(&self, base: &str) -> String {
        let mut name = base.to_string();
        while self.param_by_name(&name).is_some() {
            name.push('\'');
        }
        name
    }

    pub fn function(&self, mode: Mode) -> Option<&Function> {
        self.functions.iter().find(|f| f.mode == mode)
    }

    pub fn function_mut(&mut self, mode: Mode) -> Option<&mut Function> {
        self.functions.iter_mut().find(|f| f.mode == mode)
    }

    /// Which parameters `roots` need, one flag per parameter: the roots and,
    /// through derivations, everything they are computed from.
    pub fn params_needed(&self, roots: impl IntoIterator<Item = ParamId>) -> Vec<bool> {
        let mut needed = vec![false; self.params.len()];
        let mut work: Vec<ParamId> = roots.into_iter().collect();
        while let Some(id) = work.pop() {
            let Some(slot) = needed.get_mut(id.0 as usize) else {
                continue;
            };
            if *slot {
                continue;
            }
            *slot = true;
            if let ParamSource::Derived(d) = &self.params[id.0 as usize].source {
                work.extend(d.params());
            }
        }
        needed
    }

    /// The shapes of all parameters, indexed by `ParamId`: what shape rules
    /// need to know.
    pub fn param_shapes(&self) -> Vec<&[usize]> {
        self.params.iter().map(|p| p.shape.as_slice()).collect()
    }
}

impl Function {
    /// An empty function taking one input of per-sample shape `input`.
    pub fn new(mode: Mode, input: ValueType) -> Function {
        Function {
            mode,
            values: vec![input],
            ops: Vec::new(),
            input: ValueId(0),
            output: ValueId(0),
        }
    }

    pub fn value_type(&self, value: ValueId) -> &ValueType {
        &self.values[value.0 as usize]
    }

    /// Per value, the op defining it (none for the input and for values no
    /// op defines), so that a pass or the printer asks in constant time.
    pub fn producers(&self) -> Producers {
        let mut out = vec![None; self.values.len()];
        for (i, op) in self.ops.iter().enumerate() {
            if let Some(slot) = out.get_mut(op.result.0 as usize) {
                *slot = Some(i);
            }
        }
        Producers(out)
    }

    pub fn add_value(&mut self, ty: ValueType) -> ValueId {
        self.values.push(ty);
        ValueId(self.values.len() as u32 - 1)
    }

    /// Appends an op, computing its result type with the op's shape rule,
    /// and makes the result the function's output.
    pub fn push(
        &mut self,
        params: &[ParamData],
        op: Op,
        args: Vec<ValueId>,
        layer: impl Into<String>,
        locs: Vec<Loc>,
    ) -> Result<ValueId, ShapeError> {
        let arg_types: Vec<&ValueType> = args.iter().map(|a| self.value_type(*a)).collect();
        let ty = op.output_type(&arg_types, params)?;
        let result = self.add_value(ty);
        self.ops.push(OpData {
            op,
            args,
            result,
            layer: layer.into(),
            locs,
        });
        self.output = result;
        Ok(result)
    }

    /// The parameters the ops read, each once, in the order they are first read.
    pub fn params_read(&self) -> Vec<ParamId> {
        let mut seen: Vec<bool> = Vec::new();
        let mut read: Vec<ParamId> = Vec::new();
        for id in self.ops.iter().flat_map(|o| o.op.params()) {
            let i = id.0 as usize;
            if seen.len() <= i {
                seen.resize(i + 1, false);
            }
            if !std::mem::replace(&mut seen[i], true) {
                read.push(id);
            }
        }
        read
    }

    /// The ops that use `value` as an argument.
    pub fn users(&self, value: ValueId) -> Vec<OpId> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.args.contains(&value))
            .map(|(i, _)| OpId(i as u32))
            .collect()
    }

    /// How many places read `value`: op arguments, plus one if it is the
    /// function's output.
    pub fn use_count(&self, value: ValueId) -> usize {
        let in_ops: usize = self
            .ops
            .iter()
            .map(|o| o.args.iter().filter(|a| **a == value).count())
            .sum();
        in_ops + usize::from(self.output == value)
    }

    /// The op that defines `value`, if an op does (the input has none).
    pub fn producer(&self, value: ValueId) -> Option<OpId> {
        self.ops.iter().position(|o| o.result == value).map(|i| OpId(i as u32))
    }

    /// Makes every reader of `old` (op arguments and the output) read `new`.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for op in &mut self.ops {
            for arg in &mut op.args {
                if *arg == old {
                    *arg = new;
                }
            }
        }
        if self.output == old {
            self.output = new;
        }
    }

    pub fn op(&self, id: OpId) -> &OpData {
        &self.ops[id.0 as usize]
    }

    pub fn op_mut(&mut self, id: OpId) -> &mut OpData {
        &mut self.ops[id.0 as usize]
    }
}

impl OpData {
    /// Adds `more` locations, keeping order and dropping repeats: what a
    /// fused op keeps of the ops it absorbed.
    pub fn absorb_locs(&mut self, more: &[Loc]) {
        for loc in more {
            if !self.locs.contains(loc) {
                self.locs.push(*loc);
            }
        }
    }
}
