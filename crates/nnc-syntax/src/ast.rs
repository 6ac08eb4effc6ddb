//! The typed AST of a `.nn` file. Every node keeps its [`Span`]; no pest
//! type escapes this crate.
//!
//! Statements keep their options as written (`key=value` pairs in source
//! order): which keys a statement accepts, their ranges and defaults are the
//! checker's business (`nnc-lower`), so that a misspelled option gets a
//! "did you mean" hint instead of a bare syntax error.

use nnc_diag::Span;

/// One `model NAME { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// An identifier with its place in the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A number literal (`800`, `0.2`, `1e-5`, `-0.5`, `1/8`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number {
    pub value: f64,
    pub span: Span,
}

/// One statement: its keyword, what follows the keyword, and its options.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub keyword_span: Span,
    pub options: Vec<Opt>,
    /// From the keyword to the end of the last option (or the closing `}`).
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `input 800` or `input [1, 28, 28]`: the per-sample shape.
    Input {
        shape: Vec<Number>,
    },
    /// `dense [IN ->] OUT`.
    Dense {
        in_features: Option<Number>,
        out_features: Number,
    },
    /// `conv [IN ->] OUT`.
    Conv {
        in_channels: Option<Number>,
        out_channels: Number,
    },
    MaxPool,
    AvgPool,
    GlobalAvgPool,
    Flatten,
    /// `act NAME[(ARGS)]`.
    Act(Value),
    /// `norm KIND[(ARGS)]`.
    Norm(Value),
    /// `dropout P` or `dropout alpha(P)`.
    Dropout(Value),
    /// `residual { ... }`.
    Residual(Vec<Stmt>),
}

/// `key=value` after a statement's head.
#[derive(Clone, Debug, PartialEq)]
pub struct Opt {
    pub key: Ident,
    pub value: Value,
    /// From the key to the end of the value.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Number(f64),
    /// A bare word: `relu`, `same`, `true`, `fan_in`, a layer name.
    Word(String),
    /// `name(args)`: `leaky_relu(0.1)`, `normal(std=0.01)`, `group(groups=8)`.
    Call {
        name: Ident,
        args: Vec<Arg>,
    },
}

/// One argument of a call, positional (`0.1`) or by keyword (`alpha=0.1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Value,
    pub span: Span,
}

impl StmtKind {
    /// The keyword as written in source, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            StmtKind::Input { .. } => "input",
            StmtKind::Dense { .. } => "dense",
            StmtKind::Conv { .. } => "conv",
            StmtKind::MaxPool => "maxpool",
            StmtKind::AvgPool => "avgpool",
            StmtKind::GlobalAvgPool => "globalavgpool",
            StmtKind::Flatten => "flatten",
            StmtKind::Act(_) => "act",
            StmtKind::Norm(_) => "norm",
            StmtKind::Dropout(_) => "dropout",
            StmtKind::Residual(_) => "residual",
        }
    }
}

/// Every statement keyword, for "did you mean" hints.
pub const KEYWORDS: &[&str] = &[
    "input",
    "dense",
    "conv",
    "maxpool",
    "avgpool",
    "globalavgpool",
    "flatten",
    "act",
    "norm",
    "dropout",
    "residual",
];

impl Value {
    /// The name of a word or a call (`relu`, `leaky_relu`), if it is one.
    pub fn name(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Word(w) => Some(w),
            ValueKind::Call { name, .. } => Some(&name.name),
            ValueKind::Number(_) => None,
        }
    }

    /// The span of the name for a call, of the whole value otherwise: where
    /// "unknown activation" carets go.
    pub fn name_span(&self) -> Span {
        match &self.kind {
            ValueKind::Call { name, .. } => name.span,
            _ => self.span,
        }
    }

    /// The call's arguments; none for a word or number.
    pub fn args(&self) -> &[Arg] {
        match &self.kind {
            ValueKind::Call { args, .. } => args,
            _ => &[],
        }
    }
}
