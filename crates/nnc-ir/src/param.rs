//! The parameter table: names, shapes, roles, initialisers and derivations.

use crate::op::ShapeError;
use std::borrow::Cow;
use std::fmt;

/// A parameter: an index into [`crate::Module::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub u32);

/// One parameter of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamData {
    /// The stable name of LANGUAGE.md §7 (`layer0.norm.running_var`); a
    /// derived parameter primes its source's name (`layer0.weight'`).
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
    pub source: ParamSource,
    /// Weight penalties for the training loss (`l1=`, `l2=`), 0 when absent.
    pub l1: f32,
    pub l2: f32,
}

/// What a parameter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    Weight,
    Bias,
    /// A norm's γ.
    NormWeight,
    /// A norm's β.
    NormBias,
    RunningMean,
    RunningVar,
    /// PReLU slopes.
    ActWeight,
    /// A per-channel affine's scale (from folding a lone batch norm).
    Scale,
    /// A per-channel affine's shift.
    Shift,
}

/// Where a parameter's numbers come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamSource {
    /// Stored in weight files; drawn by `init` when there are none.
    Init(Init),
    /// Computed from other parameters when weights are loaded (or at build
    /// time with `--embed`); never stored.
    Derived(Derivation),
}

/// A resolved initialiser: the scheme the program asked for (for the
/// reader), the fans it was resolved with, and the distribution drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct Init {
    /// The scheme's canonical name: `he_normal`, `xavier_uniform`, `zeros`…
    pub scheme: String,
    pub fan_in: Option<usize>,
    pub fan_out: Option<usize>,
    pub dist: Dist,
}

/// A distribution to draw a parameter from, resolved to numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Constant {
        value: f32,
    },
    Normal {
        mean: f32,
        std: f32,
    },
    /// A normal with this mean and std, redrawn outside `[low, high]`.
    TruncatedNormal {
        mean: f32,
        std: f32,
        low: f32,
        high: f32,
    },
    Uniform {
        low: f32,
        high: f32,
    },
    /// A (semi-)orthogonal matrix times `gain`; conv weights are drawn as
    /// `[OUT, IN/G·K·K]` matrices.
    Orthogonal {
        gain: f32,
    },
}

/// How a derived parameter is computed from others.
#[derive(Clone, Debug, PartialEq)]
pub enum Derivation {
    Param(ParamId),
    /// A scalar.
    Const(f32),
    /// Element-wise on equal shapes, or with a scalar on either side.
    Binary {
        op: BinaryOp,
        lhs: Box<Derivation>,
        rhs: Box<Derivation>,
    },
    Sqrt(Box<Derivation>),
    /// `W[o, ...] · s[o]`: scales each output row (folding a batch norm that
    /// follows a linear or conv into it).
    ScaleRows {
        matrix: Box<Derivation>,
        scale: Box<Derivation>,
    },
    /// `W[o, i, ...] · s[i]`: scales each input column (folding a batch norm
    /// that precedes a linear or conv into it).
    ScaleCols {
        matrix: Box<Derivation>,
        scale: Box<Derivation>,
    },
    /// `Σ_i Σ_rest W[o, i, rest] · v[i]` → `[OUT]`: what a per-input shift
    /// adds to the next layer's bias.
    MatVec {
        matrix: Box<Derivation>,
        vector: Box<Derivation>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A parameter's shape: what shape rules read from the table.
impl AsRef<[usize]> for ParamData {
    fn as_ref(&self) -> &[usize] {
        &self.shape
    }
}

impl ParamData {
    /// A stored parameter with an initialiser and no penalties.
    pub fn init(name: impl Into<String>, shape: impl Into<Vec<usize>>, role: ParamRole, init: Init) -> ParamData {
        ParamData {
            name: name.into(),
            shape: shape.into(),
            role,
            source: ParamSource::Init(init),
            l1: 0.0,
            l2: 0.0,
        }
    }

    /// A derived parameter.
    pub fn derived(
        name: impl Into<String>,
        shape: impl Into<Vec<usize>>,
        role: ParamRole,
        derivation: Derivation,
    ) -> ParamData {
        ParamData {
            name: name.into(),
            shape: shape.into(),
            role,
            source: ParamSource::Derived(derivation),
            l1: 0.0,
            l2: 0.0,
        }
    }

    pub fn is_derived(&self) -> bool {
        matches!(self.source, ParamSource::Derived(_))
    }

    /// A dense weight as the matrix the kernels read: `(out_features,
    /// in_features)`, the first dimension and the product of the rest.
    pub fn out_and_in(&self) -> (usize, usize) {
        (
            self.shape.first().copied().unwrap_or(0),
            self.shape.iter().skip(1).product(),
        )
    }
}

impl ParamRole {
    pub const ALL: [ParamRole; 9] = [
        ParamRole::Weight,
        ParamRole::Bias,
        ParamRole::NormWeight,
        ParamRole::NormBias,
        ParamRole::RunningMean,
        ParamRole::RunningVar,
        ParamRole::ActWeight,
        ParamRole::Scale,
        ParamRole::Shift,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::NormWeight => "norm_weight",
            ParamRole::NormBias => "norm_bias",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
            ParamRole::ActWeight => "act_weight",
            ParamRole::Scale => "scale",
            ParamRole::Shift => "shift",
        }
    }

    pub fn from_name(name: &str) -> Option<ParamRole> {
        ParamRole::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl Init {
    /// A constant initialiser (`zeros`, `ones`, `constant(V)`).
    pub fn constant(scheme: &str, value: f32) -> Init {
        Init {
            scheme: scheme.to_string(),
            fan_in: None,
            fan_out: None,
            dist: Dist::Constant { value },
        }
    }
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }

    /// Binding strength for printing: `*` and `/` bind tighter than `+`, `-`.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Add | BinaryOp::Sub => 1,
            BinaryOp::Mul | BinaryOp::Div => 2,
        }
    }
}

