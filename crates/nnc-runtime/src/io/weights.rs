//! Weight files: safetensors (f32, little-endian), read and written with the
//! `safetensors` crate, checked against the tensors a model declares. The
//! header is checked here first, so that every error names the tensor, its
//! declared dtype, shape and byte range, and what is wrong with it.

use crate::io::input::{self, Input};
use crate::{Error, TensorDecl};
use safetensors::tensor::{SafeTensors, TensorView};
use safetensors::Dtype;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

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

/// The longest header read, as the `safetensors` crate allows.
const MAX_HEADER: u64 = 100_000_000;

/// Reads a safetensors file from bytes in memory (`what` names it in
/// messages), keeping exactly the `expected` tensors. A missing tensor, a
/// wrong shape or dtype, or a malformed file is an error naming the file
/// and the tensor; a tensor the model does not use is a warning (returned).
pub fn read_safetensors(bytes: &[u8], what: &str, expected: &[Expected]) -> Result<(Weights, Vec<String>), Error> {
    read_safetensors_from(
        Input {
            reader: bytes,
            len: Some(bytes.len() as u64),
            what: what.to_string(),
        },
        expected,
    )
}

/// Reads a safetensors file: a regular file, a pipe or a device alike,
/// never reading or allocating past the size its header declares.
pub fn read_safetensors_file(path: &Path, expected: &[Expected]) -> Result<(Weights, Vec<String>), Error> {
    read_safetensors_from(input::open(path)?, expected)
}

/// Reads and checks the header (every tensor's dtype, shape and byte
/// range, against each other and the file's length) before reading the
/// data it declares; then hands the bytes to the `safetensors` crate.
pub fn read_safetensors_from<R: Read>(
    mut input: Input<R>,
    expected: &[Expected],
) -> Result<(Weights, Vec<String>), Error> {
    let what = input.what.clone();
    let malformed = |reason: String| Error::Malformed {
        what: what.clone(),
        reason,
    };
    let mut bytes = Vec::new();
    if input::read_up_to(&mut input.reader, 8, &mut bytes, &what)? < 8 {
        return Err(malformed(format!(
            "{} bytes, too short for a safetensors file (it starts with an 8-byte header length)",
            bytes.len()
        )));
    }
    let header_len = u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ]);
    if header_len > MAX_HEADER {
        return Err(malformed(format!(
            "the header length field says {header_len} bytes, more than the {MAX_HEADER} a safetensors header may have"
        )));
    }
    if let Some(len) = input.len.filter(|&len| header_len > len - 8) {
        return Err(malformed(format!(
            "the header length field says {header_len} bytes, but only {} follow it",
            len - 8
        )));
    }
    if input::read_up_to(&mut input.reader, header_len, &mut bytes, &what)? < header_len {
        return Err(malformed(format!(
            "the header length field says {header_len} bytes, but only {} follow it",
            bytes.len() - 8
        )));
    }
    let declared = parse_header(&bytes[8..], &what)?;
    let data_len = declared.last().map_or(0, |t| t.end);
    if let Some(len) = input.len {
        check_coverage(&declared, len - 8 - header_len, &what)?;
    }
    input::reserve(&mut bytes, data_len, &what)?;
    let got = input::read_up_to(&mut input.reader, data_len, &mut bytes, &what)?;
    let extra = input::trailing_bytes(&mut input.reader, &what)?;
    check_coverage(&declared, got + extra, &what)?;
    let file =
        SafeTensors::deserialize(&bytes).map_err(|e| malformed(format!("rejected by the safetensors crate: {e}")))?;
    let mut weights = Weights::default();
    for e in expected {
        let view = file.tensor(e.name).map_err(|_| Error::MissingTensor {
            file: what.clone(),
            name: e.name.to_string(),
            expected: e.shape.to_vec(),
        })?;
        if view.dtype() != Dtype::F32 {
            return Err(Error::WrongDtype {
                file: what.clone(),
                tensor: Some(e.name.to_string()),
                found: format!("{:?}", view.dtype()),
                expected: "F32",
            });
        }
        if view.shape() != e.shape {
            return Err(Error::WrongShape {
                file: what.clone(),
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
    // A set: a model of 100,000 layers expects 200,000 tensors.
    let wanted: std::collections::HashSet<&str> = expected.iter().map(|e| e.name).collect();
    let mut unused: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !wanted.contains(*n))
        .map(|n| format!("tensor `{n}` in {what} is not used by the model"))
        .collect();
    unused.sort();
    Ok((weights, unused))
}

/// A header's entries in file order, every key kept (a JSON object read
/// into a map would silently keep one of two tensors of the same name).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// One tensor's entry, as the format defines it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Parses the JSON header and checks each tensor on its own (a known
/// dtype, a byte range as long as dtype × shape, a name used once) and
/// the tensors together (no overlap, no gap): the declarations sorted by
/// where their bytes start.
fn parse_header(json: &[u8], what: &str) -> Result<Vec<TensorDecl>, Error> {
    let malformed = |reason: String| Error::Malformed {
        what: what.to_string(),
        reason,
    };
    let text = std::str::from_utf8(json).map_err(|e| {
        malformed(format!(
            "the header is not UTF-8 text (invalid byte at offset {})",
            8 + e.valid_up_to()
        ))
    })?;
    let Entries(entries) =
        serde_json::from_str(text).map_err(|e| malformed(format!("the header is not valid JSON: {e}")))?;
    let mut declared: Vec<TensorDecl> = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            serde_json::from_value::<BTreeMap<String, String>>(value)
                .map_err(|e| malformed(format!("the header's __metadata__ is not a map of strings: {e}")))?;
            continue;
        }
        let entry: Entry = serde_json::from_value(value)
            .map_err(|e| malformed(format!("the header's entry for tensor `{name}` is not valid: {e}")))?;
        let tensor = TensorDecl {
            name,
            dtype: entry.dtype,
            shape: entry.shape,
            start: entry.data_offsets.0,
            end: entry.data_offsets.1,
        };
        if let Some(first) = declared.iter().find(|t| t.name == tensor.name) {
            let problem = format!("is declared twice; the first declaration is {first}");
            return Err(bad(what, tensor, problem));
        }
        check_size(&tensor).map_err(|problem| bad(what, tensor.clone(), problem))?;
        declared.push(tensor);
    }
    declared.sort_by_key(|t| (t.start, t.end));
    let mut covered: Option<&TensorDecl> = None;
    for t in &declared {
        let end = covered.map_or(0, |p| p.end);
        if t.start > end {
            let after = covered.map_or_else(|| "the start of the data".to_string(), |p| format!("{p}"));
            let problem = format!(
                "leaves a gap: bytes {end}..{} after {after} belong to no tensor",
                t.start
            );
            return Err(bad(what, t.clone(), problem));
        }
        if let Some(p) = covered.filter(|p| t.start < p.end) {
            return Err(bad(what, t.clone(), format!("overlaps {p}")));
        }
        covered = Some(t);
    }
    Ok(declared)
}

