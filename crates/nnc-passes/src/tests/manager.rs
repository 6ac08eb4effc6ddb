use super::*;
use crate::registry::{lookup, pipeline, PassInfo, PASSES};
use crate::{run_passes, Observer, PassError};
use nnc_ir::Act;

/// Records each pass the manager reports.
#[derive(Default)]
struct Record(Vec<(&'static str, bool)>);

impl Observer for Record {
    fn after_pass(&mut self, pass: &PassInfo, changed: bool, _module: &Module) {
        self.0.push((pass.name, changed));
    }
}

fn mlp(mode: Mode) -> Module {
    let mut b = Build::new(mode, &[8]);
    let x = b.linear(b.input(), "layer0", 4, true);
    let x = b.bn(x, "layer0");
    let x = b.op(Op::Act(Act::Relu), &[x], "layer0");
    let x = b.op(Op::Dropout { p: 0.5 }, &[x], "layer0");
    b.linear(x, "layer1", 2, true);
    b.finish()
}

#[test]
fn registry_names_are_unique_kebab_case_and_pipelines_resolve() {
    for (i, p) in PASSES.iter().enumerate() {
        assert!(p.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{}", p.name);
        assert!(PASSES[..i].iter().all(|q| q.name != p.name));
        assert!(!p.summary.contains('\n'));
        assert_eq!(lookup(p.name).map(|q| q.name), Some(p.name));
    }
    for mode in Mode::ALL {
        for name in pipeline(mode) {
            assert!(lookup(name).unwrap().modes.contains(&mode), "{name} in {mode}");
        }
    }
    assert_eq!(
        pipeline(Mode::Infer),
        [
            "eliminate-dropout",
            "fold-batchnorm",
            "fuse-activation",
            "fuse-residual",
            "fuse-activation",
            "fuse-pool",
            "dce"
        ]
    );
    assert_eq!(pipeline(Mode::Train), ["drop-redundant-bias", "dce"]);
}

#[test]
fn runs_the_infer_pipeline_and_reports_each_pass() {
    let mut m = mlp(Mode::Infer);
    let mut record = Record::default();
    run_passes(&mut m, Mode::Infer, pipeline(Mode::Infer), &mut record).unwrap();
    assert_eq!(
        record.0,
        [
            ("eliminate-dropout", true),
            ("fold-batchnorm", true),
            ("fuse-activation", true),
            // An MLP has no residual sum, and nothing left to fuse after it.
            ("fuse-residual", false),
            ("fuse-activation", false),
            ("fuse-pool", false),
            // Nothing is dead: folded parameters still read the originals.
            ("dce", false)
        ]
    );
    assert_eq!(op_names(&m, Mode::Infer), ["linear", "linear"]);
}

#[test]
fn unknown_names_are_reported_before_anything_runs() {
    let mut m = mlp(Mode::Infer);
    let before = m.clone();
    let err = run_passes(&mut m, Mode::Infer, &["eliminate-dropout", "fold-bn"], &mut ()).unwrap_err();
    assert!(matches!(&err, PassError::UnknownPass { name, .. } if name == "fold-bn"));
    assert_eq!(m, before, "no pass ran");
    let message = err.to_string();
    assert!(message.contains("`fold-bn`"));
    assert!(PASSES.iter().all(|p| message.contains(p.name)), "{message}");
}

#[test]
fn a_pass_in_the_wrong_mode_is_reported() {
    let mut m = mlp(Mode::Train);
    let err = run_passes(&mut m, Mode::Train, &["dce", "fold-batchnorm"], &mut ()).unwrap_err();
    assert!(matches!(
        err,
        PassError::WrongMode {
            pass: "fold-batchnorm",
            mode: Mode::Train
        }
    ));
    assert_eq!(
        err.to_string(),
        "pass `fold-batchnorm` does not run in train mode; it runs in: infer"
    );
}

/// A pass that breaks the IR: it points the output at a value no op defines.
fn break_output(module: &mut Module, mode: Mode) -> bool {
    let f = module.function_mut(mode).unwrap();
    f.output = f.add_value(ValueType::new([3]));
    true
}

#[test]
fn a_pass_that_breaks_the_ir_is_named_with_the_ir_before_it() {
    let breaker = PassInfo {
        name: "break-output",
        summary: "test",
        modes: &[Mode::Infer],
        run: break_output,
    };
    let mut m = mlp(Mode::Infer);
    let before = nnc_ir::text::print_module(&m);
    let mut record = Record::default();
    let err = crate::manager::run_resolved(&mut m, Mode::Infer, &[lookup("dce").unwrap(), &breaker], &mut record)
        .unwrap_err();
    assert_eq!(
        record.0,
        [("dce", false)],
        "the observer hears only of passes that verified"
    );
    let PassError::VerifyFailed {
        pass,
        errors,
        ir_before,
        ir_after,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*pass, "break-output");
    assert!(!errors.is_empty());
    assert_eq!(*ir_before, before);
    assert!(ir_after.contains("// error:"), "{ir_after}");
    let message = err.to_string();
    assert!(
        message.starts_with("the IR is invalid after pass `break-output`"),
        "{message}"
    );
    assert!(message.contains(&before));
}

#[test]
fn verifying_once_at_the_end_still_names_the_pass_and_what_it_was_given() {
    let breaker = PassInfo {
        name: "break-output",
        summary: "test",
        modes: &[Mode::Infer],
        run: break_output,
    };
    let passes = [lookup("eliminate-dropout").unwrap(), &breaker, lookup("dce").unwrap()];
    let mut m = mlp(Mode::Infer);
    let mut given = m.clone();
    (passes[0].run)(&mut given, Mode::Infer);
    // `()` ignores the module, so only the end of the pipeline is verified.
    let err = crate::manager::run_resolved(&mut m, Mode::Infer, &passes, &mut ()).unwrap_err();
    let PassError::VerifyFailed { pass, ir_before, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*pass, "break-output");
    assert_eq!(*ir_before, nnc_ir::text::print_module(&given));
    // The same without a copy: the input is rebuilt for the report.
    let mut m = mlp(Mode::Infer);
    let steps: Vec<(Mode, &PassInfo)> = passes.iter().map(|p| (Mode::Infer, *p)).collect();
    let rebuild = || Some(mlp(Mode::Infer));
    let err = crate::manager::run_steps(&mut m, &steps, &mut (), Some(&rebuild)).unwrap_err();
    let PassError::VerifyFailed { pass, ir_before, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*pass, "break-output");
    assert_eq!(*ir_before, nnc_ir::text::print_module(&given));
}

#[test]
fn an_invalid_input_is_reported_before_any_pass() {
    let mut m = mlp(Mode::Infer);
    break_output(&mut m, Mode::Infer);
    let mut record = Record::default();
    let err = run_passes(&mut m, Mode::Infer, &["dce"], &mut record).unwrap_err();
    assert!(matches!(err, PassError::InvalidInput { .. }), "{err}");
    assert!(record.0.is_empty());
}

#[test]
fn an_invalid_input_is_told_from_a_broken_pass_when_verifying_only_at_the_end() {
    let broken = || {
        let mut m = mlp(Mode::Infer);
        break_output(&mut m, Mode::Infer);
        m
    };
    let mut m = broken();
    let err = run_passes(&mut m, Mode::Infer, &["eliminate-dropout", "dce"], &mut ()).unwrap_err();
    assert!(matches!(err, PassError::InvalidInput { .. }), "{err}");
    let passes = [lookup("eliminate-dropout").unwrap(), lookup("dce").unwrap()];
    let steps: Vec<(Mode, &PassInfo)> = passes.iter().map(|p| (Mode::Infer, *p)).collect();
    let rebuild = || Some(broken());
    let mut m = broken();
    let err = crate::manager::run_steps(&mut m, &steps, &mut (), Some(&rebuild)).unwrap_err();
    assert!(matches!(err, PassError::InvalidInput { .. }), "{err}");
}
