//! Weights drawn from a module's declared initialisers: what `nnc init`
//! writes, and what tests and benchmarks start from.

use nnc_ir::{Dist, Module, ParamSource};
use nnc_runtime::init::{draw, Distribution};
use nnc_runtime::io::weights::Weights;

/// Every stored parameter of `module`, drawn from its initialiser; each
/// from its own stream named after the parameter, so a seed gives the same
/// bytes on every machine and one parameter's numbers do not depend on the
/// others. Derived parameters are not drawn (they are computed at load).
pub fn init_weights(module: &Module, seed: u64) -> Weights {
    let mut weights = Weights::default();
    for p in &module.params {
        let ParamSource::Init(init) = &p.source else { continue };
        let tensor = draw(&distribution(&init.dist), &p.name, &p.shape, seed);
        weights.tensors.insert(p.name.clone(), tensor);
    }
    weights
}

/// The runtime's mirror of an IR distribution.
fn distribution(dist: &Dist) -> Distribution {
    match *dist {
        Dist::Constant { value } => Distribution::Constant(value),
        Dist::Normal { mean, std } => Distribution::Normal { mean, std },
        Dist::TruncatedNormal { mean, std, low, high } => Distribution::TruncatedNormal { mean, std, low, high },
        Dist::Uniform { low, high } => Distribution::Uniform { low, high },
        Dist::Orthogonal { gain } => Distribution::Orthogonal { gain },
    }
}
