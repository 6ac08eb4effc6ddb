//! The `nnc` command line: a thin shell over `nnc_driver::compile`.
//!
//! Exit codes: 0 on success, 1 on any user error (a bad program, a missing
//! file, a bad flag) and on internal errors; never a panic.

use clap::{Parser, Subcommand, ValueEnum};
use nnc_diag::{Diagnostic, SourceFile};
use nnc_driver::{compile, CompileError, Compiled, Observer, Options, PassError, PassInfo, Stage};
use nnc_ir::{Mode, Module};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// Compiling a large model makes millions of small allocations (names,
// shapes, spans); mimalloc takes a third off `check` of 100,000 layers
// compared with glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "A compiler for neural-network models written in the .nn language"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a model, reporting every problem with its place.
    Check {
        /// The model file (.nn).
        file: PathBuf,
    },
    /// Print a model's IR at a stage, or after chosen passes.
    Ir {
        /// The model file (.nn).
        file: PathBuf,
        /// Which function to build.
        #[arg(long, value_enum, default_value_t = ModeArg::Infer)]
        mode: ModeArg,
        /// How far to compile: the AST, the lowered IR, the optimized IR, or
        /// the optimized train function with its backward (`--mode train`).
        #[arg(long, value_enum, default_value_t = StageArg::Optimized)]
        stage: StageArg,
        /// The loss the grad stage differentiates (default: cross_entropy
        /// after a last softmax, bce after a last sigmoid, else mse).
        #[arg(long, value_enum)]
        loss: Option<LossArg>,
        /// Run these passes (comma-separated) instead of the mode's default pipeline.
        #[arg(long, value_delimiter = ',', value_name = "PASS,...")]
        passes: Option<Vec<String>>,
        /// Print the IR after this pass (repeatable) instead of the final IR.
        #[arg(long, value_name = "PASS")]
        after: Vec<String>,
        /// Print the IR after every pass.
        #[arg(long)]
        after_all: bool,
        /// Print the IR after every pass that changed it.
        #[arg(long)]
        after_change: bool,
    },
    /// List the passes and each mode's default pipeline.
    Passes,
    /// Draw every parameter from its declared initialiser and write them.
    Init {
        /// The model file (.nn).
        file: PathBuf,
        /// The seed: the same seed gives the same bytes on every machine.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = parse_seed)]
        seed: u64,
        /// Where to write the weights (.safetensors); `-` prints them.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Run a model on an array of inputs.
    Run {
        /// The model file (.nn).
        file: PathBuf,
        /// The weights (.safetensors), e.g. from `nnc init`.
        #[arg(long)]
        weights: PathBuf,
        /// The inputs: an f32 .npy array of shape [N, ...input shape].
        #[arg(long)]
        input: PathBuf,
        /// Where to write the outputs (.npy); `-` prints them.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Inference (running statistics, no dropout) or the training forward pass.
        #[arg(long, value_enum, default_value_t = ModeArg::Infer)]
        mode: ModeArg,
        /// The seed of dropout masks and RReLU slopes in train mode.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = parse_seed)]
        seed: u64,
        /// Run the lowered IR, without the optimisation passes.
        #[arg(long)]
        no_opt: bool,
        /// Threads, at least 1 (default: all cores; more than the cores is
        /// capped to them, with a warning).
        #[arg(long, allow_hyphen_values = true, value_parser = parse_threads)]
        threads: Option<usize>,
    },
    /// Generate Rust source for the inference function (a struct named after
    /// the model); with `--train`, also the training step (`<Model>Train`).
    Build {
        /// The model file (.nn).
        file: PathBuf,
        /// Where to write the source (.rs); `-` prints it.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Fold these weights (.safetensors) now and embed them: the folded
        /// tensors go to `<output>.embedded.safetensors`, read by `Model::embedded()`.
        #[arg(long, value_name = "WEIGHTS")]
        embed: Option<PathBuf>,
        /// Also generate `<Model>Train` and `<Model>Grads`: one training
        /// step's forward and backward (`grad_into`).
        #[arg(long)]
        train: bool,
        /// The loss `--train` differentiates (default: cross_entropy after a
        /// last softmax, bce after a last sigmoid, else mse).
        #[arg(long, value_enum, requires = "train")]
        loss: Option<LossArg>,
    },
    /// One training-mode forward and backward on a batch: the loss and the
    /// gradient of every trainable parameter, under its own name.
    Grad {
        /// The model file (.nn).
        file: PathBuf,
        /// The weights (.safetensors), e.g. from `nnc init`.
        #[arg(long)]
        weights: PathBuf,
        /// The inputs: an f32 .npy array of shape [N, ...input shape].
        #[arg(long)]
        input: PathBuf,
        /// The targets (.npy): class indices [N] (int32 or int64) for
        /// cross_entropy; f32 of the output's shape [N, ...] for mse and bce.
        #[arg(long)]
        target: PathBuf,
        /// The loss (default: cross_entropy after a last softmax, bce after
        /// a last sigmoid, else mse).
        #[arg(long, value_enum)]
        loss: Option<LossArg>,
        /// The seed of dropout masks and RReLU slopes.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true, value_parser = parse_seed)]
        seed: u64,
        /// Threads, at least 1 (default: all cores, capped to them).
        #[arg(long, allow_hyphen_values = true, value_parser = parse_threads)]
        threads: Option<usize>,
        /// Where to write the gradients and the loss (.safetensors); `-` prints them.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Export the inference graph to ONNX, parameters as initializers.
    Export {
        /// The model file (.nn).
        file: PathBuf,
        /// The weights (.safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// Where to write the model (.onnx); `-` prints it.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Train,
    Infer,
}

#[derive(Clone, Copy, ValueEnum)]
enum StageArg {
    Ast,
    Lowered,
    Optimized,
    Grad,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    #[value(name = "cross_entropy")]
    CrossEntropy,
    Mse,
    Bce,
}

impl LossArg {
    fn loss(self) -> nnc_driver::Loss {
        match self {
            LossArg::CrossEntropy => nnc_driver::Loss::CrossEntropy { label_smoothing: 0.0 },
            LossArg::Mse => nnc_driver::Loss::Mse,
            LossArg::Bce => nnc_driver::Loss::Bce,
        }
    }
}

mod build;
mod grad;
mod output;
mod run;

/// The largest program file read: far beyond any real model (the bundled
/// ones are under 2 KB), and a bound for `/dev/zero` given as a program.
const MAX_PROGRAM_BYTES: u64 = 16 << 20;

/// `--seed`: any whole number from 0 to 2^64 − 1 (clap's own hint for
/// `-1` would suggest `-- -1`, which is no better).
fn parse_seed(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("seeds are non-negative integers, 0 to {}", u64::MAX))
}

/// `--threads`: at least 1. An upper bound is applied at run time
/// (`run::thread_count`), where the cores are known.
fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 thread is needed".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("the thread count is a whole number, at least 1".into()),
    }
}

