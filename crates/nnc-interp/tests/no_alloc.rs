//! Once buffers are planned for a batch size and thread count, a forward
//! pass allocates nothing, and neither does a training step's forward and
//! backward: a counting global allocator watches a second run of every
//! bundled model (every kind of op) in both modes, with one and two
//! threads, and a second `Gradients::run`.
//!
//! The count is the process's, so this test runs without libtest's harness
//! (`harness = false`): the harness's threads allocate too, and its notice
//! of a test running past 60 seconds (a debug build on a slow machine) fell
//! inside a measured run about every other time.

#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::{init_weights, Interpreter};
use nnc_interp::{Gradients, Targets};
use nnc_ir::grad::Target;
use nnc_ir::Mode;
use nnc_runtime::kernels::dense::{products_allocate_nothing, DenseWeight};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn interpreter(path: &str, mode: Mode) -> Interpreter {
    let text = std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    interpreter_of(path, &text, mode)
}

fn interpreter_of(path: &str, text: &str, mode: Mode) -> Interpreter {
    let source = SourceFile::new(path, text);
    let options = Options {
        modes: vec![mode],
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    let module = compile(&source, &options, &mut Quiet).unwrap().module.unwrap();
    let weights = init_weights(&module, 0);
    Interpreter::new(&module, mode, &weights).unwrap()
}

fn main() {
    a_planned_forward_pass_allocates_nothing();
    println!("a planned forward pass allocates nothing: ok");
    passes_in_lanes_allocate_nothing();
    println!("an inference in lanes allocates nothing: ok");
    a_planned_training_step_allocates_nothing();
    println!("a planned training step allocates nothing: ok");
}

fn a_planned_forward_pass_allocates_nothing() {
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let mut models: Vec<String> = std::fs::read_dir(format!("{root}/models"))
        .unwrap()
        .map(|e| format!("models/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".nn"))
        .collect();
    models.sort();
    assert!(models.len() >= 10, "{models:?}");
    for path in &models {
        for mode in [Mode::Infer, Mode::Train] {
            let mut it = interpreter(path, mode);
            // Without AVX2, products run on matrixmultiply, which
            // allocates its packing buffers per product.
            let panels = DenseWeight::has_panels() || products_allocate_nothing();
            if !products_allocate_nothing() && path.contains("cnn") {
                eprintln!("no AVX2 here: {path} not checked");
                continue;
            }
            let sizes: &[(usize, usize)] = if panels {
                &[(1, 1), (3, 2), (64, 2)]
            } else {
                &[(1, 1), (3, 2)]
            };
            for &(batch, threads) in sizes {
                let (allocated, y) = later_runs_allocations(&mut it, batch, threads);
                assert_eq!(allocated, 0, "{path} {mode:?} batch {batch} threads {threads}");
                assert!(y.iter().all(|v| v.is_finite()), "{path} {mode:?}");
            }
        }
    }
}

/// Allocations during runs 2–4 of `batch` samples on `threads` threads,
/// after a first that plans the buffers, and the last run's output.
/// Several runs: which team thread takes which part changes from run to
/// run, and a buffer a thread grows on its first part of some kernel shows
/// on a later one.
fn later_runs_allocations(it: &mut Interpreter, batch: usize, threads: usize) -> (usize, Vec<f32>) {
    let per_sample: usize = it.input_shape().iter().product();
    let x: Vec<f32> = (0..batch * per_sample).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut y = vec![0.0; batch * it.output_shape().iter().product::<usize>()];
    it.run_into(&x, batch, threads, 1, &mut y).unwrap();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for step in 2..5 {
        it.run_into(&x, batch, threads, step, &mut y).unwrap();
    }
    (ALLOCATIONS.load(Ordering::SeqCst) - before, y)
}

/// A model of 64 × 64 maps, whose inference on two threads goes a sample
/// at a time through every op in a lane per thread (no bundled model has
/// samples that large).
fn passes_in_lanes_allocate_nothing() {
    if !products_allocate_nothing() {
        eprintln!("no AVX2 here: matrixmultiply allocates per product; not checked");
        return;
    }
    let large = "model Large { input [3, 64, 64] conv 3 -> 16 k=3 pad=same act=relu norm=batch \
        residual { conv 16 -> 16 k=3 pad=same norm=batch } act relu maxpool k=2 globalavgpool dense 16 -> 4 act=softmax }";
    let mut it = interpreter_of("large.nn", large, Mode::Infer);
    for (batch, threads) in [(1, 2), (5, 2), (2, 2), (3, 1)] {
        let (allocated, _) = later_runs_allocations(&mut it, batch, threads);
        assert_eq!(allocated, 0, "batch {batch} threads {threads}");
    }
}

fn a_planned_training_step_allocates_nothing() {
    if !products_allocate_nothing() {
        eprintln!("no AVX2 here: matrixmultiply allocates per product; not checked");
        return;
    }
    let root = format!("{}/../..", env!("CARGO_MANIFEST_DIR"));
    let mut models: Vec<String> = std::fs::read_dir(format!("{root}/models"))
        .unwrap()
        .map(|e| format!("models/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    models.push("tests/train/every_op.nn".into());
    models.sort();
    for path in &models {
        let text = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
        let options = Options {
            modes: vec![Mode::Train],
            stage: Stage::Grad,
            passes: None,
            loss: None,
        };
        let module = compile(&SourceFile::new(path, &text), &options, &mut Quiet)
            .unwrap()
            .module
            .unwrap();
        let train = module.function(Mode::Train).unwrap();
        let (per_sample, out_len) = (
            train.value_type(train.input).numel(),
            train.value_type(train.output).numel(),
        );
        let classes = matches!(module.backward.as_ref().unwrap().target, Target::Classes { .. });
        let mut g = Gradients::new(&module, &init_weights(&module, 0)).unwrap();
        for (batch, threads) in [(3, 1), (16, 2)] {
            let x: Vec<f32> = (0..batch * per_sample).map(|i| (i % 7) as f32 * 0.1).collect();
            let labels: Vec<u32> = (0..batch as u32).map(|i| i % out_len as u32).collect();
            let values = vec![0.5; batch * out_len];
            let targets = if classes {
                Targets::Classes(&labels)
            } else {
                Targets::Values(&values)
            };
            g.run(&x, batch, targets, threads, 1).unwrap();
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            let mut loss = 0.0;
            for step in 2..5 {
                loss = g.run(&x, batch, targets, threads, step).unwrap();
            }
            let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
            assert_eq!(allocated, 0, "{path} batch {batch} threads {threads}");
            assert!(loss.is_finite(), "{path}");
        }
    }
}
