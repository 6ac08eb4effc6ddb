//! Random valid programs from a small grammar, driven by a stream of
//! choice bytes: each decision takes the next byte modulo the number of
//! options, and a missing byte is 0, the simplest option. Proptest shrinks
//! the stream towards shorter and smaller bytes, so a failure shrinks to a
//! short program of simple statements.
//!
//! The builder tracks the per-sample shape as `check` does and only draws
//! what `check` accepts, including conv geometries that put whole kernel
//! rows in the padding (`k=5 pad=2` on a 1×1 map), kernels larger than the
//! map with padding, strides larger than the kernel, and dilation.

/// A generated program and what the test needs to know about it.
#[derive(Clone, Debug)]
pub struct Program {
    pub text: String,
    /// It draws random numbers in training (dropout with p > 0, dropconnect,
    /// DropBlock, RReLU with lower < upper).
    pub random: bool,
    /// A conv has a kernel row or column whose every output reads the
    /// padding (issue 11, point 1).
    pub tap_in_padding: bool,
}

/// The per-sample shape while building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Features(usize),
    Image(usize, usize, usize),
}

/// Element-wise activations: `(text, random in training)`.
const ACTS: &[(&str, bool)] = &[
    ("relu", false),
    ("tanh", false),
    ("sigmoid", false),
    ("leaky_relu(0.1)", false),
    ("prelu", false),
    ("prelu(0.1, shared=true)", false),
    ("rrelu", true),
    ("rrelu(0.1, 0.3)", true),
    ("rrelu(0.2, 0.2)", false),
    ("elu", false),
    ("elu(0.5)", false),
    ("selu", false),
    ("softplus", false),
    ("softplus(2)", false),
    ("gelu", false),
    ("silu", false),
    ("linear", false),
];

/// Statements per program (outside residual blocks) and residual depth.
const MAX_STATEMENTS: usize = 8;
const MAX_DEPTH: usize = 2;
/// Map sides stay at most this after a conv with large padding.
const MAX_SIDE: usize = 12;

/// Builds a program from choice bytes.
pub fn build(name: &str, choices: &[u8]) -> Program {
    let mut b = Builder {
        choices,
        at: 0,
        out: Vec::new(),
        random: false,
        tap_in_padding: false,
    };
    let shape = b.input();
    let n = 1 + b.pick(MAX_STATEMENTS);
    let mut shape = shape;
    for _ in 0..n {
        shape = b.statement(shape, 0);
    }
    b.maybe_softmax(shape);
    Program {
        text: format!("model {name} {{ {} }}", b.out.join(" ")),
        random: b.random,
        tap_in_padding: b.tap_in_padding,
    }
}

struct Builder<'c> {
    choices: &'c [u8],
    at: usize,
    out: Vec<String>,
    random: bool,
    tap_in_padding: bool,
}