/// A tensor's byte range against its dtype and shape.
fn check_size(t: &TensorDecl) -> Result<(), String> {
    let dtype: Dtype = serde_json::from_value(serde_json::Value::String(t.dtype.clone()))
        .map_err(|_| "has an unknown dtype".to_string())?;
    if t.end < t.start {
        return Err("ends before it starts".into());
    }
    let bits = t
        .shape
        .iter()
        .try_fold(dtype.bitsize() as u64, |n, &d| n.checked_mul(d as u64))
        .ok_or("has a shape too large to address")?;
    let len = t.end - t.start;
    if bits % 8 != 0 || bits / 8 != len {
        return Err(format!(
            "spans {len} bytes, but {} × {:?} takes {}",
            t.dtype,
            t.shape,
            if bits % 8 == 0 {
                format!("{}", bits / 8)
            } else {
                format!("{bits} bits")
            }
        ));
    }
    Ok(())
}

/// The declared tensors (sorted, without gaps) against the `present` bytes
/// of the data section: nothing past its end, nothing after the last.
fn check_coverage(declared: &[TensorDecl], present: u64, what: &str) -> Result<(), Error> {
    if let Some(t) = declared.iter().find(|t| t.end > present) {
        let problem = format!("lies past the end of the file (its data section holds {present} bytes)");
        return Err(bad(what, t.clone(), problem));
    }
    let end = declared.last().map_or(0, |t| t.end);
    if present > end {
        let after = declared
            .last()
            .map_or_else(|| "the header (it declares no tensor)".to_string(), |t| format!("{t}"));
        return Err(Error::Malformed {
            what: what.to_string(),
            reason: format!("bytes from {end} on, after {after}, belong to no tensor"),
        });
    }
    Ok(())
}

