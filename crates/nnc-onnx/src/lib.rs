//! ONNX export: a module's `infer` function as an ONNX model made of
//! standard `ai.onnx` ops, every parameter an initializer under its
//! LANGUAGE.md §7 name, input `input` and output `output` with a symbolic
//! batch axis `N`. Opset 17, or 21 when the graph has a group norm (whose
//! per-channel scale arrived in opset 21). The protobuf is written with the
//! official `onnx.proto` (the `onnx-protobuf` crate), never by hand.

use nnc_ir::{Act, EpilogueStep, Function, Mode, Module, Op, ParamId, ValueId};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto;
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use std::collections::BTreeSet;
use std::fmt;

/// One parameter's numbers.
#[derive(Clone, Copy, Debug)]
pub struct TensorData<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// Why a module cannot be exported.
#[derive(Clone, Debug, PartialEq)]
pub enum ExportError {
    NoInferFunction,
    MissingParam(String),
    /// The parameters alone pass protobuf's 2 GiB limit on one message.
    TooLarge {
        bytes: u64,
        largest: String,
        largest_bytes: u64,
    },
    Encode(String),
    /// IR the verifier would refuse (an op missing an argument).
    Malformed(String),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::NoInferFunction => write!(f, "the module has no infer function to export"),
            ExportError::MissingParam(name) => write!(f, "parameter `{name}` has no value to export"),
            ExportError::TooLarge {
                bytes,
                largest,
                largest_bytes,
            } => write!(
                f,
                "the parameters take {bytes} bytes (the largest, `{largest}`, {largest_bytes}); an ONNX file \
                 holds at most {MAX_MODEL_BYTES} bytes (protobuf's 2 GiB limit), and nnc export does not \
                 write ONNX external data yet"
            ),
            ExportError::Encode(e) => write!(f, "cannot encode the ONNX model: {e}"),
            ExportError::Malformed(e) => write!(f, "malformed IR: {e}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// Protobuf's limit on one message, so on a whole `.onnx` file without
/// external data: a larger file is written without complaint by the
/// encoder and refused by every reader.
pub const MAX_MODEL_BYTES: u64 = (1 << 31) - 1;

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// The graph being built.
struct Graph<'a> {
    module: &'a Module,
    func: &'a Function,
    params: &'a dyn Fn(&str) -> Option<TensorData<'a>>,
    opset: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    added: BTreeSet<String>,
    temps: usize,
}

/// Exports `module`'s infer function; `params` gives every parameter's
/// numbers by name (derived ones included, if the function reads any).
pub fn export<'a>(
    module: &'a Module,
    params: &'a dyn Fn(&str) -> Option<TensorData<'a>>,
) -> Result<Vec<u8>, ExportError> {
    export_within(module, params, MAX_MODEL_BYTES)
}

fn export_within<'a>(
    module: &'a Module,
    params: &'a dyn Fn(&str) -> Option<TensorData<'a>>,
    limit: u64,
) -> Result<Vec<u8>, ExportError> {
    let func = module.function(Mode::Infer).ok_or(ExportError::NoInferFunction)?;
    check_size(module, func, limit)?;
    let opset = if func.ops.iter().any(|o| matches!(o.op, Op::GroupNorm { .. })) {
        21
    } else {
        17
    };
    let mut g = Graph {
        module,
        func,
        params,
        opset,
        nodes: Vec::new(),
        initializers: Vec::new(),
        added: BTreeSet::new(),
        temps: 0,
    };
    for index in 0..func.ops.len() {
        g.op(index)?;
    }
    if func.ops.is_empty() {
        g.node("Identity", vec!["input".into()], "output".into(), Vec::new());
    }
    let graph = GraphProto {
        name: module.name.clone(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info("input", &func.value_type(func.input).dims)],
        output: vec![value_info("output", &func.value_type(func.output).dims)],
        ..Default::default()
    };
    let model = ModelProto {
        // IR version 8 goes with opset 17, 10 with opset 21.
        ir_version: if opset >= 21 { 10 } else { 8 },
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
            ..Default::default()
        }],
        producer_name: "nnc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph).into(),
        ..Default::default()
    };
    model.write_to_bytes().map_err(|e| ExportError::Encode(e.to_string()))
}