impl Builder<'_> {
    /// The next choice among `n` (0 when the stream is exhausted).
    fn pick(&mut self, n: usize) -> usize {
        let byte = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte as usize % n.max(1)
    }

    /// One of `options`.
    fn one_of<T: Copy>(&mut self, options: &[T]) -> T {
        options[self.pick(options.len())]
    }

    /// `1 ..= max`.
    fn size(&mut self, max: usize) -> usize {
        1 + self.pick(max)
    }

    fn emit(&mut self, text: String) {
        self.out.push(text);
    }

    fn input(&mut self) -> Shape {
        if self.pick(2) == 0 {
            let f = self.size(16);
            self.emit(format!("input {f}"));
            Shape::Features(f)
        } else {
            let (c, h, w) = (self.size(3), self.size(8), self.size(8));
            self.emit(format!("input [{c}, {h}, {w}]"));
            Shape::Image(c, h, w)
        }
    }

    /// One statement that accepts `shape`; returns the new shape.
    fn statement(&mut self, shape: Shape, depth: usize) -> Shape {
        match shape {
            Shape::Features(f) => match self.pick(7) {
                0 | 1 => self.dense(f, None),
                2 => self.act(shape),
                3 => self.norm(shape),
                4 => self.dropout(shape),
                5 if depth < MAX_DEPTH => self.residual(shape, depth),
                _ => {
                    self.emit("flatten".into());
                    shape
                }
            },
            Shape::Image(c, h, w) => match self.pick(11) {
                0..=2 => self.conv(c, h, w),
                3 => self.pool(c, h, w, false),
                4 => self.act(shape),
                5 => self.norm(shape),
                6 => self.dropout(shape),
                7 if depth < MAX_DEPTH => self.residual(shape, depth),
                8 => {
                    self.emit("globalavgpool".into());
                    Shape::Features(c)
                }
                9 => {
                    self.emit("flatten".into());
                    Shape::Features(c * h * w)
                }
                _ => self.pool(c, h, w, false),
            },
        }
    }

    /// A statement that keeps `shape` (inside a residual block).
    fn same_shape_statement(&mut self, shape: Shape, depth: usize) -> Shape {
        match (shape, self.pick(6)) {
            (Shape::Features(f), 0) => self.dense(f, Some(f)),
            (Shape::Image(c, h, w), 0) => self.same_conv(c, h, w),
            (Shape::Image(c, h, w), 1) => self.pool(c, h, w, true),
            (_, 2) => self.norm(shape),
            (_, 3) => self.dropout(shape),
            (_, 4) if depth < MAX_DEPTH => self.residual(shape, depth),
            _ => self.elementwise_act(shape),
        }
    }

    fn residual(&mut self, shape: Shape, depth: usize) -> Shape {
        self.emit("residual {".into());
        for _ in 0..1 + self.pick(2) {
            self.same_shape_statement(shape, depth + 1);
        }
        self.emit("}".into());
        shape
    }

    /// `act=…` text for a layer, and the pieces maxout divides its units by.
    fn layer_act(&mut self) -> (Option<String>, usize) {
        match self.pick(6) {
            0 => (None, 1),
            1 => {
                let pieces = 2 + self.pick(2);
                (Some(format!("act=maxout({pieces})")), pieces)
            }
            _ => {
                let (act, random) = self.one_of(ACTS);
                self.random |= random;
                (Some(format!("act={act}")), 1)
            }
        }
    }

    /// Options shared by dense and conv: norm, its position, dropout, bias.
    fn layer_options(&mut self, image: bool, opts: &mut Vec<String>) {
        let norms: &[&str] = if image {
            &["batch", "layer", "instance", "group(1)", "lrn(3, 0.1)"]
        } else {
            &["batch", "layer"]
        };
        if self.pick(3) == 0 {
            let norm = self.one_of(norms);
            opts.push(format!("norm={norm}"));
            if self.pick(2) == 0 {
                opts.push("norm_pos=post".into());
            }
        }
        match self.pick(6) {
            0 => {
                opts.push("dropout=0.3".into());
                self.random = true;
            }
            1 => {
                opts.push("dropout=dropconnect(0.2)".into());
                self.random = true;
            }
            2 => opts.push("dropout=0".into()),
            _ => {}
        }
        if self.pick(4) == 0 {
            opts.push("bias=false".into());
        }
    }

    /// `dense OUT` (OUT drawn unless `keep` fixes it).
    fn dense(&mut self, f: usize, keep: Option<usize>) -> Shape {
        let out = keep.unwrap_or_else(|| self.size(16));
        let mut opts = Vec::new();
        let (act, _pieces) = self.layer_act();
        opts.extend(act);
        self.layer_options(false, &mut opts);
        self.emit(format!("dense {f} -> {out} {}", opts.join(" ")).trim_end().to_string());
        Shape::Features(out)
    }

    fn conv(&mut self, c: usize, h: usize, w: usize) -> Shape {
        let out = self.size(8);
        let k = self.size(5) as u32;
        let stride = self.size(3) as u32;
        let dilation = self.one_of(&[1u32, 1, 2, 3]);
        let span = (dilation * (k - 1) + 1) as usize;
        // Padding: valid, same, or a number up to 6; raised to the least
        // that fits when the window is larger than the map, which puts
        // whole kernel rows in the padding.
        let mut pad = match self.pick(4) {
            0 => Pad::Number(0),
            1 => Pad::Same,
            _ => Pad::Number(self.pick(7)),
        };
        if let Pad::Number(p) = pad {
            if h.min(w) + 2 * p < span {
                pad = Pad::Number((span - h.min(w)).div_ceil(2));
            }
        }
        let out_side = |side: usize, pad: &Pad| match pad {
            Pad::Same => side.div_ceil(stride as usize),
            Pad::Number(p) => (side + 2 * p - span) / stride as usize + 1,
        };
        if out_side(h, &pad).max(out_side(w, &pad)) > MAX_SIDE {
            pad = Pad::Same;
        }
        let (ho, wo) = (out_side(h, &pad), out_side(w, &pad));
        let before = |side: usize, out: usize| match pad {
            // `pad=same` puts the smaller half first (ONNX `SAME_UPPER`).
            Pad::Same => ((out - 1) * stride as usize + span).saturating_sub(side) / 2,
            Pad::Number(p) => p,
        };
        let window = Window {
            kernel: k as usize,
            stride: stride as usize,
            dilation: dilation as usize,
        };
        self.tap_in_padding |=
            window.tap_in_padding(h, before(h, ho), ho) || window.tap_in_padding(w, before(w, wo), wo);
        let (act, pieces) = self.layer_act();
        let rows = out * pieces;
        let divisors: Vec<usize> = (1..=c)
            .filter(|g| c.is_multiple_of(*g) && rows.is_multiple_of(*g))
            .collect();
        let groups = self.one_of(&divisors);
        let mut opts = vec![format!("k={k}")];
        if stride > 1 {
            opts.push(format!("stride={stride}"));
        }
        opts.push(pad.option());
        if dilation > 1 {
            opts.push(format!("dilation={dilation}"));
        }
        if groups > 1 {
            opts.push(format!("groups={groups}"));
        }
        opts.extend(act);
        self.layer_options(true, &mut opts);
        if self.pick(8) == 0 && ho.min(wo) >= 3 {
            opts.retain(|o| !o.starts_with("dropout"));
            opts.push("dropout=dropblock(0.2, block=3)".into());
            self.random = true;
        }
        self.emit(format!("conv {c} -> {out} {}", opts.join(" ")));
        Shape::Image(out, ho, wo)
    }

    /// A conv that keeps `[c, h, w]`: stride 1, `pad=same`, any kernel and
    /// dilation (odd total padding puts the extra pixel bottom/right).
    fn same_conv(&mut self, c: usize, h: usize, w: usize) -> Shape {
        let k = self.size(5);
        let dilation = self.one_of(&[1, 1, 2]);
        let divisors: Vec<usize> = (1..=c).filter(|g| c.is_multiple_of(*g)).collect();
        let groups = self.one_of(&divisors);
        let act = match self.pick(3) {
            0 => String::new(),
            _ => {
                let (act, random) = self.one_of(ACTS);
                self.random |= random;
                format!("act={act}")
            }
        };
        self.emit(format!(
            "conv {c} -> {c} k={k} pad=same dilation={dilation} groups={groups} {act}"
        ));
        let window = Window {
            kernel: k,
            stride: 1,
            dilation,
        };
        let before = |side: usize| (side - 1 + (k - 1) * dilation + 1 - side) / 2;
        self.tap_in_padding |= window.tap_in_padding(h, before(h), h) || window.tap_in_padding(w, before(w), w);
        Shape::Image(c, h, w)
    }

    /// Max or average pooling; `keep` asks for a size-keeping one (odd
    /// window, stride 1, pad k/2).
    fn pool(&mut self, c: usize, h: usize, w: usize, keep: bool) -> Shape {
        let kind = self.one_of(&["maxpool", "avgpool"]);
        let (k, stride, pad) = if keep {
            let k = self.one_of(&[1, 3, 5]);
            (k, 1, k / 2)
        } else {
            let k = self.size(4);
            let stride = match self.pick(3) {
                0 => k,
                _ => self.size(3),
            };
            (k, stride, self.pick(k / 2 + 1))
        };
        if h.min(w) + 2 * pad < k {
            return self.elementwise_act(Shape::Image(c, h, w));
        }
        // The default stride is the window.
        let stride_text = if stride == k {
            String::new()
        } else {
            format!("stride={stride}")
        };
        self.emit(format!("{kind} k={k} {stride_text} pad={pad}"));
        let side = |s: usize| (s + 2 * pad - k) / stride + 1;
        Shape::Image(c, side(h), side(w))
    }

    fn elementwise_act(&mut self, shape: Shape) -> Shape {
        let (act, random) = self.one_of(ACTS);
        self.random |= random;
        self.emit(format!("act {act}"));
        shape
    }

    /// An element-wise activation, or maxout when the channels divide.
    fn act(&mut self, shape: Shape) -> Shape {
        let c = match shape {
            Shape::Features(f) => f,
            Shape::Image(c, _, _) => c,
        };
        let pieces = 2 + self.pick(2);
        if self.pick(4) == 0 && c % pieces == 0 {
            self.emit(format!("act maxout({pieces})"));
            return match shape {
                Shape::Features(f) => Shape::Features(f / pieces),
                Shape::Image(c, h, w) => Shape::Image(c / pieces, h, w),
            };
        }
        self.elementwise_act(shape)
    }

    fn norm(&mut self, shape: Shape) -> Shape {
        let text = match shape {
            Shape::Features(_) => self.one_of(&["batch", "layer"]).to_string(),
            // `instance(affine=false)` (LANGUAGE.md §5) is not accepted yet.
            Shape::Image(c, _, _) => match self.pick(5) {
                0 => "batch".into(),
                1 => "layer".into(),
                2 => "instance".into(),
                3 => {
                    let divisors: Vec<usize> = (1..=c).filter(|g| c.is_multiple_of(*g)).collect();
                    format!("group({})", self.one_of(&divisors))
                }
                _ => {
                    let size = self.one_of(&[1, 3, 5]);
                    let alpha = self.one_of(&["1e-4", "0.1", "1"]);
                    let beta = self.one_of(&["0.75", "0.5"]);
                    let bias = self.one_of(&["1", "2"]);
                    format!("lrn({size}, {alpha}, {beta}, {bias})")
                }
            },
        };
        self.emit(format!("norm {text}"));
        shape
    }

    fn dropout(&mut self, shape: Shape) -> Shape {
        let p = self.one_of(&["0", "0.1", "0.5"]);
        let text = match (shape, self.pick(3)) {
            (_, 0) => p.to_string(),
            (_, 1) => format!("alpha({p})"),
            (Shape::Image(_, h, w), _) => {
                let blocks: Vec<usize> = [1, 3, 5].into_iter().filter(|b| *b <= h.min(w)).collect();
                format!("dropblock({p}, block={})", self.one_of(&blocks))
            }
            _ => p.to_string(),
        };
        self.random |= p != "0";
        self.emit(format!("dropout {text}"));
        shape
    }

    /// A softmax at the end, one time in four.
    fn maybe_softmax(&mut self, shape: Shape) {
        match (shape, self.pick(4)) {
            (_, 0) => self.emit("act softmax".into()),
            (Shape::Features(f), 1) => {
                let out = self.size(10);
                self.emit(format!("dense {f} -> {out} act=softmax"));
            }
            _ => {}
        }
    }
}

