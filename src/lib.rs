//! nnc: a compiler for neural-network models written in the `.nn`
//! language. This facade is what users depend on; it re-exports the stages.
//!
//! ```
//! use nnc::diag::SourceFile;
//! use nnc::driver::{compile, Options, Quiet};
//!
//! let source = SourceFile::new("mlp.nn", "model Mlp { input 4 dense 4 -> 2 act=softmax }");
//! let compiled = compile(&source, &Options::default(), &mut Quiet).unwrap();
//! let ir = nnc::ir::text::print_module(&compiled.module.unwrap());
//! assert!(ir.contains("softmax[layer0]"));
//! ```

pub use nnc_diag as diag;
pub use nnc_driver as driver;
pub use nnc_ir as ir;
pub use nnc_macros::model;
/// The kernels, weights I/O and workspace that generated models call.
pub use nnc_runtime as runtime;
