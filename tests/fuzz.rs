//! Property tests: random and mutated programs go through parse, check,
//! lower and both pass pipelines without a panic, and whatever compiles
//! verifies and round-trips through the IR text. Bounded: `PROPTEST_CASES`
//! (default 256 per property) keeps CI short; raise it locally to dig.

use nnc_diag::SourceFile;
use nnc_driver::{compile, Options, Quiet, Stage};
use nnc_ir::Mode;
use proptest::prelude::*;

/// Compiles `text` in both modes; anything but a panic is fine, and a
/// success must verify and round-trip.
fn survives(text: &str) {
    let source = SourceFile::new("fuzz.nn", text);
    let options = Options {
        modes: Mode::ALL.to_vec(),
        stage: Stage::Optimized,
        passes: None,
        loss: None,
    };
    if let Ok(compiled) = compile(&source, &options, &mut Quiet) {
        let module = compiled.module.unwrap();
        nnc_ir::verify::verify(&module).unwrap();
        let printed = nnc_ir::text::print_module(&module);
        let reparsed = nnc_ir::text::parse_module(&printed).unwrap();
        assert_eq!(nnc_ir::text::print_module(&reparsed), printed);
    }
    // Rendering must not panic either, whatever the spans.
    if let Err(nnc_driver::CompileError::Program(d)) = compile(&source, &options, &mut Quiet) {
        let _ = nnc_diag::render_plain(&d, &source);
    }
}

fn models() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    texts.sort();
    texts
}

/// Words and symbols programs are made of, valid and not.
const TOKENS: &[&str] = &[
    "input",
    "dense",
    "conv",
    "maxpool",
    "avgpool",
    "globalavgpool",
    "flatten",
    "act",
    "norm",
    "dropout",
    "residual",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    "->",
    "=",
    "k",
    "stride",
    "pad",
    "dilation",
    "groups",
    "init",
    "gain",
    "bias",
    "bias_init",
    "act",
    "norm_pos",
    "name",
    "l1",
    "l2",
    "relu",
    "tanh",
    "softmax",
    "maxout",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "gelu",
    "batch",
    "layer",
    "instance",
    "group",
    "lrn",
    "same",
    "valid",
    "alpha",
    "dropblock",
    "dropconnect",
    "he",
    "xavier",
    "orthogonal",
    "normal",
    "uniform",
    "variance_scaling",
    "auto",
    "true",
    "false",
    "post",
    "0",
    "1",
    "2",
    "3",
    "4",
    "8",
    "16",
    "28",
    "0.5",
    "1.5",
    "-1",
    "1e-5",
    "1/8",
    "99999999999",
    "#",
    "//",
    "\n",
];

fn token_program() -> impl Strategy<Value = String> {
    let body = prop::collection::vec(prop::sample::select(TOKENS), 0..40);
    let input = prop::sample::select(&["input 8", "input [1, 8, 8]", "input [4, 6, 6]", "input 16", ""][..]);
    (input, body).prop_map(|(input, body)| format!("model F {{ {input} {} }}", body.join(" ")))
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, char),
    Duplicate(usize, usize),
    Token(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..12).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Mutation::Insert(at, c)),
        (any::<usize>(), 1usize..30).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        (any::<usize>(), prop::sample::select(TOKENS)).prop_map(|(at, t)| Mutation::Token(at, t)),
    ]
}

/// Applies a mutation at a char boundary derived from its position.
fn mutate(text: &str, m: &Mutation) -> String {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let at = |i: usize| bounds[i % bounds.len()];
    let mut out = text.to_string();
    match m {
        Mutation::Delete(i, len) => {
            let start = at(*i);
            let end = bounds.iter().copied().find(|b| *b >= start + len).unwrap_or(text.len());
            out.replace_range(start..end, "");
        }
        Mutation::Insert(i, c) => out.insert(at(*i), *c),
        Mutation::Duplicate(i, len) => {
            let start = at(*i);
            let end = bounds.iter().copied().find(|b| *b >= start + len).unwrap_or(text.len());
            let piece = text[start..end].to_string();
            out.insert_str(start, &piece);
        }
        Mutation::Token(i, t) => out.insert_str(at(*i), &format!(" {t} ")),
    }
    out
}