fn bad(what: &str, tensor: TensorDecl, problem: String) -> Error {
    Error::BadTensor {
        file: what.to_string(),
        tensor: Box::new(tensor),
        problem,
    }
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
                file: "w".into(),
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
                file: "w".into(),
                name: "a.weight".into(),
                expected: vec![3, 2],
                found: vec![2, 3]
            }
        );
        // Cut anywhere: an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(read_safetensors(&bytes[..cut], "w", &want).is_err(), "cut at {cut}");
        }
        // Any one byte changed (header digits, quotes, braces, data): an
        // answer, never a panic.
        for at in 0..bytes.len() {
            for value in [0, b' ', b'"', b'0', b'9', b'[', b'}', 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                let _ = read_safetensors(&changed, "w", &want);
            }
        }
    }

    /// A safetensors file with `header` as its JSON and `data` bytes after it.
    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend(std::iter::repeat_n(0u8, data));
        out
    }

    fn message(header: &str, data: usize) -> String {
        read_safetensors(&file(header, data), "w.st", &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_header_error_names_the_tensor_its_declaration_and_the_problem() {
        let a = r#""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
        let cases = [
            (
                format!(r#"{{{a},"b":{{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}}}"#),
                12,
                "w.st: tensor `b` (F32 [2], bytes 4..12) overlaps tensor `a` (F32 [2], bytes 0..8)",
            ),
            (
                format!(r#"{{{a},"b":{{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}}}"#),
                20,
                "w.st: tensor `b` (F32 [2], bytes 12..20) leaves a gap: bytes 8..12 after tensor `a` \
                 (F32 [2], bytes 0..8) belong to no tensor",
            ),
            (
                format!(r#"{{{a},"b":{{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}}}"#),
                10,
                "w.st: tensor `b` (F32 [2], bytes 8..16) lies past the end of the file (its data section \
                 holds 10 bytes)",
            ),
            (
                format!(r#"{{{a},"b":{{"dtype":"F32","shape":[3],"data_offsets":[8,16]}}}}"#),
                16,
                "w.st: tensor `b` (F32 [3], bytes 8..16) spans 8 bytes, but F32 × [3] takes 12",
            ),
            (
                format!(r#"{{{a},"a":{{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}}}"#),
                16,
                "w.st: tensor `a` (F64 [1], bytes 8..16) is declared twice; the first declaration is \
                 tensor `a` (F32 [2], bytes 0..8)",
            ),
            (
                r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#.to_string(),
                8,
                "w.st: tensor `a` (F33 [2], bytes 0..8) has an unknown dtype",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#.to_string(),
                8,
                "w.st: tensor `a` (F32 [2], bytes 8..0) ends before it starts",
            ),
            (
                format!("{{{a}}}"),
                12,
                "w.st: bytes from 8 on, after tensor `a` (F32 [2], bytes 0..8), belong to no tensor",
            ),
        ];
        for (header, data, want) in cases {
            assert_eq!(message(&header, data), want, "{header}");
        }
        let bad_json = message(r#"{"a":{"dtype":"F32""#, 0);
        assert!(
            bad_json.starts_with("w.st: the header is not valid JSON: "),
            "{bad_json}"
        );
        let missing = message(r#"{"a":{"dtype":"F32","shape":[2]}}"#, 8);
        assert!(
            missing.contains("tensor `a`") && missing.contains("data_offsets"),
            "{missing}"
        );
        // A header length beyond the file, or beyond any real header.
        let mut long = file("{}", 0);
        long[..8].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(
            read_safetensors(&long, "w.st", &[]).unwrap_err().to_string(),
            "w.st: the header length field says 1000 bytes, but only 2 follow it"
        );
        long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_safetensors(&long, "w.st", &[])
            .unwrap_err()
            .to_string()
            .contains("more than the 100000000"));
    }

    #[test]
    fn a_stream_is_read_no_further_than_its_header_declares() {
        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let head = file(header, 0);
        let endless = head.as_slice().chain(std::io::repeat(0));
        let input = Input {
            reader: endless,
            len: None,
            what: "zeros".into(),
        };
        let err = read_safetensors_from(input, &[]).unwrap_err().to_string();
        assert!(
            err.contains("after tensor `a` (F32 [2], bytes 0..8), belong to no tensor"),
            "{err}"
        );
        let input = Input {
            reader: std::io::repeat(0),
            len: None,
            what: "zeros".into(),
        };
        let err = read_safetensors_from(input, &[]).unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
