//! The `nnc` binary as a user runs it: exit codes (0 or 1, never clap's 2
//! or a panic's 101), where output goes, and what the flags do.
//! (These live in `nnc-cli` because Cargo sets `CARGO_BIN_EXE_nnc` only for
//! the package that owns the binary.)

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::{nnc, root, stderr, stdout};

#[test]
fn check_accepts_every_model() {
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("models")).unwrap() {
        let path = entry.unwrap().path();
        let out = nnc(&["check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", path.display(), stderr(&out));
        assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
        n += 1;
    }
    assert!(n >= 12);
}

#[test]
fn check_summarises_the_model() {
    let out = nnc(&["check", "models/seed_relu_he.nn"]);
    let text = stdout(&out);
    // 800·750 + 750 + ... + 350·300 + 300 weights and biases.
    let sizes: Vec<usize> = (0..11).map(|i| 800 - 50 * i).collect();
    let count: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    let grouped = format!("{},{:03},{:03}", count / 1_000_000, count / 1000 % 1000, count % 1000);
    assert!(text.contains(&grouped), "{text} lacks {grouped}");
    assert!(text.contains("f32[N,800] → f32[N,300]"), "{text}");
}

/// The memory line: at least the weights as laid out (the seed MLP's
/// 3.2 M floats, packed once) and one batch of its widest activation,
/// and more at batch 64 than at batch 1 for a CNN, whose buffers grow
/// with the batch.
#[test]
fn check_reports_the_memory_a_forward_needs() {
    let mib = |text: &str, at: &str| -> f64 {
        let line = text.lines().find(|l| l.contains("inference memory:")).unwrap();
        let part = line.split(at).next().unwrap().rsplit(", ").next().unwrap();
        let part = part.trim_start_matches("  inference memory: ");
        let (value, unit) = part.trim().split_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        match unit {
            "KiB" => value / 1024.0,
            "MiB" => value,
            "GiB" => value * 1024.0,
            _ => value / 1024.0 / 1024.0,
        }
    };
    let mlp = stdout(&nnc(&["check", "models/seed_relu_he.nn"]));
    let params = (0..10).map(|i| (800 - 50 * i) * (750 - 50 * i)).sum::<usize>() as f64;
    // The interpreter's copy and the packed copy of every weight.
    assert!(mlp_weights_fit(mib(&mlp, " at batch 1"), params), "{mlp}");
    let cnn = stdout(&nnc(&["check", "models/digits_cnn.nn"]));
    assert!(mib(&cnn, " at batch 64") > mib(&cnn, " at batch 1"), "{cnn}");
}

/// (The line rounds to a tenth of a MiB.)
fn mlp_weights_fit(mib: f64, params: f64) -> bool {
    (mib + 0.05) * 1024.0 * 1024.0 >= 2.0 * 4.0 * params
}