/// A conv window along one axis.
struct Window {
    kernel: usize,
    stride: usize,
    dilation: usize,
}

impl Window {
    /// True if some kernel tap reads only padding: for every output
    /// position `o`, `o·stride + tap·dilation − before` is off the map.
    fn tap_in_padding(&self, side: usize, before: usize, out: usize) -> bool {
        (0..self.kernel).any(|tap| {
            (0..out).all(|o| {
                let at = (o * self.stride + tap * self.dilation) as isize - before as isize;
                at < 0 || at >= side as isize
            })
        })
    }
}

enum Pad {
    Same,
    Number(usize),
}

impl Pad {
    fn option(&self) -> String {
        match self {
            Pad::Same => "pad=same".into(),
            // `pad=valid` is `pad=0`; write it both ways.
            Pad::Number(0) => "pad=valid".into(),
            Pad::Number(p) => format!("pad={p}"),
        }
    }
}

/// A fixed set of programs drawn from `seed` with nnc's own generator
/// (the same on every machine): what the generated-code test compiles.
/// Every other program starts with a conv on an image input (the first
/// byte picks the input's rank, the sixth the first statement), so that
/// conv geometries reach generated code too.
pub fn fixed_set(seed: u64, count: usize) -> Vec<Program> {
    let mut rng = nnc_runtime::Rng::new(seed, 0);
    (0..count)
        .map(|i| {
            let mut choices: Vec<u8> = (0..64).map(|_| (rng.uniform() * 256.0) as u8).collect();
            if i % 2 == 0 {
                choices[0] |= 1;
                choices[5] = 0;
            }
            build(&format!("Random{i}"), &choices)
        })
        .collect()
}