/// A failure already worth one line to the user (diagnostics are printed
/// before it is returned).
pub(crate) struct Failure(String);

/// Dumps the IR after the passes the user asked for.
struct Dumps<'a> {
    mode: Mode,
    after: &'a [String],
    all: bool,
    change: bool,
    text: String,
}

impl Observer for Dumps<'_> {
    fn after_pass(&mut self, pass: &PassInfo, changed: bool, module: &Module) {
        let wanted = self.all || (self.change && changed) || self.after.iter().any(|a| a == pass.name);
        if !wanted {
            return;
        }
        let note = if changed { "" } else { " (unchanged)" };
        self.text.push_str(&format!(
            "// nnc ir · {} · {} · after {}{note}\n",
            module.name, self.mode, pass.name
        ));
        self.text.push_str(&nnc_ir::text::print_module(module));
        self.text.push('\n');
    }
}

/// A file size limit (`ulimit -f`) makes the kernel send SIGXFSZ to a write
/// past it, and that signal's default action kills the process mid-write,
/// leaving its temporary behind. Ignored, the write fails with EFBIG
/// instead, and that is an ordinary write error: the temporary is removed,
/// the old output kept, and the message names the file (as Rust's runtime
/// does for SIGPIPE).
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread
    // starts, installs no handler and touches no memory.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    ignore_file_size_signal();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // A flag problem is a user error: exit 1, not clap's 2.
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(help_or_version) => {
            return match to_stdout(help_or_version.render().to_string().as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(Failure(message)) => {
                    report(&message);
                    ExitCode::from(1)
                }
            };
        }
    };
    if matches!(
        cli.command,
        Command::Init { .. }
            | Command::Run { .. }
            | Command::Grad { .. }
            | Command::Build { .. }
            | Command::Export { .. }
    ) {
        output::clean_up_on_interrupt();
    }
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Ir {
            file,
            mode,
            stage,
            loss,
            passes,
            after,
            after_all,
            after_change,
        } => {
            let mode = match mode {
                ModeArg::Train => Mode::Train,
                ModeArg::Infer => Mode::Infer,
            };
            let stage = match stage {
                StageArg::Ast => Stage::Ast,
                StageArg::Lowered => Stage::Lowered,
                StageArg::Optimized => Stage::Optimized,
                StageArg::Grad => Stage::Grad,
            };
            let dumps = Dumping {
                after,
                all: after_all,
                change: after_change,
            };
            ir(&file, mode, stage, loss.map(LossArg::loss), passes, &dumps)
        }
        Command::Passes => Ok(passes_table()),
        Command::Init { file, seed, output } => run::init(&file, seed, &output),
        Command::Run {
            file,
            weights,
            input,
            output,
            mode,
            seed,
            no_opt,
            threads,
        } => {
            let mode = match mode {
                ModeArg::Train => Mode::Train,
                ModeArg::Infer => Mode::Infer,
            };
            run::run(&file, &weights, &input, &output, mode, seed, no_opt, threads)
        }
        Command::Grad {
            file,
            weights,
            input,
            target,
            loss,
            seed,
            threads,
            output,
        } => {
            let files = grad::Files {
                model: &file,
                weights: &weights,
                input: &input,
                target: &target,
                output: &output,
            };
            grad::grad(&files, loss.map(LossArg::loss), seed, threads)
        }
        Command::Export { file, weights, output } => run::export(&file, &weights, &output),
        Command::Build {
            file,
            output,
            embed,
            train,
            loss,
        } => build::build(&file, &output, embed.as_deref(), train, loss.map(LossArg::loss)),
    };
    match result.and_then(|text| to_stdout(text.as_bytes())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            report(&message);
            ExitCode::from(1)
        }
    }
}

