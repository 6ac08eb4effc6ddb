//! A model from `nnc build --embed`: `digits_mlp.rs` beside this file is
//! generated source, and its weights (batch norms already folded) are
//! compiled into the binary from `digits_mlp.embedded.safetensors`, so the
//! program reads no file at run time. Regenerate both with
//!
//! ```sh
//! nnc init models/digits_mlp.nn --seed 1 -o /tmp/w.safetensors
//! nnc build models/digits_mlp.nn -o examples/embedded/digits_mlp.rs --embed /tmp/w.safetensors
//! ```
//!
//! Run: `cargo run --release --example embedded`.

#![deny(warnings)]

#[path = "../common/mod.rs"]
mod common;
#[rustfmt::skip] // generated: rebuilt by `nnc build`, not reformatted
mod digits_mlp;

use digits_mlp::DigitsMlp;

fn main() -> std::process::ExitCode {
    common::run(|| {
        let model = DigitsMlp::embedded().map_err(|e| e.to_string())?;
        let x = common::digits()?;
        // forward_into with a workspace planned for this batch allocates nothing.
        let batch = x.nrows();
        let mut ws = DigitsMlp::workspace(batch, 1).map_err(|e| e.to_string())?;
        let mut y = nnc::runtime::ndarray::Array2::<f32>::zeros((batch, DigitsMlp::OUTPUT[0]));
        if let (Some(input), Some(output)) = (x.as_slice(), y.as_slice_mut()) {
            model.forward_into(input, batch, output, &mut ws);
        }
        Ok(common::report(y.view()))
    })
}
