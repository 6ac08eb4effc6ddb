//! Arrays: `.npy` files of f32, read and written with `ndarray-npy`.

use crate::Error;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

/// Reads an f32 `.npy` array (`what` names it in messages): its shape and
/// row-major values. Another dtype is an error naming it.
pub fn read_npy(bytes: &[u8], what: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
    let array = ArrayD::<f32>::read_npy(bytes).map_err(|e| match e {
        ReadNpyError::WrongDescriptor(descr) => Error::WrongDtype {
            name: what.to_string(),
            found: dtype_name(&descr.to_string()),
        },
        other => Error::Malformed {
            what: what.to_string(),
            reason: other.to_string(),
        },
    })?;
    let shape = array.shape().to_vec();
    Ok((shape, array.as_standard_layout().iter().copied().collect()))
}

/// `<f8` → `f64`, `<i8` → `int64`, …; the descriptor itself otherwise.
fn dtype_name(descr: &str) -> String {
    let kinds = [
        ("f8", "f64"),
        ("f2", "f16"),
        ("i8", "int64"),
        ("i4", "int32"),
        ("i2", "int16"),
        ("i1", "int8"),
        ("u1", "uint8"),
        ("b1", "bool"),
    ];
    kinds
        .iter()
        .find(|(code, _)| descr.contains(code))
        .map_or_else(|| descr.to_string(), |(_, name)| name.to_string())
}

/// Serialises an f32 array of `shape`.
pub fn write_npy(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, Error> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).map_err(|e| Error::Malformed {
        what: "output array".into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    array.write_npy(&mut out).map_err(|e| Error::Malformed {
        what: "output array".into(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// The batch size of an input of `shape` for a model taking `[N, per_sample...]`.
pub fn check_input(shape: &[usize], per_sample: &[usize]) -> Result<usize, Error> {
    match shape.split_first() {
        Some((&batch, rest)) if batch >= 1 && rest == per_sample => Ok(batch),
        _ => Err(Error::WrongInputShape {
            expected: per_sample.to_vec(),
            found: shape.get(1..).unwrap_or(&[]).to_vec(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_input_checks() {
        let bytes = write_npy(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(
            read_npy(&bytes, "x").unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert_eq!(check_input(&[5, 3], &[3]), Ok(5));
        assert!(check_input(&[5, 4], &[3]).is_err());
        assert!(check_input(&[0, 3], &[3]).is_err());
        assert!(check_input(&[3], &[3]).is_err());
        let f64_bytes = {
            let mut out = Vec::new();
            ndarray::arr1(&[1.0f64, 2.0]).write_npy(&mut out).unwrap();
            out
        };
        assert_eq!(
            read_npy(&f64_bytes, "x").unwrap_err(),
            Error::WrongDtype {
                name: "x".into(),
                found: "f64".into()
            }
        );
        assert!(matches!(read_npy(b"junk", "x"), Err(Error::Malformed { .. })));
    }
}
