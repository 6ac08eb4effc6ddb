//! The text form: exact lines, round trips, parse errors, and a no-panic
//! loop over mutated texts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{everything, seed_mlp, SEED_MLP};
use nnc_ir::text::{parse_module, print_function, print_function_with_marker, print_module, ParseError};
use nnc_ir::verify::verify;
use nnc_ir::{Function, Mode, Module, OpId, ValueType};

fn round_trip(m: &Module) -> String {
    let text = print_module(m);
    let parsed = parse_module(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print_module(&parsed), text);
    text
}

fn parse_err(text: &str) -> ParseError {
    match parse_module(text) {
        Ok(m) => panic!("parsed:\n{}", print_module(&m)),
        Err(e) => e,
    }
}

#[test]
fn seed_mlp_prints_as_written_by_hand() {
    assert_eq!(print_module(&seed_mlp()), SEED_MLP);
}

#[test]
fn seed_mlp_parses_to_the_same_module() {
    let m = seed_mlp();
    assert_eq!(parse_module(SEED_MLP).unwrap(), m);
    round_trip(&m);
}

#[test]
fn everything_round_trips_structurally_and_textually() {
    let m = everything();
    verify(&m).unwrap();
    let text = round_trip(&m);
    assert_eq!(parse_module(&text).unwrap(), m);
}

#[test]
fn everything_snapshot() {
    insta::assert_snapshot!(print_module(&everything()));
}

