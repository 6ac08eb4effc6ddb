//! The generated training step allocates nothing once its workspace is
//! planned: a counting global allocator watches a second `grad_into` of a
//! CNN and of the model with every training op, on one and two threads.
//! (Where the CPU lacks AVX2, products run on matrixmultiply, which
//! allocates per product: not checked there.)

#![deny(warnings)]
#![allow(clippy::unwrap_used)]

use nnc::runtime::kernels::dense::products_allocate_nothing;
use nnc::runtime::kernels::loss::Targets;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

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

mod cnn {
    nnc::model!(train, file = "models/digits_cnn.nn");
}

mod every_op {
    nnc::model!(train, file = "tests/train/every_op.nn");
}

/// Allocations during the second of two steps, for `batch` and `threads`.
macro_rules! second_step_allocations {
    ($train:ty, $grads:ty, $batch:expr, $threads:expr) => {{
        let (batch, threads) = ($batch, $threads);
        let mut model = <$train>::init(3);
        let mut grads = <$grads>::new();
        let mut ws = <$train>::workspace(batch, threads).unwrap();
        let per_in: usize = <$train>::INPUT.iter().product();
        let per_out: usize = <$train>::OUTPUT.iter().product();
        let x: Vec<f32> = (0..batch * per_in).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % per_out as u32).collect();
        let mut out = vec![0.0; batch * per_out];
        model
            .grad_into(&x, batch, Targets::Classes(&labels), 1, &mut grads, &mut out, &mut ws)
            .unwrap();
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        let loss = model
            .grad_into(&x, batch, Targets::Classes(&labels), 2, &mut grads, &mut out, &mut ws)
            .unwrap();
        let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert!(loss.is_finite());
        allocated
    }};
}

#[test]
fn a_planned_generated_step_allocates_nothing() {
    if !products_allocate_nothing() {
        eprintln!("no AVX2 here: not checked");
        return;
    }
    for (batch, threads) in [(2, 1), (16, 2)] {
        let n = second_step_allocations!(cnn::DigitNetTrain, cnn::DigitNetGrads, batch, threads);
        assert_eq!(n, 0, "digits_cnn batch {batch} threads {threads}");
        let n = second_step_allocations!(every_op::EveryOpTrain, every_op::EveryOpGrads, batch, threads);
        assert_eq!(n, 0, "every_op batch {batch} threads {threads}");
    }
}