#[test]
fn check_rejects_a_bad_program_with_its_position() {
    let out = nnc(&["check", "tests/errors/size_mismatch.nn"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("tests/errors/size_mismatch.nn:5:11"), "{err}");
    assert!(err.contains("dense 800 -> 750"), "{err}");
    assert!(err.contains("the previous layer yields 700 features"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn user_errors_exit_with_1() {
    let cases: &[&[&str]] = &[
        &["check", "no/such/file.nn"],
        &["check", "models"],
        &["check"],
        &["frobnicate"],
        &["ir", "models/seed_relu_he.nn", "--mode", "sideways"],
        &["ir", "models/seed_relu_he.nn", "--stage", "assembly"],
        &[
            "ir",
            "models/seed_relu_he.nn",
            "--passes",
            "fold-batchnorm,constant-fold",
        ],
        &["ir", "models/seed_relu_he.nn", "--after", "constant-fold"],
        &[
            "ir",
            "models/seed_relu_he.nn",
            "--mode",
            "train",
            "--passes",
            "eliminate-dropout",
        ],
        &[
            "ir",
            "models/seed_relu_he.nn",
            "--mode",
            "train",
            "--after",
            "fold-batchnorm",
        ],
        &["ir", "models/seed_relu_he.nn", "--stage", "lowered", "--after", "dce"],
    ];
    for args in cases {
        let out = nnc(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?} said nothing");
    }
}

#[test]
fn an_unknown_pass_lists_the_known_ones() {
    let out = nnc(&["ir", "models/seed_relu_he.nn", "--after", "fold-bn"]);
    assert!(stderr(&out).contains("fold-batchnorm"), "{}", stderr(&out));
}

#[test]
fn non_utf8_input_is_a_clean_error() {
    let dir = std::env::temp_dir().join(format!("nnc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("binary.nn");
    std::fs::write(&path, [0x6d, 0xff, 0xfe, 0x00]).unwrap();
    let out = nnc(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not UTF-8"), "{}", stderr(&out));
}

#[test]
fn help_and_version_succeed() {
    assert_eq!(nnc(&["--help"]).status.code(), Some(0));
    assert_eq!(nnc(&["--version"]).status.code(), Some(0));
    assert!(stdout(&nnc(&["ir", "--help"])).contains("--after"));
}

#[test]
fn ir_in_infer_mode_has_folded_batch_norm_and_no_dropout() {
    let out = nnc(&["ir", "models/seed_elu_bn_dropout.nn", "--mode", "infer"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("// nnc ir · SeedEluBn · infer · optimized\n"),
        "{text}"
    );
    assert!(!text.contains("batch_norm") && !text.contains("dropout"), "{text}");
    assert!(
        text.contains("@layer0.weight': f32[750,800] weight = derive scale_rows(@layer0.weight"),
        "{text}"
    );
    assert!(text.contains("epilogue(elu alpha=1)"), "{text}");
}

#[test]
fn ir_stages_and_modes() {
    let lowered = stdout(&nnc(&["ir", "models/seed_elu_bn_dropout.nn", "--stage", "lowered"]));
    assert!(
        lowered.contains("batch_norm[layer0]") && lowered.contains("dropout[layer0]"),
        "{lowered}"
    );
    let train = stdout(&nnc(&["ir", "models/seed_elu_bn_dropout.nn", "--mode", "train"]));
    assert!(
        train.contains("func @train(") && train.contains("batch_norm[layer9]"),
        "{train}"
    );
    let ast = stdout(&nnc(&["ir", "models/seed_elu_bn_dropout.nn", "--stage", "ast"]));
    assert!(
        ast.contains("dense 800 -> 750 @5:5") && ast.contains("norm=batch"),
        "{ast}"
    );
}

#[test]
fn ir_after_a_pass_dumps_under_a_banner() {
    let out = nnc(&["ir", "models/seed_elu_bn_dropout.nn", "--after", "eliminate-dropout"]);
    let text = stdout(&out);
    assert!(
        text.starts_with("// nnc ir · SeedEluBn · infer · after eliminate-dropout\n"),
        "{text}"
    );
    assert!(!text.contains("dropout[") && text.contains("batch_norm["), "{text}");
    let all = stdout(&nnc(&["ir", "models/seed_elu_bn_dropout.nn", "--after-all"]));
    assert_eq!(
        all.matches("// nnc ir · SeedEluBn · infer · after ").count(),
        7,
        "{all}"
    );
    let chosen = stdout(&nnc(&[
        "ir",
        "models/seed_elu_bn_dropout.nn",
        "--passes",
        "eliminate-dropout,dce",
        "--after-change",
    ]));
    assert_eq!(
        chosen.matches("// nnc ir").count(),
        1,
        "dce changes nothing here: {chosen}"
    );
}

#[test]
fn passes_lists_every_pass_and_the_pipelines() {
    let text = stdout(&nnc(&["passes"]));
    for name in [
        "eliminate-dropout",
        "fold-batchnorm",
        "fuse-activation",
        "fuse-residual",
        "fuse-pool",
        "drop-redundant-bias",
        "dce",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(
        text.contains(
            "infer: eliminate-dropout, fold-batchnorm, fuse-activation, fuse-residual, fuse-activation, fuse-pool, dce"
        ),
        "{text}"
    );
}

#[test]
fn ir_grad_stage_prints_the_backward_and_what_is_saved() {
    let out = nnc(&["ir", "models/digits_mlp.nn", "--mode", "train", "--stage", "grad"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("// nnc ir · DigitsMlp · train · grad"), "{text}");
    assert!(
        text.contains("func @backward(target: class[N] < 10) loss=cross_entropy {"),
        "{text}"
    );
    assert!(text.contains(" saving %0, "), "{text}");
    assert!(text.contains("stats(%"), "{text}");
    assert!(text.contains("mask(%"), "{text}");
    // A named loss; the banner of a backward pass with --after.
    let mse = nnc(&[
        "ir",
        "models/digits_mlp.nn",
        "--mode",
        "train",
        "--stage",
        "grad",
        "--loss",
        "mse",
    ]);
    assert!(stdout(&mse).contains("loss=mse"), "{}", stderr(&mse));
    let after = nnc(&[
        "ir",
        "models/digits_mlp.nn",
        "--mode",
        "train",
        "--stage",
        "grad",
        "--after",
        "dce-backward",
    ]);
    assert!(
        stdout(&after).starts_with("// nnc ir · DigitsMlp · train · after dce-backward"),
        "{}",
        stderr(&after)
    );
    // What does not fit: grad without train mode, --loss without grad.
    for (args, needle) in [
        (
            vec!["ir", "models/digits_mlp.nn", "--stage", "grad"],
            "add --mode train",
        ),
        (
            vec!["ir", "models/digits_mlp.nn", "--loss", "mse"],
            "--loss needs --stage grad",
        ),
    ] {
        let out = nnc(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}