impl Derivation {
    pub fn param(id: ParamId) -> Derivation {
        Derivation::Param(id)
    }

    pub fn binary(op: BinaryOp, lhs: Derivation, rhs: Derivation) -> Derivation {
        Derivation::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    pub fn sqrt(x: Derivation) -> Derivation {
        Derivation::Sqrt(Box::new(x))
    }

    pub fn scale_rows(matrix: Derivation, scale: Derivation) -> Derivation {
        Derivation::ScaleRows {
            matrix: Box::new(matrix),
            scale: Box::new(scale),
        }
    }

    pub fn scale_cols(matrix: Derivation, scale: Derivation) -> Derivation {
        Derivation::ScaleCols {
            matrix: Box::new(matrix),
            scale: Box::new(scale),
        }
    }

    pub fn mat_vec(matrix: Derivation, vector: Derivation) -> Derivation {
        Derivation::MatVec {
            matrix: Box::new(matrix),
            vector: Box::new(vector),
        }
    }

    /// Every parameter the derivation reads.
    pub fn params(&self) -> Vec<ParamId> {
        let mut out = Vec::new();
        self.visit(&mut |d| {
            if let Derivation::Param(p) = d {
                out.push(*p)
            }
        });
        out
    }

    fn visit(&self, f: &mut dyn FnMut(&Derivation)) {
        f(self);
        match self {
            Derivation::Param(_) | Derivation::Const(_) => {}
            Derivation::Sqrt(x) => x.visit(f),
            Derivation::Binary { lhs: a, rhs: b, .. }
            | Derivation::ScaleRows { matrix: a, scale: b }
            | Derivation::ScaleCols { matrix: a, scale: b }
            | Derivation::MatVec { matrix: a, vector: b } => {
                a.visit(f);
                b.visit(f);
            }
        }
    }

    /// Mutable references to every parameter id it reads, for renumbering.
    pub fn params_mut(&mut self) -> Vec<&mut ParamId> {
        match self {
            Derivation::Param(p) => vec![p],
            Derivation::Const(_) => Vec::new(),
            Derivation::Sqrt(x) => x.params_mut(),
            Derivation::Binary { lhs: a, rhs: b, .. }
            | Derivation::ScaleRows { matrix: a, scale: b }
            | Derivation::ScaleCols { matrix: a, scale: b }
            | Derivation::MatVec { matrix: a, vector: b } => {
                let mut out = a.params_mut();
                out.extend(b.params_mut());
                out
            }
        }
    }

    /// The shape rule of a derivation, given every parameter's shape. A
    /// scalar has shape `[]`.
    pub fn shape<'p>(&self, params: &[&'p [usize]]) -> Result<Cow<'p, [usize]>, ShapeError> {
        // Borrowed from the table wherever a child's shape is the result:
        // the verifier asks for every derived parameter's after each stage.
        match self {
            Derivation::Param(p) => params
                .get(p.0 as usize)
                .map(|s| Cow::Borrowed(*s))
                .ok_or_else(|| ShapeError(format!("derivation refers to missing parameter #{}", p.0))),
            Derivation::Const(_) => Ok(Cow::Borrowed(&[])),
            Derivation::Sqrt(x) => x.shape(params),
            Derivation::Binary { op, lhs, rhs } => {
                let (a, b) = (lhs.shape(params)?, rhs.shape(params)?);
                match (a.is_empty(), b.is_empty()) {
                    (true, _) => Ok(b),
                    (_, true) => Ok(a),
                    _ if a == b => Ok(a),
                    _ => Err(ShapeError(format!(
                        "`{}` needs equal shapes, got {a:?} and {b:?}",
                        op.symbol()
                    ))),
                }
            }
            Derivation::ScaleRows { matrix, scale } => {
                let (m, s) = (matrix.shape(params)?, scale.shape(params)?);
                match m.first() {
                    Some(rows) if *s == [*rows] => Ok(m),
                    _ => Err(ShapeError(format!(
                        "scale_rows of {m:?} needs a scale of [{}], got {s:?}",
                        m.first().copied().unwrap_or(0)
                    ))),
                }
            }
            Derivation::ScaleCols { matrix, scale } => {
                let (m, s) = (matrix.shape(params)?, scale.shape(params)?);
                match m.get(1) {
                    Some(cols) if *s == [*cols] => Ok(m),
                    _ => Err(ShapeError(format!(
                        "scale_cols of {m:?} needs a scale of [{}], got {s:?}",
                        m.get(1).copied().unwrap_or(0)
                    ))),
                }
            }
            Derivation::MatVec { matrix, vector } => {
                let (m, v) = (matrix.shape(params)?, vector.shape(params)?);
                match (m.first(), m.get(1)) {
                    (Some(rows), Some(cols)) if *v == [*cols] => Ok(Cow::Owned(vec![*rows])),
                    _ => Err(ShapeError(format!(
                        "mat_vec of {m:?} needs a vector of its second axis, got {v:?}"
                    ))),
                }
            }
        }
    }
}

impl fmt::Display for ParamRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
