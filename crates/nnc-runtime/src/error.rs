//! The runtime's errors: everything a weight file, an array or a request
//! can get wrong, each naming the file (once), the tensor and what was
//! expected.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A tensor the model needs is not in the weight file.
    MissingTensor {
        file: String,
        name: String,
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    WrongShape {
        file: String,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A tensor (`tensor: Some`) or an array (`None`) has a dtype other than f32.
    WrongDtype {
        file: String,
        tensor: Option<String>,
        found: String,
        /// What the file should have held: `f32`, `int32 or int64`.
        expected: &'static str,
    },
    /// A file that is not a valid safetensors or npy file (truncated,
    /// corrupt header, ...), as a whole: `reason` says what is wrong.
    Malformed { what: String, reason: String },
    /// One entry of a safetensors header is wrong: the tensor as declared
    /// and what is wrong with it (overlap, gap, out of file, size, ...).
    BadTensor {
        file: String,
        tensor: Box<TensorDecl>,
        problem: String,
    },
    /// A file without a declared size (a program) that is longer than the
    /// most read for its kind.
    TooLarge { what: String, limit: u64 },
    /// A file declares more data than this machine can allocate.
    OutOfMemory { what: String, bytes: u64 },
    /// An input array whose per-sample shape differs from the model's.
    WrongInputShape { expected: Vec<usize>, found: Vec<usize> },
    /// An input array with no samples (shape `[0, ...]`) or no batch axis.
    EmptyBatch { found: Vec<usize> },
    /// Any other I/O failure, with the path.
    Io { path: String, reason: String },
    /// Targets a training step cannot take (see
    /// `kernels::loss::TargetKind::check`): why, naming the row.
    Targets(String),
}

/// A tensor as a safetensors header declares it, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDecl {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

impl fmt::Display for TensorDecl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tensor `{}` ({} {:?}, bytes {}..{})",
            self.name, self.dtype, self.shape, self.start, self.end
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingTensor { file, name, expected } => {
                write!(
                    f,
                    "{file}: tensor `{name}` is missing (the model expects shape {expected:?})"
                )
            }
            Error::WrongShape {
                file,
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "{file}: tensor `{name}` has shape {found:?}, the model expects {expected:?}"
                )
            }
            Error::WrongDtype {
                file,
                tensor: Some(name),
                found,
                expected,
            } => write!(f, "{file}: tensor `{name}` is {found}, expected {expected}"),
            Error::WrongDtype {
                file,
                tensor: None,
                found,
                expected,
            } => write!(f, "{file}: the array is {found}, expected {expected}"),
            Error::Malformed { what, reason } => write!(f, "{what}: {reason}"),
            Error::BadTensor { file, tensor, problem } => write!(f, "{file}: {tensor} {problem}"),
            Error::TooLarge { what, limit } => {
                write!(
                    f,
                    "{what}: larger than {limit} bytes, the most read for this kind of file"
                )
            }
            Error::OutOfMemory { what, bytes } => write!(
                f,
                "{what}: holding it needs {bytes} bytes of memory, more than can be allocated"
            ),
            Error::WrongInputShape { expected, found } => write!(
                f,
                "the input has per-sample shape {found:?}, but the model takes [N, {}]",
                expected.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Error::EmptyBatch { found } if found.is_empty() => {
                write!(f, "the input is a single number (shape []), not a batch of samples")
            }
            Error::EmptyBatch { found } => write!(
                f,
                "the input holds no samples (shape {found:?}): the batch axis is empty"
            ),
            Error::Io { path, reason } => write!(f, "cannot read {path}: {reason}"),
            Error::Targets(why) => write!(f, "the targets: {why}"),
        }
    }
}

impl std::error::Error for Error {}
