//! The `.nn` parser: the programs of LANGUAGE.md, free-form layout, numbers,
//! spans, error positions and messages, and a no-panic run over mutated text.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nnc_diag::{render_plain, Diagnostic, SourceFile, Span};
use nnc_syntax::ast::{Model, Number, Opt, Stmt, StmtKind, Value, ValueKind};
use nnc_syntax::parse;

fn parse_ok(text: &str) -> (SourceFile, Model) {
    let source = SourceFile::new("test.nn", text);
    match parse(&source) {
        Ok(model) => (source, model),
        Err(d) => panic!("expected {text:?} to parse:\n{}", render_plain(&d, &source)),
    }
}

/// The one diagnostic a bad program gives, and its `line:col`.
fn parse_err(text: &str) -> (Diagnostic, String) {
    let source = SourceFile::new("test.nn", text);
    match parse(&source) {
        Ok(model) => panic!("expected {text:?} to fail, got {model:?}"),
        Err(d) => {
            assert_eq!(d.len(), 1, "{d:?}");
            let loc = source.loc(d[0].primary.span.start).to_string();
            (d[0].clone(), loc)
        }
    }
}

fn slice(source: &SourceFile, span: Span) -> &str {
    &source.text()[span.range()]
}

fn kinds(body: &[Stmt]) -> Vec<&'static str> {
    body.iter().map(|s| s.kind.keyword()).collect()
}

fn sizes(stmt: &Stmt) -> (Option<f64>, f64) {
    match &stmt.kind {
        StmtKind::Dense {
            in_features,
            out_features,
        } => (in_features.map(|n| n.value), out_features.value),
        StmtKind::Conv {
            in_channels,
            out_channels,
        } => (in_channels.map(|n| n.value), out_channels.value),
        other => panic!("not a dense or conv: {other:?}"),
    }
}

/// Options as `key=value` text, values written back by the AST dump rules.
fn options(stmt: &Stmt) -> Vec<String> {
    stmt.options
        .iter()
        .map(|o| format!("{}={}", o.key.name, show(&o.value)))
        .collect()
}

fn show(value: &Value) -> String {
    match &value.kind {
        ValueKind::Number(n) => n.to_string(),
        ValueKind::Word(w) => w.clone(),
        ValueKind::Call { name, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| match &a.key {
                    Some(k) => format!("{}={}", k.name, show(&a.value)),
                    None => show(&a.value),
                })
                .collect();
            format!("{}({})", name.name, args.join(","))
        }
    }
}

fn option<'a>(stmt: &'a Stmt, key: &str) -> &'a Opt {
    stmt.options
        .iter()
        .find(|o| o.key.name == key)
        .unwrap_or_else(|| panic!("no option {key}"))
}

fn number_of(value: &Value) -> f64 {
    match value.kind {
        ValueKind::Number(n) => n,
        ref other => panic!("not a number: {other:?}"),
    }
}

const SEED_MLP: &str = "\
# models/seed_mlp.nn : the 10-layer tanh MLP of the vanishing-gradient experiment
model SeedMlp {
    input 800
    dense 800 -> 750 init=xavier act=tanh
    dense 750 -> 700 init=xavier act=tanh
    dense 700 -> 650 init=xavier act=tanh
    dense 650 -> 600 init=xavier act=tanh
    dense 600 -> 550 init=xavier act=tanh
    dense 550 -> 500 init=xavier act=tanh
    dense 500 -> 450 init=xavier act=tanh
    dense 450 -> 400 init=xavier act=tanh
    dense 400 -> 350 init=xavier act=tanh
    dense 350 -> 300 init=xavier act=tanh
}
";

const DIGIT_NET: &str = "\
model DigitNet {
    input [1, 28, 28]                         # per-sample shape [C, H, W]; the batch axis is implicit
    conv 1 -> 16 k=3 pad=same init=he act=relu norm=batch
    maxpool k=2
    conv 16 -> 32 k=3 pad=same init=he act=leaky_relu(0.1) norm=group(groups=8)
    globalavgpool
    dense 32 -> 128 init=he act=elu norm=batch dropout=0.2
    dense 128 -> 10 act=softmax
}
";