/// Lines of the everything module, written by hand from the format.
#[test]
fn selected_lines_print_exactly() {
    let text = print_module(&everything());
    let lines: Vec<&str> = text.lines().collect();
    let expected = [
        "model Everything",
        "// note: fold-batchnorm: folded bn into c1",
        "// note:   a note with leading spaces, (parens) and @signs",
        "param @c1.weight: f32[4,3,3,3] weight = init variance_scaling fan_in=27 truncated_normal(mean=0, std=0.2, low=-0.4, high=0.4) l1=0.001 l2=0.0005",
        "param @c2.weight: f32[4,2,3,3] weight = init xavier_uniform fan_in=18 fan_out=36 uniform(low=-0.3333, high=0.3333)",
        "param @fc1.weight: f32[8,4] weight = init he_normal fan_in=4 fan_out=8 normal(mean=0, std=0.70710677) l2=0.0001",
        "param @fc2.weight: f32[3,8] weight = init orthogonal orthogonal(gain=1.4142135)",
        "param @pr.act.weight: f32[1] act_weight = init ones constant(value=0.25)",
        "param @fc1.weight': f32[8,4] weight = derive scale_rows(@fc1.weight, @fc1.norm.scale / sqrt(@fc1.norm.shift + 0.00001))",
        "param @fc1.weight'': f32[8,4] weight = derive scale_cols(@fc1.weight', @af.scale)",
        "param @fc2.bias': f32[3] bias = derive mat_vec(@fc2.weight, @fc1.bias)",
        "param @d.sub_mul: f32[8] bias = derive (@fc1.bias - @fc1.norm.scale) * @fc1.norm.shift",
        "param @d.sub_sub: f32[8] bias = derive @fc1.bias - (@fc1.norm.scale - @fc1.norm.shift)",
        "param @d.div_mul: f32[8] bias = derive @fc1.bias / (@fc1.norm.scale * @fc1.norm.shift)",
        "param @d.left: f32[8] bias = derive @fc1.bias - @fc1.norm.scale - @fc1.norm.shift",
        "param @d.mixed: f32[8] bias = derive @fc1.bias * -1 + @fc1.norm.scale * 2.5",
        "param @d.chain: f32[8] bias = derive @d.mixed + 1",
        "func @train(%0: f32[N,3,8,8]) -> f32[N,2] {",
        "  %1: f32[N,4,8,8] = conv2d[c1] %0, @c1.weight, @c1.bias kernel=3 stride=1 dilation=1 groups=1 pads=[1,1,1,1] dropconnect=0.25 epilogue(affine scale=@c1.norm.scale shift=@c1.norm.shift, relu) loc(2:3, 3:3)",
        "  %2: f32[N,4,8,8] = conv2d[c2] %1, @c2.weight kernel=3 stride=1 dilation=2 groups=2 pads=[2,2,2,2] loc(4:3)",
        "  %3: f32[N,4,8,8] = batch_norm[bn] %2, @bn.norm.weight, @bn.norm.bias, @bn.norm.running_mean, @bn.norm.running_var eps=0.00001 momentum=0.1",
        "  %4: f32[N,4,8,8] = instance_norm[in] %3, @in.norm.weight, @in.norm.bias eps=0.001",
        "  %5: f32[N,4,8,8] = group_norm[gn] %4, @gn.norm.weight, @gn.norm.bias groups=2 eps=0.00001",
        "  %6: f32[N,4,8,8] = lrn[lrn] %5 size=5 alpha=0.0001 beta=0.75 bias=2",
        "  %7: f32[N,4,4,4] = maxpool[pool1] %6 kernel=2 stride=2 pads=[0,0,0,0]",
        "  %8: f32[N,4,4,4] = avgpool[pool2] %7 kernel=3 stride=1 pads=[1,1,1,1]",
        "  %9: f32[N,4,4,4] = dropblock[db] %8 p=0.1 block=3",
        "  %10: f32[N,4,4,4] = add[res] %9, %8",
        "  %11: f32[N,4,4,4] = prelu[pr] %10, @pr.act.weight",
        "  %12: f32[N,4,4,4] = layer_norm[ln] %11, @ln.norm.weight, @ln.norm.bias eps=0.00001",
        "  %13: f32[N,4] = globalavgpool[gap] %12",
        "  %14: f32[N,4] = flatten[flat] %13",
        "  %15: f32[N,4] = affine[af] %14, @af.scale, @af.shift",
        "  %16: f32[N,4] = dropout[drop] %15 p=0.5",
        "  %17: f32[N,4] = alpha_dropout[adrop] %16 p=0.05",
        "  %18: f32[N,4] = sigmoid[a1] %17",
        "  %21: f32[N,4] = leaky_relu[a4] %20 alpha=0.01",
        "  %22: f32[N,4] = rrelu[a5] %21 lower=0.125 upper=0.33333334",
        "  %23: f32[N,4] = elu[a6] %22 alpha=1",
        "  %25: f32[N,4] = softplus[a8] %24 beta=2",
        "  %28: f32[N,2] = maxout[a11] %27 pieces=2",
        "  %29: f32[N,2] = softmax[out.softmax] %28",
        "  return %29",
        "func @infer(%0: f32[N,4]) -> f32[N,3] {",
        "  %1: f32[N,8] = linear[fc1] %0, @fc1.weight, @fc1.bias epilogue(affine scale=@fc1.norm.scale shift=@fc1.norm.shift, prelu weight=@fc1.act.weight, leaky_relu alpha=0.1, softplus beta=1) loc(7:5, 8:5, 9:5)",
        "  %2: f32[N,3] = linear[fc2] %1, @fc2.weight dropconnect=0.5 loc(10:5)",
    ];
    for line in expected {
        assert!(lines.contains(&line), "missing line:\n{line}\nin:\n{text}");
    }
    // One blank line between sections, one newline at the end.
    assert!(text.contains("@signs\n\nparam @c1.weight"));
    assert!(text.contains("+ 1\n\nfunc @train"));
    assert!(text.contains("  return %29\n}\n\nfunc @infer"));
    assert!(text.ends_with("  return %3\n}\n"));
    assert!(!text.ends_with("\n\n"));
}

#[test]
fn empty_sections_print_no_blank_lines() {
    let mut m = Module::new("Empty");
    assert_eq!(round_trip(&m), "model Empty\n");
    m.functions.push(Function::new(Mode::Infer, ValueType::new([3])));
    assert_eq!(
        round_trip(&m),
        "model Empty\n\nfunc @infer(%0: f32[N,3]) -> f32[N,3] {\n  return %0\n}\n"
    );
    let mut m = seed_mlp();
    m.functions.clear();
    m.notes.clear();
    let text = round_trip(&m);
    assert!(text.starts_with("model SeedMlp\n\nparam @layer0.weight:"));
    assert!(text.ends_with(" 0.00001))\n"));
}