/// Refuses, before anything is copied, a function whose parameters alone
/// exceed `limit` bytes.
fn check_size(module: &Module, func: &Function, limit: u64) -> Result<(), ExportError> {
    let read: BTreeSet<ParamId> = func.ops.iter().flat_map(|o| o.op.params()).collect();
    let sizes = read.iter().filter_map(|id| module.params.get(id.0 as usize)).map(|p| {
        let count: u64 = p.shape.iter().map(|&d| d as u64).product();
        (count.saturating_mul(4), &p.name)
    });
    let bytes = sizes.clone().map(|(b, _)| b).fold(0u64, u64::saturating_add);
    if bytes <= limit {
        return Ok(());
    }
    let (largest_bytes, largest) = sizes.max_by_key(|(b, _)| *b).unwrap_or((0, &module.name));
    Err(ExportError::TooLarge {
        bytes,
        largest: largest.clone(),
        largest_bytes,
    })
}

#[cfg(test)]
mod tests;

fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let batch = Dimension {
        value: Some(dimension::Value::DimParam("N".into())),
        ..Default::default()
    };
    let mut dim = vec![batch];
    dim.extend(dims.iter().map(|d| Dimension {
        value: Some(dimension::Value::DimValue(*d as i64)),
        ..Default::default()
    }));
    let tensor = type_proto::Tensor {
        elem_type: FLOAT,
        shape: Some(TensorShapeProto {
            dim,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i,
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::FLOAT.into(),
        f,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: ints.to_vec(),
        ..Default::default()
    }
}

impl Graph<'_> {
    fn name(&self, v: ValueId) -> String {
        if v == self.func.output {
            "output".into()
        } else if v == self.func.input {
            "input".into()
        } else {
            format!("v{}", v.0)
        }
    }

    fn temp(&mut self) -> String {
        self.temps += 1;
        format!("t{}", self.temps)
    }

    fn node(&mut self, op_type: &str, input: Vec<String>, output: String, attribute: Vec<AttributeProto>) {
        let name = format!("{op_type}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            op_type: op_type.into(),
            input,
            output: vec![output],
            attribute,
            name,
            ..Default::default()
        });
    }

    fn tensor(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        if self.added.insert(name.to_string()) {
            let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            let dims = dims.iter().map(|d| *d as i64).collect();
            self.initializers.push(TensorProto {
                name: name.into(),
                dims,
                data_type: FLOAT,
                raw_data,
                ..Default::default()
            });
        }
    }

    fn int64s(&mut self, name: &str, values: &[i64]) {
        if self.added.insert(name.to_string()) {
            let raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let dims = vec![values.len() as i64];
            self.initializers.push(TensorProto {
                name: name.into(),
                dims,
                data_type: INT64,
                raw_data,
                ..Default::default()
            });
        }
    }

    /// A scalar constant as an initializer.
    fn constant(&mut self, value: f32) -> String {
        let name = format!("const.{value}");
        self.tensor(&name, &[], &[value]);
        name
    }

    /// A parameter as an initializer under its own name; with `image`, a
    /// per-channel `[C]` parameter is also given as `[C, 1, 1]` (so it
    /// broadcasts over H and W) under `<name>.chw`.
    fn param(&mut self, id: ParamId, image: bool) -> Result<String, ExportError> {
        let p = self.module.param(id);
        let data = (self.params)(&p.name).ok_or_else(|| ExportError::MissingParam(p.name.clone()))?;
        if image && data.shape.len() == 1 && data.shape[0] > 1 {
            let name = format!("{}.chw", p.name);
            self.tensor(&name, &[data.shape[0], 1, 1], data.data);
            return Ok(name);
        }
        let name = p.name.clone();
        self.tensor(&name, data.shape, data.data);
        Ok(name)
    }

    fn op(&mut self, index: usize) -> Result<(), ExportError> {
        let func = self.func;
        let op = &func.ops[index];
        let x = self.name(op.args[0]);
        let out = self.name(op.result);
        let image = func.value_type(op.args[0]).is_image();
        match &op.op {
            Op::Linear {
                weight, bias, epilogue, ..
            } => {
                let mut inputs = vec![x, self.param(*weight, false)?];
                if let Some(b) = bias {
                    inputs.push(self.param(*b, false)?);
                }
                let tmp = if epilogue.is_empty() { out.clone() } else { self.temp() };
                self.node("Gemm", inputs, tmp.clone(), vec![attr_int("transB", 1)]);
                self.epilogue(&epilogue.steps, None, tmp, out, false)?;
            }
            Op::Conv2d {
                weight,
                bias,
                geometry: g,
                epilogue,
                ..
            } => {
                let mut inputs = vec![x, self.param(*weight, false)?];
                if let Some(b) = bias {
                    inputs.push(self.param(*b, false)?);
                }
                let attrs = vec![
                    attr_ints("kernel_shape", &[i64::from(g.kernel); 2]),
                    attr_ints("strides", &[i64::from(g.stride); 2]),
                    attr_ints("dilations", &[i64::from(g.dilation); 2]),
                    attr_ints("pads", &g.pads.map(i64::from)),
                    attr_int("group", i64::from(g.groups)),
                ];
                let tmp = if epilogue.is_empty() { out.clone() } else { self.temp() };
                self.node("Conv", inputs, tmp.clone(), attrs);
                let residual = op.args.get(1).map(|r| self.name(*r));
                self.epilogue(&epilogue.steps, residual, tmp, out, true)?;
            }
            Op::MaxPool(g) | Op::AvgPool(g) => {
                let mut attrs = vec![
                    attr_ints("kernel_shape", &[i64::from(g.kernel); 2]),
                    attr_ints("strides", &[i64::from(g.stride); 2]),
                    attr_ints("pads", &g.pads.map(i64::from)),
                ];
                let kind = if let Op::MaxPool(_) = op.op {
                    "MaxPool"
                } else {
                    attrs.push(attr_int("count_include_pad", 0));
                    "AveragePool"
                };
                self.node(kind, vec![x], out, attrs);
            }
            Op::GlobalAvgPool => {
                let tmp = self.temp();
                self.node("GlobalAveragePool", vec![x], tmp.clone(), Vec::new());
                self.node("Flatten", vec![tmp], out, vec![attr_int("axis", 1)]);
            }
            Op::Flatten => self.node("Flatten", vec![x], out, vec![attr_int("axis", 1)]),
            Op::Act(Act::Maxout { pieces }) => {
                let dims = &func.value_type(op.args[0]).dims;
                let p = i64::from(*pieces);
                let mut shape = vec![0, dims[0] as i64 / p, p];
                shape.extend(dims.iter().skip(1).map(|d| *d as i64));
                let shape_name = format!("maxout{index}.shape");
                self.int64s(&shape_name, &shape);
                let tmp = self.temp();
                self.node("Reshape", vec![x, shape_name], tmp.clone(), Vec::new());
                // ReduceMax took `axes` as an attribute until opset 18.
                if self.opset >= 18 {
                    let axes = format!("maxout{index}.axes");
                    self.int64s(&axes, &[2]);
                    self.node("ReduceMax", vec![tmp, axes], out, vec![attr_int("keepdims", 0)]);
                } else {
                    self.node(
                        "ReduceMax",
                        vec![tmp],
                        out,
                        vec![attr_ints("axes", &[2]), attr_int("keepdims", 0)],
                    );
                }
            }
            Op::Act(Act::Softmax) => self.node("Softmax", vec![x], out, vec![attr_int("axis", 1)]),
            Op::Act(act) => self.act(act, x, out, image)?,
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
                ..
            } => {
                let inputs = vec![
                    x,
                    self.param(*weight, false)?,
                    self.param(*bias, false)?,
                    self.param(*running_mean, false)?,
                    self.param(*running_var, false)?,
                ];
                self.node("BatchNormalization", inputs, out, vec![attr_float("epsilon", *eps)]);
            }
            Op::LayerNorm { weight, bias, eps } => {
                let inputs = vec![x, self.param(*weight, false)?, self.param(*bias, false)?];
                self.node(
                    "LayerNormalization",
                    inputs,
                    out,
                    vec![attr_int("axis", 1), attr_float("epsilon", *eps)],
                );
            }
            Op::InstanceNorm { weight, bias, eps } => {
                let inputs = vec![x, self.param(*weight, false)?, self.param(*bias, false)?];
                self.node("InstanceNormalization", inputs, out, vec![attr_float("epsilon", *eps)]);
            }
            Op::GroupNorm {
                weight,
                bias,
                groups,
                eps,
            } => {
                let inputs = vec![x, self.param(*weight, false)?, self.param(*bias, false)?];
                let attrs = vec![attr_int("num_groups", i64::from(*groups)), attr_float("epsilon", *eps)];
                self.node("GroupNormalization", inputs, out, attrs);
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                let attrs = vec![
                    attr_int("size", i64::from(*size)),
                    attr_float("alpha", *alpha),
                    attr_float("beta", *beta),
                    attr_float("bias", *bias),
                ];
                self.node("LRN", vec![x], out, attrs);
            }
            Op::Affine { scale, shift } => {
                self.affine(*scale, *shift, x, out, image)?;
            }
            Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => {
                self.node("Identity", vec![x], out, Vec::new())
            }
            Op::Add => {
                let b = self.name(op.args[1]);
                self.node("Add", vec![x, b], out, Vec::new());
            }
        }
        Ok(())
    }

    fn affine(
        &mut self,
        scale: ParamId,
        shift: ParamId,
        x: String,
        out: String,
        image: bool,
    ) -> Result<(), ExportError> {
        let (s, t, tmp) = (self.param(scale, image)?, self.param(shift, image)?, self.temp());
        self.node("Mul", vec![x, s], tmp.clone(), Vec::new());
        self.node("Add", vec![tmp, t], out, Vec::new());
        Ok(())
    }

    /// The steps of a fused op's epilogue, from `from` to `out`; a
    /// residual's sum (`Add` with the value named `residual`) among them.
    fn epilogue(
        &mut self,
        steps: &[EpilogueStep],
        residual: Option<String>,
        from: String,
        out: String,
        image: bool,
    ) -> Result<(), ExportError> {
        let mut cur = from;
        for (i, step) in steps.iter().enumerate() {
            let next = if i + 1 == steps.len() { out.clone() } else { self.temp() };
            match step {
                EpilogueStep::Affine { scale, shift } => self.affine(*scale, *shift, cur, next.clone(), image)?,
                EpilogueStep::Act(act) => self.act(act, cur, next.clone(), image)?,
                EpilogueStep::Add => {
                    let r = residual
                        .clone()
                        .ok_or_else(|| ExportError::Malformed("a residual sum without its value".into()))?;
                    self.node("Add", vec![cur, r], next.clone(), Vec::new());
                }
                EpilogueStep::MaxPool { window } => {
                    let attrs = vec![
                        attr_ints("kernel_shape", &[i64::from(*window); 2]),
                        attr_ints("strides", &[i64::from(*window); 2]),
                    ];
                    self.node("MaxPool", vec![cur], next.clone(), attrs);
                }
            }
            cur = next;
        }
        Ok(())
    }

    /// An element-wise activation.
    fn act(&mut self, act: &Act, x: String, out: String, image: bool) -> Result<(), ExportError> {
        match act {
            Act::Sigmoid => self.node("Sigmoid", vec![x], out, Vec::new()),
            Act::Tanh => self.node("Tanh", vec![x], out, Vec::new()),
            Act::Relu => self.node("Relu", vec![x], out, Vec::new()),
            Act::LeakyRelu { alpha } => self.node("LeakyRelu", vec![x], out, vec![attr_float("alpha", *alpha)]),
            // RReLU at inference: the mean slope.
            Act::Rrelu { lower, upper } => self.node(
                "LeakyRelu",
                vec![x],
                out,
                vec![attr_float("alpha", (lower + upper) / 2.0)],
            ),
            Act::Prelu { weight } => {
                let slope = self.param(*weight, image)?;
                self.node("PRelu", vec![x, slope], out, Vec::new());
            }
            Act::Elu { alpha } => self.node("Elu", vec![x], out, vec![attr_float("alpha", *alpha)]),
            Act::Selu => {
                let attrs = vec![attr_float("alpha", 1.673_263_2), attr_float("gamma", 1.050_701)];
                self.node("Selu", vec![x], out, attrs);
            }
            Act::Softplus { beta } if *beta == 1.0 => self.node("Softplus", vec![x], out, Vec::new()),
            Act::Softplus { beta } => {
                // softplus(βx)/β
                let b = self.constant(*beta);
                let (t1, t2) = (self.temp(), self.temp());
                self.node("Mul", vec![x, b.clone()], t1.clone(), Vec::new());
                self.node("Softplus", vec![t1], t2.clone(), Vec::new());
                self.node("Div", vec![t2, b], out, Vec::new());
            }
            Act::Gelu => {
                // x·(1 + erf(x/√2))/2
                let (root2, one, half) = (
                    self.constant(std::f32::consts::SQRT_2),
                    self.constant(1.0),
                    self.constant(0.5),
                );
                let (t1, t2, t3, t4) = (self.temp(), self.temp(), self.temp(), self.temp());
                self.node("Div", vec![x.clone(), root2], t1.clone(), Vec::new());
                self.node("Erf", vec![t1], t2.clone(), Vec::new());
                self.node("Add", vec![t2, one], t3.clone(), Vec::new());
                self.node("Mul", vec![x, t3], t4.clone(), Vec::new());
                self.node("Mul", vec![t4, half], out, Vec::new());
            }
            Act::Silu => {
                let t = self.temp();
                self.node("Sigmoid", vec![x.clone()], t.clone(), Vec::new());
                self.node("Mul", vec![x, t], out, Vec::new());
            }
            Act::Maxout { .. } | Act::Softmax => {
                return Err(ExportError::Encode(format!("{} is not element-wise", act.name())));
            }
        }
        Ok(())
    }
}
