//! Where a command's output goes, and how it gets there without leaving a
//! partial, stale or clobbered file.
//!
//! - `-o -` is standard output; a device or FIFO (`/dev/null`, a named
//!   pipe) is written in place, never replaced by a regular file.
//! - A regular file (new or existing, or the final target of a symlink) is
//!   written to a temporary beside it, `.NAME.nnc-PID.tmp`, synced, then
//!   renamed over it. A command with two outputs (`build --embed`) writes
//!   both temporaries completely before renaming either, and keeps the old
//!   first file (`.NAME.nnc-PID.old`, a hard link) until the second is in
//!   place, to put it back if the second rename fails or is interrupted.
//! - An output that is one of the command's inputs (the same device and
//!   inode: through a symlink or a hard link too) is refused.
//! - On SIGINT, SIGTERM or SIGHUP the temporaries in flight are removed
//!   (and a pair half renamed is put back) before exiting (status 130). A
//!   kill -9 can leave a temporary, never a partial output: the next run
//!   writing the same output removes temporaries whose process is gone.
//!
//! Test hook (for the CLI tests only, not a user feature):
//! `NNC_TEST_PAUSE_BEFORE_RENAME=<ms>` sleeps after the temporaries are
//! written and before they are renamed, so a test can interrupt there; with
//! `NNC_TEST_RESUME_FILE=<path>` the pause ends as soon as that file exists,
//! so a test that acts during the pause does not race its end.

use crate::Failure;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Where one output goes.
#[derive(Debug)]
pub(crate) enum Sink {
    /// `-o -`: standard output.
    Stdout,
    /// A device, FIFO or socket: written in place, no temporary.
    Direct(PathBuf),
    /// A regular file, new or replaced: `target` is where the bytes land
    /// (a symlink's final target), `shown` the path as the user gave it.
    Replace { shown: PathBuf, target: PathBuf },
}

/// A command's input, to refuse it as an output: its role in messages
/// (`the model`, `--weights`) and its path.
pub(crate) type Input<'a> = (&'a str, &'a Path);

/// What the interrupt handler undoes, in order.
static IN_FLIGHT: Mutex<Vec<Undo>> = Mutex::new(Vec::new());

/// One thing to undo if the command stops before it is done.
#[derive(Clone, PartialEq)]
enum Undo {
    /// A temporary being written: remove it.
    Remove(PathBuf),
    /// The first file of a pair, about to be or already replaced: put the
    /// old file back from its backup, or remove the new one if there was
    /// no old file.
    Restore { target: PathBuf, backup: Option<PathBuf> },
}

impl Undo {
    fn run(&self) {
        match self {
            Undo::Remove(temp) => {
                let _ = std::fs::remove_file(temp);
            }
            Undo::Restore {
                target,
                backup: Some(backup),
            } => {
                // Renaming a hard link over its twin is a no-op that keeps
                // both names: the backup is removed after either way.
                let _ = std::fs::rename(backup, target);
                let _ = std::fs::remove_file(backup);
            }
            Undo::Restore { target, backup: None } => {
                let _ = std::fs::remove_file(target);
            }
        }
    }
}

/// Symlink hops followed before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// The longest file name (bytes) on Linux, macOS and the BSDs.
const NAME_MAX: usize = 255;

/// A temporary's name is `.` + key + `.nnc-` + pid + `.tmp`: 20 bytes
/// besides the key for a pid of up to 10 digits.
const TEMP_OVERHEAD: usize = 20;

fn in_flight() -> MutexGuard<'static, Vec<Undo>> {
    IN_FLIGHT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// On SIGINT, SIGTERM or SIGHUP: removes the temporaries in flight, puts
/// back a half-renamed pair, and exits with 130. The lock stays held to the
/// exit, so nothing is created or renamed after the cleanup.
pub(crate) fn clean_up_on_interrupt() {
    let _ = ctrlc::set_handler(|| {
        let undo = in_flight();
        for step in undo.iter() {
            step.run();
        }
        crate::report("nnc: interrupted; its temporary files are removed, its outputs left as they were");
        std::process::exit(130);
    });
}

/// Decides where `-o path` goes, refusing a directory and any of `inputs`.
pub(crate) fn resolve(path: &Path, inputs: &[Input]) -> Result<Sink, Failure> {
    if path == Path::new("-") {
        return Ok(Sink::Stdout);
    }
    let shown = path.to_path_buf();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Failure(format!("error: -o {}: it is a directory", path.display()))),
        Ok(meta) if meta.is_file() => {
            refuse_inputs(path, &meta, inputs)?;
            let target = std::fs::canonicalize(path)
                .map_err(|e| Failure(format!("error: cannot write {}: {e}", path.display())))?;
            Ok(Sink::Replace { shown, target })
        }
        Ok(_) => Ok(Sink::Direct(shown)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let target = final_target(path)?;
            Ok(Sink::Replace { shown, target })
        }
        Err(e) => Err(Failure(format!("error: cannot write {}: {e}", path.display()))),
    }
}