#[test]
fn printer_renumbers_values_left_unused_by_a_pass() {
    let mut m = seed_mlp();
    let f = m.function_mut(Mode::Infer).unwrap();
    // What a pass removing the first op would leave: %1's arena slot unused.
    let first = f.ops.remove(0);
    f.replace_uses(first.result, f.input);
    let f = m.function_mut(Mode::Infer).unwrap();
    f.values[0] = ValueType::new([750]);
    let text = print_module(&m);
    assert!(text.contains("func @infer(%0: f32[N,750]) -> f32[N,10] {\n  %1: f32[N,10] = linear[layer1] %0, @layer1.weight loc(4:5)\n  %2: f32[N,10] = softmax[layer1] %1 loc(4:5, 5:5)\n  return %2\n}\n"), "{text}");
    round_trip(&m);
}

#[test]
fn parser_accepts_banners_comments_crlf_exponents_and_any_numbers() {
    let text = "\
// nnc ir · Tiny · infer · lowered\r
\r
model Tiny   \r
// note: kept\r
// an ordinary comment\r
param @w: f32[2,3] weight = init he_normal fan_in=3 normal(mean=0, std=1e-1)\r
param @w': f32[2,3] weight = derive @w * 1E-5\r
\r
func @infer(%4: f32[N,3]) -> f32[N,2] {\r
  // error: a verifier mark, skipped\r
  %7:f32[N,2]=linear[l] %4,@w' loc(1:1)\r
\r
  return %7\r
}";
    let m = parse_module(text).unwrap();
    assert_eq!(m.notes, vec!["kept".to_string()]);
    assert_eq!(
        print_module(&m),
        "\
model Tiny
// note: kept

param @w: f32[2,3] weight = init he_normal fan_in=3 normal(mean=0, std=0.1)
param @w': f32[2,3] weight = derive @w * 0.00001

func @infer(%0: f32[N,3]) -> f32[N,2] {
  %1: f32[N,2] = linear[l] %0, @w' loc(1:1)
  return %1
}
"
    );
}

#[test]
fn numbers_in_other_spellings_print_canonically() {
    let text = "model M\nparam @a: f32[2] bias = init zeros constant(value=1.) l1=2.5E+3 l2=-0.0\n";
    assert_eq!(
        print_module(&parse_module(text).unwrap()),
        "model M\n\nparam @a: f32[2] bias = init zeros constant(value=1) l1=2500\n"
    );
}

#[test]
fn derivations_parse_with_precedence_and_left_associativity() {
    let text = "model M\n\
        param @a: f32[2] bias = init zeros constant(value=0)\n\
        param @b: f32[2] bias = derive ((@a)) + @a * @a - @a / 2 * 3\n\
        param @c: f32[2] bias = derive (@a + @a) * (@a - @a) / sqrt(@a)\n";
    let m = parse_module(text).unwrap();
    let printed = print_module(&m);
    assert!(printed.contains("derive @a + @a * @a - @a / 2 * 3\n"), "{printed}");
    assert!(
        printed.contains("derive (@a + @a) * (@a - @a) / sqrt(@a)\n"),
        "{printed}"
    );
}

#[test]
fn print_function_and_marker() {
    let m = seed_mlp();
    let f = m.function(Mode::Infer).unwrap();
    let plain = print_function(&m, f);
    assert!(plain.starts_with("func @infer(%0: f32[N,800]) -> f32[N,10] {\n"));
    let marked = print_function_with_marker(&m, f, Some(OpId(1)), "bad\nthing");
    assert!(marked.contains("loc(4:5)\n  // error: bad thing\n  %3:"), "{marked}");
    let marked = print_function_with_marker(&m, f, None, "no output");
    assert!(marked.starts_with("func @infer(%0: f32[N,800]) -> f32[N,10] {\n  // error: no output\n"));
}

#[test]
fn printer_survives_dangling_ids() {
    let mut m = seed_mlp();
    let f = m.function_mut(Mode::Infer).unwrap();
    f.ops[1].args[0] = nnc_ir::ValueId(99);
    f.ops[0].op = nnc_ir::Op::Affine {
        scale: nnc_ir::ParamId(77),
        shift: nnc_ir::ParamId(0),
    };
    let text = print_module(&m);
    assert!(text.contains("affine[layer0] %0, @?77, @layer0.weight"), "{text}");
    assert!(text.contains("linear[layer1] %?99, @layer1.weight"), "{text}");
}

