//! Arrays: `.npy` files of f32. The header is parsed by `ndarray-npy`; the
//! data is read here, only after the shape it declares has been checked
//! against what the file holds (a header may claim (1e9, 64) over a
//! 256-byte body).

use crate::io::input::{self, Input};
use crate::Error;
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::{Header, Layout};
use ndarray_npy::WriteNpyExt;
use std::io::{Cursor, Read};
use std::path::Path;

/// The magic string and version bytes every `.npy` file starts with.
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The longest header read. numpy writes headers of a few hundred bytes
/// and by default refuses to read one over 10,000; a longer one is a
/// corrupt length field, not a real header.
const MAX_HEADER: usize = 1 << 20;

/// Reads an f32 `.npy` array from bytes in memory (`what` names it in
/// messages): its shape and row-major values.
pub fn read_npy(bytes: &[u8], what: &str) -> Result<(Vec<usize>, Vec<f32>), Error> {
    read_npy_from(Input {
        reader: Cursor::new(bytes),
        len: Some(bytes.len() as u64),
        what: what.to_string(),
    })
}

/// Reads an f32 `.npy` file: a regular file, a pipe or a device alike,
/// never reading or allocating past the size its header declares.
pub fn read_npy_file(path: &Path) -> Result<(Vec<usize>, Vec<f32>), Error> {
    read_npy_from(input::open(path)?)
}

/// Reads an f32 `.npy` array; another dtype is an error naming it, and so
/// is a body shorter or longer than the header's shape.
pub fn read_npy_from<R: Read>(input: Input<R>) -> Result<(Vec<usize>, Vec<f32>), Error> {
    read_elements(input, "f32", |descr| match descr {
        "<f4" => Some(Element {
            width: 4,
            decode: |b| f32::from_le_bytes(four(b)),
        }),
        ">f4" => Some(Element {
            width: 4,
            decode: |b| f32::from_be_bytes(four(b)),
        }),
        _ => None,
    })
}

/// Reads an integer `.npy` file (int32 or int64, either byte order), such
/// as class labels; another dtype is an error naming it.
pub fn read_npy_int_file(path: &Path) -> Result<(Vec<usize>, Vec<i64>), Error> {
    read_elements(input::open(path)?, "int32 or int64", |descr| match descr {
        "<i4" => Some(Element {
            width: 4,
            decode: |b| i64::from(i32::from_le_bytes(four(b))),
        }),
        ">i4" => Some(Element {
            width: 4,
            decode: |b| i64::from(i32::from_be_bytes(four(b))),
        }),
        "<i8" => Some(Element {
            width: 8,
            decode: |b| i64::from_le_bytes(eight(b)),
        }),
        ">i8" => Some(Element {
            width: 8,
            decode: |b| i64::from_be_bytes(eight(b)),
        }),
        _ => None,
    })
}