#[test]
fn seed_mlp_from_the_language_page() {
    let (source, model) = parse_ok(SEED_MLP);
    assert_eq!(model.name.name, "SeedMlp");
    assert_eq!(slice(&source, model.name.span), "SeedMlp");
    assert_eq!(model.body.len(), 11);
    let StmtKind::Input { shape } = &model.body[0].kind else {
        panic!("{:?}", model.body[0])
    };
    assert_eq!(shape.iter().map(|n| n.value).collect::<Vec<_>>(), [800.0]);
    for (i, stmt) in model.body[1..].iter().enumerate() {
        let input = 800.0 - 50.0 * i as f64;
        assert_eq!(sizes(stmt), (Some(input), input - 50.0), "layer {i}");
        assert_eq!(options(stmt), ["init=xavier", "act=tanh"]);
    }
    // Spans: the first dense's sizes, keyword and option, sliced back out.
    let first = &model.body[1];
    let StmtKind::Dense {
        in_features: Some(input),
        out_features,
    } = &first.kind
    else {
        panic!()
    };
    assert_eq!(slice(&source, input.span), "800");
    assert_eq!(slice(&source, out_features.span), "750");
    assert_eq!(slice(&source, first.keyword_span), "dense");
    assert_eq!(slice(&source, first.span), "dense 800 -> 750 init=xavier act=tanh");
    assert_eq!(source.loc(input.span.start).to_string(), "4:11");
    let act = option(first, "act");
    assert_eq!(slice(&source, act.span), "act=tanh");
    assert_eq!(slice(&source, act.key.span), "act");
    assert_eq!(slice(&source, act.value.span), "tanh");
    // The model starts at `model`, after the comment, and ends at its `}`.
    assert!(slice(&source, model.span).starts_with("model SeedMlp {"));
    assert!(slice(&source, model.span).ends_with("300 init=xavier act=tanh\n}"));
}

#[test]
fn digit_net_from_the_language_page() {
    let (source, model) = parse_ok(DIGIT_NET);
    assert_eq!(
        kinds(&model.body),
        ["input", "conv", "maxpool", "conv", "globalavgpool", "dense", "dense"]
    );
    let StmtKind::Input { shape } = &model.body[0].kind else {
        panic!()
    };
    assert_eq!(shape.iter().map(|n| n.value).collect::<Vec<_>>(), [1.0, 28.0, 28.0]);
    assert_eq!(slice(&source, shape[2].span), "28");
    assert_eq!(slice(&source, model.body[0].span), "input [1, 28, 28]");

    assert_eq!(sizes(&model.body[1]), (Some(1.0), 16.0));
    assert_eq!(
        options(&model.body[1]),
        ["k=3", "pad=same", "init=he", "act=relu", "norm=batch"]
    );
    assert_eq!(options(&model.body[2]), ["k=2"]);
    assert_eq!(
        options(&model.body[3]),
        [
            "k=3",
            "pad=same",
            "init=he",
            "act=leaky_relu(0.1)",
            "norm=group(groups=8)"
        ]
    );
    assert!(model.body[4].options.is_empty());
    assert_eq!(
        options(&model.body[5]),
        ["init=he", "act=elu", "norm=batch", "dropout=0.2"]
    );
    assert_eq!(sizes(&model.body[6]), (Some(128.0), 10.0));

    // A call keeps the span of its name, of each argument and of the whole.
    let norm = &option(&model.body[3], "norm").value;
    assert_eq!(slice(&source, norm.span), "group(groups=8)");
    assert_eq!(slice(&source, norm.name_span()), "group");
    let arg = &norm.args()[0];
    assert_eq!(slice(&source, arg.span), "groups=8");
    assert_eq!(arg.key.as_ref().map(|k| slice(&source, k.span)), Some("groups"));
    assert_eq!(slice(&source, arg.value.span), "8");
    let act = &option(&model.body[3], "act").value;
    assert!(act.args()[0].key.is_none());
    assert_eq!(number_of(&act.args()[0].value), 0.1);
}

#[test]
fn statements_split_without_line_breaks() {
    let (source, model) =
        parse_ok("model M { input 8 act relu dense 8 -> 4 globalavgpool flatten norm batch name=n dropout 0.5 }");
    assert_eq!(
        kinds(&model.body),
        ["input", "act", "dense", "globalavgpool", "flatten", "norm", "dropout"]
    );
    let StmtKind::Act(relu) = &model.body[1].kind else {
        panic!()
    };
    assert_eq!(relu.name(), Some("relu"));
    assert_eq!(slice(&source, model.body[1].span), "act relu");
    assert_eq!(sizes(&model.body[2]), (Some(8.0), 4.0));
    assert!(model.body[3].options.is_empty(), "globalavgpool takes no value");
    assert_eq!(options(&model.body[5]), ["name=n"]);
    let StmtKind::Dropout(p) = &model.body[6].kind else {
        panic!()
    };
    assert_eq!(number_of(p), 0.5);
}