/// Asserts that `text` fails at line `line`, at the first occurrence of
/// `at` in that line, with a message containing `needle`.
fn assert_error(text: &str, line: usize, at: &str, needle: &str) {
    let source_line = text.split('\n').nth(line - 1).unwrap_or("");
    let col = source_line.find(at).map(|i| source_line[..i].chars().count() + 1);
    assert_error_at(text, line, col.unwrap_or(0), needle);
}

fn assert_error_at(text: &str, line: usize, col: usize, needle: &str) {
    let e = parse_err(text);
    assert!(
        (e.line, e.col) == (line, col) && e.message.contains(needle),
        "expected {line}:{col} containing {needle:?}, got {e}"
    );
}

const TINY: &str =
    "model T\n\nparam @w: f32[2,3] weight = init zeros constant(value=0)\n\nfunc @infer(%0: f32[N,3]) -> f32[N,2] {\n";

#[test]
fn unknown_names_are_errors_at_their_position() {
    let t = |body: &str| format!("{TINY}{body}\n}}\n");
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @v\n  return %1"),
        6,
        "@v",
        "unknown parameter @v",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %3, @w\n  return %1"),
        6,
        "%3",
        "%3 is not defined",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w\n  return %2"),
        7,
        "%2",
        "%2 is not defined",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %1, @w\n  return %1"),
        6,
        "%1,",
        "%1 is not defined",
    );
    assert_error(
        &t("  %0: f32[N,2] = linear[l] %0, @w\n  return %0"),
        6,
        "%0",
        "%0 is defined twice",
    );
    assert_error(
        &t("  %1: f32[N,2] = conv[l] %0, @w\n  return %1"),
        6,
        "conv",
        "unknown op `conv`",
    );
    assert_error(
        "model T\nparam @w: f32[2] weight = derive @w + @x\n",
        2,
        "@x",
        "unknown parameter @x",
    );
    assert_error(
        "model T\nparam @w: f32[2] weight = init zeros constant(value=0)\nparam @w: f32[2] weight = init zeros constant(value=0)\n",
        3,
        "@w",
        "declared twice",
    );
    assert_error(
        "model T\nfunc @eval(%0: f32[N,3]) -> f32[N,3] {\n  return %0\n}\n",
        2,
        "@eval",
        "unknown function @eval",
    );
    assert_error(
        "model T\nfunc @infer(%0: f32[N,3]) -> f32[N,3] {\n  return %0\n}\nfunc @infer(%0: f32[N,3]) -> f32[N,3] {\n  return %0\n}\n",
        5,
        "@infer",
        "a second @infer",
    );
}

#[test]
fn wrong_types_are_errors() {
    let t = |body: &str| format!("{TINY}{body}\n}}\n");
    assert_error(
        &t("  %1: f32[N,5] = linear[l] %0, @w\n  return %1"),
        6,
        "f32",
        "declared type f32[N,5] but linear gives f32[N,2]",
    );
    assert_error(
        &t("  %1: f32[N,3] = relu[l] %0\n  return %1"),
        5,
        "f32[N,2]",
        "declared output type f32[N,2] but the returned value is f32[N,3]",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w\n  %2: f32[N,2] = add[l] %1\n  return %2"),
        7,
        "add",
        "add takes 2 argument(s), got 1",
    );
    assert_error(
        &t("  %1: f32[N,3,4] = maxpool[l] %0 kernel=2 stride=2 pads=[0,0,0,0]\n  return %1"),
        6,
        "maxpool",
        "maxpool needs a [C, H, W] input",
    );
    assert_error(
        "model T\nparam @w: f32[2] wieght = init zeros constant(value=0)\n",
        2,
        "wieght",
        "unknown role `wieght`",
    );
    assert_error(
        "model T\nfunc @infer(%0: f32[N]) -> f32[N] {\n  return %0\n}\n",
        2,
        "f32",
        "needs a dimension",
    );
    assert_error(
        "model T\nfunc @infer(%0: f32[3]) -> f32[N] {\n  return %0\n}\n",
        2,
        "f32",
        "expected a value type",
    );
}

