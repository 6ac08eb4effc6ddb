//! Weights that load without an error but cannot give numbers worth
//! trusting: non-finite values (a warning per tensor, since a model may
//! mean them, e.g. `-inf` in a mask) and negative running variances (an
//! error: batch norm takes their square root).

use crate::{non_finite, Error};
use nnc_ir::{Module, ParamRole};
use nnc_runtime::io::weights::Weights;

/// One warning per stored tensor of `module` in `weights` that holds NaN or
/// ±inf, naming it, its shape, how many and the first; an error for a
/// running variance with a negative value.
pub fn audit_weights(module: &Module, weights: &Weights) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    for p in module.params.iter().filter(|p| !p.is_derived()) {
        let Some(tensor) = weights.tensors.get(&p.name) else {
            continue;
        };
        let data = &tensor.data;
        let count = non_finite(data);
        if let Some(first) = data.iter().position(|v| !v.is_finite()) {
            warnings.push(format!(
                "tensor `{}` {:?} holds {count} non-finite value{} of {} (the first, at index {first}, is {})",
                p.name,
                tensor.shape,
                if count == 1 { "" } else { "s" },
                data.len(),
                data[first]
            ));
        }
        if p.role == ParamRole::RunningVar {
            if let Some(first) = data.iter().position(|v| *v < 0.0) {
                let count = data.iter().filter(|v| **v < 0.0).count();
                return Err(Error::BadWeight {
                    name: p.name.clone(),
                    reason: format!(
                        "holds {count} negative variance{} (the first, at index {first}, is {}); a variance is never negative",
                        if count == 1 { "" } else { "s" },
                        data[first]
                    ),
                });
            }
        }
    }
    Ok(warnings)
}