#[test]
fn short_dense_and_conv_forms_have_no_input_size() {
    let (source, model) = parse_ok("model M { input [3, 8, 8] conv 4 k=3 flatten dense 10 act=softmax }");
    assert_eq!(sizes(&model.body[1]), (None, 4.0));
    assert_eq!(sizes(&model.body[3]), (None, 10.0));
    assert_eq!(slice(&source, model.body[3].span), "dense 10 act=softmax");
}

#[test]
fn input_shapes() {
    let dims = |text: &str| {
        let (_, model) = parse_ok(text);
        let StmtKind::Input { shape } = &model.body[0].kind else {
            panic!()
        };
        shape.iter().map(|n| n.value).collect::<Vec<_>>()
    };
    assert_eq!(dims("model M { input 800 }"), [800.0]);
    assert_eq!(dims("model M { input [64] }"), [64.0]);
    assert_eq!(dims("model M { input [1, 28, 28,] }"), [1.0, 28.0, 28.0]);
    assert_eq!(dims("model M { input [ 3 ,\n 32 , 32 ] }"), [3.0, 32.0, 32.0]);
}

#[test]
fn comments_of_both_kinds_anywhere() {
    let text = "# leading\n// also leading\nmodel M { # after brace\n  input 8 // trailing\n  maxpool k=2 // 16x14x14\n  dense # between\n 8 -> 4 act=relu # end\n} // after the model\n# last line without newline";
    let (source, model) = parse_ok(text);
    assert_eq!(kinds(&model.body), ["input", "maxpool", "dense"]);
    // `2 // ...` is the number 2 and a comment, not the start of a fraction.
    assert_eq!(number_of(&option(&model.body[1], "k").value), 2.0);
    assert_eq!(slice(&source, model.body[1].span), "maxpool k=2");
    assert_eq!(sizes(&model.body[2]), (Some(8.0), 4.0));
    // The statement stops at its last option, before the comment.
    assert!(slice(&source, model.body[2].span).ends_with("act=relu"));
}

#[test]
fn crlf_and_tabs() {
    let text = "model M {\r\n\tinput 8\r\n\tdense\t8\t->\t4 act\t=\trelu\r\n}\r\n";
    let (source, model) = parse_ok(text);
    let dense = &model.body[1];
    assert_eq!(sizes(dense), (Some(8.0), 4.0));
    assert_eq!(source.loc(dense.keyword_span.start).to_string(), "3:2");
    assert_eq!(slice(&source, dense.span), "dense\t8\t->\t4 act\t=\trelu");
    let act = option(dense, "act");
    assert_eq!(slice(&source, act.span), "act\t=\trelu");
    assert_eq!(source.loc(act.value.span.start).to_string(), "3:21");
}

#[test]
fn numbers_with_signs_exponents_and_fractions() {
    let cases: &[(&str, f64)] = &[
        ("800", 800.0),
        ("0.2", 0.2),
        ("1e-5", 1e-5),
        ("2.5E+3", 2500.0),
        ("-0.5", -0.5),
        ("- 0.5", -0.5),
        ("-\t0.5", -0.5),
        ("1/8", 0.125),
        ("1 / 8", 0.125),
        ("- 1 / 4", -0.25),
        ("0.5/2", 0.25),
        ("99999999999999999999", 1e20),
    ];
    for &(literal, expected) in cases {
        let text = format!("model M {{ act rrelu(lower={literal}, {literal}) }}");
        let (source, model) = parse_ok(&text);
        let StmtKind::Act(call) = &model.body[0].kind else {
            panic!()
        };
        for arg in call.args() {
            assert_eq!(number_of(&arg.value), expected, "{literal}");
            assert_eq!(
                slice(&source, arg.value.span),
                literal,
                "the span covers the sign and both parts"
            );
        }
    }
}

