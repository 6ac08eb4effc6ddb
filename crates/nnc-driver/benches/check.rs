//! `nnc check`'s work (parse, lower both modes, run both pipelines with the
//! verifier) on generated models of 1,000, 10,000 and 100,000 layers: the
//! times should grow linearly (issue 11 measured 8.9 s for 10,000 layers
//! and over 25 minutes for 100,000 before the passes and the verifier
//! stopped scanning the function per op).

#![allow(clippy::panic)] // A benchmark that cannot set up has nothing to measure.

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_ir::Mode;

// The allocator `nnc check` runs with, so the times are the command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

/// `layers` statements cycling through what every pass rewrites: a dense
/// layer with batch norm, activation and dropout (folded, fused,
/// eliminated), a standalone norm after a dense (folded forward), and a
/// residual block (a value with two readers).
fn model(layers: usize) -> String {
    let mut text = String::from("model Wide {\n  input 16\n");
    let blocks = [
        "  dense 16 norm=batch act=relu dropout=0.1\n",
        "  dense 16\n",
        "  norm batch\n",
        "  residual { dense 16 act=tanh }\n",
    ];
    for i in 0..layers {
        text.push_str(blocks[i % blocks.len()]);
    }
    text.push_str("}\n");
    text
}

#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 3, sample_size = 1)]
fn check(bencher: divan::Bencher, layers: usize) {
    let source = SourceFile::new("wide.nn", model(layers));
    let options = Options {
        modes: Mode::ALL.to_vec(),
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    bencher.bench(|| {
        let Ok(compiled) = compile(&source, &options, &mut Quiet) else {
            panic!("the generated model compiles")
        };
        compiled
    });
}