/// Writes what a command prints. A reader that closed the pipe early
/// (`nnc ir m.nn | head`) wanted no more: that ends quietly, with success.
/// Any other failure (`> /dev/full`) is an error: the output was lost.
pub(crate) fn to_stdout(bytes: &[u8]) -> Result<(), Failure> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure(format!("error: cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// One line to standard error. If that fails there is nowhere left to say
/// so (and `eprintln!` would panic): the exit code still tells.
pub(crate) fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", printable(line));
}

/// A message with its control characters written as escapes (`\u{1b}`).
/// They come from the user's data, a file name above all (`nnc check
/// $'x\e[31m.nn'`), and printed raw they would drive the terminal: colour
/// or clear it, hide text, reorder it (the bidirectional overrides). Line
/// breaks and tabs stay, since some messages (an IR dump) span lines.
fn printable(line: &str) -> std::borrow::Cow<'_, str> {
    let hostile = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !line.contains(hostile) {
        return line.into();
    }
    line.chars()
        .map(|c| {
            if hostile(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

pub(crate) fn read_source(file: &Path) -> Result<SourceFile, Failure> {
    let bytes = nnc_runtime::io::input::read_capped(file, MAX_PROGRAM_BYTES).map_err(|e| match e {
        nnc_runtime::Error::TooLarge { what, .. } => Failure(format!(
            "error: {what} is larger than {} MiB; a program file is never that long (is it a device?)",
            MAX_PROGRAM_BYTES >> 20
        )),
        other => Failure(format!("error: {other}")),
    })?;
    match String::from_utf8(bytes) {
        // The name heads every diagnostic, which is not printed by `report`.
        // A leading byte-order mark (some editors save one) is not part of
        // the program, as for rustc; editors do not show it, so columns
        // count from after it.
        Ok(text) => Ok(SourceFile::new(
            printable(&file.display().to_string()).into_owned(),
            text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text),
        )),
        Err(e) => Err(Failure(format!(
            "error: {} is not UTF-8 text (invalid byte at offset {})",
            file.display(),
            e.utf8_error().valid_up_to()
        ))),
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic], source: &SourceFile) {
    if diagnostics.is_empty() {
        return;
    }
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = nnc_diag::emit(&mut std::io::stderr().lock(), diagnostics, source, color);
}

/// Compiles, printing warnings or diagnostics; a failure carries the
/// closing line.
pub(crate) fn run_compile(
    source: &SourceFile,
    options: &Options,
    observer: &mut dyn Observer,
) -> Result<Compiled, Failure> {
    match compile(source, options, observer) {
        Ok(compiled) => {
            print_diagnostics(&compiled.warnings, source);
            Ok(compiled)
        }
        Err(CompileError::Program(diagnostics)) => {
            print_diagnostics(&diagnostics, source);
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            let plural = if errors == 1 { "" } else { "s" };
            Err(Failure(format!("error: {} has {errors} error{plural}", source.name())))
        }
        Err(CompileError::Pass(e @ PassError::VerifyFailed { .. })) => {
            Err(Failure(format!("internal error (a bug in nnc, please report it): {e}")))
        }
        Err(CompileError::Pass(e)) => Err(Failure(format!("error: {e}"))),
        Err(CompileError::Grad(e)) => Err(Failure(format!("error: {}: {e}", source.name()))),
    }
}

fn check(file: &Path) -> Result<String, Failure> {
    let source = read_source(file)?;
    let options = Options {
        modes: Mode::ALL.to_vec(),
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let compiled = run_compile(&source, &options, &mut nnc_driver::Quiet)?;
    let Some(module) = compiled.module else {
        return Ok(String::new());
    };
    Ok(summary(&module))
}

/// `SeedMlp: ok · f32[N,800] → f32[N,300] · 5,210,300 parameters in 20 tensors`.
fn summary(module: &Module) -> String {
    let stored: Vec<_> = module.params.iter().filter(|p| !p.is_derived()).collect();
    let count: usize = stored.iter().map(|p| p.shape.iter().product::<usize>()).sum();
    let io = module
        .function(Mode::Infer)
        .map(|f| format!(" · {} → {}", f.value_type(f.input), f.value_type(f.output)));
    let mut out = format!(
        "{}: ok{} · {} parameters in {} tensors\n",
        module.name,
        io.unwrap_or_default(),
        group_thousands(count),
        stored.len()
    );
    // What `nnc run` will allocate: the weights as laid out for the
    // kernels, the planned buffers and the largest op's scratch.
    let needs = |batch| nnc_interp::Footprint::run(module, Mode::Infer, batch, 1).map(|f| f.total);
    if let (Ok(one), Ok(many)) = (needs(1), needs(64)) {
        out.push_str(&format!(
            "  inference memory: {one} at batch 1, {many} at batch 64 (one thread)\n"
        ));
    }
    out
}

fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `nnc ir`'s `--after`, `--after-all` and `--after-change`.
struct Dumping {
    after: Vec<String>,
    all: bool,
    change: bool,
}

fn ir(
    file: &Path,
    mode: Mode,
    stage: Stage,
    loss: Option<nnc_driver::Loss>,
    passes: Option<Vec<String>>,
    dumping: &Dumping,
) -> Result<String, Failure> {
    let (after, after_all, after_change) = (&dumping.after, dumping.all, dumping.change);
    let dumping = !after.is_empty() || after_all || after_change;
    let optimizing = matches!(stage, Stage::Optimized | Stage::Grad);
    if dumping && !optimizing {
        return Err(Failure(
            "error: --after, --after-all and --after-change need --stage optimized or grad".into(),
        ));
    }
    if passes.is_some() && !optimizing {
        return Err(Failure("error: --passes needs --stage optimized or grad".into()));
    }
    if stage == Stage::Grad && mode != Mode::Train {
        return Err(Failure(
            "error: --stage grad differentiates the train function: add --mode train".into(),
        ));
    }
    if loss.is_some() && stage != Stage::Grad {
        return Err(Failure("error: --loss needs --stage grad".into()));
    }
    let mut pipeline: Vec<String> = match &passes {
        Some(list) => list.clone(),
        None => nnc_passes::pipeline(mode).iter().map(|s| s.to_string()).collect(),
    };
    if stage == Stage::Grad {
        pipeline.extend(nnc_passes::backward_pipeline().iter().map(|s| s.to_string()));
    }
    for name in after {
        if nnc_passes::lookup(name).is_none() {
            let known: Vec<&str> = nnc_passes::PASSES.iter().map(|p| p.name).collect();
            return Err(Failure(format!(
                "error: --after {name}: no such pass (known: {})",
                known.join(", ")
            )));
        }
        if !pipeline.contains(name) {
            return Err(Failure(format!(
                "error: --after {name}: that pass is not in the {mode} pipeline ({}); add it with --passes",
                pipeline.join(", ")
            )));
        }
    }
    let source = read_source(file)?;
    let options = Options {
        modes: vec![mode],
        stage,
        passes,
        loss,
    };
    let mut dumps = Dumps {
        mode,
        after,
        all: after_all,
        change: after_change,
        text: String::new(),
    };
    let compiled = run_compile(&source, &options, &mut dumps)?;
    if dumping {
        return Ok(dumps.text);
    }
    let stage_name = match stage {
        Stage::Ast => "ast",
        Stage::Lowered => "lowered",
        Stage::Optimized => "optimized",
        Stage::Grad => "grad",
    };
    let banner = format!("// nnc ir · {} · {mode} · {stage_name}\n", compiled.ast.name.name);
    match compiled.module {
        Some(module) => Ok(banner + &nnc_ir::text::print_module(&module)),
        None => Ok(banner + &nnc_syntax::dump(&compiled.ast, &source)),
    }
}

fn passes_table() -> String {
    let mut out = String::from("passes:\n");
    let width = nnc_passes::PASSES.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for pass in nnc_passes::PASSES {
        let modes: Vec<&str> = pass.modes.iter().map(|m| m.name()).collect();
        out.push_str(&format!(
            "  {:width$}  [{}]  {}\n",
            pass.name,
            modes.join(", "),
            pass.summary
        ));
    }
    out.push_str("\ndefault pipelines:\n");
    for mode in Mode::ALL {
        out.push_str(&format!("  {mode}: {}\n", nnc_passes::pipeline(mode).join(", ")));
    }
    out.push_str(&format!(
        "  backward (after the grad stage): {}\n",
        nnc_passes::backward_pipeline().join(", ")
    ));
    out
}
