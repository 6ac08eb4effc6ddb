//! Unit tests: modules built with the IR API, one file per pass, plus a tiny
//! evaluator ([`eval`]) for the numeric checks of the folding formulas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dce;
mod drop_redundant_bias;
mod eliminate_dropout;
mod eval;
mod fold_batchnorm;
mod fuse_activation;
mod fuse_pool;
mod manager;

use nnc_ir::{
    ConvGeometry, Derivation, Dist, Epilogue, Function, Init, Mode, Module, Op, OpData, ParamData, ParamId, ParamRole,
    ParamSource, ValueId, ValueType,
};

/// Builds a one-function module op by op; each op gets `loc(k:1)` with `k`
/// its position plus one, so absorbed locations can be checked.
pub struct Build {
    pub m: Module,
    pub f: Function,
}

impl Build {
    pub fn new(mode: Mode, input: &[usize]) -> Build {
        Build {
            m: Module::new("Test"),
            f: Function::new(mode, ValueType::new(input)),
        }
    }

    pub fn input(&self) -> ValueId {
        self.f.input
    }

    /// A stored parameter drawn from a normal.
    pub fn stored(&mut self, name: &str, shape: &[usize], role: ParamRole) -> ParamId {
        let init = Init {
            scheme: "normal".into(),
            fan_in: None,
            fan_out: None,
            dist: Dist::Normal { mean: 0.0, std: 0.1 },
        };
        self.m.add_param(ParamData::init(name, shape, role, init))
    }

    /// A stored parameter initialised to a constant.
    pub fn constant(&mut self, name: &str, shape: &[usize], role: ParamRole, value: f32) -> ParamId {
        self.m
            .add_param(ParamData::init(name, shape, role, Init::constant("constant", value)))
    }

    pub fn op(&mut self, op: Op, args: &[ValueId], layer: &str) -> ValueId {
        let v = self
            .f
            .push(&self.m.params, op, args.to_vec(), layer, Vec::new())
            .unwrap();
        let line = self.f.ops.len() as u32 + 1;
        let last = self.f.ops.last_mut().unwrap();
        last.locs.push(Default::default());
        last.locs[0].line = line;
        last.locs[0].col = 1;
        v
    }

    /// `linear[layer]` with `layer.weight` and, if asked, a normal `layer.bias`.
    pub fn linear(&mut self, x: ValueId, layer: &str, out: usize, bias: bool) -> ValueId {
        let inp = self.f.value_type(x).dims[0];
        let weight = self.stored(&format!("{layer}.weight"), &[out, inp], ParamRole::Weight);
        let bias = bias.then(|| self.stored(&format!("{layer}.bias"), &[out], ParamRole::Bias));
        self.op(
            Op::Linear {
                weight,
                bias,
                dropconnect: None,
                epilogue: Epilogue::default(),
            },
            &[x],
            layer,
        )
    }

    /// `conv2d[layer]`, stride 1, with a bias.
    pub fn conv(&mut self, x: ValueId, layer: &str, out: usize, kernel: u32, pad: u32, groups: u32) -> ValueId {
        let c = self.f.value_type(x).dims[0];
        let k = kernel as usize;
        let weight = self.stored(
            &format!("{layer}.weight"),
            &[out, c / groups as usize, k, k],
            ParamRole::Weight,
        );
        let bias = Some(self.stored(&format!("{layer}.bias"), &[out], ParamRole::Bias));
        let geometry = ConvGeometry {
            kernel,
            stride: 1,
            dilation: 1,
            groups,
            pads: [pad; 4],
        };
        self.op(
            Op::Conv2d {
                weight,
                bias,
                geometry,
                dropconnect: None,
                epilogue: Epilogue::default(),
            },
            &[x],
            layer,
        )
    }

    /// `batch_norm[layer]` with fresh `layer.norm.*` parameters.
    pub fn bn(&mut self, x: ValueId, layer: &str) -> ValueId {
        let c = [self.f.value_type(x).channels()];
        let op = Op::BatchNorm {
            weight: self.stored(&format!("{layer}.norm.weight"), &c, ParamRole::NormWeight),
            bias: self.stored(&format!("{layer}.norm.bias"), &c, ParamRole::NormBias),
            running_mean: self.constant(&format!("{layer}.norm.running_mean"), &c, ParamRole::RunningMean, 0.0),
            running_var: self.constant(&format!("{layer}.norm.running_var"), &c, ParamRole::RunningVar, 1.0),
            eps: 1e-5,
            momentum: 0.1,
        };
        self.op(op, &[x], layer)
    }

    pub fn finish(mut self) -> Module {
        self.m.functions.push(self.f);
        self.m
    }
}

/// Runs `pass` twice on `mode`: asserts the second run reports no change and
/// leaves the module as the first left it. Returns the first run's answer.
pub fn run_twice(pass: fn(&mut Module, Mode) -> bool, m: &mut Module, mode: Mode) -> bool {
    let changed = pass(m, mode);
    let once = m.clone();
    assert!(!pass(m, mode), "second run reported a change");
    assert_eq!(*m, once, "second run changed the module");
    changed
}

/// Asserts that `pass` neither fires nor changes anything.
pub fn assert_no_fire(pass: fn(&mut Module, Mode) -> bool, m: &mut Module, mode: Mode) {
    let before = m.clone();
    assert!(!pass(m, mode), "the pass fired");
    assert_eq!(*m, before);
}

pub fn func(m: &Module, mode: Mode) -> &Function {
    m.function(mode).unwrap()
}

/// The op names of a function, in order: `["linear", "relu"]`.
pub fn op_names(m: &Module, mode: Mode) -> Vec<&'static str> {
    func(m, mode).ops.iter().map(|o| o.op.name()).collect()
}

/// The op that defines the function's output.
pub fn output_op(m: &Module, mode: Mode) -> &OpData {
    let f = func(m, mode);
    f.op(f.producer(f.output).unwrap())
}

pub fn name(m: &Module, id: ParamId) -> &str {
    &m.param(id).name
}

/// A derived parameter's derivation, written out as text (fully bracketed
/// binaries) so tests can compare whole expressions.
pub fn derivation(m: &Module, id: ParamId) -> String {
    match &m.param(id).source {
        ParamSource::Derived(d) => show(m, d),
        ParamSource::Init(_) => panic!("@{} is not derived", name(m, id)),
    }
}

fn show(m: &Module, d: &Derivation) -> String {
    match d {
        Derivation::Param(p) => format!("@{}", name(m, *p)),
        Derivation::Const(c) => format!("{c}"),
        Derivation::Binary { op, lhs, rhs } => {
            format!("({} {} {})", show(m, lhs), op.symbol(), show(m, rhs))
        }
        Derivation::Sqrt(x) => format!("sqrt({})", show(m, x)),
        Derivation::ScaleRows { matrix, scale } => {
            format!("scale_rows({}, {})", show(m, matrix), show(m, scale))
        }
        Derivation::ScaleCols { matrix, scale } => {
            format!("scale_cols({}, {})", show(m, matrix), show(m, scale))
        }
        Derivation::MatVec { matrix, vector } => {
            format!("mat_vec({}, {})", show(m, matrix), show(m, vector))
        }
    }
}
