//! What the CLI promises about files (issue 11): sizes declared by a file
//! are checked before anything is allocated, unbounded inputs are bounded,
//! standard output errors are errors, outputs are never partial, stale or
//! clobbered (interrupts, inputs as outputs, links, devices), and the
//! messages name the place. Each test checks the exit code, the message and
//! the state of every file afterwards.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{files_in, nnc, nnc_to, s, scratch, stderr, stdout, temporaries};

const MODEL: &str = "model M { input 8 dense 8 -> 4 }";

/// A folder with the model `m.nn`, its weights `w.st` and an input `x.npy`.
fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let model = dir.join("m.nn");
    std::fs::write(&model, MODEL).unwrap();
    let weights = dir.join("w.st");
    let o = nnc(&["init", s(&model), "-o", s(&weights)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let x = dir.join("x.npy");
    std::fs::write(&x, nnc_runtime::io::npy::write_npy(&[2, 8], &[0.5; 16]).unwrap()).unwrap();
    (dir, model, weights, x)
}

/// Exit 1, `needle` in the message, and no panic.
fn fails_with(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert!(stderr(o).contains(needle), "expected `{needle}` in: {}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

/// An `.npy` (version 1.0) whose header declares `shape`, with `body` bytes.
fn npy(shape: &str, body: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let padded = format!("{dict:<117}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    out.extend_from_slice(padded.as_bytes());
    out.extend(std::iter::repeat_n(0u8, body));
    out
}

/// A safetensors file with `header` as its JSON and `data` zero bytes.
fn safetensors(header: &str, data: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data));
    out
}

fn run(model: &Path, weights: &Path, input: &Path, output: &Path) -> Output {
    nnc(&[
        "run",
        s(model),
        "--weights",
        s(weights),
        "--input",
        s(input),
        "-o",
        s(output),
    ])
}

// Point 3: sizes declared by a file.

#[test]
fn a_declared_size_beyond_the_file_is_refused_before_allocating() {
    let (dir, model, weights, _) = setup("declared");
    let big = dir.join("big.npy");
    std::fs::write(&big, npy("(1000000000, 64)", 256)).unwrap();
    let y = dir.join("y.npy");
    let before = files_in(&dir);
    let o = run(&model, &weights, &big, &y);
    fails_with(
        &o,
        "big.npy: the header declares shape [1000000000, 64] of f32 (256000000000 bytes of data), \
         but the file holds 256",
    );
    assert_eq!(files_in(&dir), before, "no output, no temporary");

    // The sibling: a safetensors tensor whose offsets run far past the file.
    let lying = dir.join("lying.st");
    let header = r#"{"layer0.weight":{"dtype":"F32","shape":[1000000000,64],"data_offsets":[0,256000000000]}}"#;
    std::fs::write(&lying, safetensors(header, 256)).unwrap();
    let before = files_in(&dir);
    let o = run(&model, &lying, &big, &y);
    fails_with(
        &o,
        "lying.st: tensor `layer0.weight` (F32 [1000000000, 64], bytes 0..256000000000) lies past the end \
         of the file (its data section holds 256 bytes)",
    );
    assert_eq!(files_in(&dir), before);
}

// Point 7: unbounded inputs.

#[test]
fn endless_inputs_are_bounded_and_stdin_still_works() {
    let (dir, model, weights, x) = setup("endless");
    let y = dir.join("y.npy");
    let before = files_in(&dir);
    fails_with(
        &nnc(&["check", "/dev/zero"]),
        "/dev/zero is larger than 16 MiB; a program file is never that long",
    );
    fails_with(&nnc(&["init", "/dev/urandom", "-o", s(&y)]), "/dev/urandom");
    fails_with(&run(&model, Path::new("/dev/zero"), &x, &y), "/dev/zero: the header");
    fails_with(&run(&model, Path::new("/dev/urandom"), &x, &y), "/dev/urandom");
    fails_with(
        &run(&model, &weights, Path::new("/dev/zero"), &y),
        "/dev/zero: not an .npy file",
    );
    fails_with(&run(&model, &weights, Path::new("/dev/urandom"), &y), "/dev/urandom");
    assert_eq!(files_in(&dir), before);
    // A directory is not read either.
    fails_with(&run(&model, &dir, &x, &y), "is a directory");

    // /dev/stdin is a pipe here: a program, weights or an array through it
    // is read as from a file.
    let piped = |args: &[&str], bytes: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = piped(&["check", "/dev/stdin"], MODEL.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("M: ok"), "{}", stdout(&o));
    let args = [
        "run",
        s(&model),
        "--weights",
        "/dev/stdin",
        "--input",
        s(&x),
        "-o",
        s(&y),
    ];
    let o = piped(&args, &std::fs::read(&weights).unwrap());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let from_file = std::fs::read(&y).unwrap();
    std::fs::remove_file(&y).unwrap();
    let args = [
        "run",
        s(&model),
        "--weights",
        s(&weights),
        "--input",
        "/dev/stdin",
        "-o",
        s(&y),
    ];
    let o = piped(&args, &std::fs::read(&x).unwrap());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&y).unwrap(), from_file);
    // A stream whose header promises more than it brings.
    let o = piped(&args, &npy("(1000, 8)", 64));
    fails_with(
        &o,
        "/dev/stdin: the header declares shape [1000, 8] of f32 (32000 bytes of data), but the file holds 64",
    );
}

