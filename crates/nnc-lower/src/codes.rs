//! The stable codes of every diagnostic the checker emits. `E00xx` come
//! from the parser (`nnc-syntax`): E0001 a syntax error, E0002 an unknown
//! statement, E0003 nesting past the limit. The README lists them all with
//! an example each.

/// An option no statement knows (`strde=2`).
pub const UNKNOWN_OPTION: &str = "E0101";
/// The same option twice on one statement.
pub const DUPLICATE_OPTION: &str = "E0102";
/// A known option or value on a statement it does not apply to (`k=` on
/// `dense`, `dropblock` on `dense`, `dropconnect` standalone).
pub const OPTION_NOT_HERE: &str = "E0103";
/// An unknown name where a known one is expected (`act=reul`, `init=hee`).
pub const UNKNOWN_NAME: &str = "E0104";
/// A value of the wrong kind or a bad argument list (`k=same`,
/// `leaky_relu(slope=0.1)`, too many arguments).
pub const BAD_ARGUMENT: &str = "E0105";
/// A value out of range (`dropout=1.5`, `k=0`, an even LRN size).
pub const OUT_OF_RANGE: &str = "E0106";
/// A required option or argument is missing (`conv` without `k=`).
pub const MISSING: &str = "E0107";
/// A `residual { }` with nothing inside.
pub const EMPTY_BLOCK: &str = "E0108";
/// No `input`, an `input` that is not first, or a second one.
pub const INPUT: &str = "E0201";
/// An input that is neither 1-D nor `[C, H, W]`.
pub const INPUT_RANK: &str = "E0202";
/// A declared size that differs from what the previous layer yields.
pub const SIZE_MISMATCH: &str = "E0301";
/// A statement that needs 1-D features got an image, or the reverse.
pub const RANK_MISMATCH: &str = "E0302";
/// A shape that reaches zero (a window larger than the padded map).
pub const ZERO_SIZE: &str = "E0303";
/// Groups that do not divide the channels.
pub const GROUPS: &str = "E0304";
/// A residual whose block changes the shape.
pub const RESIDUAL_SHAPE: &str = "E0305";
/// Maxout pieces that do not divide the features.
pub const MAXOUT_PIECES: &str = "E0306";
/// A DropBlock block larger than the feature map.
pub const BLOCK_TOO_LARGE: &str = "E0307";
/// Pool padding larger than half the kernel.
pub const POOL_PAD: &str = "E0308";
/// Two statements with one name.
pub const DUPLICATE_NAME: &str = "E0401";
/// Softmax anywhere but at the very end.
pub const SOFTMAX_NOT_LAST: &str = "E0402";
/// `gain=` with a scheme that takes none, or given twice.
pub const GAIN: &str = "E0403";
/// A size too large for nnc (each axis at most 2^20, 2^32 elements).
pub const TOO_LARGE: &str = "E0404";
/// An internal inconsistency: a compiler bug, reported instead of a panic.
pub const INTERNAL: &str = "E0999";
/// Warning: a constant weight init (identical units never break symmetry).
pub const CONSTANT_INIT: &str = "W0001";
