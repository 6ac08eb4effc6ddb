//! IR passes, the registry that lists them and the manager that runs them.
//!
//! Each pass is a free function in a file of its own, `fn(&mut Module, Mode)
//! -> bool` (true when it changed something), rewriting the function of that
//! mode; its module doc says what it rewrites, the formula and its source,
//! when it must not fire, and shows the IR before and after. No pass calls
//! another: [`registry`] lists them and the default pipelines, and
//! [`manager::run_passes`] runs a list, verifying after each pass. Every pass
//! is idempotent: running it twice changes nothing the second time. The
//! passes named `*-backward` rewrite the module's backward function (the
//! grad stage's), in train mode, after the grad stage.

mod backward;
mod dce;
mod dce_backward;
mod drop_redundant_bias;
mod eliminate_dropout;
mod fold_batchnorm;
mod fuse_activation;
mod fuse_activation_backward;
mod fuse_pool;
mod fuse_residual;
pub mod manager;
pub mod registry;
mod rewrite;
#[cfg(test)]
mod tests;

pub use dce::dce;
pub use dce_backward::dce_backward;
pub use drop_redundant_bias::drop_redundant_bias;
pub use eliminate_dropout::eliminate_dropout;
pub use fold_batchnorm::fold_batchnorm;
pub use fuse_activation::fuse_activation;
pub use fuse_activation_backward::fuse_activation_backward;
pub use fuse_pool::fuse_pool;
pub use fuse_residual::fuse_residual;
pub use manager::{run_passes, run_pipelines, Observer, PassError, Rebuild};
pub use registry::{backward_pipeline, lookup, pipeline, PassInfo, PASSES};