// Point 8: errors writing standard output.

fn dev_full() -> Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

#[test]
fn a_full_standard_output_is_an_error_for_every_command_that_prints() {
    let (dir, model, _, _) = setup("full");
    let m = s(&model);
    let cases: &[&[&str]] = &[
        &["ir", m],
        &["build", m, "-o", "-"],
        &["check", m],
        &["passes"],
        &["ir", m, "--after-all"],
        &["init", m, "-o", "-"],
        &["--help"],
        &["--version"],
    ];
    for args in cases {
        let o = nnc_to(args, dev_full());
        fails_with(&o, "error: cannot write to standard output: No space left on device");
    }
    assert_eq!(temporaries(&dir), Vec::<String>::new());
}

#[test]
fn a_closed_pipe_ends_quietly() {
    // Output well past a pipe's 64 KiB buffer, so the write meets the
    // closed pipe whenever the reader goes.
    let dir = scratch("pipe");
    let big = dir.join("big.nn");
    std::fs::write(
        &big,
        format!("model Big {{ input 8 {} }}", "dense 8 -> 8 act=relu ".repeat(500)),
    )
    .unwrap();
    for args in [&["ir", s(&big)][..], &["build", s(&big), "-o", "-"], &["passes"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn a_full_standard_error_is_no_panic() {
    let (dir, model, _, _) = setup("stderr");
    let w = dir.join("out.st");
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["init", s(&model), "-o", s(&w)])
        .stderr(dev_full())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "the weights were written; only the note was lost"
    );
    assert!(w.exists());
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["check", "no/such.nn"])
        .stderr(dev_full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "an error still exits 1, not a panic's 101");
}

// Point 9: --threads.

#[test]
fn threads_zero_is_refused_and_too_many_are_capped() {
    let (dir, model, weights, x) = setup("threads");
    let y = dir.join("y.npy");
    let with = |threads: &str| {
        nnc(&[
            "run",
            s(&model),
            "--weights",
            s(&weights),
            "--input",
            s(&x),
            "-o",
            s(&y),
            "--threads",
            threads,
        ])
    };
    let o = with("0");
    fails_with(
        &o,
        "invalid value '0' for '--threads <THREADS>': at least 1 thread is needed",
    );
    assert!(!y.exists());
    let o = with("-3");
    fails_with(&o, "the thread count is a whole number, at least 1");
    let cores = std::thread::available_parallelism().unwrap().get();
    let o = with("10000");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("warning: --threads 10000: this machine has {cores} core")),
        "{}",
        stderr(&o)
    );
    let capped = std::fs::read(&y).unwrap();
    let o = with("1");
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).is_empty(), "no warning within the cores: {}", stderr(&o));
    assert_eq!(std::fs::read(&y).unwrap(), capped);
}

// Point 10: build --embed replaces the pair or nothing.

