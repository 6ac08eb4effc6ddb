//! A model written inline with `nnc::model!`: the macro compiles it while
//! this file builds, into a struct with `init`, `forward` and friends.
//!
//! Run: `cargo run --release --example inline` (see the README to compare
//! its numbers with `nnc run`'s).

#![deny(warnings)]

#[path = "common/mod.rs"]
mod common;

// The same statements as models/digits_mlp.nn, so `nnc init --seed 1` on
// that file draws the weights `DigitsMlp::init(1)` does.
nnc::model! {
    model DigitsMlp {
        input 64
        dense 64 -> 128 act=relu norm=batch dropout=0.1
        dense 128 -> 64 act=relu norm=batch
        dense 64 -> 10 act=softmax
    }
}

fn main() -> std::process::ExitCode {
    common::run(|| {
        let x = common::digits()?;
        let model = DigitsMlp::init(1);
        println!("DigitsMlp: {:?} → {:?} per sample", DigitsMlp::INPUT, DigitsMlp::OUTPUT);
        Ok(common::report(model.forward(x.view()).view()))
    })
}