#[test]
fn bad_attributes_and_operands_are_errors() {
    let t = |body: &str| format!("{TINY}{body}\n  return %1\n}}\n");
    assert_error(
        &t("  %1: f32[N,3] = leaky_relu[l] %0"),
        6,
        "leaky",
        "leaky_relu needs `alpha=`",
    );
    assert_error(
        &t("  %1: f32[N,3] = relu[l] %0 alpha=1"),
        6,
        "alpha",
        "relu takes no attribute `alpha`",
    );
    assert_error(
        &t("  %1: f32[N,3] = elu[l] %0 alpha=1 alpha=2"),
        6,
        "alpha=2",
        "`alpha` is given twice",
    );
    assert_error(
        &t("  %1: f32[N,3] = elu[l] %0 alpha=@w"),
        6,
        "@w",
        "`alpha` takes a number",
    );
    assert_error(&t("  %1: f32[N,3] = maxout[l] %0 pieces=1.5"), 6, "1.5", "whole number");
    assert_error(
        &t("  %1: f32[N,3] = maxout[l] %0 pieces=99999999999"),
        6,
        "999",
        "whole number up to",
    );
    assert_error(
        &t("  %1: f32[N,3] = relu[l] %0, @w"),
        6,
        "@w",
        "relu takes 0 parameter(s), got 1",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] @w, %0"),
        6,
        "%0",
        "value arguments come before parameters",
    );
    // The third parameter is the one too many.
    assert_error_at(
        &t("  %1: f32[N,2] = linear[l] %0, @w, @w, @w"),
        6,
        40,
        "weight and an optional bias",
    );
    assert_error(
        &t("  %1: f32[N,3] = relu[l] %0 epilogue(tanh)"),
        6,
        "epilogue",
        "relu takes no epilogue",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w epilogue(tanh alpha=1)"),
        6,
        "alpha",
        "tanh takes no attribute `alpha`",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w epilogue(softmax)"),
        6,
        "linear",
        "softmax is not element-wise",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w epilogue(cube)"),
        6,
        "cube",
        "unknown epilogue step `cube`",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w epilogue(prelu)"),
        6,
        "prelu",
        "prelu needs `weight=`",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w dropconnect=2"),
        6,
        "linear",
        "drop probability",
    );
    assert_error(
        &t("  %1: f32[N,2] = linear[l] %0, @w loc(3:99999999999)"),
        6,
        "999",
        "larger than",
    );
}

#[test]
fn garbage_is_an_error_with_a_position() {
    assert_error("", 1, "", "expected `model NAME`");
    assert_error("hello world", 1, "hello", "expected `model NAME`");
    assert_error("modelX\n", 1, "modelX", "expected `model NAME`");
    assert_error_at("model M\nparam\n", 2, 6, "expected a parameter");
    assert_error(
        "model M\nparam @p: f32[2] weight = init zeros constant(value=0) l3=1\n",
        2,
        "l3",
        "expected",
    );
    assert_error(
        "model M\n\nfunc @infer(%0: f32[N,3]) -> f32[N,3] {\n  return %0\n",
        5,
        "",
        "expected `}`",
    );
    assert_error(
        "model M\n\nfunc @infer(%0: f32[N,3]) -> f32[N,3] {\n  \u{2603}\n  return %0\n}\n",
        4,
        "\u{2603}",
        "expected",
    );
    assert_error(
        "model M\nparam @w: f32[99999999999999] weight = init zeros constant(value=0)\n",
        2,
        "999",
        "larger than",
    );
    assert_error(
        "model M\nparam @w: f32[65536,65536,2] weight = init zeros constant(value=0)\n",
        2,
        "f32",
        "elements",
    );
    let deep = format!(
        "model M\nparam @w: f32[1] weight = derive {}@w{}\n",
        "(".repeat(200),
        ")".repeat(200)
    );
    let e = parse_err(&deep);
    // The 65th `(`: the text before the first is 33 characters long.
    assert_eq!((e.line, e.col), (2, 33 + 65), "{e}");
    assert!(e.message.contains("nested parentheses"), "{e}");
    let ok = format!(
        "model M\nparam @v: f32[1] weight = init zeros constant(value=0)\nparam @w: f32[1] weight = derive {}@v{}\n",
        "sqrt(".repeat(60),
        ")".repeat(60)
    );
    round_trip(&parse_module(&ok).unwrap());
}