/// `nnc` with the file size limit set to `blocks`, as a user's `ulimit -f`
/// sets it: SIGXFSZ keeps its default action (killing the process), so nnc
/// itself must ignore it for a write past the limit to fail with EFBIG.
fn nnc_limited(blocks: u32, args: &[&str]) -> Output {
    let script = format!("ulimit -f {blocks}; exec \"$0\" \"$@\"");
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_file_size_limit_is_a_write_error_not_a_kill() {
    // Under `ulimit -f` the kernel sends SIGXFSZ, whose default action
    // killed nnc mid-write and left its temporary behind.
    let dir = scratch("xfsz");
    let model = dir.join("m.nn");
    std::fs::write(&model, "model M { input 256 dense 256 -> 256 }").unwrap();
    let out = dir.join("w.safetensors");
    std::fs::write(&out, b"old").unwrap();
    let before = files_in(&dir);
    let o = nnc_limited(20, &["init", s(&model), "-o", s(&out)]);
    fails_with(&o, &format!("cannot write {}", s(&out)));
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert_eq!(files_in(&dir), before, "no temporary left");
}

#[test]
fn control_characters_in_a_file_name_are_escaped_in_messages() {
    // A name is the user's data: printed raw, an ESC in it would colour the
    // terminal, a bidirectional override would reorder the text.
    let dir = scratch("control");
    let model = dir.join("m.nn");
    std::fs::write(&model, MODEL).unwrap();
    let missing = dir.join("x\u{1b}[31mred\u{202e}.nn");
    let o = nnc(&["check", s(&missing)]);
    fails_with(&o, "x\\u{1b}[31mred\\u{202e}.nn");
    assert!(!stderr(&o).contains(['\u{1b}', '\u{202e}']), "{:?}", stderr(&o));
    // The same name heading a diagnostic.
    let bad = dir.join("y\u{1b}[2J.nn");
    std::fs::write(&bad, "model M { input 4 dense 4 bogus=1 }").unwrap();
    let o = nnc(&["check", s(&bad)]);
    fails_with(&o, "y\\u{1b}[2J.nn:1:27");
    assert!(!stderr(&o).contains('\u{1b}'), "{:?}", stderr(&o));
    let out = dir.join("w\u{7}.st");
    let o = nnc(&["init", s(&model), "-o", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("w\\u{7}.st") && !stderr(&o).contains('\u{7}'),
        "{:?}",
        stderr(&o)
    );
}

#[test]
fn a_failed_embed_build_keeps_the_old_pair() {
    let dir = scratch("pair");
    let small = dir.join("small.nn");
    std::fs::write(&small, MODEL).unwrap();
    let wide = dir.join("wide.nn");
    std::fs::write(&wide, "model M { input 256 dense 256 -> 256 }").unwrap();
    let (ws, ww) = (dir.join("small.st"), dir.join("wide.st"));
    assert!(nnc(&["init", s(&small), "-o", s(&ws)]).status.success());
    assert!(nnc(&["init", s(&wide), "-o", s(&ww)]).status.success());
    let out = dir.join("m.rs");
    let sibling = dir.join("m.embedded.safetensors");
    let o = nnc(&["build", s(&small), "-o", s(&out), "--embed", s(&ws)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let old = (std::fs::read(&out).unwrap(), std::fs::read(&sibling).unwrap());
    let before = files_in(&dir);

    // The weights (256 KiB) cannot be written: nothing is replaced.
    let o = nnc_limited(20, &["build", s(&wide), "-o", s(&out), "--embed", s(&ww)]);
    fails_with(&o, "cannot write");
    assert!(stderr(&o).contains("m.embedded.safetensors"), "{}", stderr(&o));
    assert_eq!((std::fs::read(&out).unwrap(), std::fs::read(&sibling).unwrap()), old);
    assert_eq!(files_in(&dir), before);

    // The sibling: the weights (288 bytes) fit, the source (6 KiB) does
    // not; the new weights, already complete, are not put in place either.
    let small2 = dir.join("small2.nn");
    std::fs::write(&small2, "model M { input 8 dense 8 -> 4 act=relu }").unwrap();
    let before = files_in(&dir);
    let o = nnc_limited(4, &["build", s(&small2), "-o", s(&out), "--embed", s(&ws)]);
    fails_with(&o, "cannot write");
    assert!(stderr(&o).contains("m.rs"), "{}", stderr(&o));
    assert_eq!((std::fs::read(&out).unwrap(), std::fs::read(&sibling).unwrap()), old);
    assert_eq!(files_in(&dir), before);

    // The weights are renamed, then the source cannot be (it became a
    // directory meanwhile): the old weights are put back.
    let args = ["build", s(&small2), "-o", s(&out), "--embed", s(&ws)];
    let resume = dir.join("resume");
    let child = start_paused_until(&dir, &args, 2, &resume);
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), b"x").unwrap();
    std::fs::write(&resume, b"").unwrap();
    let o = child.wait_with_output().unwrap();
    std::fs::remove_file(&resume).unwrap();
    fails_with(&o, &format!("cannot write {}", s(&out)));
    assert_eq!(std::fs::read(&sibling).unwrap(), old.1, "the old weights are back");
    assert_eq!(files_in(&dir), before, "no temporary, no backup");
    std::fs::remove_dir_all(&out).unwrap();

    // --embed with -o on a device: refused, there is nowhere beside it.
    fails_with(
        &nnc(&["build", s(&small), "-o", "/dev/null", "--embed", s(&ws)]),
        "--embed needs a file for -o",
    );
}

// Point 11: interrupted writes.

/// Starts `nnc args` paused between writing its temporaries and renaming
/// them (the test hook), and waits until `count` temporaries exist in `dir`.
fn start_paused(dir: &Path, args: &[&str], count: usize) -> std::process::Child {
    start_paused_with(dir, args, count, None)
}

/// [`start_paused`], the pause ending (at the latest) once `resume` exists.
fn start_paused_until(dir: &Path, args: &[&str], count: usize, resume: &Path) -> std::process::Child {
    start_paused_with(dir, args, count, Some(resume))
}

fn start_paused_with(dir: &Path, args: &[&str], count: usize, resume: Option<&Path>) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nnc"));
    if let Some(resume) = resume {
        command.env("NNC_TEST_RESUME_FILE", resume);
    }
    let child = command
        .args(args)
        .env("NNC_TEST_PAUSE_BEFORE_RENAME", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while temporaries(dir).len() < count {
        assert!(start.elapsed() < Duration::from_secs(60), "no temporary appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_interrupt_removes_the_temporaries_and_keeps_the_old_output() {
    let (dir, model, _, _) = setup("interrupt");
    let w = dir.join("w2.st");
    std::fs::write(&w, b"old").unwrap();
    let before = files_in(&dir);
    let child = start_paused(&dir, &["init", s(&model), "--seed", "5", "-o", s(&w)], 1);
    assert!(
        temporaries(&dir)[0].starts_with(".w2.st.nnc-"),
        "{:?}",
        temporaries(&dir)
    );
    signal(&child, "INT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&w).unwrap(), b"old");
    assert_eq!(files_in(&dir), before, "the temporary is gone");

    // The sibling: SIGTERM in the middle of an embed build, two temporaries.
    let out = dir.join("m.rs");
    let weights = dir.join("w.st");
    let o = nnc(&["build", s(&model), "-o", s(&out), "--embed", s(&weights)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sibling = dir.join("m.embedded.safetensors");
    let old = (std::fs::read(&out).unwrap(), std::fs::read(&sibling).unwrap());
    let before = files_in(&dir);
    let relu = dir.join("relu.nn");
    std::fs::write(&relu, "model M { input 8 dense 8 -> 4 act=relu }").unwrap();
    let mut before_with_relu = before.clone();
    before_with_relu.push("relu.nn".into());
    before_with_relu.sort();
    let args = ["build", s(&relu), "-o", s(&out), "--embed", s(&weights)];
    let child = start_paused(&dir, &args, 2);
    signal(&child, "TERM");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert_eq!((std::fs::read(&out).unwrap(), std::fs::read(&sibling).unwrap()), old);
    assert_eq!(files_in(&dir), before_with_relu);
}

#[test]
fn a_kill_9_leaves_a_temporary_that_the_next_run_removes() {
    let (dir, model, _, _) = setup("kill9");
    let w = dir.join("w2.st");
    std::fs::write(&w, b"old").unwrap();
    let mut child = start_paused(&dir, &["init", s(&model), "-o", s(&w)], 1);
    let stale = temporaries(&dir);
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    assert_eq!(std::fs::read(&w).unwrap(), b"old", "never a partial output");
    assert_eq!(temporaries(&dir), stale, "a kill -9 may leave its temporary");
    // A temporary of a live process (this test) and one for another output
    // stay; the stale one for this output goes.
    let live = format!(".w2.st.nnc-{}.tmp", std::process::id());
    std::fs::write(dir.join(&live), b"busy").unwrap();
    std::fs::write(dir.join(".other.st.nnc-1999999999.tmp"), b"other").unwrap();
    let o = nnc(&["init", s(&model), "-o", s(&w)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("note: removed {}", s(&dir.join(&stale[0])))),
        "{}",
        stderr(&o)
    );
    assert_ne!(std::fs::read(&w).unwrap(), b"old");
    let mut left = vec![live, ".other.st.nnc-1999999999.tmp".to_string()];
    left.sort();
    assert_eq!(temporaries(&dir), left);
}

// Point 12: outputs that are inputs, links, devices and FIFOs.

#[test]
fn an_output_that_is_an_input_is_refused() {
    let (dir, model, weights, x) = setup("same");
    let link = dir.join("link.st");
    std::os::unix::fs::symlink(&weights, &link).unwrap();
    let hard = dir.join("hard.st");
    std::fs::hard_link(&weights, &hard).unwrap();
    let snapshot = |paths: &[&PathBuf]| paths.iter().map(|p| std::fs::read(p).unwrap()).collect::<Vec<_>>();
    let all = [&model, &weights, &x];
    let before = (files_in(&dir), snapshot(&all));
    let o = nnc(&["init", s(&model), "-o", s(&model)]);
    fails_with(&o, "is the same file as the model");
    fails_with(&run(&model, &weights, &x, &weights), "is the same file as --weights");
    fails_with(&run(&model, &weights, &x, &link), "is the same file as --weights");
    fails_with(&run(&model, &weights, &x, &hard), "is the same file as --weights");
    fails_with(&run(&model, &link, &x, &x), "is the same file as --input");
    let o = nnc(&["export", s(&model), "--weights", s(&weights), "-o", s(&hard)]);
    fails_with(&o, "is the same file as --weights");
    let o = nnc(&["build", s(&model), "-o", s(&model)]);
    fails_with(&o, "is the same file as the model");
    // The folded weights would land on the input weights.
    let clash = dir.join("out.embedded.safetensors");
    std::fs::hard_link(&weights, &clash).unwrap();
    let o = nnc(&["build", s(&model), "-o", s(&dir.join("out.rs")), "--embed", s(&weights)]);
    fails_with(&o, "is the same file as --embed");
    std::fs::remove_file(&clash).unwrap();
    assert_eq!((files_in(&dir), snapshot(&all)), before);
}

#[test]
fn links_devices_and_fifos_are_written_through_not_replaced() {
    let (dir, model, weights, x) = setup("links");
    // A symlink: its target is replaced, the link stays a link.
    let real = dir.join("real.npy");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink("real.npy", &link).unwrap();
    let o = run(&model, &weights, &x, &link);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let (shape, _) = nnc_runtime::io::npy::read_npy(&std::fs::read(&real).unwrap(), "real").unwrap();
    assert_eq!(shape, vec![2, 4]);
    // A dangling symlink: the file it names is created.
    let dangling = dir.join("dangling.st");
    std::os::unix::fs::symlink("made.st", &dangling).unwrap();
    assert!(nnc(&["init", s(&model), "-o", s(&dangling)]).status.success());
    assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read(dir.join("made.st")).unwrap(),
        std::fs::read(&weights).unwrap()
    );
    // /dev/null stays a device.
    for command in [
        vec!["init", s(&model), "-o", "/dev/null"],
        vec!["build", s(&model), "-o", "/dev/null"],
        vec![
            "run",
            s(&model),
            "--weights",
            s(&weights),
            "--input",
            s(&x),
            "-o",
            "/dev/null",
        ],
    ] {
        let o = nnc(&command);
        assert!(o.status.success(), "{command:?}: {}", stderr(&o));
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // /dev/stdout (a pipe here) is written into, and stays a link.
    let o = nnc(&["build", s(&model), "-o", "/dev/stdout"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, nnc(&["build", s(&model), "-o", "-"]).stdout);
    assert!(std::fs::symlink_metadata("/dev/stdout")
        .unwrap()
        .file_type()
        .is_symlink());
    // /dev/full as -o: the write error is an error.
    fails_with(&nnc(&["init", s(&model), "-o", "/dev/full"]), "cannot write /dev/full");
    // A FIFO: written into, not replaced.
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = nnc(&["build", s(&model), "-o", s(&fifo)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let through_fifo = reader.join().unwrap();
    assert_eq!(through_fifo, nnc(&["build", s(&model), "-o", "-"]).stdout);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(temporaries(&dir), Vec::<String>::new());
}

// Point 17: safetensors messages name the tensor.

#[test]
fn safetensors_errors_name_the_tensor_once_with_its_declaration() {
    let (dir, model, _, x) = setup("header");
    let y = dir.join("y.npy");
    let w = r#""layer0.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]}"#;
    let cases = [
        (
            format!(r#"{{{w},"layer0.bias":{{"dtype":"F32","shape":[4],"data_offsets":[120,136]}}}}"#),
            136,
            "tensor `layer0.bias` (F32 [4], bytes 120..136) overlaps tensor `layer0.weight` (F32 [4, 8], bytes 0..128)",
        ),
        (
            format!(r#"{{{w},"layer0.weight":{{"dtype":"F32","shape":[4],"data_offsets":[128,144]}}}}"#),
            144,
            "tensor `layer0.weight` (F32 [4], bytes 128..144) is declared twice; the first declaration is \
             tensor `layer0.weight` (F32 [4, 8], bytes 0..128)",
        ),
        (
            format!(r#"{{{w},"layer0.bias":{{"dtype":"F32","shape":[4],"data_offsets":[128,144]}}}}"#),
            150,
            "bytes from 144 on, after tensor `layer0.bias` (F32 [4], bytes 128..144), belong to no tensor",
        ),
        (
            format!(r#"{{{w},"layer0.bias":{{"dtype":"F32","shape":[5],"data_offsets":[128,144]}}}}"#),
            144,
            "tensor `layer0.bias` (F32 [5], bytes 128..144) spans 16 bytes, but F32 × [5] takes 20",
        ),
        (format!(r#"{{{w},"#), 128, "the header is not valid JSON"),
    ];
    for (header, data, want) in cases {
        let file = dir.join("bad.st");
        std::fs::write(&file, safetensors(&header, data)).unwrap();
        let o = run(&model, &file, &x, &y);
        fails_with(&o, want);
        assert_eq!(stderr(&o).matches("bad.st").count(), 1, "the path once: {}", stderr(&o));
        assert!(!y.exists());
    }
    let file = dir.join("bad.st");
    let mut bytes = safetensors("{}", 0);
    bytes[..8].copy_from_slice(&4096u64.to_le_bytes());
    std::fs::write(&file, bytes).unwrap();
    fails_with(
        &run(&model, &file, &x, &y),
        "bad.st: the header length field says 4096 bytes, but only 2 follow it",
    );
    assert_eq!(temporaries(&dir), Vec::<String>::new());
}

// Point 18: an empty batch, long names, negative seeds.

#[test]
fn an_empty_batch_is_called_empty() {
    let (dir, model, weights, _) = setup("empty");
    let y = dir.join("y.npy");
    for (shape, want) in [
        (
            "(0, 8)",
            "the input holds no samples (shape [0, 8]): the batch axis is empty",
        ),
        ("(0, 64)", "the input holds no samples (shape [0, 64])"),
        ("()", "the input is a single number (shape [])"),
    ] {
        let empty = dir.join("empty.npy");
        let body = if shape == "()" { 4 } else { 0 };
        std::fs::write(&empty, npy(shape, body)).unwrap();
        fails_with(&run(&model, &weights, &empty, &y), want);
        assert!(!y.exists());
    }
}

#[test]
fn a_long_output_name_gets_a_temporary_within_name_max() {
    let (dir, model, weights, x) = setup("long");
    let name = format!("{}.st", "w".repeat(252));
    assert_eq!(name.len(), 255);
    let long = dir.join(&name);
    let o = nnc(&["init", s(&model), "-o", s(&long)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&long).unwrap(), std::fs::read(&weights).unwrap());
    // The sibling: an interrupted write to a long name is cleaned up too.
    let npy_name = format!("{}.npy", "y".repeat(251));
    let y = dir.join(&npy_name);
    let args = [
        "run",
        s(&model),
        "--weights",
        s(&weights),
        "--input",
        s(&x),
        "-o",
        s(&y),
    ];
    let child = start_paused(&dir, &args, 1);
    let temp = temporaries(&dir).remove(0);
    assert!(temp.len() <= 255 && temp.starts_with(".yyy"), "{temp}");
    signal(&child, "INT");
    child.wait_with_output().unwrap();
    assert_eq!(temporaries(&dir), Vec::<String>::new());
    assert!(!y.exists());
}

#[test]
fn a_negative_seed_is_explained() {
    let (dir, model, weights, x) = setup("seed");
    let w = dir.join("out.st");
    for seed in ["-1", "1.5", "18446744073709551616"] {
        let o = nnc(&["init", s(&model), "--seed", seed, "-o", s(&w)]);
        fails_with(&o, "seeds are non-negative integers, 0 to 18446744073709551615");
        assert!(!stderr(&o).contains("-- -1"), "{}", stderr(&o));
    }
    let y = dir.join("y.npy");
    let o = nnc(&[
        "run",
        s(&model),
        "--weights",
        s(&weights),
        "--input",
        s(&x),
        "-o",
        s(&y),
        "--seed",
        "-7",
    ]);
    fails_with(
        &o,
        "invalid value '-7' for '--seed <SEED>': seeds are non-negative integers",
    );
    assert!(!w.exists() && !y.exists());
}
