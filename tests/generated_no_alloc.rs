//! The generated training step and forward pass allocate nothing once
//! their workspace is planned: a counting global allocator watches a
//! second `grad_into` of a CNN and of the model with every training op, and
//! a second `forward_into` of a CNN and of a model of large maps (which
//! goes in passes, on two threads in a lane per thread), on one and two
//! threads.
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

mod cnn_infer {
    nnc::model!(file = "models/digits_cnn.nn");
}

mod large {
    nnc::model! {
        model Large {
            input [3, 64, 64]
            conv 3 -> 16 k=3 pad=same act=relu norm=batch
            residual { conv 16 -> 16 k=3 pad=same norm=batch }
            act relu maxpool k=2 globalavgpool dense 16 -> 4 act=softmax
        }
    }
}

/// Allocations during the second of two forward passes from a workspace
/// of the model's own `workspace(batch, threads)`.
macro_rules! second_forward_allocations {
    ($model:ty, $batch:expr, $threads:expr) => {{
        let (batch, threads) = ($batch, $threads);
        let model = <$model>::init(3);
        let mut ws = <$model>::workspace(batch, threads).unwrap();
        let per_in: usize = <$model>::INPUT.iter().product();
        let per_out: usize = <$model>::OUTPUT.iter().product();
        let x: Vec<f32> = (0..batch * per_in).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
        let mut out = vec![0.0; batch * per_out];
        model.forward_into(&x, batch, &mut out, &mut ws);
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        model.forward_into(&x, batch, &mut out, &mut ws);
        let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert!(out.iter().all(|v| v.is_finite()));
        allocated
    }};
}

/// One test: the count is the process's, and tests run side by side.
#[test]
fn planned_generated_code_allocates_nothing() {
    a_planned_generated_forward_allocates_nothing();
    a_planned_generated_step_allocates_nothing();
}

fn a_planned_generated_forward_allocates_nothing() {
    if !products_allocate_nothing() {
        eprintln!("no AVX2 here: not checked");
        return;
    }
    for (batch, threads) in [(1, 1), (3, 1), (1, 2), (5, 2)] {
        let n = second_forward_allocations!(cnn_infer::DigitNet, batch, threads);
        assert_eq!(n, 0, "digits_cnn batch {batch} threads {threads}");
        let n = second_forward_allocations!(large::Large, batch, threads);
        assert_eq!(n, 0, "large maps batch {batch} threads {threads}");
    }
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