#[test]
fn extreme_sizes_are_errors_not_overflows() {
    let big = 16_777_216; // the largest integer attribute
    let conv = format!(
        "model M\nparam @w: f32[{big},1,1,1] weight = init zeros constant(value=0)\n\
         func @infer(%0: f32[N,{big},16,16]) -> f32[N,{big},1,1] {{\n  \
         %1: f32[N,{big},1,1] = conv2d[c] %0, @w kernel=1 stride={big} dilation={big} groups={big} pads=[{big},{big},{big},{big}]\n  \
         return %1\n}}\n"
    );
    assert_error(&conv, 4, "f32", "but conv2d gives f32[N,16777216,3,3]");
    let pool = "model M\nfunc @infer(%0: f32[N,1,2,2]) -> f32[N,1,1,1] {\n  \
         %1: f32[N,1,1,1] = maxpool[p] %0 kernel=16777216 stride=1 pads=[0,0,0,0]\n  return %1\n}\n";
    assert_error(pool, 3, "maxpool", "does not fit");
    // A window wholly in the padding (LANGUAGE.md §8 allows at most K/2).
    let padded = "model M\nfunc @infer(%0: f32[N,1,2,2]) -> f32[N,1,4,4] {\n  \
         %1: f32[N,1,4,4] = maxpool[p] %0 kernel=1 stride=1 pads=[1,1,1,1]\n  return %1\n}\n";
    assert_error(padded, 3, "maxpool", "exceeds half the window");
    let flatten = "model M\nfunc @infer(%0: f32[N,65536,65536]) -> f32[N,4294967296] {\n  \
         %1: f32[N,4294967296] = flatten[f] %0\n  return %1\n}\n";
    round_trip(&parse_module(flatten).unwrap());
    let maxout = "model M\nfunc @infer(%0: f32[N,4294967296]) -> f32[N,1] {\n  \
         %1: f32[N,1] = maxout[m] %0 pieces=16777216\n  return %1\n}\n";
    assert_error(maxout, 3, "f32", "but maxout gives f32[N,256]");
}

#[test]
fn non_finite_numbers_round_trip_as_text() {
    let text = "model M\n\n\
        param @a: f32[2] bias = init odd constant(value=NaN) l1=inf\n\
        param @b: f32[2] bias = derive @a * -inf + NaN\n";
    let m = parse_module(text).unwrap();
    assert_eq!(print_module(&m), text);
}

/// A deterministic linear congruential generator (Knuth's MMIX constants):
/// enough to mutate texts reproducibly without a crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Characters the grammar cares about, plus a few it does not.
const ALPHABET: &[char] = &[
    '%', '@', '(', ')', '[', ']', ',', ':', '=', '-', '+', '*', '/', '.', '\'', ' ', '\n', '\r', '\t', '0', '1', '9',
    'N', 'e', 'f', '3', '2', '{', '}', 'é', '\u{0}', '>',
];

fn mutate(rng: &mut Lcg, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(7) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => chars.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            2 if at < chars.len() => chars[at] = ALPHABET[rng.below(ALPHABET.len())],
            3 => chars.truncate(at),
            4 if at < chars.len() && chars[at].is_ascii_digit() => {
                // Big and odd numbers where numbers are.
                let n = ["0", "4294967296", "99999999999999999999", "1e39", "-0", "NaN", "7"];
                chars.splice(at..at + 1, n[rng.below(n.len())].chars());
            }
            5 => {
                // Duplicate or drop a whole line.
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let i = rng.below(lines.len());
                if rng.below(2) == 0 {
                    lines.insert(i, lines[i]);
                } else {
                    lines.remove(i);
                }
                chars = lines.join("\n").chars().collect();
            }
            _ => {
                // Swap two characters.
                let other = rng.below(chars.len());
                if at < chars.len() {
                    chars.swap(at, other);
                }
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn mutated_texts_never_panic_and_what_parses_round_trips() {
    let seeds = [print_module(&everything()), SEED_MLP.to_string()];
    let mut rng = Lcg(0x5eed);
    let mut parsed = 0;
    for i in 0..3000 {
        let text = mutate(&mut rng, &seeds[i % seeds.len()]);
        if let Ok(m) = parse_module(&text) {
            parsed += 1;
            // Whatever parses prints, re-parses to the same text, and
            // verifies without panicking.
            let printed = print_module(&m);
            let again = parse_module(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
            assert_eq!(print_module(&again), printed);
            let _ = verify(&m);
        }
    }
    // The mutations are not all fatal: the loop also exercises success.
    assert!(parsed > 100, "only {parsed} mutants parsed");
}
