//! The generated struct, its loaders and its forward pass: one block per
//! IR op calling one runtime kernel with constant sizes, in buffers planned
//! here. The `match` over `Op` is exhaustive, like the interpreter's.

use crate::params::{self, dims, usize_lit, Fields};
use crate::{Error, Options};
use nnc_diag::{Loc, SourceFile};
use nnc_ir::{Act, BufferPlan, EpilogueStep, Function, Module, Op, OpData, ParamId, ValueId};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use std::collections::BTreeMap;

/// The marker a comment travels as through the token stream; the
/// formatter's output turns each into a `//` line.
const COMMENT_MARKER: &str = "__nnc_comment";

/// Where a value lives during the forward pass.
pub(crate) enum Home {
    /// The caller's input slice.
    Input,
    /// The caller's output slice (the function's result is written in place).
    Output,
    /// A planned buffer of the workspace.
    Buffer(usize),
}

/// The buffers of the forward pass: the IR's slot plan, keeping only the
/// slots some op writes (the input and output are the caller's).
pub(crate) struct Buffers {
    home: BTreeMap<ValueId, usize>,
    /// Per-sample floats of each buffer.
    pub(crate) lens: Vec<usize>,
    /// Samples a thread an inference pass takes through every op at a
    /// time, if not the whole batch ([`nnc_ir::samples_per_pass`]).
    pub(crate) per_pass: Option<usize>,
}

impl Buffers {
    pub(crate) fn new(module: &Module, func: &Function) -> Result<Buffers, Error> {
        let plan = Buffers::plan(func, &[])?;
        Ok(Buffers {
            per_pass: nnc_ir::samples_per_pass(module, func, &plan),
            ..Buffers::of_plan(func, &plan)
        })
    }

    /// The buffers of a training forward pass: `kept` values (what the
    /// backward reads) are never overwritten.
    pub(crate) fn keeping(func: &Function, kept: &[ValueId]) -> Result<Buffers, Error> {
        Ok(Buffers::of_plan(func, &Buffers::plan(func, kept)?))
    }

    fn plan(func: &Function, kept: &[ValueId]) -> Result<BufferPlan, Error> {
        BufferPlan::keeping(func, kept).ok_or_else(|| Error::Malformed("an op reads an undefined value".into()))
    }

    /// The slots of `plan` that some op writes, renumbered from 0; the
    /// whole batch at once.
    fn of_plan(func: &Function, plan: &BufferPlan) -> Buffers {
        let mut renumber = BTreeMap::new();
        let mut home = BTreeMap::new();
        let mut lens = Vec::new();
        for op in &func.ops {
            if op.result == func.output {
                continue;
            }
            let slot = plan.slot(op.result);
            let buffer = *renumber.entry(slot).or_insert_with(|| {
                lens.push(plan.slot_len[slot]);
                lens.len() - 1
            });
            home.insert(op.result, buffer);
        }
        Buffers {
            home,
            lens,
            per_pass: None,
        }
    }

    pub(crate) fn home(&self, func: &Function, v: ValueId) -> Home {
        if v == func.input {
            Home::Input
        } else if v == func.output {
            Home::Output
        } else {
            Home::Buffer(self.home.get(&v).copied().unwrap_or(0))
        }
    }
}

