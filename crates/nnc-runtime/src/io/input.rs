//! Reading an input without trusting it for its size.
//!
//! A file declares how much data follows its header (an `.npy` shape, a
//! safetensors header's offsets). The declaration is checked against a
//! regular file's length before anything is allocated, and a pipe or a
//! device (`/dev/stdin`, `/dev/zero`, a FIFO) is read up to the declared
//! size and no further, so an endless stream cannot fill memory.

use crate::Error;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// An opened input: the reader and, for a regular file, its length (`None`
/// for a pipe or device, whose length is known only by reading it).
pub struct Input<R> {
    pub reader: R,
    pub len: Option<u64>,
    /// The file as messages name it.
    pub what: String,
}

/// Opens `path` for reading; a directory is an error.
pub fn open(path: &Path) -> Result<Input<File>, Error> {
    let what = path.display().to_string();
    let io = |e: std::io::Error| Error::Io {
        path: what.clone(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(Error::Io {
            path: what,
            reason: "it is a directory".into(),
        });
    }
    let len = meta.is_file().then_some(meta.len());
    Ok(Input {
        reader: file,
        len,
        what,
    })
}

/// Reads the whole of `path`, refusing more than `cap` bytes (a program
/// file, which declares no size of its own): an error names the file and
/// the cap, whether the file is large or endless (`/dev/zero`).
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, Error> {
    let input = open(path)?;
    let too_big = |what: &str| Error::TooLarge {
        what: what.to_string(),
        limit: cap,
    };
    if input.len.is_some_and(|len| len > cap) {
        return Err(too_big(&input.what));
    }
    let mut bytes = Vec::new();
    input
        .reader
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io {
            path: input.what.clone(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > cap {
        return Err(too_big(&input.what));
    }
    Ok(bytes)
}

/// Makes room for `more` further elements in `buf`, as an error naming the
/// file when the allocator refuses (instead of an abort).
pub(crate) fn reserve<T>(buf: &mut Vec<T>, more: u64, what: &str) -> Result<(), Error> {
    let bytes = more.saturating_mul(std::mem::size_of::<T>() as u64);
    let oom = || Error::OutOfMemory {
        what: what.to_string(),
        bytes,
    };
    let more = usize::try_from(more).map_err(|_| oom())?;
    buf.try_reserve_exact(more).map_err(|_| oom())
}

/// Reads up to `n` bytes onto the end of `buf` (fewer only at the end of
/// the input); returns how many were read.
pub(crate) fn read_up_to<R: Read>(reader: &mut R, n: u64, buf: &mut Vec<u8>, what: &str) -> Result<u64, Error> {
    let got = reader.take(n).read_to_end(buf).map_err(|e| Error::Io {
        path: what.to_string(),
        reason: e.to_string(),
    })?;
    Ok(got as u64)
}

/// How many bytes follow where a file should have ended, counted up to a
/// bound (an endless stream is not read to its end).
pub(crate) fn trailing_bytes<R: Read>(reader: &mut R, what: &str) -> Result<u64, Error> {
    const COUNTED: u64 = 1 << 16;
    let mut sink = Vec::new();
    read_up_to(reader, COUNTED, &mut sink, what)
}
