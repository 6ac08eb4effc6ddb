//! nnc's typed IR.
//!
//! A [`Module`] is what one `.nn` model lowers to: a table of parameters
//! (weights, biases, norm state, PReLU slopes, and *derived* parameters that
//! passes add, such as batch-norm-folded weights) shared by one
//! [`Function`] per [`Mode`] (`train`, `infer`).
//!
//! A function is a straight-line SSA program. Each value has a
//! [`ValueType`]: f32 with a per-sample shape behind the symbolic batch axis
//! `N` (`f32[N,750]`, `f32[N,16,14,14]`). Ops are kept in topological order
//! in one `Vec`; each names its value arguments by [`ValueId`] and its
//! parameters by [`ParamId`], both `u32` indices into arenas (naga's
//! handles, Cranelift's entities), so a pass edits with cheap `Copy` ids.
//!
//! [`Op`] is a closed enum: every `match` over it in the verifier, printer,
//! interpreter and code generator is exhaustive, so a new op does not
//! compile until each stage handles it. Every op has one shape rule,
//! [`Op::output_type`], shared by lowering, the verifier and the text parser.
//!
//! Each op keeps the source locations of the statements it came from; an op
//! made by fusing others keeps all of theirs (MLIR's fused locations).
//!
//! The text form ([`text`]) is deterministic and round-trips; [`verify`]
//! checks the invariants listed in its module doc.

pub mod grad;
mod module;
mod op;
mod param;
mod plan;
pub mod text;
mod types;
pub mod verify;

pub use module::{Function, Mode, Module, OpData, OpId, Producers, ValueId};
pub use op::{window_output, Act, ConvGeometry, Epilogue, EpilogueStep, Op, PoolGeometry, ShapeError};
pub use param::{BinaryOp, Derivation, Dist, Init, ParamData, ParamId, ParamRole, ParamSource};
pub use plan::{samples_per_pass, BufferPlan, GradientPlan};
pub use types::ValueType;
