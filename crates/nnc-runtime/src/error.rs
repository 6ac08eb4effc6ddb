//! The runtime's errors: everything a weight file, an array or a request
//! can get wrong, each naming the tensor or file and what was expected.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A tensor the model needs is not in the weight file.
    MissingTensor { name: String, expected: Vec<usize> },
    /// A tensor has the wrong shape.
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor or array has a dtype other than f32.
    WrongDtype { name: String, found: String },
    /// A file that is not a valid safetensors or npy file (truncated,
    /// corrupt header, ...).
    Malformed { what: String, reason: String },
    /// An input array whose per-sample shape differs from the model's.
    WrongInputShape { expected: Vec<usize>, found: Vec<usize> },
    /// Any other I/O failure, with the path.
    Io { path: String, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingTensor { name, expected } => {
                write!(
                    f,
                    "tensor `{name}` is missing from the weights (expected shape {expected:?})"
                )
            }
            Error::WrongShape { name, expected, found } => {
                write!(f, "tensor `{name}` has shape {found:?}, expected {expected:?}")
            }
            Error::WrongDtype { name, found } => write!(f, "tensor `{name}` is {found}, expected f32"),
            Error::Malformed { what, reason } => write!(f, "{what} is not valid: {reason}"),
            Error::WrongInputShape { expected, found } => write!(
                f,
                "the input has per-sample shape {found:?}, but the model takes [N, {}]",
                expected.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Error::Io { path, reason } => write!(f, "{path}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}