const ACTS: &[&str] = &[
    "relu",
    "tanh",
    "sigmoid",
    "softmax",
    "leaky_relu(0.1)",
    "prelu",
    "prelu(shared=true)",
    "rrelu",
    "elu",
    "selu",
    "softplus(2)",
    "gelu",
    "silu",
    "maxout(2)",
    "maxout(pieces=3)",
    "linear",
];
const NORMS: &[&str] = &[
    "batch",
    "layer",
    "instance",
    "group(groups=2)",
    "group(4)",
    "lrn",
    "lrn(3)",
    "none",
];
const DROPS: &[&str] = &[
    "0.5",
    "0",
    "alpha(0.1)",
    "dropconnect(0.2)",
    "dropblock(0.1, block=3)",
    "1",
];
const INITS: &[&str] = &[
    "auto",
    "he",
    "xavier",
    "lecun",
    "orthogonal",
    "zeros",
    "normal(0.1)",
    "variance_scaling(2, fan_out, uniform)",
];

/// A statement built from real keywords and options with small sizes, so
/// that most programs get past the parser and into the checker and passes.
fn statement(depth: u32) -> BoxedStrategy<String> {
    let size = prop::sample::select(&[1usize, 2, 3, 4, 6, 8, 16][..]);
    let option = prop_oneof![
        prop::sample::select(ACTS).prop_map(|a| format!("act={a}")),
        prop::sample::select(NORMS).prop_map(|n| format!("norm={n}")),
        prop::sample::select(DROPS).prop_map(|d| format!("dropout={d}")),
        prop::sample::select(INITS).prop_map(|i| format!("init={i}")),
        Just("norm_pos=post".to_string()),
        Just("bias=false".to_string()),
        Just("gain=auto".to_string()),
        Just("l2=0.01".to_string()),
    ];
    let options = prop::collection::vec(option, 0..4).prop_map(|o| o.join(" "));
    let conv_geometry = (
        1u32..5,
        1u32..3,
        prop::sample::select(&["", "pad=same", "pad=1", "groups=2", "dilation=2"][..]),
    )
        .prop_map(|(k, s, extra)| format!("k={k} stride={s} {extra}"));
    let leaf = prop_oneof![
        (size.clone(), options.clone()).prop_map(|(n, o)| format!("dense {n} {o}")),
        (size.clone(), conv_geometry, options).prop_map(|(n, g, o)| format!("conv {n} {g} {o}")),
        (1u32..4, 0u32..2).prop_map(|(k, p)| format!("maxpool k={k} pad={p}")),
        (1u32..4, 1u32..3).prop_map(|(k, s)| format!("avgpool k={k} stride={s}")),
        Just("globalavgpool".to_string()),
        Just("flatten".to_string()),
        prop::sample::select(ACTS).prop_map(|a| format!("act {a}")),
        prop::sample::select(NORMS).prop_map(|n| format!("norm {n}")),
        prop::sample::select(DROPS).prop_map(|d| format!("dropout {d}")),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let block =
        prop::collection::vec(statement(depth - 1), 1..3).prop_map(|b| format!("residual {{ {} }}", b.join(" ")));
    prop_oneof![4 => leaf, 1 => block].boxed()
}

fn structured_program() -> impl Strategy<Value = String> {
    let input = prop::sample::select(&["input 8", "input [4, 8, 8]", "input [2, 5, 5]", "input 6"][..]);
    (input, prop::collection::vec(statement(2), 0..7))
        .prop_map(|(input, body)| format!("model S {{ {input} {} }}", body.join(" ")))
}

proptest! {
    #[test]
    fn structured_programs_never_panic(text in structured_program()) {
        survives(&text);
    }

    #[test]
    fn random_token_programs_never_panic(text in token_program()) {
        survives(&text);
    }

    #[test]
    fn mutated_models_never_panic(idx in any::<usize>(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let models = models();
        let mut text = models[idx % models.len()].clone();
        for m in &mutations {
            text = mutate(&text, m);
        }
        survives(&text);
    }
}

/// Brackets nested `depth` deep: residual blocks, calls, or both in turn,
/// around a statement that may itself open one more.
fn nested_program(depth: usize, kinds: &[u8], inner: &str) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for i in 0..depth {
        match kinds[i % kinds.len()] % 3 {
            0 => {
                open.push_str("residual { ");
                close.insert_str(0, " }");
            }
            1 => {
                open.push_str("residual act=f(");
                close.insert_str(0, ") { dense 8 }");
            }
            _ => {
                open.push_str("residual { dense 8 act=leaky_relu(g(");
                close.insert_str(0, ")) }");
            }
        }
    }
    format!("model D {{ input 8 {open}{inner}{close} }}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Deep nesting of every kind either compiles or is refused by the one
    /// limit (E0003), never overflows the stack.
    #[test]
    fn deep_nesting_never_overflows(
        depth in 0usize..400,
        kinds in prop::collection::vec(any::<u8>(), 1..4),
        inner in prop::sample::select(&["dense 8", "dense 8 act=f(1)", "act relu", "residual { }"][..]),
    ) {
        let text = nested_program(depth, &kinds, inner);
        survives(&text);
        let deepest = text
            .chars()
            .scan(0usize, |depth, c| {
                match c {
                    '{' | '(' | '[' => *depth += 1,
                    '}' | ')' | ']' => *depth -= 1,
                    _ => {}
                }
                Some(*depth)
            })
            .max()
            .unwrap_or(0);
        let source = SourceFile::new("deep.nn", text.as_str());
        let refused_for_depth = match compile(&source, &Options::default(), &mut Quiet) {
            Err(nnc_driver::CompileError::Program(d)) => d.iter().any(|d| d.code == "E0003"),
            _ => false,
        };
        prop_assert_eq!(refused_for_depth, deepest > nnc_syntax::MAX_NESTING);
    }

    /// Long one-line programs with an error in many statements print a
    /// bounded amount, whatever the line's length.
    #[test]
    fn long_lines_print_a_bounded_report(
        statements in prop::collection::vec(
            prop::sample::select(&["dense 8 act=reul", "dense 8", "dense 8 k=3", "act relu", "dropout 2"][..]),
            0..1500,
        ),
    ) {
        let text = format!("model L {{ input 8 {} }}", statements.join(" "));
        let source = SourceFile::new("long.nn", text.as_str());
        if let Err(nnc_driver::CompileError::Program(d)) = compile(&source, &Options::default(), &mut Quiet) {
            let rendered = nnc_diag::render_plain(&d, &source);
            prop_assert!(rendered.len() < 64 * 1024, "{} bytes for {} diagnostics", rendered.len(), d.len());
        }
    }
}

#[test]
fn every_model_survives_every_single_token_deletion() {
    // Exhaustive where it is cheap: drop each whitespace-separated token once.
    for text in models() {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        for skip in 0..tokens.len() {
            let mutated: Vec<&str> = tokens
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, t)| *t)
                .collect();
            survives(&mutated.join(" "));
        }
    }
}

#[test]
fn the_structured_generator_reaches_the_passes() {
    // Guards the generator itself: a good share of its programs must compile,
    // or the property above would only ever exercise the error paths.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = structured_program();
    let compiled = (0..300)
        .filter(|_| {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            let source = SourceFile::new("s.nn", text);
            let options = Options {
                modes: Mode::ALL.to_vec(),
                stage: Stage::Optimized,
                passes: None,
                loss: None,
            };
            compile(&source, &options, &mut Quiet).is_ok()
        })
        .count();
    assert!(compiled >= 30, "only {compiled} of 300 structured programs compile");
}
