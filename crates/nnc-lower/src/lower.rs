//! The walk over statements: names, shapes and ops.

use crate::act::{resolve_act, ActChoice, ActSpec};
use crate::codes;
use crate::init::{resolve_bias_init, resolve_weight_init, Fans};
use crate::norm::{resolve_dropout, resolve_norm, DropKind, DropSpec, NormKind, NormSpec};
use crate::options::Options;
use crate::values::{boolean, real_in, uint, whole, word, MAX_DIM};
use crate::Lowered;
use nnc_diag::{Diagnostic, Loc, SourceFile, Span};
use nnc_ir::{
    window_output, Act, ConvGeometry, Epilogue, Function, Init, Mode, Module, Op, ParamData, ParamId, ParamRole,
    PoolGeometry, ValueId, ValueType,
};
use nnc_syntax::ast::{Model, Number, Stmt, StmtKind, ValueKind};
use std::collections::HashMap;

/// Per-sample elements beyond this are refused (E0404).
const MAX_NUMEL: usize = 1 << 32;

pub(crate) struct Lowerer<'s> {
    source: &'s SourceFile,
    diags: Vec<Diagnostic>,
    module: Module,
    func: Function,
    /// The value the next statement reads.
    cur: ValueId,
    /// The per-sample shape the next statement reads; `None` once an error
    /// made it unknowable (shape checks then stay quiet).
    shape: Option<ValueType>,
    /// Layer names given so far, with where they were given.
    names: HashMap<String, Span>,
    /// How many of the first `counted` diagnostics are errors: `diags`
    /// only grows, so each is looked at once.
    errors: usize,
    counted: usize,
    /// K of the default name `layerK` for the next statement.
    next_index: usize,
    /// Where a softmax was applied: anything after it is an error.
    softmax: Option<Span>,
}

/// Where a statement's ops come from.
struct At<'a> {
    stmt: &'a Stmt,
    name: String,
    loc: Loc,
}

/// The bias and penalties of a dense or conv layer's weight.
struct WeightSpec {
    bias_init: Option<Init>,
    l1: f32,
    l2: f32,
}

/// What follows the linear part of a dense or conv layer.
struct Tail {
    norm: Option<NormSpec>,
    post: bool,
    act: ActSpec,
    dropout: Option<DropSpec>,
}

impl<'s> Lowerer<'s> {
    pub(crate) fn run(model: &Model, source: &'s SourceFile, modes: &[Mode]) -> Lowered {
        let mut this = Lowerer {
            source,
            diags: Vec::new(),
            module: Module::new(model.name.name.clone()),
            func: Function::new(Mode::Train, ValueType::new([])),
            cur: ValueId(0),
            shape: None,
            names: HashMap::new(),
            errors: 0,
            counted: 0,
            next_index: 0,
            softmax: None,
        };
        let body = match model.body.split_first() {
            Some((first, rest)) if matches!(first.kind, StmtKind::Input { .. }) => {
                this.input(first);
                rest
            }
            _ => {
                let d = Diagnostic::error(
                    codes::INPUT,
                    "the model has no `input` statement first",
                    model.name.span,
                    "no input",
                )
                .with_help("start the model with its per-sample input shape, e.g. `input 784` or `input [1, 28, 28]`");
                this.error(d);
                &model.body[..]
            }
        };
        this.stmts(body);
        this.finish(modes)
    }

    fn finish(mut self, modes: &[Mode]) -> Lowered {
        // A softmax error is found only when the next op arrives; report in
        // source order regardless.
        let failed = self.has_errors();
        self.diags.sort_by_key(|d| d.primary.span.start);
        if failed {
            return Lowered {
                module: None,
                diagnostics: self.diags,
            };
        }
        if self.func.ops.is_empty() {
            // An input-only model is the identity; it still needs a value
            // to return, which the input is.
            self.func.output = self.func.input;
        }
        // Copies for all modes but the last, which takes the original.
        let mut functions = Vec::with_capacity(modes.len());
        if let Some((last, rest)) = modes.split_last() {
            functions.extend(rest.iter().map(|mode| Function {
                mode: *mode,
                ..self.func.clone()
            }));
            let func = std::mem::replace(&mut self.func, Function::new(*last, ValueType::new([])));
            functions.push(Function { mode: *last, ..func });
        }
        self.module.functions = functions;
        Lowered {
            module: Some(self.module),
            diagnostics: self.diags,
        }
    }

