//! The generated code's forward pass on the reference models of
//! `../shared/bench/peers.py` (the seed MLP with tanh, and with batch norm +
//! ELU), at its batch sizes and thread counts, through `nnc::model!`; the
//! medians compare with ONNX Runtime's in `bench/compare.py`.

#![allow(clippy::panic)] // A benchmark that cannot set up has nothing to measure.

mod seed_tanh {
    nnc::model!(file = "models/seed_tanh_xavier.nn");
}
mod seed_bn {
    nnc::model!(file = "models/seed_elu_bn_dropout.nn");
}

use nnc::runtime::Workspace;

fn main() {
    divan::main();
}

/// Times `forward_into` with a workspace planned for the batch: the
/// measured passes allocate nothing.
fn measure(
    bencher: divan::Bencher,
    batch: usize,
    threads: usize,
    forward: impl Fn(&[f32], usize, &mut [f32], &mut Workspace),
    outputs: usize,
) {
    let mut ws = match Workspace::new(threads) {
        Ok(ws) => ws,
        Err(e) => panic!("{e}"),
    };
    let x = vec![0.1f32; batch * 800];
    let mut y = vec![0.0f32; batch * outputs];
    forward(&x, batch, &mut y, &mut ws);
    bencher.bench_local(|| forward(divan::black_box(&x), batch, &mut y, &mut ws));
}

#[divan::bench(args = [1, 64, 2000], consts = [1, 2])]
fn seed_tanh_forward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    let model = seed_tanh::SeedTanhXavier::init(0);
    measure(
        bencher,
        batch,
        THREADS,
        |x, n, y, ws| model.forward_into(x, n, y, ws),
        300,
    );
}

#[divan::bench(args = [1, 64, 2000], consts = [1, 2])]
fn seed_bn_forward<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
    let model = seed_bn::SeedEluBn::init(0);
    measure(
        bencher,
        batch,
        THREADS,
        |x, n, y, ws| model.forward_into(x, n, y, ws),
        300,
    );
}

mod cifar_vgg {
    nnc::model!(file = "bench/models/cifar_vgg.nn");
}
mod resnet_mini {
    nnc::model!(file = "bench/models/resnet_mini.nn");
}
mod mobile_mini {
    nnc::model!(file = "bench/models/mobile_mini.nn");
}
mod digits_cnn {
    nnc::model!(file = "models/digits_cnn.nn");
}

/// The CNN rows of `bench/compare.py`: each model's forward on
/// `[batch, …input]` of 0.1, at batch 1 and 64.
macro_rules! cnn_benches {
    ($($bench:ident => $module:ident :: $model:ident),*) => {$(
        #[divan::bench(args = [1, 64], consts = [1, 2])]
        fn $bench<const THREADS: usize>(bencher: divan::Bencher, batch: usize) {
            let model = $module::$model::init(0);
            let (input, output) = (
                $module::$model::INPUT.iter().product::<usize>(),
                $module::$model::OUTPUT.iter().product::<usize>(),
            );
            let mut ws = match Workspace::new(THREADS) {
                Ok(ws) => ws,
                Err(e) => panic!("{e}"),
            };
            let x = vec![0.1f32; batch * input];
            let mut y = vec![0.0f32; batch * output];
            model.forward_into(&x, batch, &mut y, &mut ws);
            bencher.bench_local(|| model.forward_into(divan::black_box(&x), batch, &mut y, &mut ws));
        }
    )*};
}

cnn_benches!(
    cifar_vgg_forward => cifar_vgg::CifarVgg,
    resnet_mini_forward => resnet_mini::ResnetMini,
    mobile_mini_forward => mobile_mini::MobileMini,
    digits_cnn_forward => digits_cnn::DigitNet
);