/// Whether `sink` is a file that can have a sibling (`--embed`'s weights).
pub(crate) fn is_file(sink: &Sink) -> bool {
    matches!(sink, Sink::Replace { .. })
}

fn refuse_inputs(path: &Path, meta: &Metadata, inputs: &[Input]) -> Result<(), Failure> {
    for (role, input) in inputs {
        let same = std::fs::metadata(input).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if same {
            return Err(Failure(format!(
                "error: -o {} is the same file as {role} {}; nnc does not overwrite its inputs: write to another file",
                path.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Where a path that does not exist would be created: itself, or the end
/// of a chain of symlinks (a dangling link is written through).
fn final_target(path: &Path) -> Result<PathBuf, Failure> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let is_link = std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            return Ok(current);
        }
        let link = std::fs::read_link(&current)
            .map_err(|e| Failure(format!("error: cannot write {}: {e}", path.display())))?;
        current = directory_of(&current).join(link);
    }
    Err(Failure(format!(
        "error: cannot write {}: more than {MAX_LINKS} symbolic links in a row",
        path.display()
    )))
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes each output, all or nothing as far as files go: every temporary
/// is complete and synced before the first rename. (Standard output and
/// devices cannot be taken back; commands with two outputs only allow files.)
pub(crate) fn write(outputs: &[(&Sink, &[u8])]) -> Result<(), Failure> {
    let mut staged = Vec::new();
    for (sink, bytes) in outputs {
        match sink {
            Sink::Stdout => crate::to_stdout(bytes)?,
            Sink::Direct(path) => write_in_place(path, bytes)?,
            Sink::Replace { shown, target } => staged.push(Staged::new(shown, target, bytes)?),
        }
    }
    test_pause();
    commit_all(&mut staged)
}

/// Renames the staged files in order. Each but the last keeps its old file
/// until the last is in place, so that a failure puts the old set back.
fn commit_all(staged: &mut [Staged]) -> Result<(), Failure> {
    let Some((last, firsts)) = staged.split_last_mut() else {
        return Ok(());
    };
    let mut restores = Vec::new();
    for file in firsts.iter_mut() {
        let kept = file.keep_old(&mut in_flight());
        match kept {
            Ok(restore) => restores.push(restore),
            Err(failure) => return Err(undo_all(&restores, failure)),
        }
        let renamed = file.commit(&mut in_flight());
        if let Err(failure) = renamed {
            return Err(undo_all(&restores, failure));
        }
    }
    // The last rename and forgetting the backups, under one lock: an
    // interrupt finds the set all old or all new.
    let mut undo = in_flight();
    if let Err(failure) = last.commit(&mut undo) {
        drop(undo);
        return Err(undo_all(&restores, failure));
    }
    undo.retain(|u| !restores.contains(u));
    drop(undo);
    for restore in &restores {
        if let Undo::Restore {
            backup: Some(backup), ..
        } = restore
        {
            let _ = std::fs::remove_file(backup);
        }
    }
    Ok(())
}

/// Puts back the old files of a set whose renaming failed.
fn undo_all(restores: &[Undo], failure: Failure) -> Failure {
    let mut undo = in_flight();
    for restore in restores.iter().rev() {
        restore.run();
        undo.retain(|u| u != restore);
    }
    failure
}

fn write_in_place(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let result = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.flush()));
    result.map_err(|e| Failure(format!("error: cannot write {}: {e}", path.display())))
}

/// A complete temporary waiting to be renamed over its target; dropped
/// uncommitted, it is removed.
struct Staged {
    temp: PathBuf,
    target: PathBuf,
    shown: PathBuf,
    committed: bool,
}

impl Staged {
    fn new(shown: &Path, target: &Path, bytes: &[u8]) -> Result<Staged, Failure> {
        let dir = directory_of(target);
        let name = target.file_name().unwrap_or(OsStr::new("output"));
        remove_stale(&dir, name);
        let temp = dir.join(temp_name(name, std::process::id()));
        let fail = |e: std::io::Error| Failure(format!("error: cannot write {}: {e}", shown.display()));
        let file = create_registered(&temp).map_err(fail)?;
        let staged = Staged {
            temp,
            target: target.to_path_buf(),
            shown: shown.to_path_buf(),
            committed: false,
        };
        fill(&file, target, bytes).map_err(fail)?;
        Ok(staged)
    }

    /// Renames the temporary over the target; `undo` is the locked registry.
    fn commit(&mut self, undo: &mut Vec<Undo>) -> Result<(), Failure> {
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| Failure(format!("error: cannot write {}: {e}", self.shown.display())))?;
        self.committed = true;
        undo.retain(|u| u != &Undo::Remove(self.temp.clone()));
        Ok(())
    }

    /// Keeps the target's old file as `.NAME.nnc-PID.old` (a hard link, or
    /// a copy where links are not supported) and registers how to put it
    /// back; `undo` is the locked registry.
    fn keep_old(&self, undo: &mut Vec<Undo>) -> Result<Undo, Failure> {
        let backup = self.temp.with_extension("old");
        let _ = std::fs::remove_file(&backup);
        let kept =
            std::fs::hard_link(&self.target, &backup).or_else(|_| std::fs::copy(&self.target, &backup).map(|_| ()));
        let restore = match kept {
            Ok(()) => Undo::Restore {
                target: self.target.clone(),
                backup: Some(backup),
            },
            Err(_) if !self.target.exists() => Undo::Restore {
                target: self.target.clone(),
                backup: None,
            },
            Err(e) => {
                let _ = std::fs::remove_file(&backup);
                return Err(Failure(format!("error: cannot write {}: {e}", self.shown.display())));
            }
        };
        undo.push(restore.clone());
        Ok(restore)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let mut undo = in_flight();
            let _ = std::fs::remove_file(&self.temp);
            undo.retain(|u| u != &Undo::Remove(self.temp.clone()));
        }
    }
}