/// The whole generated item: struct, constants, loaders, forward pass.
pub(crate) fn model(
    module: &Module,
    func: &Function,
    source: &SourceFile,
    options: &Options,
) -> Result<TokenStream, Error> {
    let rt = &options.runtime;
    let type_name = type_name(&module.name);
    let name = Ident::new(&type_name, Span::call_site());
    let fields = Fields::new(module, func, true)?;
    let buffers = Buffers::new(module, func)?;
    let input_dims = &func.value_type(func.input).dims;
    let output_dims = &func.value_type(func.output).dims;

    let field_decls = fields.ident.iter().map(|(id, f)| {
        let p = module.param(*id);
        let doc = format!(" `{}` {:?}", p.name, p.shape);
        if fields.dense.contains_key(id) {
            quote!(#[doc = #doc] #f: #rt::kernels::dense::DenseWeight)
        } else if fields.conv.contains_key(id) {
            quote!(#[doc = #doc] #f: #rt::kernels::conv::ConvWeight)
        } else {
            quote!(#[doc = #doc] #f: ::std::vec::Vec<f32>)
        }
    });
    let loaders = loaders(module, &fields, options)?;
    let forward = forward(func, &fields, &buffers, source, options)?;

    let mut struct_doc = format!(
        " The model `{}` of `{}`: input `[N, {}]`, output `[N, {}]`.",
        module.name,
        source.name(),
        join(input_dims),
        join(output_dims)
    );
    if type_name != module.name {
        struct_doc.push_str(&format!(
            " Named `{type_name}` in Rust: a type name is UpperCamelCase, and never a keyword or a name the \
             generated code or the prelude uses."
        ));
    }
    let (input_dims, output_dims) = (dims(input_dims), dims(output_dims));
    let import = &options.import;
    Ok(quote! {
        #import

        #[doc = #struct_doc]
        pub struct #name {
            #(#field_decls,)*
        }

        // A program may use only part of the API (`embedded` and `forward_into`, say).
        // Init scales such as He's √2 are written as the f32 they are, which
        // clippy would take for a mistyped `SQRT_2`.
        #[allow(dead_code, clippy::approx_constant)]
        impl #name {
            /// The per-sample input shape.
            pub const INPUT: &'static [usize] = &#input_dims;
            /// The per-sample output shape.
            pub const OUTPUT: &'static [usize] = &#output_dims;

            #loaders

            #forward
        }
    })
}

/// `init`, `from_safetensors`, `embedded` and the folding they share.
pub(crate) fn loaders(module: &Module, fields: &Fields, options: &Options) -> Result<TokenStream, Error> {
    let rt = &options.runtime;
    let (stored, derived) = params::closure(module, &fields.ident);
    let stored_list = stored.iter().map(|(id, init)| {
        let p = module.param(*id);
        let (name, shape) = (&p.name, dims(&p.shape));
        let dist = params::distribution(init, rt);
        quote!((#name, &#shape, #dist))
    });
    let folds = derived.iter().map(|(id, d)| {
        let name = &module.param(*id).name;
        let expr = params::operand(module, d);
        let body = quote!(weights.tensors.insert(#name.into(), #expr.finish()););
        let formula = nnc_ir::text::print_derivation(module, d);
        comment_then(options, &format!("{name} = {formula}"), body)
    });
    let stored_binding = if derived.is_empty() {
        quote!(weights)
    } else {
        quote!(mut weights)
    };
    let assemble = fields.ident.iter().map(|(id, f)| {
        let name = &module.param(*id).name;
        if let Some((out, n_in)) = fields.dense.get(id) {
            let (out, n_in) = (usize_lit(*out), usize_lit(*n_in));
            return quote!(#f: DenseWeight::new(&take(#name), #out, #n_in));
        }
        match fields.conv.get(id) {
            Some(g) => quote!(#f: #rt::kernels::conv::ConvWeight::new(&take(#name), &Self::#g)),
            None => quote!(#f: take(#name)),
        }
    });
    let (used_binding, take) = if fields.ident.is_empty() {
        (quote!(_weights), quote!())
    } else {
        (
            quote!(mut weights),
            quote!(let mut take = |name: &str| weights.tensors.remove(name).map(|t| t.data).unwrap_or_default();),
        )
    };
    let embedded = match &options.embed {
        None => quote!(),
        Some(file) => {
            let read: Vec<ParamId> = fields.ident.keys().copied().collect();
            let used_list = read.iter().map(|id| {
                let p = module.param(*id);
                let (name, shape) = (&p.name, dims(&p.shape));
                quote!(#rt::io::weights::Expected { name: #name, shape: &#shape })
            });
            let doc =
                format!(" The weights folded at build time, embedded from `{file}`: no file is read at run time.");
            quote! {
                #[doc = #doc]
                pub fn embedded() -> ::std::result::Result<Self, #rt::Error> {
                    const USED: &[#rt::io::weights::Expected<'static>] = &[#(#used_list),*];
                    let bytes: &[u8] = include_bytes!(#file);
                    let (weights, _unused) = #rt::io::weights::read_safetensors(bytes, "the embedded weights", USED)?;
                    Ok(Self::from_used(weights))
                }
            }
        }
    };
    Ok(quote! {
        /// The stored tensors, by their LANGUAGE.md §7 names: what
        /// `from_safetensors` reads, with the distribution `init` draws each from.
        pub const STORED: &'static [(&'static str, &'static [usize], #rt::init::Distribution)] = &[#(#stored_list),*];

        /// Every parameter drawn from its declared initialiser with its own
        /// stream of `seed`: the numbers `nnc init --seed` writes.
        pub fn init(seed: u64) -> Self {
            let mut weights = #rt::io::weights::Weights::default();
            for (name, shape, dist) in Self::STORED {
                weights.tensors.insert(name.to_string(), #rt::init::draw(dist, name, shape, seed));
            }
            Self::from_stored(weights)
        }

        /// Reads the stored tensors from a safetensors file (what `nnc init`
        /// writes, or a PyTorch `state_dict` saved with these names); a
        /// missing tensor or a wrong shape is an error naming it.
        pub fn from_safetensors(bytes: &[u8]) -> ::std::result::Result<Self, #rt::Error> {
            let expected: ::std::vec::Vec<_> = Self::STORED
                .iter()
                .map(|(name, shape, _)| #rt::io::weights::Expected { name, shape })
                .collect();
            let (weights, _unused) = #rt::io::weights::read_safetensors(bytes, "the weights", &expected)?;
            Ok(Self::from_stored(weights))
        }

        #embedded

        /// Computes the derived parameters (folded batch norms) in f64.
        fn from_stored(#stored_binding: #rt::io::weights::Weights) -> Self {
            #[allow(unused_imports)]
            use #rt::fold::Folded;
            #(#folds)*
            Self::from_used(weights)
        }

        /// Keeps the tensors the forward pass reads, dense weights laid out
        /// for this CPU's kernel.
        fn from_used(#used_binding: #rt::io::weights::Weights) -> Self {
            #[allow(unused_imports)]
            use #rt::kernels::dense::DenseWeight;
            #take
            Self { #(#assemble,)* }
        }
    })
}

/// `forward`, `forward_into`, `workspace` and the constants they plan with.
fn forward(
    func: &Function,
    fields: &Fields,
    buffers: &Buffers,
    source: &SourceFile,
    options: &Options,
) -> Result<TokenStream, Error> {
    let rt = &options.runtime;
    let input_numel = usize_lit(func.value_type(func.input).numel());
    let output_numel = usize_lit(func.value_type(func.output).numel());
    let lens = dims(&buffers.lens);
    let n_buffers = usize_lit(buffers.lens.len());
    let convs = conv_geometries(func, rt);
    let conv_consts = convs
        .iter()
        .map(|(_, ident, g)| quote!(const #ident: #rt::kernels::conv::ConvGeometry = #g;));
    // Inference packs every conv weight once (`Fields`), so a conv needs
    // no room for its packed weight.
    let scratch_terms = convs
        .iter()
        .map(|(_, ident, _)| quote!(.max(Self::#ident.packed_scratch_len(threads))));
    let geometry_of: BTreeMap<usize, Ident> = convs.iter().map(|(i, ident, _)| (*i, ident.clone())).collect();

    let mut blocks = Vec::new();
    for (index, op) in func.ops.iter().enumerate() {
        let block = op_block(func, op, fields, buffers, geometry_of.get(&index), None)?;
        blocks.push(comment_then(options, &op_comment(op, source), block));
    }
    let finish = if func.ops.is_empty() {
        quote!(out.copy_from_slice(x);)
    } else {
        quote!()
    };
    // Every buffer holds some op's result, so every one is named.
    let names = (0..buffers.lens.len()).map(|b| format_ident!("b{}", b));
    let scratch_name = if convs.is_empty() { quote!(_) } else { quote!(scratch) };
    let uses_team = func
        .ops
        .iter()
        .any(|op| matches!(op.op, Op::Linear { .. } | Op::Conv2d { .. }) || op.op.shared_by_samples());
    let team_name = if uses_team { quote!(team) } else { quote!(_) };

    let nd = quote!(#rt::ndarray);
    let (view, shape_check) = if func.value_type(func.input).dims.len() == 1 {
        (quote!(#nd::ArrayView2<f32>), quote!(x.ncols() == #input_numel))
    } else {
        (
            quote!(#nd::ArrayViewD<f32>),
            quote!(x.shape().get(1..) == Some(Self::INPUT)),
        )
    };
    let body = quote! {
        let scratch_len = Self::scratch_len(ws.threads());
        #[allow(unused_imports)]
        use #rt::kernels::{act, conv, dense, epilogue, norm, pool};
        let ([#(#names),*], #scratch_name, #team_name) = ws.split(Self::BUFFERS, batch, scratch_len);
        #(#blocks)*
        #finish
    };
    // A pass of a few samples a thread at a time, where the plan says so.
    let (run, pass_fn, pass_batch, reserve_lanes) = match buffers.per_pass {
        None => (body, quote!(), quote!(batch), quote!()),
        Some(k) => {
            let k = usize_lit(k);
            let run = quote! {
                // A few samples a thread at a time, so that their
                // activations stay in L2 from one layer to the next; on
                // several threads, each thread's through every op alone.
                let lane = (Self::BUFFERS.iter().sum(), Self::scratch_len(1));
                ws.in_passes(x, batch, #k, out, lane, &|ws, x, n, out| self.pass(x, n, out, ws));
            };
            let pass_fn = quote! {
                /// The forward pass on `batch` samples of `x` into `out`.
                fn pass(&self, x: &[f32], batch: usize, out: &mut [f32], ws: &mut #rt::Workspace) {
                    #body
                }
            };
            let reserve_lanes = quote! {
                ws.reserve_lanes(Self::BUFFERS.iter().sum(), #k, Self::scratch_len(1));
            };
            (run, pass_fn, quote!(batch.min(#k)), reserve_lanes)
        }
    };
    let (out_array, new_out) = if func.value_type(func.output).dims.len() == 1 {
        (
            quote!(#nd::Array2<f32>),
            quote!(#nd::Array2::<f32>::zeros((batch, #output_numel))),
        )
    } else {
        (
            quote!(#nd::ArrayD<f32>),
            quote!(#nd::ArrayD::<f32>::zeros(#nd::IxDyn(&[&[batch][..], Self::OUTPUT].concat()))),
        )
    };
    Ok(quote! {
        /// Per-sample floats of each buffer of the forward pass (values
        /// share a buffer once the last reader of the previous one has run).
        const BUFFERS: [usize; #n_buffers] = #lens;
        #(#conv_consts)*

        /// Scratch floats the forward pass needs with `threads` threads.
        fn scratch_len(threads: usize) -> usize {
            let _ = threads;
            0 #(#scratch_terms)*
        }

        /// A workspace for batches of up to `batch` samples on `threads`
        /// threads: `forward_into` with it allocates nothing.
        pub fn workspace(batch: usize, threads: usize) -> ::std::io::Result<#rt::Workspace> {
            let mut ws = #rt::Workspace::new(threads)?;
            ws.reserve(Self::BUFFERS.iter().sum(), #pass_batch, Self::scratch_len(threads));
            #reserve_lanes
            Ok(ws)
        }

        /// The forward pass on a batch (`[N, ...INPUT]`), on the calling
        /// thread. Panics if the per-sample shape is not `INPUT`.
        pub fn forward(&self, x: #view) -> #out_array {
            assert!(#shape_check, "input of shape {:?}, expected [N, {:?}]", x.shape(), Self::INPUT);
            let batch = x.shape()[0];
            let x = x.as_standard_layout();
            let mut out = #new_out;
            let mut ws = #rt::Workspace::single();
            if let (Some(x), Some(y)) = (x.as_slice(), out.as_slice_mut()) {
                self.forward_into(x, batch, y, &mut ws);
            }
            out
        }

        /// The forward pass on `batch` samples, batch-major, into `out`.
        /// Allocates nothing once `ws` has held a batch this large. Panics if
        /// `x` or `out` does not hold `batch` samples.
        pub fn forward_into(&self, x: &[f32], batch: usize, out: &mut [f32], ws: &mut #rt::Workspace) {
            assert_eq!(x.len(), batch * #input_numel, "forward_into: the input does not hold {} samples", batch);
            assert_eq!(out.len(), batch * #output_numel, "forward_into: the output does not hold {} samples", batch);
            #run
        }
        #pass_fn
    })
}

/// Each conv's geometry as a named constant: `(op index, name, literal)`.
pub(crate) fn conv_geometries(func: &Function, rt: &TokenStream) -> Vec<(usize, Ident, TokenStream)> {
    conv_geometry_names(func)
        .into_iter()
        .filter_map(|(index, name)| {
            let op = &func.ops[index];
            let Op::Conv2d {
                geometry: g, epilogue, ..
            } = &op.op
            else {
                return None;
            };
            let (x, y) = (func.value_type(op.args[0]), func.value_type(op.result));
            let [c, h, w, o] = [x.channels(), x.height(), x.width(), y.channels()].map(usize_lit);
            let [k, s, dl, gr] = [g.kernel, g.stride, g.dilation, g.groups].map(|v| usize_lit(v as usize));
            let pool = usize_lit(epilogue.pool_window().map_or(1, |p| p as usize));
            let pads = dims(&g.pads.map(|p| p as usize));
            let literal = quote! {
                #rt::kernels::conv::ConvGeometry {
                    in_channels: #c, height: #h, width: #w, out_channels: #o,
                    kernel: #k, stride: #s, dilation: #dl, groups: #gr, pads: #pads, pool: #pool,
                }
            };
            Some((index, name, literal))
        })
        .collect()
}

/// The name of each conv's geometry constant: `(op index, name)`.
pub(crate) fn conv_geometry_names(func: &Function) -> Vec<(usize, Ident)> {
    let mut out = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for (index, op) in func.ops.iter().enumerate() {
        if !matches!(op.op, Op::Conv2d { .. }) {
            continue;
        }
        let mut name = format!("{}_GEOMETRY", model_ident(&op.layer).to_uppercase());
        if taken.contains(&name) {
            name = format!("{name}_{index}");
        }
        taken.insert(name.clone());
        out.push((index, Ident::new(&name, Span::call_site())));
    }
    out
}

/// How an op of a train function runs: in training, recording for the
/// backward into `record` (a slice expression), drawing from stream
/// `index` of the step's seed.
pub(crate) struct TrainOp {
    pub(crate) index: usize,
    pub(crate) record: TokenStream,
}

/// One op as a block: bind its input and output slices, call the kernel;
/// with `train`, the op's training form (the interpreter's `exec.rs`).
pub(crate) fn op_block(
    func: &Function,
    op: &OpData,
    fields: &Fields,
    buffers: &Buffers,
    conv_geometry: Option<&Ident>,
    train: Option<&TrainOp>,
) -> Result<TokenStream, Error> {
    let y_ty = func.value_type(op.result);
    // An inference op that the team shares runs on its units (a pool's
    // planes), so the call is written for a unit's type.
    let shared = train.is_none() && op.op.shared_by_samples();
    let input_ty = func.value_type(op.args[0]);
    let per_sample = if shared { op.op.units_per_sample(input_ty) } else { 1 };
    let unit_ty = match per_sample {
        1 => input_ty.clone(),
        // A channel plane.
        _ => nnc_ir::ValueType::new([1, input_ty.height(), input_ty.width()]),
    };
    let x_ty = &unit_ty;
    let (channels, inner) = (usize_lit(x_ty.channels()), usize_lit(x_ty.inner()));
    let read = |v: ValueId| {
        let n = usize_lit(func.value_type(v).numel());
        match buffers.home(func, v) {
            Home::Input => quote!(x),
            Home::Output => quote!(&*out),
            Home::Buffer(b) => {
                let b = format_ident!("b{}", b);
                quote!(&#b[..batch * #n])
            }
        }
    };
    let x = read(op.args[0]);
    let y_len = usize_lit(y_ty.numel());
    let y = match buffers.home(func, op.result) {
        Home::Output => quote!(&mut *out),
        Home::Buffer(b) => {
            let b = format_ident!("b{}", b);
            quote!(&mut #b[..batch * #y_len])
        }
        Home::Input => return Err(Error::Malformed("an op writes the function's input".into())),
    };
    let p = |id: &ParamId| fields.slice(*id);
    // What a training op records into, and its generator (the
    // interpreter's streams: bit 63 and the op's index).
    let (record, rng) = match train {
        Some(t) => {
            let stream = Literal::u64_unsuffixed((1u64 << 63) | t.index as u64);
            (t.record.clone(), quote!(&mut Rng::new(seed, #stream)))
        }
        None => (quote!(), quote!()),
    };
    let call = match &op.op {
        Op::Linear {
            weight,
            bias,
            epilogue,
            dropconnect,
        } => {
            let ep = epilogue_tokens(bias.as_ref(), epilogue, fields)?;
            let f = &fields.ident[weight];
            let (n_out, n_in) = (usize_lit(y_ty.channels()), usize_lit(x_ty.numel()));
            match (dropconnect, train) {
                (Some(rate), Some(_)) => {
                    let (rate, w_len) = (f32_lit(*rate), usize_lit(fields.len(*weight)));
                    quote! {
                        // A fresh mask each step, so the masked weight is used once, as rows.
                        let masked = &mut scratch[..#w_len];
                        dropout::dropconnect_save(&self.#f, #rate, #rng, masked, #record);
                        dense::dense(x, batch, #n_in, masked, #n_out, &#ep, y, team);
                    }
                }
                _ if fields.dense.contains_key(weight) => {
                    quote!(dense::dense_weight(x, batch, &self.#f, &#ep, y, team);)
                }
                _ => quote!(dense::dense(x, batch, #n_in, &self.#f, #n_out, &#ep, y, team);),
            }
        }
        Op::Conv2d {
            weight,
            bias,
            epilogue,
            dropconnect,
            ..
        } => {
            let ep = epilogue_tokens(bias.as_ref(), epilogue, fields)?;
            let g = conv_geometry.ok_or_else(|| Error::Malformed("a conv without geometry".into()))?;
            let w = p(weight);
            match (dropconnect, train) {
                (Some(rate), Some(_)) => {
                    let (rate, w_len) = (f32_lit(*rate), usize_lit(fields.len(*weight)));
                    quote! {
                        let (masked, cols) = scratch.split_at_mut(#w_len);
                        dropout::dropconnect_save(#w, #rate, #rng, masked, #record);
                        let cols = &mut cols[..Self::#g.scratch_len(team.threads())];
                        conv::conv2d(x, batch, &Self::#g, masked, &#ep, y, cols, team);
                    }
                }
                _ if fields.conv.contains_key(weight) => {
                    let f = &fields.ident[weight];
                    quote! {
                        let scratch = &mut scratch[..Self::#g.packed_scratch_len(team.threads())];
                        conv::conv2d_packed(x, batch, &Self::#g, &self.#f, &#ep, y, scratch, team);
                    }
                }
                _ => quote! {
                    let scratch = &mut scratch[..Self::#g.scratch_len(team.threads())];
                    conv::conv2d(x, batch, &Self::#g, #w, &#ep, y, scratch, team);
                },
            }
        }
        Op::Dropout { p: rate } if train.is_some() => {
            let rate = f32_lit(*rate);
            quote!(dropout::dropout_save(x, #rate, #rng, y, #record);)
        }
        Op::AlphaDropout { p: rate } if train.is_some() => {
            let rate = f32_lit(*rate);
            quote!(dropout::alpha_dropout_save(x, #rate, #rng, y, #record);)
        }
        Op::DropBlock { p: rate, block } if train.is_some() => {
            let (h, w) = (usize_lit(x_ty.height()), usize_lit(x_ty.width()));
            let (rate, block) = (f32_lit(*rate), usize_lit(*block as usize));
            quote!(dropout::dropblock(x, batch, #channels, #h, #w, #rate, #block, #rng, y, #record);)
        }
        Op::Act(Act::Rrelu { lower, upper }) if train.is_some() => {
            let (lower, upper) = (f32_lit(*lower), f32_lit(*upper));
            quote!(dropout::rrelu_train_save(x, #lower, #upper, #rng, y, #record);)
        }
        Op::BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            momentum,
        } if train.is_some() => {
            let (g, b, e, m) = (p(weight), p(bias), f32_lit(*eps), f32_lit(*momentum));
            let (mean, var) = (&fields.ident[running_mean], &fields.ident[running_var]);
            quote! {
                norm::batch_norm_train_save(
                    x, batch, #channels, #inner, #g, #b, &mut self.#mean, &mut self.#var, #e, #m, y, #record, team,
                );
            }
        }
        Op::LayerNorm { weight, bias, eps } if train.is_some() => {
            let (g, b, e, numel) = (p(weight), p(bias), f32_lit(*eps), usize_lit(x_ty.numel()));
            quote!(norm::layer_norm_save(x, batch, #numel, #g, #b, #e, y, #record);)
        }
        Op::InstanceNorm { weight, bias, eps } if train.is_some() => {
            let (g, b, e) = (p(weight), p(bias), f32_lit(*eps));
            quote!(norm::instance_norm_save(x, batch, #channels, #inner, #g, #b, #e, y, #record);)
        }
        Op::GroupNorm {
            weight,
            bias,
            groups,
            eps,
        } if train.is_some() => {
            let (g, b, e, groups) = (p(weight), p(bias), f32_lit(*eps), usize_lit(*groups as usize));
            quote!(norm::group_norm_save(x, batch, #channels, #inner, #groups, #g, #b, #e, y, #record);)
        }
        Op::MaxPool(g) | Op::AvgPool(g) => {
            let geometry = pool_geometry(x_ty, g);
            let call = match (&op.op, train) {
                // Training keeps which element each window took.
                (Op::MaxPool(_), Some(_)) => quote!(pool::max_pool2d_argmax(x, batch, &g, y, #record);),
                (Op::MaxPool(_), None) => quote!(pool::max_pool2d(x, batch, &g, y);),
                _ => quote!(pool::avg_pool2d(x, batch, &g, y);),
            };
            quote! {
                let g = #geometry;
                #call
            }
        }
        Op::GlobalAvgPool => quote!(pool::global_avg_pool(x, batch, #channels, #inner, y);),
        // Inference: every dropout is the identity (the default pipeline removes them).
        Op::Flatten | Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => {
            quote!(y.copy_from_slice(x);)
        }
        Op::Act(Act::Softmax) => quote!(act::softmax(x, batch, #channels, #inner, y);),
        Op::Act(Act::Maxout { pieces }) => {
            let pieces = usize_lit(*pieces as usize);
            quote!(act::maxout(x, batch, #channels, #inner, #pieces, y);)
        }
        Op::Act(act) => {
            let a = activation(act, fields)?;
            quote!(#a.apply_into(x, y, #channels, #inner);)
        }
        Op::BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            ..
        } => {
            let (g, b, m, v, e) = (p(weight), p(bias), p(running_mean), p(running_var), f32_lit(*eps));
            quote!(norm::batch_norm_infer(x, batch, #channels, #inner, #g, #b, #m, #v, #e, y);)
        }
        Op::LayerNorm { weight, bias, eps } => {
            let (g, b, e, numel) = (p(weight), p(bias), f32_lit(*eps), usize_lit(x_ty.numel()));
            quote!(norm::layer_norm(x, batch, #numel, #g, #b, #e, y);)
        }
        Op::InstanceNorm { weight, bias, eps } => {
            let (g, b, e) = (p(weight), p(bias), f32_lit(*eps));
            quote!(norm::instance_norm(x, batch, #channels, #inner, #g, #b, #e, y);)
        }
        Op::GroupNorm {
            weight,
            bias,
            groups,
            eps,
        } => {
            let (g, b, e, groups) = (p(weight), p(bias), f32_lit(*eps), usize_lit(*groups as usize));
            quote!(norm::group_norm(x, batch, #channels, #inner, #groups, #g, #b, #e, y);)
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            let (size, a, b, c) = (
                usize_lit(*size as usize),
                f32_lit(*alpha),
                f32_lit(*beta),
                f32_lit(*bias),
            );
            quote!(norm::lrn(x, batch, #channels, #inner, #size, #a, #b, #c, y);)
        }
        Op::Affine { scale, shift } => {
            let (s, t) = (p(scale), p(shift));
            quote!(norm::affine(x, batch, #channels, #inner, #s, #t, y);)
        }
        Op::Add => {
            let b = read(op.args[1]);
            return Ok(quote! {{
                let (a, b, y) = (#x, #b, #y);
                norm::add(a, b, y);
            }});
        }
    };
    if shared {
        // Inference: the op's samples (a pool's planes) are independent;
        // the team shares them (the interpreter's `exec.rs` does the same).
        let n = if mentions(&call, "batch") {
            quote!(batch)
        } else {
            quote!(_)
        };
        let units = match per_sample {
            1 => quote!(batch),
            planes => {
                let planes = usize_lit(planes);
                quote!(batch * #planes)
            }
        };
        return Ok(quote! {{
            let (x, y) = (#x, #y);
            team.per_samples(#units, x, y, &|x, #n, y| { #call });
        }});
    }
    if let Some(residual) = op.args.get(1) {
        // A conv that adds a residual: `r`, bound with `x` before either
        // name is shadowed (the residual may be the function's input).
        let r = read(*residual);
        return Ok(quote! {{
            let (x, y, r) = (#x, #y, #r);
            #call
        }});
    }
    Ok(quote! {{
        let (x, y) = (#x, #y);
        #call
    }})
}

/// Whether `tokens` use the identifier `name` anywhere, inside groups too.
/// (Not a search of their text: a proc macro's tokens print with other
/// spacing than proc-macro2's, `(x, batch, &g, y)` against `(x , batch ,
/// & g , y)`, and the word search missed `batch` in the macro's expansion.)
fn mentions(tokens: &TokenStream, name: &str) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => ident == name,
        proc_macro2::TokenTree::Group(group) => mentions(&group.stream(), name),
        _ => false,
    })
}

/// The runtime's `PoolGeometry` of a pool on input `x`, as a literal (the
/// `pool` module in scope).
pub(crate) fn pool_geometry(x: &nnc_ir::ValueType, g: &nnc_ir::PoolGeometry) -> TokenStream {
    let (channels, h, w) = (usize_lit(x.channels()), usize_lit(x.height()), usize_lit(x.width()));
    let (kernel, stride) = (usize_lit(g.kernel as usize), usize_lit(g.stride as usize));
    let pads = dims(&g.pads.map(|v| v as usize));
    quote! {
        pool::PoolGeometry {
            channels: #channels, height: #h, width: #w, kernel: #kernel, stride: #stride, pads: #pads,
        }
    }
}

/// `Epilogue { bias, steps, residual }` for a fused dense or conv; a step
/// that adds a residual splits the steps into those before the sum and
/// those after, and the residual's values are the slice named `r`.
pub(crate) fn epilogue_tokens(
    bias: Option<&ParamId>,
    epilogue: &nnc_ir::Epilogue,
    fields: &Fields,
) -> Result<TokenStream, Error> {
    let bias = match bias {
        Some(id) => {
            let b = fields.slice(*id);
            quote!(Some(#b))
        }
        None => quote!(None),
    };
    let runtime = |steps: &[EpilogueStep]| {
        steps
            .iter()
            .map(|step| match step {
                EpilogueStep::Affine { scale, shift } => {
                    let (s, t) = (fields.slice(*scale), fields.slice(*shift));
                    Ok(quote!(epilogue::EpilogueStep::Affine { scale: #s, shift: #t }))
                }
                EpilogueStep::Act(act) => {
                    let a = activation(act, fields)?;
                    Ok(quote!(epilogue::EpilogueStep::Act(#a)))
                }
                EpilogueStep::Add => Err(Error::Malformed("two residual sums in one epilogue".into())),
                EpilogueStep::MaxPool { .. } => Err(Error::Malformed("a pool among the epilogue's steps".into())),
            })
            .collect::<Result<Vec<_>, Error>>()
    };
    let (before, after) = epilogue.split_at_sum();
    let residual = match after {
        Some(then) => {
            let then = runtime(then)?;
            quote!(Some(epilogue::Residual { values: r, then: &[#(#then),*] }))
        }
        None => quote!(None),
    };
    let steps = runtime(before)?;
    Ok(quote!(epilogue::Epilogue { bias: #bias, steps: &[#(#steps),*], residual: #residual }))
}

/// The runtime's activation for an element-wise IR one; RReLU is its
/// inference form, the mean slope (computed as the interpreter does).
pub(crate) fn activation(act: &Act, fields: &Fields) -> Result<TokenStream, Error> {
    let a = quote!(act::Activation);
    Ok(match act {
        Act::Sigmoid => quote!(#a::Sigmoid),
        Act::Tanh => quote!(#a::Tanh),
        Act::Relu => quote!(#a::Relu),
        Act::LeakyRelu { alpha } => {
            let v = f32_lit(*alpha);
            quote!(#a::LeakyRelu { alpha: #v })
        }
        Act::Prelu { weight } => {
            let s = fields.slice(*weight);
            quote!(#a::Prelu { slopes: #s })
        }
        Act::Rrelu { lower, upper } => {
            let v = f32_lit((lower + upper) / 2.0);
            quote!(#a::LeakyRelu { alpha: #v })
        }
        Act::Elu { alpha } => {
            let v = f32_lit(*alpha);
            quote!(#a::Elu { alpha: #v })
        }
        Act::Selu => quote!(#a::Selu),
        Act::Softplus { beta } => {
            let v = f32_lit(*beta);
            quote!(#a::Softplus { beta: #v })
        }
        Act::Gelu => quote!(#a::Gelu),
        Act::Silu => quote!(#a::Silu),
        Act::Maxout { .. } | Act::Softmax => {
            return Err(Error::Malformed(format!(
                "{} as an element-wise activation",
                act.name()
            )))
        }
    })
}

/// An exact f32 literal (Rust prints the shortest digits that round-trip;
/// every place it goes is typed `f32`).
pub(crate) fn f32_lit(v: f32) -> TokenStream {
    if v.is_nan() {
        quote!(f32::NAN)
    } else if v.is_infinite() {
        if v > 0.0 {
            quote!(f32::INFINITY)
        } else {
            quote!(f32::NEG_INFINITY)
        }
    } else {
        let magnitude = Literal::f32_unsuffixed(v.abs());
        if v.is_sign_negative() {
            quote!(-#magnitude)
        } else {
            quote!(#magnitude)
        }
    }
}

/// Names a generated type may not take: the keyword `Self`, and what the
/// generated code names without a path (the prelude's types, traits and
/// variants). All of Rust's other keywords and primitive types are
/// lowercase, which UpperCamelCase never gives.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Self",
    "Some",
    "None",
    "Ok",
    "Err",
    "Option",
    "Result",
    "Vec",
    "String",
    "Box",
    "ToString",
    "ToOwned",
    "Clone",
    "Copy",
    "Send",
    "Sync",
    "Sized",
    "Unpin",
    "Drop",
    "Fn",
    "FnMut",
    "FnOnce",
    "Iterator",
    "IntoIterator",
    "DoubleEndedIterator",
    "ExactSizeIterator",
    "Extend",
    "Default",
    "Eq",
    "PartialEq",
    "Ord",
    "PartialOrd",
    "AsRef",
    "AsMut",
    "Into",
    "From",
    "TryFrom",
    "TryInto",
    "FromIterator",
];

/// The Rust type for a model name: UpperCamelCase (`seed_mlp` →
/// `SeedMlp`, `mlp` → `Mlp`; a name in that form already is kept), with
/// `Model` appended to a name in [`TAKEN_TYPE_NAMES`] (`Self` → `SelfModel`)
/// or one with no letter or digit (`_` → `Model`). So every model name the
/// language accepts (`rt`, `f32`, `fn`, `self`, `crate`, `gen`) gives a type
/// that compiles without warnings.
pub fn type_name(model: &str) -> String {
    let mut name = String::new();
    for part in model_ident(model).split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars);
        }
    }
    if name.is_empty() || TAKEN_TYPE_NAMES.contains(&name.as_str()) {
        name.push_str("Model");
    }
    name
}

/// A name made of identifier characters (the language's names are
/// identifiers already; anything else becomes `_`).
fn model_ident(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'M');
    }
    s
}

pub(crate) fn join(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// What an op's comment says: the IR op, then each statement it stands for
/// with its line.
/// How much of a statement an op's comment quotes.
const COMMENT_COLUMNS: usize = 100;

pub(crate) fn op_comment(op: &OpData, source: &SourceFile) -> String {
    let mut text = format!("{} [{}]", op_summary(op), op.layer);
    for loc in &op.locs {
        let line_of = |at: Loc| {
            source
                .offset(at)
                .and_then(|start| source.text().get(start as usize..))
                .and_then(|rest| rest.lines().next())
                .unwrap_or("")
                .trim()
        };
        let line = line_of(Loc { line: loc.line, col: 1 });
        // A long line (a one-line program) is quoted from the statement
        // on, cut: it would otherwise be repeated whole for every op.
        let quoted = if line.chars().nth(COMMENT_COLUMNS).is_none() {
            line.to_string()
        } else {
            let statement = line_of(*loc);
            let mut cut: String = statement.chars().take(COMMENT_COLUMNS).collect();
            cut.push('…');
            cut
        };
        text.push_str(&format!("\nline {}: {quoted}", loc.line));
    }
    text
}

/// The op's name with its fused epilogue: `linear + affine + elu`.
fn op_summary(op: &OpData) -> String {
    let steps = match &op.op {
        Op::Linear { epilogue, .. } | Op::Conv2d { epilogue, .. } => &epilogue.steps[..],
        _ => &[],
    };
    let mut s = op.op.name().to_string();
    for step in steps {
        s.push_str(" + ");
        s.push_str(match step {
            EpilogueStep::Affine { .. } => "affine",
            EpilogueStep::Act(a) => a.name(),
            EpilogueStep::Add => "add",
            EpilogueStep::MaxPool { .. } => "maxpool",
        });
    }
    s
}

/// `body`, preceded by a comment marker for each line of `text` when
/// comments are on.
pub(crate) fn comment_then(options: &Options, text: &str, body: TokenStream) -> TokenStream {
    if !options.comments {
        return body;
    }
    let marker = Ident::new(COMMENT_MARKER, Span::call_site());
    let lines = text.lines().map(|l| quote!(#marker!(#l);));
    quote!(#(#lines)* #body)
}

/// Turns the formatter's comment markers (on one line, or wrapped over
/// three) into `//` lines, with a blank line before each group that does
/// not open a block.
#[cfg(feature = "pretty")]
pub(crate) fn comments_into_text(formatted: &str) -> String {
    let mut out = String::with_capacity(formatted.len());
    let mut previous = String::new();
    let opening = format!("{COMMENT_MARKER}!(");
    let mut lines = formatted.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let literal = match trimmed.strip_prefix(&opening) {
            Some("") => {
                let literal = lines.next().unwrap_or("").trim().to_string();
                lines.next(); // `);`
                Some(literal)
            }
            Some(rest) => rest.strip_suffix(");").map(str::to_string),
            None => None,
        };
        let Some(literal) = literal else {
            out.push_str(line);
            out.push('\n');
            previous = line.to_string();
            continue;
        };
        let indent = &line[..line.len() - trimmed.len()];
        if !previous.trim_start().starts_with("//") && !previous.trim_end().ends_with('{') {
            out.push('\n');
        }
        let comment = format!("{indent}// {}", unescape(literal.trim_end_matches(',')));
        out.push_str(&comment);
        out.push('\n');
        previous = comment;
    }
    out
}

/// The text of the string literal a comment travels as, on one line
/// (control characters, such as a tab from the source line, become spaces).
#[cfg(feature = "pretty")]
fn unescape(literal: &str) -> String {
    let text = syn::parse_str::<syn::LitStr>(literal).map_or_else(|_| literal.to_string(), |l| l.value());
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::type_name;

    #[test]
    fn type_names_are_upper_camel_case_and_never_taken() {
        let cases = [
            ("DigitNet", "DigitNet"),
            ("MLP", "MLP"),
            ("seed_relu_he", "SeedReluHe"),
            ("mlp", "Mlp"),
            ("rt", "Rt"),
            ("f32", "F32"),
            ("fn", "FnModel"),
            ("self", "SelfModel"),
            ("Self", "SelfModel"),
            ("some", "SomeModel"),
            ("crate", "Crate"),
            ("_", "Model"),
            ("__x__y", "XY"),
        ];
        for (model, rust) in cases {
            assert_eq!(type_name(model), rust, "{model}");
        }
    }
}
