//! Once buffers are planned for a batch size and thread count, a forward
//! pass allocates nothing: a counting global allocator watches a second run
//! of every bundled model (every kind of op) in both modes, with one and
//! two threads.

#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_interp::{init_weights, Interpreter};
use nnc_ir::Mode;
use nnc_runtime::kernels::dense::DenseWeight;

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
    let source = SourceFile::new(path, &text);
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

#[test]
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
            let per_sample: usize = it.input_shape().iter().product();
            let out_len: usize = it.output_shape().iter().product();
            // Without AVX-512, convs and batches past the GEMV run on
            // matrixmultiply, which allocates its packing buffer per product.
            let panels = DenseWeight::has_panels();
            if !panels && path.contains("cnn") {
                eprintln!("no AVX-512 here: {path} not checked");
                continue;
            }
            let sizes: &[(usize, usize)] = if panels {
                &[(1, 1), (3, 2), (64, 2)]
            } else {
                &[(1, 1), (3, 2)]
            };
            for &(batch, threads) in sizes {
                let x: Vec<f32> = (0..batch * per_sample).map(|i| (i % 7) as f32 * 0.1).collect();
                let mut y = vec![0.0; batch * out_len];
                it.run_into(&x, batch, threads, 1, &mut y).unwrap();
                let before = ALLOCATIONS.load(Ordering::SeqCst);
                it.run_into(&x, batch, threads, 2, &mut y).unwrap();
                let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
                assert_eq!(allocated, 0, "{path} {mode:?} batch {batch} threads {threads}");
                assert!(y.iter().all(|v| v.is_finite()), "{path} {mode:?}");
            }
        }
    }
}