/// Creates `temp` (new) and registers it for the interrupt handler, both
/// under the lock, so an interrupt never misses a created temporary.
fn create_registered(temp: &Path) -> std::io::Result<File> {
    let mut undo = in_flight();
    // Ours from an earlier run with the same pid: stale by definition.
    let _ = std::fs::remove_file(temp);
    let file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    undo.push(Undo::Remove(temp.to_path_buf()));
    Ok(file)
}

/// Writes the bytes, keeps a replaced file's permissions, and syncs.
fn fill(mut file: &File, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    if let Ok(meta) = std::fs::metadata(target) {
        file.set_permissions(meta.permissions())?;
    }
    file.sync_all()
}

/// `.NAME.nnc-PID.tmp`, within NAME_MAX: a name too long for that keeps its
/// start and ends in a hash of the whole name, so that two long names with
/// the same start still get different temporaries.
fn temp_name(name: &OsStr, pid: u32) -> OsString {
    let mut out = b".".to_vec();
    out.extend_from_slice(&temp_key(name));
    out.extend_from_slice(format!(".nnc-{pid}.tmp").as_bytes());
    OsString::from_vec(out)
}

fn temp_key(name: &OsStr) -> Vec<u8> {
    let bytes = name.as_bytes();
    let room = NAME_MAX - TEMP_OVERHEAD;
    if bytes.len() <= room {
        return bytes.to_vec();
    }
    let mut key = bytes[..room - 17].to_vec();
    key.extend_from_slice(format!("~{:016x}", fnv1a(bytes)).as_bytes());
    key
}

/// FNV-1a, 64 bits: stable across runs and versions (std's hasher is not
/// promised to be), for telling long names apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Removes the temporaries for `name` in `dir` that an earlier, killed run
/// left behind: those whose process is gone. A live process's (a
/// concurrent nnc writing the same output) are left alone.
fn remove_stale(dir: &Path, name: &OsStr) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(&temp_key(name));
    prefix.extend_from_slice(b".nnc-");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let pid = file_name
            .as_bytes()
            .strip_prefix(prefix.as_slice())
            .and_then(|rest| rest.strip_suffix(b".tmp").or_else(|| rest.strip_suffix(b".old")))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && !alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            crate::report(&format!(
                "note: removed {}, left by an interrupted nnc (pid {pid})",
                entry.path().display()
            ));
        }
    }
}

/// Whether process `pid` exists (signal 0 checks without sending). When in
/// doubt, alive: a temporary is only removed when its writer is surely gone.
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The test hook described in the module doc.
fn test_pause() {
    let pause = std::env::var("NNC_TEST_PAUSE_BEFORE_RENAME")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok());
    let Some(ms) = pause else { return };
    let resume = std::env::var_os("NNC_TEST_RESUME_FILE").map(PathBuf::from);
    let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    while std::time::Instant::now() < end {
        if resume.as_ref().is_some_and(|r| r.exists()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_stay_within_name_max_and_long_names_stay_apart() {
        let short = temp_name(OsStr::new("w.safetensors"), 42);
        assert_eq!(short, OsStr::new(".w.safetensors.nnc-42.tmp"));
        let a = "a".repeat(255);
        let b = format!("{}b", "a".repeat(254));
        let (ta, tb) = (temp_name(OsStr::new(&a), u32::MAX), temp_name(OsStr::new(&b), u32::MAX));
        assert!(
            ta.len() <= NAME_MAX && tb.len() <= NAME_MAX,
            "{} {}",
            ta.len(),
            tb.len()
        );
        assert_ne!(ta, tb);
        let edge = "c".repeat(NAME_MAX - TEMP_OVERHEAD);
        assert_eq!(temp_key(OsStr::new(&edge)), edge.as_bytes());
    }
}