#[test]
fn huge_sizes_stay_numbers_for_the_checker() {
    let (source, model) = parse_ok("model M { input 8 dense 99999999999999999999 }");
    let StmtKind::Dense {
        out_features: Number { value, span },
        ..
    } = model.body[1].kind
    else {
        panic!()
    };
    assert_eq!(value, 1e20);
    assert_eq!(slice(&source, span), "99999999999999999999");
}

#[test]
fn values_words_and_calls() {
    let text = "model M { input 8 dense 8 -> 4 norm=batch act=linear name=flatten dropout=alpha(0.1) \
                init=variance_scaling(2, mode=fan_avg, dist = uniform,) bias_init=constant ( - 0.1 ) \
                act=prelu() act=f(g(h(1), x=k(2)), residual) }";
    let (source, model) = parse_ok(text);
    assert_eq!(
        options(&model.body[1]),
        [
            "norm=batch",
            "act=linear",
            "name=flatten",
            "dropout=alpha(0.1)",
            "init=variance_scaling(2,mode=fan_avg,dist=uniform)",
            "bias_init=constant(-0.1)",
            "act=prelu()",
            "act=f(g(h(1),x=k(2)),residual)",
        ]
    );
    let constant = &model.body[1].options[5].value;
    assert_eq!(slice(&source, constant.span), "constant ( - 0.1 )");
    assert_eq!(slice(&source, constant.args()[0].value.span), "- 0.1");
    assert!(matches!(&model.body[1].options[6].value.kind, ValueKind::Call { args, .. } if args.is_empty()));
}

#[test]
fn keywords_only_match_whole_words() {
    // `denser=1` and `flattened=x` are options, not statements with a suffix.
    let (_, model) = parse_ok("model M { input 8 denser=1 flattened=x flatten }");
    assert_eq!(kinds(&model.body), ["input", "flatten"]);
    assert_eq!(options(&model.body[0]), ["denser=1", "flattened=x"]);
    let (d, at) = parse_err("model M { input 8 denser 4 }");
    assert_eq!((d.code, at.as_str()), ("E0002", "1:19"));
    assert_eq!(d.help.as_deref(), Some("did you mean `dense`?"));
}

#[test]
fn nested_residuals() {
    let text = "model M {\n  input 8\n  residual name=outer {\n    dense 8\n    residual { act relu residual { norm layer } }\n    dense 8\n  }\n  act relu\n}";
    let (source, model) = parse_ok(text);
    assert_eq!(kinds(&model.body), ["input", "residual", "act"]);
    let outer = &model.body[1];
    assert_eq!(options(outer), ["name=outer"]);
    let StmtKind::Residual(body) = &outer.kind else {
        panic!()
    };
    assert_eq!(kinds(body), ["dense", "residual", "dense"]);
    let StmtKind::Residual(inner) = &body[1].kind else {
        panic!()
    };
    assert_eq!(kinds(inner), ["act", "residual"]);
    let StmtKind::Residual(innermost) = &inner[1].kind else {
        panic!()
    };
    assert_eq!(kinds(innermost), ["norm"]);
    // A residual's span ends at its `}`.
    assert_eq!(slice(&source, inner[1].span), "residual { norm layer }");
    assert!(slice(&source, outer.span).starts_with("residual name=outer {"));
    assert!(slice(&source, outer.span).ends_with("dense 8\n  }"));
}

#[test]
fn empty_model_and_empty_residual_parse() {
    let (_, model) = parse_ok("model Empty{}");
    assert!(model.body.is_empty());
    let (_, model) = parse_ok("model M { residual {} }");
    assert!(matches!(&model.body[0].kind, StmtKind::Residual(b) if b.is_empty()));
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn misspelled_statement_gets_a_did_you_mean() {
    let (d, at) = parse_err("model M {\n    input 8\n    dnese 8 -> 4\n}\n");
    assert_eq!((d.code, at.as_str()), ("E0002", "3:5"));
    assert_eq!(d.message, "unknown statement `dnese`");
    assert_eq!(d.primary.span, Span::new(26, 31), "the whole word");
    assert_eq!(d.help.as_deref(), Some("did you mean `dense`?"));
}

#[test]
fn unknown_statement_without_a_close_match_lists_the_statements() {
    let (d, at) = parse_err("model M { input 8 dense 8 -> 4 xyzzy }");
    assert_eq!((d.code, at.as_str()), ("E0002", "1:32"));
    let help = d.help.unwrap_or_default();
    assert!(
        help.contains("input, dense, conv") && help.contains("residual"),
        "{help}"
    );
}

#[test]
fn stray_semicolon() {
    let (d, at) = parse_err("model M {\n    input 8\n    dense 8 -> 4 act=relu;\n}\n");
    assert_eq!((d.code, at.as_str()), ("E0001", "3:26"));
    assert_eq!(d.message, "expected an option, a statement or `}`, found `;`");
    assert!(d.help.unwrap_or_default().contains("not `;`"));
}

#[test]
fn comma_between_options() {
    let (d, at) = parse_err("model M { input 8 dense 8 -> 4 , act=relu }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:32"));
    assert!(d.message.ends_with("found `,`"), "{}", d.message);
    assert!(d.help.unwrap_or_default().contains("not `,`"));
}