fn four(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

fn eight(b: &[u8]) -> [u8; 8] {
    [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// How one dtype's elements are stored.
struct Element<T> {
    width: u64,
    decode: fn(&[u8]) -> T,
}

/// Reads an array of the dtypes `element` accepts (`expected` names them
/// in the error for another), checking the body against the shape.
fn read_elements<R: Read, T: Copy>(
    mut input: Input<R>,
    expected: &'static str,
    element: impl Fn(&str) -> Option<Element<T>>,
) -> Result<(Vec<usize>, Vec<T>), Error> {
    let what = input.what.clone();
    let malformed = |reason: String| Error::Malformed {
        what: what.clone(),
        reason,
    };
    let mut head = Vec::new();
    let header = read_header(&mut input, &mut head).map_err(malformed)?;
    let Some(Element { width, decode }) = header.type_descriptor.as_string().and_then(|d| element(d)) else {
        return Err(Error::WrongDtype {
            file: what,
            tensor: None,
            found: dtype_name(&header.type_descriptor.to_string()),
            expected,
        });
    };
    let count = header
        .shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .filter(|n| n.checked_mul(width).is_some())
        .ok_or_else(|| malformed(format!("the declared shape {:?} is too large to address", header.shape)))?;
    let body = count * width;
    let declared = |present: u64| {
        format!(
            "the header declares shape {:?} of {expected} ({body} bytes of data), but the file holds {present}",
            header.shape
        )
    };
    if let Some(len) = input.len {
        let present = len.saturating_sub(head.len() as u64);
        if present != body {
            return Err(malformed(declared(present)));
        }
    }
    let mut data = Vec::new();
    input::reserve(&mut data, count, &what)?;
    let mut chunk = Vec::with_capacity(1 << 16);
    let mut read = 0u64;
    while read < body {
        chunk.clear();
        let wanted = (body - read).min(1 << 16);
        let got = input::read_up_to(&mut input.reader, wanted, &mut chunk, &what)?;
        if got < wanted {
            return Err(malformed(declared(read + got)));
        }
        data.extend(chunk.chunks_exact(width as usize).map(decode));
        read += got;
    }
    let extra = input::trailing_bytes(&mut input.reader, &what)?;
    if extra > 0 {
        return Err(malformed(format!(
            "the header declares shape {:?} of {expected} ({body} bytes of data), but more bytes follow",
            header.shape
        )));
    }
    let shape = header.shape;
    if header.layout == Layout::Fortran {
        let array = ArrayD::from_shape_vec(IxDyn(&shape).f(), data).map_err(|e| malformed(e.to_string()))?;
        return Ok((shape, array.as_standard_layout().iter().copied().collect()));
    }
    Ok((shape, data))
}

/// Reads the magic string, version, header length and header into `head`
/// (at most `MAX_HEADER` bytes of it) and parses it.
fn read_header<R: Read>(input: &mut Input<R>, head: &mut Vec<u8>) -> Result<Header, String> {
    let short = || "too short to be an .npy file".to_string();
    let mut fill = |head: &mut Vec<u8>, n: usize| -> Result<(), String> {
        let got = input::read_up_to(&mut input.reader, n as u64, head, &input.what).map_err(|e| e.to_string())?;
        if got < n as u64 {
            return Err(short());
        }
        Ok(())
    };
    fill(head, MAGIC.len() + 2)?;
    if !head.starts_with(MAGIC) {
        return Err("not an .npy file (it does not start with \\x93NUMPY)".into());
    }
    let width = match head[MAGIC.len()] {
        1 => 2,
        2 | 3 => 4,
        major => return Err(format!("unknown .npy format version {major}")),
    };
    fill(head, width)?;
    let mut len = [0u8; 4];
    len[..width].copy_from_slice(&head[MAGIC.len() + 2..]);
    let header_len = u32::from_le_bytes(len) as usize;
    if header_len > MAX_HEADER {
        return Err(format!(
            "the header claims {header_len} bytes; no .npy header is longer than {MAX_HEADER}"
        ));
    }
    if input.len.is_some_and(|len| (head.len() + header_len) as u64 > len) {
        return Err(format!(
            "the header claims {header_len} bytes, past the end of the file"
        ));
    }
    fill(head, header_len)?;
    Header::from_reader(&mut Cursor::new(&head[..])).map_err(|e| format!("bad header: {e}"))
}

/// `<f8` → `f64`, `<i8` → `int64`, …; the descriptor itself otherwise.
fn dtype_name(descr: &str) -> String {
    let kinds = [
        ("f8", "f64"),
        ("f4", "f32"),
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
/// An empty batch is said to be empty, whatever its per-sample shape.
pub fn check_input(shape: &[usize], per_sample: &[usize]) -> Result<usize, Error> {
    match shape.split_first() {
        None | Some((0, _)) => Err(Error::EmptyBatch { found: shape.to_vec() }),
        Some((&batch, rest)) if rest == per_sample => Ok(batch),
        Some((_, rest)) => Err(Error::WrongInputShape {
            expected: per_sample.to_vec(),
            found: rest.to_vec(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An `.npy` header of version 1.0 declaring `descr` and `shape`.
    fn header(descr: &str, shape: &str) -> Vec<u8> {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let padded = format!("{dict:<117}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        out.extend_from_slice(padded.as_bytes());
        out
    }

    #[test]
    fn round_trip_and_input_checks() {
        let bytes = write_npy(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        assert_eq!(
            read_npy(&bytes, "x").unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert_eq!(check_input(&[5, 3], &[3]), Ok(5));
        assert!(matches!(check_input(&[5, 4], &[3]), Err(Error::WrongInputShape { .. })));
        assert_eq!(check_input(&[0, 3], &[3]), Err(Error::EmptyBatch { found: vec![0, 3] }));
        assert_eq!(check_input(&[0, 9], &[3]), Err(Error::EmptyBatch { found: vec![0, 9] }));
        assert_eq!(check_input(&[], &[3]), Err(Error::EmptyBatch { found: vec![] }));
        assert!(check_input(&[3], &[3]).is_err());
        let f64_bytes = {
            let mut out = Vec::new();
            ndarray::arr1(&[1.0f64, 2.0]).write_npy(&mut out).unwrap();
            out
        };
        assert_eq!(
            read_npy(&f64_bytes, "x").unwrap_err(),
            Error::WrongDtype {
                file: "x".into(),
                tensor: None,
                found: "f64".into(),
                expected: "f32"
            }
        );
        assert!(matches!(read_npy(b"junk", "x"), Err(Error::Malformed { .. })));
        // Cut anywhere, or one byte too many: an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(read_npy(&bytes[..cut], "x").is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(read_npy(&long, "x").is_err());
        // Any one byte changed: an answer, never a panic.
        for at in 0..bytes.len() {
            for value in [0, b' ', b'(', b')', b',', b'0', b'9', 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                let _ = read_npy(&changed, "x");
            }
        }
    }

    #[test]
    fn a_declared_size_beyond_the_file_is_refused_before_allocating() {
        let mut bytes = header("<f4", "(1000000000, 64)");
        bytes.extend_from_slice(&[0; 256]);
        let err = read_npy(&bytes, "big.npy").unwrap_err().to_string();
        assert_eq!(
            err,
            "big.npy: the header declares shape [1000000000, 64] of f32 (256000000000 bytes of data), \
             but the file holds 256"
        );
        // As a stream (no length known up front) the claim cannot be
        // checked first: a claim the allocator refuses is an error, one it
        // grants is read up to what is there.
        let stream = Input {
            reader: &bytes[..],
            len: None,
            what: "big.npy".into(),
        };
        let err = read_npy_from(stream).unwrap_err().to_string();
        assert!(err.contains("256000000000 bytes"), "{err}");
        let mut bytes = header("<f4", "(1000, 64)");
        bytes.extend_from_slice(&[0; 256]);
        let stream = Input {
            reader: &bytes[..],
            len: None,
            what: "big.npy".into(),
        };
        assert_eq!(
            read_npy_from(stream).unwrap_err().to_string(),
            "big.npy: the header declares shape [1000, 64] of f32 (256000 bytes of data), but the file holds 256"
        );
        // A shape whose byte count overflows.
        let mut huge = header("<f4", "(4611686018427387904, 8)");
        huge.extend_from_slice(&[0; 16]);
        assert!(read_npy(&huge, "h").unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn an_endless_stream_after_a_valid_header_stops_at_the_declared_size() {
        let head = header("<f4", "(2, 2)");
        let endless = head.as_slice().chain(std::io::repeat(0));
        let input = Input {
            reader: endless,
            len: None,
            what: "zeros".into(),
        };
        let err = read_npy_from(input).unwrap_err().to_string();
        assert!(err.contains("(16 bytes of data), but more bytes follow"), "{err}");
        let endless = std::io::repeat(0);
        let input = Input {
            reader: endless,
            len: None,
            what: "zeros".into(),
        };
        assert!(read_npy_from(input).unwrap_err().to_string().contains("not an .npy"));
    }

    #[test]
    fn fortran_order_and_big_endian_are_read_as_numpy_would() {
        let dict = "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 2), }";
        let padded = format!("{dict:<117}\n");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
        bytes.extend_from_slice(padded.as_bytes());
        for v in [1.0f32, 3.0, 2.0, 4.0] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(read_npy(&bytes, "f").unwrap(), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    }
}