    /// Errors pushed straight into `diags` by the option resolvers are
    /// counted here too: this is asked once per op.
    fn has_errors(&mut self) -> bool {
        self.errors += self.diags[self.counted..].iter().filter(|d| d.is_error()).count();
        self.counted = self.diags.len();
        self.errors > 0
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn input(&mut self, stmt: &Stmt) {
        let StmtKind::Input { shape } = &stmt.kind else {
            return;
        };
        Options::collect(stmt, &mut self.diags);
        if shape.len() != 1 && shape.len() != 3 {
            let msg = format!("an input is 1-D (`input 784`) or `[C, H, W]`, not {}-D", shape.len());
            let span = shape
                .first()
                .map_or(stmt.keyword_span, |f| f.span)
                .to(shape.last().map_or(stmt.span, |l| l.span));
            self.error(Diagnostic::error(codes::INPUT_RANK, msg, span, "unsupported rank"));
            return;
        }
        let dims: Option<Vec<usize>> = shape.iter().map(|n| self.size(n, "an input size")).collect();
        if let Some(dims) = dims {
            let ty = ValueType::new(dims);
            if ty.numel() > MAX_NUMEL {
                let msg = format!(
                    "{} elements per sample is more than nnc supports ({MAX_NUMEL})",
                    ty.numel()
                );
                self.error(Diagnostic::error(codes::TOO_LARGE, msg, stmt.keyword_span, "too large"));
                return;
            }
            self.func = Function::new(Mode::Train, ty.clone());
            self.cur = self.func.input;
            self.shape = Some(ty);
        }
    }

    fn stmts(&mut self, body: &[Stmt]) {
        for stmt in body {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &Stmt) {
        if let StmtKind::Input { .. } = stmt.kind {
            let d = Diagnostic::error(
                codes::INPUT,
                "`input` must be the model's first statement, and only one",
                stmt.keyword_span,
                "misplaced input",
            )
            .with_help("a model has exactly one input, declared before any layer");
            self.error(d);
            return;
        }
        let opts = Options::collect(stmt, &mut self.diags);
        let name = self.layer_name(stmt, &opts);
        let at = At {
            stmt,
            name,
            loc: self.source.loc(stmt.span.start),
        };
        match &stmt.kind {
            StmtKind::Input { .. } => {}
            StmtKind::Dense {
                in_features,
                out_features,
            } => self.dense(&at, &opts, in_features.as_ref(), out_features),
            StmtKind::Conv {
                in_channels,
                out_channels,
            } => self.conv(&at, &opts, in_channels.as_ref(), out_channels),
            StmtKind::MaxPool | StmtKind::AvgPool => self.pool(&at, &opts),
            StmtKind::GlobalAvgPool => {
                if let Some([c, _, _]) = self.need_image(&at, "globalavgpool") {
                    self.emit(&at, Op::GlobalAvgPool, vec![self.cur], ValueType::new([c]));
                }
            }
            StmtKind::Flatten => {
                if let Some(shape) = self.shape.clone() {
                    self.emit(&at, Op::Flatten, vec![self.cur], ValueType::new([shape.numel()]));
                }
            }
            StmtKind::Act(value) => {
                if let Some(act) = resolve_act(value, &mut self.diags) {
                    self.apply_act(&at, &act);
                }
            }
            StmtKind::Norm(value) => {
                if let Ok(Some(norm)) = resolve_norm(value, &mut self.diags) {
                    self.apply_norm(&at, &norm);
                }
            }
            StmtKind::Dropout(value) => match resolve_dropout(value, &mut self.diags) {
                Some(DropSpec {
                    kind: DropKind::Connect,
                    span,
                    ..
                }) => {
                    let d = Diagnostic::error(
                        codes::OPTION_NOT_HERE,
                        "dropconnect masks a layer's weights, so it cannot stand alone",
                        span,
                        "not a standalone dropout",
                    )
                    .with_help("write it on the layer: `dense 256 dropout=dropconnect(0.5)`");
                    self.error(d);
                }
                Some(drop) => self.apply_dropout(&at, &drop),
                None => {}
            },
            StmtKind::Residual(body) => self.residual(&at, body),
        }
    }

    /// The statement's `name=` or `layerK`, counted depth-first from 0.
    fn layer_name(&mut self, stmt: &Stmt, opts: &Options) -> String {
        let index = self.next_index;
        self.next_index += 1;
        let (name, span) = match opts.get("name") {
            Some(opt) => match &opt.value.kind {
                ValueKind::Word(w) => (w.clone(), opt.value.span),
                _ => {
                    let d = Diagnostic::error(
                        codes::BAD_ARGUMENT,
                        "a layer name must be an identifier",
                        opt.value.span,
                        "expected a name",
                    );
                    self.error(d);
                    return format!("layer{index}");
                }
            },
            None => (format!("layer{index}"), stmt.keyword_span),
        };
        if let Some(&first) = self.names.get(&name) {
            let d = Diagnostic::error(
                codes::DUPLICATE_NAME,
                format!("two layers are named `{name}`"),
                span,
                "name used again here",
            )
            .with_secondary(first, "first used here")
            .with_help("parameter names derive from layer names, so each must be unique");
            self.error(d);
        } else {
            self.names.insert(name.clone(), span);
        }
        name
    }

    /// Appends an op whose result has `shape` (computed by the checker);
    /// the IR is built only while the program has no error.
    fn emit(&mut self, at: &At, op: Op, args: Vec<ValueId>, shape: ValueType) {
        if let Some(softmax) = self.softmax.take() {
            let d = Diagnostic::error(
                codes::SOFTMAX_NOT_LAST,
                "softmax must be the model's last operation",
                softmax,
                "softmax here",
            )
            .with_secondary(at.stmt.keyword_span, "but this comes after it")
            .with_help(
                "softmax turns scores into probabilities at the very end; apply it last, or use a different activation",
            );
            self.error(d);
        }
        if shape.numel() > MAX_NUMEL {
            let msg = format!(
                "{} elements per sample is more than nnc supports ({MAX_NUMEL})",
                shape.numel()
            );
            self.error(Diagnostic::error(
                codes::TOO_LARGE,
                msg,
                at.stmt.keyword_span,
                "too large",
            ));
            self.shape = None;
            return;
        }
        self.shape = Some(shape.clone());
        if self.has_errors() {
            return;
        }
        match self
            .func
            .push(&self.module.params, op, args, at.name.clone(), vec![at.loc])
        {
            Ok(v) if *self.func.value_type(v) == shape => self.cur = v,
            Ok(v) => {
                let msg = format!(
                    "internal: checker computed {shape} but the IR shape rule gives {}",
                    self.func.value_type(v)
                );
                self.error(Diagnostic::error(
                    codes::INTERNAL,
                    msg,
                    at.stmt.keyword_span,
                    "while lowering this",
                ));
            }
            Err(e) => {
                let msg = format!("internal: {e}");
                self.error(Diagnostic::error(
                    codes::INTERNAL,
                    msg,
                    at.stmt.keyword_span,
                    "while lowering this",
                ));
            }
        }
    }

    fn param(&mut self, name: String, shape: Vec<usize>, role: ParamRole, init: Init) -> ParamId {
        self.module.add_param(ParamData::init(name, shape, role, init))
    }

    /// A size written as a bare number (`dense 800`, `input [1, 28, 28]`).
    fn size(&mut self, n: &Number, what: &str) -> Option<usize> {
        whole(n.value, n.span, what, 1, &mut self.diags).map(|v| v as usize)
    }

    /// The current shape as 1-D features, or E0302 with a hint.
    fn need_features(&mut self, at: &At, what: &str, span: Span) -> Option<usize> {
        match self.shape.as_ref()?.dims.as_slice() {
            [f] => Some(*f),
            dims => {
                let d = Diagnostic::error(
                    codes::RANK_MISMATCH,
                    format!("{what} needs 1-D features"),
                    span,
                    format!("the previous layer yields {}", dims_text(dims)),
                )
                .with_help("add `flatten` or `globalavgpool` before it");
                self.error(d);
                let _ = at;
                None
            }
        }
    }

    /// The current shape as `[C, H, W]`, or E0302.
    fn need_image(&mut self, at: &At, what: &str) -> Option<[usize; 3]> {
        self.need_image_at(what, at.stmt.keyword_span)
    }

    fn need_image_at(&mut self, what: &str, span: Span) -> Option<[usize; 3]> {
        match self.shape.as_ref()?.dims.as_slice() {
            [c, h, w] => Some([*c, *h, *w]),
            dims => {
                let d = Diagnostic::error(
                    codes::RANK_MISMATCH,
                    format!("{what} needs [C, H, W] feature maps"),
                    span,
                    format!("the previous layer yields 1-D features {}", dims_text(dims)),
                )
                .with_help(format!(
                    "{what} works on images; on 1-D features use `dense` layers and batch or layer norm"
                ));
                self.error(d);
                None
            }
        }
    }

    /// Checks a declared input size against the current one.
    fn check_in(&mut self, declared: Option<&Number>, actual: usize, unit: &str) {
        let Some(declared) = declared else { return };
        let Some(n) = self.size(declared, "an input size") else {
            return;
        };
        if n != actual {
            let msg = format!("this layer expects {n} input {unit}s, but the previous layer yields {actual}");
            let d = Diagnostic::error(codes::SIZE_MISMATCH, msg, declared.span, format!("expected {actual}"))
                .with_help(format!(
                    "the previous layer yields {actual} {unit}s; write {actual} here or leave it out to infer it"
                ));
            self.error(d);
        }
    }

    fn tail(&mut self, opts: &Options, span: Span) -> Tail {
        let act = opts
            .get("act")
            .and_then(|o| resolve_act(&o.value, &mut self.diags))
            .unwrap_or_else(|| ActSpec::identity(span));
        let norm = opts
            .get("norm")
            .and_then(|o| resolve_norm(&o.value, &mut self.diags).ok().flatten());
        let post = opts
            .get("norm_pos")
            .and_then(|o| word(&o.value, "norm_pos", &["pre", "post"], &mut self.diags))
            .is_some_and(|w| w == "post");
        let dropout = opts
            .get("dropout")
            .and_then(|o| resolve_dropout(&o.value, &mut self.diags));
        Tail {
            norm,
            post,
            act,
            dropout,
        }
    }

    /// Bias flag, bias init and weight penalties, shared by dense and conv.
    fn weight_spec(&mut self, opts: &Options) -> WeightSpec {
        let has_bias = opts
            .get("bias")
            .map_or(Some(true), |o| boolean(&o.value, "bias", &mut self.diags));
        let bias_init = resolve_bias_init(opts.get("bias_init").map(|o| &o.value), &mut self.diags);
        let penalty = |key: &str, diags: &mut Vec<Diagnostic>| {
            opts.get(key)
                .and_then(|o| real_in(&o.value, key, |x| x >= 0.0, "at least 0", diags))
                .unwrap_or(0.0) as f32
        };
        let l1 = penalty("l1", &mut self.diags);
        let l2 = penalty("l2", &mut self.diags);
        WeightSpec {
            bias_init: if has_bias == Some(true) { bias_init } else { None },
            l1,
            l2,
        }
    }

    /// Resolves the weight's init for its fans and activation, and adds the
    /// weight (`[rows, ...]`) and bias (`[rows]`) parameters.
    fn weight_and_bias(
        &mut self,
        at: &At,
        opts: &Options,
        act: &ActSpec,
        fans: Fans,
        shape: Vec<usize>,
        spec: WeightSpec,
    ) -> Option<(ParamId, Option<ParamId>)> {
        let init = opts.get("init").map(|o| &o.value);
        let gain = opts.get("gain").map(|o| &o.value);
        let init = resolve_weight_init(init, gain, act, fans, &mut self.diags)?;
        let rows = shape.first().copied().unwrap_or(1);
        let mut weight = ParamData::init(format!("{}.weight", at.name), shape, ParamRole::Weight, init);
        (weight.l1, weight.l2) = (spec.l1, spec.l2);
        let weight = self.module.add_param(weight);
        let bias = spec
            .bias_init
            .map(|b| self.param(format!("{}.bias", at.name), vec![rows], ParamRole::Bias, b));
        Some((weight, bias))
    }

    fn dense(&mut self, at: &At, opts: &Options, in_features: Option<&Number>, out_features: &Number) {
        let out = self.size(out_features, "an output size");
        let mut tail = self.tail(opts, at.stmt.keyword_span);
        if let Some(DropSpec {
            kind: DropKind::Block { .. },
            span,
            ..
        }) = &tail.dropout
        {
            let d = Diagnostic::error(
                codes::OPTION_NOT_HERE,
                "dropblock drops squares of feature maps: conv layers only",
                *span,
                "not for dense",
            )
            .with_help("use `dropout=P` on dense layers");
            self.error(d);
            tail.dropout = None;
        }
        let spec = self.weight_spec(opts);
        let span = in_features.map_or(at.stmt.keyword_span, |n| n.span);
        let inp = match self.need_features(at, "dense", span) {
            Some(f) => {
                self.check_in(in_features, f, "feature");
                Some(f)
            }
            None if self.shape.is_none() => in_features.and_then(|n| self.size(n, "an input size")),
            None => None,
        };
        let (Some(inp), Some(out)) = (inp, out) else {
            self.shape = out.map(|o| ValueType::new([o * tail.act.pieces()]));
            return self.tail_ops(at, &tail);
        };
        let rows = self.rows(out, &tail.act, out_features.span);
        let fans = Fans {
            fan_in: inp,
            fan_out: rows,
        };
        let Some((weight, bias)) = self.weight_and_bias(at, opts, &tail.act, fans, vec![rows, inp], spec) else {
            self.shape = Some(ValueType::new([rows]));
            return self.tail_ops(at, &tail);
        };
        let dropconnect = dropconnect(&tail);
        let op = Op::Linear {
            weight,
            bias,
            dropconnect,
            epilogue: Epilogue::default(),
        };
        self.emit(at, op, vec![self.cur], ValueType::new([rows]));
        self.tail_ops(at, &tail);
    }

    /// OUT·pieces: the units a layer computes before maxout.
    fn rows(&mut self, out: usize, act: &ActSpec, span: Span) -> usize {
        let rows = out * act.pieces();
        if rows as u64 > MAX_DIM {
            let msg = format!(
                "{out} outputs × {} maxout pieces is more units than nnc supports ({MAX_DIM})",
                act.pieces()
            );
            self.error(Diagnostic::error(codes::TOO_LARGE, msg, span, "too large"));
        }
        rows
    }

    /// The norm, activation and dropout after a layer's linear part, in the
    /// order `norm_pos` asks for.
    fn tail_ops(&mut self, at: &At, tail: &Tail) {
        if tail.post {
            self.apply_act(at, &tail.act);
            if let Some(norm) = &tail.norm {
                self.apply_norm(at, norm);
            }
        } else {
            if let Some(norm) = &tail.norm {
                self.apply_norm(at, norm);
            }
            self.apply_act(at, &tail.act);
        }
        match &tail.dropout {
            Some(DropSpec {
                kind: DropKind::Connect,
                ..
            })
            | None => {}
            Some(drop) => self.apply_dropout(at, drop),
        }
    }

    fn conv(&mut self, at: &At, opts: &Options, in_channels: Option<&Number>, out_channels: &Number) {
        let out = self.size(out_channels, "an output channel count");
        let tail = self.tail(opts, at.stmt.keyword_span);
        let spec = self.weight_spec(opts);
        let kernel = match opts.get("k") {
            Some(o) => uint(&o.value, "the kernel size k", 1, &mut self.diags),
            None => {
                let d = Diagnostic::error(
                    codes::MISSING,
                    "conv needs a kernel size",
                    at.stmt.keyword_span,
                    "missing `k=`",
                )
                .with_help("add `k=3` (or another odd size)");
                self.error(d);
                None
            }
        };
        let stride = self.uint_opt(opts, "stride", "the stride", 1);
        let dilation = self.uint_opt(opts, "dilation", "the dilation", 1);
        let groups = self.uint_opt(opts, "groups", "groups", 1);
        let image = self.need_image(at, "conv");
        if let Some([c, _, _]) = image {
            self.check_in(in_channels, c, "channel");
        }
        let rows = out.map(|o| self.rows(o, &tail.act, out_channels.span));
        if let (Some(g), Some([c, _, _]), Some(rows), Some(opt)) = (groups, image, rows, opts.get("groups")) {
            if c % g as usize != 0 || rows % g as usize != 0 {
                let msg = format!("{g} groups must divide both the {c} input channels and the {rows} output channels");
                self.error(Diagnostic::error(codes::GROUPS, msg, opt.value.span, "does not divide"));
            }
        }
        let (Some(k), Some(s), Some(d), Some(g), Some([c, h, w]), Some(rows)) =
            (kernel, stride, dilation, groups, image, rows)
        else {
            self.shape = None;
            return self.tail_ops(at, &tail);
        };
        let Some(pads) = self.conv_pads(opts, [h, w], k, s, d) else {
            self.shape = None;
            return self.tail_ops(at, &tail);
        };
        let geometry = ConvGeometry {
            kernel: k,
            stride: s,
            dilation: d,
            groups: g,
            pads,
        };
        let span = opts.get("k").map_or(at.stmt.keyword_span, |o| o.value.span);
        let Some((ho, wo)) = self.window([h, w], pads, k, s, d, span) else {
            self.shape = None;
            return self.tail_ops(at, &tail);
        };
        let (k, g) = (k as usize, g as usize);
        let fans = Fans {
            fan_in: c / g * k * k,
            fan_out: rows * k * k,
        };
        let shape = vec![rows, c / g, k, k];
        let Some((weight, bias)) = self.weight_and_bias(at, opts, &tail.act, fans, shape, spec) else {
            self.shape = Some(ValueType::new([rows, ho, wo]));
            return self.tail_ops(at, &tail);
        };
        let op = Op::Conv2d {
            weight,
            bias,
            geometry,
            dropconnect: dropconnect(&tail),
            epilogue: Epilogue::default(),
        };
        self.emit(at, op, vec![self.cur], ValueType::new([rows, ho, wo]));
        self.tail_ops(at, &tail);
    }

    fn uint_opt(&mut self, opts: &Options, key: &str, what: &str, default: u32) -> Option<u32> {
        match opts.get(key) {
            Some(o) => uint(&o.value, what, 1, &mut self.diags),
            None => Some(default),
        }
    }

    /// `pad=valid` (0), `pad=P`, or `pad=same`: ⌈H/S⌉ outputs, the odd
    /// pixel of padding at the bottom/right (ONNX `SAME_UPPER`).
    fn conv_pads(&mut self, opts: &Options, [h, w]: [usize; 2], k: u32, s: u32, d: u32) -> Option<[u32; 4]> {
        let Some(opt) = opts.get("pad") else {
            return Some([0; 4]);
        };
        if let ValueKind::Number(_) = opt.value.kind {
            let p = whole_or_zero(&opt.value, "the padding", &mut self.diags)?;
            return Some([p; 4]);
        }
        let mode = word(&opt.value, "pad", &["same", "valid"], &mut self.diags)?;
        if mode == "valid" {
            return Some([0; 4]);
        }
        let total = |size: usize| {
            let out = size.div_ceil(s as usize);
            let needed = (out - 1) * s as usize + (k as usize - 1) * d as usize + 1;
            needed.saturating_sub(size) as u32
        };
        let (th, tw) = (total(h), total(w));
        Some([th / 2, tw / 2, th - th / 2, tw - tw / 2])
    }

    /// The output size of a sliding window over `[h, w]`, or E0303.
    fn window(
        &mut self,
        [h, w]: [usize; 2],
        pads: [u32; 4],
        k: u32,
        s: u32,
        d: u32,
        span: Span,
    ) -> Option<(usize, usize)> {
        let ho = window_output(h, pads[0] + pads[2], k, s, d);
        let wo = window_output(w, pads[1] + pads[3], k, s, d);
        match (ho, wo) {
            (Ok(ho), Ok(wo)) => Some((ho, wo)),
            _ => {
                let reach = d as usize * (k as usize - 1) + 1;
                let msg =
                    format!("a window of {reach}×{reach} does not fit the {h}×{w} feature map: the shape reaches zero");
                let d = Diagnostic::error(codes::ZERO_SIZE, msg, span, "window too large")
                    .with_help("use a smaller kernel, padding, or fewer pooling steps before this layer");
                self.error(d);
                None
            }
        }
    }

    fn pool(&mut self, at: &At, opts: &Options) {
        let what = at.stmt.kind.keyword();
        let kernel = match opts.get("k") {
            Some(o) => uint(&o.value, "the window size k", 1, &mut self.diags),
            None => {
                let d = Diagnostic::error(
                    codes::MISSING,
                    format!("{what} needs a window size"),
                    at.stmt.keyword_span,
                    "missing `k=`",
                )
                .with_help("add `k=2`");
                self.error(d);
                None
            }
        };
        let stride = match opts.get("stride") {
            Some(o) => uint(&o.value, "the stride", 1, &mut self.diags),
            None => kernel,
        };
        let pad = match opts.get("pad") {
            Some(o) => whole_or_zero(&o.value, "the padding", &mut self.diags).map(|p| (p, o.value.span)),
            None => Some((0, at.stmt.keyword_span)),
        };
        let image = self.need_image(at, what);
        let (Some(k), Some(s), Some((p, pad_span)), Some([c, h, w])) = (kernel, stride, pad, image) else {
            self.shape = None;
            return;
        };
        if p > k / 2 {
            let msg = format!("a pool's padding must be at most half its window ({}), got {p}", k / 2);
            self.error(Diagnostic::error(codes::POOL_PAD, msg, pad_span, "too much padding"));
            self.shape = None;
            return;
        }
        let span = opts.get("k").map_or(at.stmt.keyword_span, |o| o.value.span);
        let Some((ho, wo)) = self.window([h, w], [p; 4], k, s, 1, span) else {
            self.shape = None;
            return;
        };
        let geometry = PoolGeometry {
            kernel: k,
            stride: s,
            pads: [p; 4],
        };
        let op = match at.stmt.kind {
            StmtKind::MaxPool => Op::MaxPool(geometry),
            _ => Op::AvgPool(geometry),
        };
        self.emit(at, op, vec![self.cur], ValueType::new([c, ho, wo]));
    }

    fn apply_act(&mut self, at: &At, act: &ActSpec) {
        let Some(shape) = self.shape.clone() else {
            return;
        };
        match &act.choice {
            ActChoice::Identity => {}
            ActChoice::Plain(Act::Maxout { pieces }) => {
                let c = shape.channels();
                if c % *pieces as usize != 0 {
                    let msg = format!("maxout with {pieces} pieces needs a multiple of {pieces} units, got {c}");
                    self.error(Diagnostic::error(
                        codes::MAXOUT_PIECES,
                        msg,
                        act.span,
                        "does not divide",
                    ));
                    self.shape = None;
                    return;
                }
                let mut dims = shape.dims.clone();
                dims[0] = c / *pieces as usize;
                self.emit(
                    at,
                    Op::Act(Act::Maxout { pieces: *pieces }),
                    vec![self.cur],
                    ValueType::new(dims),
                );
            }
            ActChoice::Plain(a) => {
                self.emit(at, Op::Act(a.clone()), vec![self.cur], shape);
                if a == &Act::Softmax {
                    self.softmax = Some(act.span);
                }
            }
            ActChoice::Prelu { init, shared } => {
                let slopes = if *shared { 1 } else { shape.channels() };
                let weight = self.param(
                    format!("{}.act.weight", at.name),
                    vec![slopes],
                    ParamRole::ActWeight,
                    Init::constant("constant", *init),
                );
                self.emit(at, Op::Act(Act::Prelu { weight }), vec![self.cur], shape);
            }
        }
    }

    fn apply_norm(&mut self, at: &At, norm: &NormSpec) {
        if norm.kind.needs_image() {
            let what = format!("{} norm", norm.kind.name());
            if self.need_image_at(&what, norm.span).is_none() {
                return;
            }
        }
        let Some(shape) = self.shape.clone() else {
            return;
        };
        let c = shape.channels();
        let name = &at.name;
        let affine = |this: &mut Self, shape: Vec<usize>| {
            let w = this.param(
                format!("{name}.norm.weight"),
                shape.clone(),
                ParamRole::NormWeight,
                Init::constant("ones", 1.0),
            );
            let b = this.param(
                format!("{name}.norm.bias"),
                shape,
                ParamRole::NormBias,
                Init::constant("zeros", 0.0),
            );
            (w, b)
        };
        let op = match norm.kind {
            NormKind::Batch { eps, momentum } => {
                let (weight, bias) = affine(self, vec![c]);
                let running_mean = self.param(
                    format!("{name}.norm.running_mean"),
                    vec![c],
                    ParamRole::RunningMean,
                    Init::constant("zeros", 0.0),
                );
                let running_var = self.param(
                    format!("{name}.norm.running_var"),
                    vec![c],
                    ParamRole::RunningVar,
                    Init::constant("ones", 1.0),
                );
                Op::BatchNorm {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    eps,
                    momentum,
                }
            }
            NormKind::Layer { eps } => {
                let (weight, bias) = affine(self, shape.dims.clone());
                Op::LayerNorm { weight, bias, eps }
            }
            NormKind::Instance { eps } => {
                let (weight, bias) = affine(self, vec![c]);
                Op::InstanceNorm { weight, bias, eps }
            }
            NormKind::Group { groups, eps } => {
                if c % groups as usize != 0 {
                    let msg = format!("group norm with {groups} groups needs a multiple of {groups} channels, got {c}");
                    self.error(
                        Diagnostic::error(codes::GROUPS, msg, norm.span, "does not divide")
                            .with_help(format!("choose groups that divide {c}")),
                    );
                    return;
                }
                let (weight, bias) = affine(self, vec![c]);
                Op::GroupNorm {
                    weight,
                    bias,
                    groups,
                    eps,
                }
            }
            NormKind::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            },
        };
        self.emit(at, op, vec![self.cur], shape);
    }

    fn apply_dropout(&mut self, at: &At, drop: &DropSpec) {
        let op = match drop.kind {
            DropKind::Inverted => Op::Dropout { p: drop.p },
            DropKind::Alpha => Op::AlphaDropout { p: drop.p },
            DropKind::Connect => return,
            DropKind::Block { block } => {
                let Some([_, h, w]) = self.need_image_at("dropblock", drop.span) else {
                    return;
                };
                if block as usize > h.min(w) {
                    let msg = format!("a dropblock block of {block} is larger than the {h}×{w} feature map");
                    self.error(Diagnostic::error(
                        codes::BLOCK_TOO_LARGE,
                        msg,
                        drop.span,
                        "block too large",
                    ));
                    return;
                }
                Op::DropBlock { p: drop.p, block }
            }
        };
        let Some(shape) = self.shape.clone() else {
            return;
        };
        self.emit(at, op, vec![self.cur], shape);
    }

    fn residual(&mut self, at: &At, body: &[Stmt]) {
        if body.is_empty() {
            let d = Diagnostic::error(
                codes::EMPTY_BLOCK,
                "a residual block needs at least one statement",
                at.stmt.span,
                "empty block",
            )
            .with_help("`residual { dense 64 act=relu }` computes x + f(x)");
            self.error(d);
            return;
        }
        let (x, x_shape) = (self.cur, self.shape.clone());
        self.stmts(body);
        let (Some(x_shape), Some(y_shape)) = (x_shape, self.shape.clone()) else {
            return;
        };
        if x_shape != y_shape {
            let msg = format!(
                "a residual block must keep its input's shape: it takes {} but yields {}",
                dims_text(&x_shape.dims),
                dims_text(&y_shape.dims)
            );
            let d = Diagnostic::error(codes::RESIDUAL_SHAPE, msg, at.stmt.keyword_span, "shapes differ").with_help(
                format!(
                    "y = x + f(x) needs f(x) shaped like x: make the block's last layer yield {}",
                    dims_text(&x_shape.dims)
                ),
            );
            self.error(d);
            self.shape = None;
            return;
        }
        self.emit(at, Op::Add, vec![x, self.cur], x_shape);
    }
}

fn dropconnect(tail: &Tail) -> Option<f32> {
    match &tail.dropout {
        Some(DropSpec {
            kind: DropKind::Connect,
            p,
            ..
        }) => Some(*p),
        _ => None,
    }
}

/// A padding: a whole number ≥ 0.
fn whole_or_zero(value: &nnc_syntax::ast::Value, what: &str, diags: &mut Vec<Diagnostic>) -> Option<u32> {
    match value.kind {
        ValueKind::Number(n) => whole(n, value.span, what, 0, diags),
        _ => uint(value, what, 0, diags),
    }
}

/// `700 features` or `[16, 14, 14]`.
fn dims_text(dims: &[usize]) -> String {
    match dims {
        [f] => format!("{f} features"),
        _ => format!("{dims:?}"),
    }
}