#[test]
fn unclosed_model_points_at_the_end_of_the_file() {
    let text = "model M {\n    input 8\n    dense 8 -> 4\n";
    let (d, at) = parse_err(text);
    assert_eq!((d.code, at.as_str()), ("E0001", "4:1"));
    assert_eq!(d.primary.span, Span::new(text.len(), text.len()));
    assert!(
        d.message.contains("`}`") && d.message.ends_with("found the end of the file"),
        "{}",
        d.message
    );
    assert_eq!(d.secondary[0].span, Span::new(8, 9), "the `{{` left open");
    let rendered = render_plain(&[d], &SourceFile::new("m.nn", text));
    assert!(rendered.contains("m.nn:4:1") && rendered.contains('^'), "{rendered}");
}

#[test]
fn option_where_a_statement_should_start() {
    let (d, at) = parse_err("model M {\n  act = relu\n}");
    assert_eq!((d.code, at.as_str()), ("E0001", "2:3"));
    assert!(d.message.contains("found the option `act=`"), "{}", d.message);
    assert!(d.help.unwrap_or_default().contains("options follow the statement"));
    // After a residual's block, its options are too late.
    let (d, at) = parse_err("model M { residual { dense 4 } name=r }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:32"));
}

#[test]
fn missing_value_before_the_next_statement() {
    let (d, at) = parse_err("model M {\n  input 8\n  act\n  dense 8 -> 4\n}");
    assert_eq!((d.code, at.as_str()), ("E0001", "4:3"));
    assert!(d.message.contains("expected a value"), "{}", d.message);
    assert!(d.help.unwrap_or_default().contains("`act relu`"));
}

#[test]
fn missing_arrow_or_size() {
    let (d, at) = parse_err("model M { input 8 dense 8 4 }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:27"));
    assert_eq!(d.message, "expected `->`, an option, a statement or `}`, found `4`");
    let (d, at) = parse_err("model M { input 8 dense 8 -> act=relu }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:30"));
    assert_eq!(d.message, "expected a number, found `act`");
    assert_eq!(d.primary.span.range().len(), 3, "the whole word");
}

#[test]
fn globalavgpool_takes_no_value() {
    let (d, at) = parse_err("model M { input [4, 2, 2] globalavgpool 3 }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:41"));
    assert!(d.message.starts_with("expected an option"), "{}", d.message);
}

#[test]
fn unclosed_call_and_shape() {
    let (d, at) = parse_err("model M { input 8 dense 8 -> 4 act=leaky_relu(0.1\n}");
    assert_eq!((d.code, at.as_str()), ("E0001", "2:1"));
    assert_eq!(d.message, "expected `,` or `)`, found `}`");
    let (d, at) = parse_err("model M { input [1, 28 28] }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:24"));
    assert_eq!(d.message, "expected `,` or `]`, found `28`");
}

#[test]
fn text_after_the_model() {
    let (d, at) = parse_err("model A { input 8 }\nmodel B { input 8 }");
    assert_eq!((d.code, at.as_str()), ("E0001", "2:1"));
    assert!(d.message.starts_with("expected the end of the file"), "{}", d.message);
    assert!(d.help.unwrap_or_default().contains("one `model"));
}

#[test]
fn empty_file_and_missing_model() {
    let (d, at) = parse_err("");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:1"));
    assert_eq!(d.message, "expected `model`, found the end of the file");
    let (d, at) = parse_err("  \n  network N { }");
    assert_eq!((d.code, at.as_str()), ("E0001", "2:3"));
    assert_eq!(d.primary.span, Span::new(5, 12));
}

