//! Weight files: safetensors (f32, little-endian), read and written with the
//! `safetensors` crate, checked against the tensors a model declares.

use crate::Error;
use safetensors::tensor::{SafeTensors, TensorView};
use safetensors::Dtype;
use std::collections::BTreeMap;

/// One tensor: its shape and row-major values.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Tensors by name (LANGUAGE.md §7 names).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

/// A tensor the model needs: its name and shape.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
}

/// Reads a safetensors file (`what` names it in messages), keeping exactly
/// the `expected` tensors. A missing tensor, a wrong shape or dtype, or a
/// malformed file is an error naming the tensor; a tensor the model does not
/// use is a warning (returned).
pub fn read_safetensors(bytes: &[u8], what: &str, expected: &[Expected]) -> Result<(Weights, Vec<String>), Error> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| Error::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    let mut weights = Weights::default();
    for e in expected {
        let view = file.tensor(e.name).map_err(|_| Error::MissingTensor {
            name: e.name.to_string(),
            expected: e.shape.to_vec(),
        })?;
        if view.dtype() != Dtype::F32 {
            return Err(Error::WrongDtype {
                name: e.name.to_string(),
                found: format!("{:?}", view.dtype()),
            });
        }
        if view.shape() != e.shape {
            return Err(Error::WrongShape {
                name: e.name.to_string(),
                expected: e.shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        weights.tensors.insert(
            e.name.to_string(),
            Tensor {
                shape: e.shape.to_vec(),
                data,
            },
        );
    }
    let mut unused: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !expected.iter().any(|e| e.name == *n))
        .map(|n| format!("tensor `{n}` in {what} is not used by the model"))
        .collect();
    unused.sort();
    Ok((weights, unused))
}

/// Serialises the weights (tensors in name order, f32 little-endian).
pub fn write_safetensors(weights: &Weights) -> Result<Vec<u8>, Error> {
    let bytes: Vec<(&String, Vec<u8>)> = weights
        .tensors
        .iter()
        .map(|(name, t)| (name, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for ((name, data), t) in bytes.iter().zip(weights.tensors.values()) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), data).map_err(|e| Error::Malformed {
            what: format!("tensor `{name}`"),
            reason: e.to_string(),
        })?;
        views.push((name.as_str(), view));
    }
    safetensors::tensor::serialize(views, None).map_err(|e| Error::Malformed {
        what: "weights".into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Weights {
        let mut w = Weights::default();
        w.tensors.insert(
            "a.weight".into(),
            Tensor {
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            },
        );
        w.tensors.insert(
            "a.bias".into(),
            Tensor {
                shape: vec![2],
                data: vec![-1.0, 0.5],
            },
        );
        w
    }

    #[test]
    fn round_trip_and_every_refusal() {
        let bytes = write_safetensors(&sample()).unwrap();
        let want = [
            Expected {
                name: "a.weight",
                shape: &[2, 3],
            },
            Expected {
                name: "a.bias",
                shape: &[2],
            },
        ];
        let (back, warnings) = read_safetensors(&bytes, "w", &want).unwrap();
        assert_eq!(back, sample());
        assert!(warnings.is_empty());
        let (_, warnings) = read_safetensors(&bytes, "w", &want[..1]).unwrap();
        assert_eq!(
            warnings,
            vec!["tensor `a.bias` in w is not used by the model".to_string()]
        );
        let missing = [Expected {
            name: "b.weight",
            shape: &[4],
        }];
        assert_eq!(
            read_safetensors(&bytes, "w", &missing).unwrap_err(),
            Error::MissingTensor {
                name: "b.weight".into(),
                expected: vec![4]
            }
        );
        let wrong = [Expected {
            name: "a.weight",
            shape: &[3, 2],
        }];
        assert_eq!(
            read_safetensors(&bytes, "w", &wrong).unwrap_err(),
            Error::WrongShape {
                name: "a.weight".into(),
                expected: vec![3, 2],
                found: vec![2, 3]
            }
        );
        // Cut anywhere: an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(read_safetensors(&bytes[..cut], "w", &want).is_err(), "cut at {cut}");
        }
    }
}