#[test]
fn number_running_into_a_word() {
    let (d, at) = parse_err("model M { input 8dense 8 }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:17"));
    assert_eq!(d.message, "expected a number or `[`, found `8dense`");
}

#[test]
fn zero_denominator_points_at_the_denominator() {
    let (d, at) = parse_err("model M {\n  act rrelu(1/8, 1 / 0)\n}");
    assert_eq!((d.code, at.as_str()), ("E0001", "2:22"));
    assert!(d.message.contains("zero"), "{}", d.message);
}

#[test]
fn number_too_large_for_f64() {
    let (d, at) = parse_err("model M { dropout 1e999 }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:19"));
    assert_eq!(d.primary.span, Span::new(18, 23));
}

#[test]
fn unicode_is_reported_by_character() {
    let (d, at) = parse_err("model M { input 8 é }");
    assert_eq!((d.code, at.as_str()), ("E0001", "1:19"));
    assert_eq!(d.primary.span.range().len(), 2, "one character, two bytes");
    assert!(d.message.ends_with("found `é`"), "{}", d.message);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let depth = 50_000;
    let text = format!("model M {{ {} }}", "residual { ".repeat(depth) + &"} ".repeat(depth));
    let (d, at) = parse_err(&text);
    assert!(d.message.contains("nests too deeply"), "{}", d.message);
    // The first `{` past the limit: the model's is level 1.
    let col = "model M { ".len() + "residual { ".len() * (nnc_syntax::MAX_NESTING - 1) + "residual {".len();
    assert_eq!((d.code, at), ("E0003", format!("1:{col}")));
}

// ---------------------------------------------------------------------------
// No panics

/// A deterministic stream of pseudo-random numbers (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// Deletes, duplicates or inserts a few pieces of `text`.
fn mutate(text: &str, rng: &mut Lcg) -> String {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        ",",
        "=",
        "->",
        "-",
        "/",
        "#",
        "//",
        "\n",
        "\r\n",
        "\t",
        " ",
        "é",
        "\u{0}",
        "1e",
        "0",
        "1/0",
        "9e999",
        "dense",
        "residual {",
        "act",
        "x",
        ";",
        "😀",
    ];
    let mut text = text.to_string();
    for _ in 0..1 + rng.below(3) {
        let at = char_boundary(&text, rng.below(text.len() + 1));
        let len = rng.below(8);
        let end = char_boundary(&text, at + len);
        match rng.below(3) {
            0 => text.replace_range(at..end, ""),
            1 => {
                let piece = text[at..end].to_string();
                text.insert_str(at, &piece);
            }
            _ => text.insert_str(at, PIECES[rng.below(PIECES.len())]),
        }
    }
    text
}

#[test]
fn mutated_programs_never_panic() {
    let seeds = [
        SEED_MLP,
        DIGIT_NET,
        "model M { input 8 residual name=r { dense 8 act=prelu(init=0.1, shared=true) } dropout alpha(1/8) }",
    ];
    let mut rng = Lcg(0x5eed);
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..600 {
        let text = mutate(seeds[round % seeds.len()], &mut rng);
        let source = SourceFile::new("fuzz.nn", text.as_str());
        match parse(&source) {
            Ok(model) => {
                accepted += 1;
                assert!(model.body.iter().all(|s| s.span.end <= model.span.end), "{text:?}");
            }
            Err(diagnostics) => {
                rejected += 1;
                assert!(!diagnostics.is_empty(), "an error without a diagnostic for {text:?}");
                for d in &diagnostics {
                    assert!(d.code == "E0001" || d.code == "E0002", "{text:?}: {d:?}");
                    assert!(
                        text.get(d.primary.span.range()).is_some(),
                        "span off a char boundary: {text:?} {d:?}"
                    );
                }
                // No caret check: codespan draws none under a zero-width
                // character such as U+0000.
                let at = source.loc(diagnostics[0].primary.span.start);
                assert!(
                    render_plain(&diagnostics, &source).contains(&format!("fuzz.nn:{at}")),
                    "{text:?}"
                );
            }
        }
    }
    // Both outcomes occur, so the loop exercises the builder and the errors.
    assert!(
        accepted > 20 && rejected > 20,
        "accepted {accepted}, rejected {rejected}"
    );
}
