//! The generated training step: `<Model>Train` holds the stored parameters
//! the train function reads (running statistics too: training moves them),
//! and its `grad_into` runs the train function forward, recording what the
//! backward reads, then the module's backward function step by step into a
//! `<Model>Grads`. It is the interpreter's `exec.rs` and `backward.rs`
//! written out with constant sizes, in regions of one workspace planned
//! here: forward values (the IR's buffer plan keeping saved values), each
//! op's record, and gradient values (the IR's gradient plan).

use crate::emit::{
    activation, comment_then, conv_geometries, f32_lit, join, loaders, op_block, op_comment, pool_geometry, Buffers,
    Home, TrainOp,
};
use crate::params::{dims, field_name, usize_lit, Fields};
use crate::{Error, Options};
use nnc_diag::SourceFile;
use nnc_ir::grad::rules::{record_size, rule, Read, Record, Rule};
use nnc_ir::grad::{Backward, Loss, Step, StepKind, Target};
use nnc_ir::{Act, Function, GradientPlan, Mode, Module, Op, ParamId, Producers, ValueId};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use std::collections::{BTreeMap, BTreeSet};

/// Where everything of a step lives: the workspace's float regions (forward
/// values `b*`, records `r*`, gradients `g*`) and index regions (arg-maxes
/// `a*`).
struct Layout {
    forward: Buffers,
    /// Per recording op, the region of its record.
    records: BTreeMap<usize, Ident>,
    /// Per gradient value, its slot `g*`.
    grad_slot: Vec<usize>,
    sizes: Vec<(usize, usize)>,
    names: Vec<Ident>,
    index_lens: Vec<usize>,
    index_names: Vec<Ident>,
}

impl Layout {
    fn new(module: &Module, train: &Function, backward: &Backward) -> Result<Layout, Error> {
        let forward = Buffers::keeping(train, &backward.kept_values())?;
        let mut sizes: Vec<(usize, usize)> = forward.lens.iter().map(|len| (*len, 0)).collect();
        let mut names: Vec<Ident> = (0..sizes.len()).map(|b| format_ident!("b{}", b)).collect();
        let (mut records, mut index_lens, mut index_names) = (BTreeMap::new(), Vec::new(), Vec::new());
        let param_len = |id: ParamId| module.params.get(id.0 as usize).map_or(0, |p| p.shape.iter().product());
        for (index, op) in train.ops.iter().enumerate() {
            let Some((record, per_sample, fixed)) = record_size(train, op, &param_len) else {
                continue;
            };
            let name = if record == Record::Argmax {
                index_lens.push(per_sample);
                index_names.push(format_ident!("a{}", index));
                format_ident!("a{}", index)
            } else {
                sizes.push((per_sample, fixed));
                names.push(format_ident!("r{}", index));
                format_ident!("r{}", index)
            };
            records.insert(index, name);
        }
        let plan = GradientPlan::new(backward);
        for (slot, len) in plan.slot_len.iter().enumerate() {
            names.push(format_ident!("g{}", slot));
            sizes.push((*len, 0));
        }
        Ok(Layout {
            forward,
            records,
            grad_slot: plan.slot_of,
            sizes,
            names,
            index_lens,
            index_names,
        })
    }
}

/// What the backward's blocks need to know.
struct Context<'a> {
    module: &'a Module,
    train: &'a Function,
    backward: &'a Backward,
    fields: &'a Fields,
    /// Field of each trained parameter's gradient in `<Model>Grads`.
    grads: &'a BTreeMap<ParamId, Ident>,
    layout: &'a Layout,
    producers: Producers,
    rules: Vec<Rule>,
    geometry_of: BTreeMap<usize, Ident>,
}

/// `<Model>Train` and `<Model>Grads`, for a module whose grad stage has run.
pub(crate) fn model(module: &Module, source: &SourceFile, options: &Options) -> Result<TokenStream, Error> {
    let rt = &options.runtime;
    let train = module.function(Mode::Train).ok_or(Error::NoTrain)?;
    let backward = module.backward.as_ref().ok_or(Error::NoTrain)?;
    let base = crate::type_name(&module.name);
    let (name, grads_name) = (format_ident!("{}Train", base), format_ident!("{}Grads", base));
    let fields = Fields::new(module, train, false)?;
    let layout = Layout::new(module, train, backward)?;
    let rules = train
        .ops
        .iter()
        .map(|o| rule(&o.op).map_err(|e| Error::Malformed(format!("the gradient of {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut trained = backward.trained_params(train);
    trained.sort();
    let mut taken = BTreeSet::new();
    let grads: BTreeMap<ParamId, Ident> = trained
        .iter()
        .map(|id| {
            let base = field_name(&module.param(*id).name);
            let mut name = base.clone();
            for k in 2.. {
                if taken.insert(name.clone()) {
                    break;
                }
                name = format!("{base}_{k}");
            }
            (*id, Ident::new(&name, Span::call_site()))
        })
        .collect();
    let convs = conv_geometries(train, rt);
    let cx = Context {
        module,
        train,
        backward,
        fields: &fields,
        grads: &grads,
        layout: &layout,
        producers: train.producers(),
        rules,
        geometry_of: convs.iter().map(|(i, ident, _)| (*i, ident.clone())).collect(),
    };

    let mut forward_blocks = Vec::new();
    for (index, op) in train.ops.iter().enumerate() {
        let record = layout.records.get(&index).map(|r| quote!(&mut *#r)).unwrap_or_default();
        let t = TrainOp { index, record };
        let block = op_block(
            train,
            op,
            &fields,
            &layout.forward,
            cx.geometry_of.get(&index),
            Some(&t),
        )?;
        forward_blocks.push(comment_then(options, &op_comment(op, source), block));
    }
    if train.ops.is_empty() {
        forward_blocks.push(quote!(out.copy_from_slice(x);));
    }
    let mut backward_blocks = Vec::new();
    for step in &backward.steps {
        let block = step_block(&cx, step)?;
        backward_blocks.push(comment_then(options, &step_comment(&cx, step), block));
    }

    let input_dims = &train.value_type(train.input).dims;
    let output_dims = &train.value_type(train.output).dims;
    let (input_numel, output_numel) = (
        usize_lit(train.value_type(train.input).numel()),
        usize_lit(train.value_type(train.output).numel()),
    );
    let field_decls = fields.ident.iter().map(|(id, f)| {
        let p = module.param(*id);
        let doc = format!(" `{}` {:?}", p.name, p.shape);
        quote!(#[doc = #doc] #f: ::std::vec::Vec<f32>)
    });
    let stored_tensors = fields.ident.iter().map(|(id, f)| {
        let name = &module.param(*id).name;
        quote!((#name, self.#f.as_slice()))
    });
    let n_fields = usize_lit(fields.ident.len());
    let grad_decls = grads.iter().map(|(id, f)| {
        let p = module.param(*id);
        let doc = format!(" d(loss)/d`{}` {:?}", p.name, p.shape);
        quote!(#[doc = #doc] pub #f: ::std::vec::Vec<f32>)
    });
    let grad_zeros = grads.iter().map(|(id, f)| {
        let len = usize_lit(module.param(*id).shape.iter().product());
        quote!(#f: ::std::vec![0.0; #len])
    });
    let grad_fill = grads.values().map(|f| quote!(self.#f.fill(0.0);));
    let grad_tensors = grads.iter().map(|(id, f)| {
        let name = &module.param(*id).name;
        quote!((#name, self.#f.as_slice()))
    });
    let n_grads = usize_lit(grads.len());

    let loader_options = Options {
        embed: None,
        ..options.clone()
    };
    let loaders = loaders(module, &fields, &loader_options)?;
    let conv_consts = convs
        .iter()
        .map(|(_, ident, g)| quote!(const #ident: #rt::kernels::conv::ConvGeometry = #g;));
    let scratch_terms = scratch_terms(&cx);
    let regions = layout.sizes.iter().map(|(per_sample, fixed)| {
        let (a, b) = (usize_lit(*per_sample), usize_lit(*fixed));
        quote!((#a, #b))
    });
    let n_regions = usize_lit(layout.sizes.len());
    let index_lens = dims(&layout.index_lens);
    let n_indices = usize_lit(layout.index_lens.len());
    let names = &layout.names;
    let index_names = &layout.index_names;
    let targets = match &backward.target {
        Target::Classes { classes } => {
            let c = usize_lit(*classes);
            quote!(#rt::kernels::loss::TargetKind::Classes(#c))
        }
        Target::Values(ty) => {
            let n = usize_lit(ty.numel());
            let unit = backward.loss == Loss::Bce;
            quote!(#rt::kernels::loss::TargetKind::Values { per_sample: #n, unit_interval: #unit })
        }
    };
    let doc = format!(
        " The model `{}` of `{}` in training: the stored parameters its train function reads, and one \
         step of gradients of the {} loss. Input `[N, {}]`, output `[N, {}]`.",
        module.name,
        source.name(),
        backward.loss,
        join(input_dims),
        join(output_dims)
    );
    let grads_doc = format!(" The gradients `{name}::grad_into` writes, one per trained parameter of `{base}`.");
    let (input_dims, output_dims) = (dims(input_dims), dims(output_dims));
    Ok(quote! {
        #[doc = #doc]
        pub struct #name {
            #(#field_decls,)*
        }

        #[doc = #grads_doc]
        #[derive(Clone, Debug, PartialEq)]
        pub struct #grads_name {
            #(#grad_decls,)*
        }

        impl #grads_name {
            /// Every gradient zero.
            pub fn new() -> Self {
                Self { #(#grad_zeros,)* }
            }

            /// Sets every gradient to zero.
            pub fn zero(&mut self) {
                #(#grad_fill)*
            }

            /// Each gradient under its parameter's LANGUAGE.md §7 name, in
            /// the order of the model's parameters.
            pub fn tensors(&self) -> [(&'static str, &[f32]); #n_grads] {
                [#(#grad_tensors),*]
            }
        }

        impl ::std::default::Default for #grads_name {
            fn default() -> Self {
                Self::new()
            }
        }

        #[allow(dead_code, clippy::approx_constant)]
        impl #name {
            /// The per-sample input shape.
            pub const INPUT: &'static [usize] = &#input_dims;
            /// The per-sample output shape.
            pub const OUTPUT: &'static [usize] = &#output_dims;
            /// What the loss takes as targets.
            pub const TARGETS: #rt::kernels::loss::TargetKind = #targets;
            /// The workspace's float regions, `(per-sample, fixed)` floats:
            /// forward values, records, gradient values.
            const REGIONS: [(usize, usize); #n_regions] = [#(#regions),*];
            /// Per-sample indices of each max pool's arg-maxes.
            const INDEX_REGIONS: [usize; #n_indices] = #index_lens;
            #(#conv_consts)*

            #loaders

            /// Each stored parameter (running statistics too) under its
            /// §7 name, as the last step left it.
            pub fn tensors(&self) -> [(&'static str, &[f32]); #n_fields] {
                [#(#stored_tensors),*]
            }

            /// Scratch floats a step needs for `batch` samples on `threads` threads.
            fn scratch_len(batch: usize, threads: usize) -> usize {
                let _ = (batch, threads);
                0 #(#scratch_terms)*
            }

            /// A workspace for steps of up to `batch` samples on `threads`
            /// threads: `grad_into` with it allocates nothing.
            pub fn workspace(batch: usize, threads: usize) -> ::std::io::Result<#rt::Workspace> {
                let mut ws = #rt::Workspace::new(threads)?;
                ws.reserve_regions(&Self::REGIONS, &Self::INDEX_REGIONS, batch, Self::scratch_len(batch, threads));
                Ok(ws)
            }

            /// One training step's gradients: the train function on `batch`
            /// samples of `x` (batch-major; dropout masks and RReLU slopes
            /// drawn from `seed`, batch norms updating their running
            /// statistics), its output into `out`, and the backward of the
            /// loss against `targets` into `grads` (overwritten). Returns
            /// the loss: the batch mean plus the weight penalties. Bad
            /// targets are an error naming the row, before anything runs.
            /// Allocates nothing once `ws` has held a batch this large.
            /// Panics if `x` or `out` does not hold `batch` samples.
            #[allow(unused_variables, clippy::too_many_arguments)]
            pub fn grad_into(
                &mut self,
                x: &[f32],
                batch: usize,
                targets: #rt::kernels::loss::Targets<'_>,
                seed: u64,
                grads: &mut #grads_name,
                out: &mut [f32],
                ws: &mut #rt::Workspace,
            ) -> ::std::result::Result<f64, #rt::Error> {
                assert_eq!(x.len(), batch * #input_numel, "grad_into: the input does not hold {} samples", batch);
                assert_eq!(out.len(), batch * #output_numel, "grad_into: the output does not hold {} samples", batch);
                Self::TARGETS.check(targets, batch).map_err(#rt::Error::Targets)?;
                grads.zero();
                let scratch_len = Self::scratch_len(batch, ws.threads());
                #[allow(unused_imports)]
                use #rt::kernels::{act, conv, dense, dropout, epilogue, loss, norm, pool};
                #[allow(unused_imports)]
                use #rt::Rng;
                let ([#(#names),*], [#(#index_names),*], scratch, team) =
                    ws.split_regions(Self::REGIONS, Self::INDEX_REGIONS, batch, scratch_len);
                #(#forward_blocks)*
                let mut total = 0.0f64;
                #(#backward_blocks)*
                Ok(total)
            }
        }
    })
}

/// The scratch terms: what each op needs forward and backward (DropConnect's
/// masked weights and their gradient, a conv's columns, a norm's unneeded dx).
fn scratch_terms(cx: &Context<'_>) -> Vec<TokenStream> {
    let mut terms = Vec::new();
    for (index, op) in cx.train.ops.iter().enumerate() {
        let x = cx.train.value_type(op.args[0]);
        match &op.op {
            Op::Linear {
                weight,
                dropconnect: Some(_),
                ..
            } => {
                let w = usize_lit(2 * cx.fields.len(*weight));
                terms.push(quote!(.max(#w)));
            }
            Op::Conv2d {
                weight, dropconnect, ..
            } => {
                let Some(g) = cx.geometry_of.get(&index) else { continue };
                let w = cx.fields.len(*weight) * usize::from(dropconnect.is_some());
                let (once, twice) = (usize_lit(w), usize_lit(2 * w));
                terms.push(quote!(.max(Self::#g.scratch_len(threads) + #once)));
                terms.push(quote!(.max(Self::#g.grad_scratch_len(threads) + #twice)));
            }
            Op::Act(Act::Prelu { .. })
            | Op::BatchNorm { .. }
            | Op::LayerNorm { .. }
            | Op::InstanceNorm { .. }
            | Op::GroupNorm { .. }
            | Op::Affine { .. } => {
                let n = usize_lit(x.numel());
                terms.push(quote!(.max(batch * #n)));
            }
            _ => {}
        }
    }
    terms
}

impl Context<'_> {
    /// A forward value the backward reads, batch-major.
    fn saved(&self, v: ValueId) -> TokenStream {
        let n = usize_lit(self.train.value_type(v).numel());
        match self.layout.forward.home(self.train, v) {
            Home::Input => quote!(x),
            Home::Output => quote!(&*out),
            Home::Buffer(b) => {
                let b = format_ident!("b{}", b);
                quote!(&#b[..batch * #n])
            }
        }
    }

    fn grad_slot(&self, v: ValueId) -> Result<(Ident, Literal), Error> {
        let slot = self
            .layout
            .grad_slot
            .get(v.0 as usize)
            .copied()
            .filter(|s| *s != usize::MAX)
            .ok_or_else(|| Error::Malformed(format!("gradient %d{} has no buffer", v.0)))?;
        Ok((
            format_ident!("g{}", slot),
            usize_lit(self.backward.value_type(v).numel()),
        ))
    }

    /// A gradient value, read.
    fn grad(&self, v: ValueId) -> Result<TokenStream, Error> {
        let (g, n) = self.grad_slot(v)?;
        Ok(quote!(&#g[..batch * #n]))
    }

    /// A gradient value, written.
    fn grad_mut(&self, v: ValueId) -> Result<TokenStream, Error> {
        let (g, n) = self.grad_slot(v)?;
        Ok(quote!(&mut #g[..batch * #n]))
    }

    /// A trained parameter's gradient, written.
    fn param_grad(&self, id: ParamId) -> Result<TokenStream, Error> {
        let f = self
            .grads
            .get(&id)
            .ok_or_else(|| Error::Malformed(format!("parameter #{} has no gradient", id.0)))?;
        Ok(quote!(&mut grads.#f))
    }

    /// A bias's gradient as the products take it: `Some(&mut …)` or `None`.
    fn bias_grad(&self, bias: Option<ParamId>) -> Result<TokenStream, Error> {
        Ok(match bias {
            Some(b) => {
                let db = self.param_grad(b)?;
                quote!(Some(#db))
            }
            None => quote!(None),
        })
    }

    fn record(&self, index: usize) -> Result<TokenStream, Error> {
        let record = self
            .layout
            .records
            .get(&index)
            .ok_or_else(|| Error::Malformed(format!("op {index} records nothing")))?;
        Ok(quote!(&*#record))
    }
}

/// One backward step as a block.
fn step_block(cx: &Context<'_>, step: &Step) -> Result<TokenStream, Error> {
    let dx = step.result.map(|r| cx.grad_mut(r)).transpose()?;
    match &step.kind {
        StepKind::Loss { of, fused } => {
            let dz = dx.ok_or_else(|| Error::Malformed("a loss without a gradient".into()))?;
            let z = cx.saved(*of);
            let call = match (cx.backward.loss, &cx.backward.target) {
                (Loss::CrossEntropy { label_smoothing }, Target::Classes { classes }) => {
                    let (c, eps) = (usize_lit(*classes), f32_lit(label_smoothing));
                    quote! {
                        let labels: &[u32] = match targets {
                            loss::Targets::Classes(labels) => labels,
                            loss::Targets::Values(_) => &[],
                        };
                        total += loss::softmax_cross_entropy(z, batch, #c, labels, #eps, dz);
                    }
                }
                (loss, _) => {
                    let f = match loss {
                        Loss::Mse => quote!(mse),
                        Loss::Bce if *fused => quote!(bce_with_logits),
                        _ => quote!(bce),
                    };
                    quote! {
                        let values: &[f32] = match targets {
                            loss::Targets::Values(values) => values,
                            loss::Targets::Classes(_) => &[],
                        };
                        total += loss::#f(z, values, dz);
                    }
                }
            };
            Ok(quote! {{
                let (z, dz) = (#z, #dz);
                #call
            }})
        }
        StepKind::Sum => {
            let dx = dx.ok_or_else(|| Error::Malformed("a sum without a result".into()))?;
            let (a, b) = (cx.grad(step.args[0])?, cx.grad(step.args[1])?);
            Ok(quote!(norm::add(#a, #b, #dx);))
        }
        StepKind::Penalty { param } => {
            let p = cx.module.param(*param);
            let (l1, l2) = (f32_lit(p.l1), f32_lit(p.l2));
            let w = cx.fields.slice(*param);
            let dw = cx.param_grad(*param)?;
            Ok(quote!(total += loss::penalty(#w, #l1, #l2, #dw);))
        }
        StepKind::Vjp { of } => {
            let index = cx
                .producers
                .index(*of)
                .ok_or_else(|| Error::Malformed(format!("a VJP of %{} no op defines", of.0)))?;
            vjp_block(cx, index, step, dx)
        }
    }
}

/// The VJP of train op `index`, then the step's fused activations.
fn vjp_block(cx: &Context<'_>, index: usize, step: &Step, dx: Option<TokenStream>) -> Result<TokenStream, Error> {
    let op = &cx.train.ops[index];
    let x_ty = cx.train.value_type(op.args[0]);
    let y_ty = cx.train.value_type(op.result);
    let (channels, inner) = (usize_lit(x_ty.channels()), usize_lit(x_ty.inner()));
    let dy = cx.grad(step.args[0])?;
    let x = cx.saved(op.args[0]);
    let p = |id: &ParamId| cx.fields.slice(*id);
    let (then_bindings, then_calls) = then_acts(cx, &step.then)?;
    let has_dx = dx.is_some();
    let dx_bind = match &dx {
        Some(dx) => quote!(let dx = #dx;),
        None => quote!(),
    };
    let if_dx = |body: TokenStream| if has_dx { body } else { quote!() };
    // A dense VJP applies the activations to each tile of dX it has just
    // computed; any other applies them after.
    let mut fused_in_product = false;
    let body = match &op.op {
        Op::Linear {
            weight,
            bias,
            dropconnect,
            ..
        } => {
            let (n_out, n_in) = (usize_lit(y_ty.channels()), usize_lit(x_ty.numel()));
            let dw = cx.param_grad(*weight)?;
            let db = cx.bias_grad(*bias)?;
            let w = p(weight);
            match dropconnect {
                None => {
                    fused_in_product = true;
                    let input = if then_calls.is_empty() {
                        quote!(dense::dense_grad_input(dy, batch, #w, #n_out, #n_in, dx, team);)
                    } else {
                        quote! {
                            let then = |first_row: usize, rows: &mut [f32]| { #(#then_calls)* };
                            dense::dense_grad_input_then(dy, batch, #w, #n_out, #n_in, dx, &then, team);
                        }
                    };
                    let input = if_dx(input);
                    quote! {
                        #input
                        dense::dense_grad_weight(x, dy, batch, #n_in, #n_out, #dw, #db, team);
                    }
                }
                Some(_) => {
                    let w_len = usize_lit(cx.fields.len(*weight));
                    let mask = cx.record(index)?;
                    let (mask_weight, mask_grad) = masked_weight(&w, &dw);
                    let input = if_dx(quote!(dense::dense_grad_input(dy, batch, masked, #n_out, #n_in, dx, team);));
                    quote! {
                        // The forward used W·mask: so does dX, and dW is the
                        // masked weight's gradient times the mask.
                        let mask = #mask;
                        let (masked, rest) = scratch.split_at_mut(#w_len);
                        let dmasked = &mut rest[..#w_len];
                        #mask_weight
                        #input
                        dense::dense_grad_weight(x, dy, batch, #n_in, #n_out, dmasked, #db, team);
                        #mask_grad
                    }
                }
            }
        }
        Op::Conv2d {
            weight,
            bias,
            dropconnect,
            ..
        } => {
            let g = cx
                .geometry_of
                .get(&index)
                .ok_or_else(|| Error::Malformed("a conv without geometry".into()))?;
            let dw = cx.param_grad(*weight)?;
            let db = cx.bias_grad(*bias)?;
            let w = p(weight);
            let work_len = quote!(Self::#g.grad_scratch_len(team.threads()));
            match dropconnect {
                None => {
                    let input = if_dx(quote!(conv::conv2d_grad_input(dy, batch, &Self::#g, #w, dx, work, team);));
                    quote! {
                        let work = &mut scratch[..#work_len];
                        #input
                        conv::conv2d_grad_weight(x, dy, batch, &Self::#g, #dw, #db, work, team);
                    }
                }
                Some(_) => {
                    let w_len = usize_lit(cx.fields.len(*weight));
                    let mask = cx.record(index)?;
                    let (mask_weight, mask_grad) = masked_weight(&w, &dw);
                    let input = if_dx(quote!(conv::conv2d_grad_input(dy, batch, &Self::#g, masked, dx, work, team);));
                    quote! {
                        let mask = #mask;
                        let (masked, rest) = scratch.split_at_mut(#w_len);
                        let (dmasked, rest) = rest.split_at_mut(#w_len);
                        let work = &mut rest[..#work_len];
                        #mask_weight
                        #input
                        conv::conv2d_grad_weight(x, dy, batch, &Self::#g, dmasked, #db, work, team);
                        #mask_grad
                    }
                }
            }
        }
        Op::Flatten => if_dx(quote!(dx.copy_from_slice(dy);)),
        Op::Act(act) => {
            let rule = &cx.rules[index];
            let (from, saved) = match rule.reads.first() {
                Some(Read::Output) => (quote!(act::From::Output), cx.saved(op.result)),
                _ => (quote!(act::From::Input), x.clone()),
            };
            match act {
                Act::Softmax => {
                    let y = cx.saved(op.result);
                    if_dx(quote!(act::softmax_grad(#y, dy, batch, #channels, #inner, dx);))
                }
                Act::Maxout { pieces } => {
                    let pieces = usize_lit(*pieces as usize);
                    if_dx(quote!(act::maxout_grad(x, dy, batch, #channels, #inner, #pieces, dx);))
                }
                Act::Rrelu { .. } => {
                    let slopes = cx.record(index)?;
                    if_dx(quote!(dropout::mask_grad(dy, #slopes, dx);))
                }
                elementwise => {
                    let a = activation(elementwise, cx.fields)?;
                    let dslopes = match elementwise {
                        Act::Prelu { weight } => {
                            let ds = cx.param_grad(*weight)?;
                            quote!(Some(#ds))
                        }
                        _ => quote!(None),
                    };
                    if has_dx {
                        quote!(#a.backward(#saved, #from, dy, dx, #channels, #inner, #dslopes);)
                    } else if let Act::Prelu { .. } = elementwise {
                        // Only the slopes' gradient is needed: dx goes to scratch.
                        let n = usize_lit(x_ty.numel());
                        quote! {
                            let dx = &mut scratch[..batch * #n];
                            #a.backward(#saved, #from, dy, dx, #channels, #inner, #dslopes);
                        }
                    } else {
                        quote!()
                    }
                }
            }
        }
        Op::Dropout { .. } | Op::AlphaDropout { .. } | Op::DropBlock { .. } => {
            let mask = cx.record(index)?;
            if_dx(quote!(dropout::mask_grad(dy, #mask, dx);))
        }
        Op::MaxPool(g) | Op::AvgPool(g) => {
            let geometry = pool_geometry(x_ty, g);
            let call = if let Op::MaxPool(_) = op.op {
                let argmax = cx.record(index)?;
                quote!(pool::max_pool2d_grad(dy, #argmax, batch, &g, dx);)
            } else {
                quote!(pool::avg_pool2d_grad(dy, batch, &g, dx);)
            };
            if_dx(quote! {
                let g = #geometry;
                #call
            })
        }
        Op::GlobalAvgPool => if_dx(quote!(pool::global_avg_pool_grad(dy, batch, #channels, #inner, dx);)),
        Op::BatchNorm { weight, bias, .. }
        | Op::LayerNorm { weight, bias, .. }
        | Op::InstanceNorm { weight, bias, .. }
        | Op::GroupNorm { weight, bias, .. } => {
            let stats = cx.record(index)?;
            let (gamma, dgamma, dbeta) = (p(weight), cx.param_grad(*weight)?, cx.param_grad(*bias)?);
            let call = match &op.op {
                Op::BatchNorm { .. } => quote! {
                    norm::batch_norm_grad(x, dy, batch, #channels, #inner, #gamma, #stats, dx, #dgamma, #dbeta, team);
                },
                Op::LayerNorm { .. } => {
                    let numel = usize_lit(x_ty.numel());
                    quote!(norm::layer_norm_grad(x, dy, batch, #numel, #gamma, #stats, dx, #dgamma, #dbeta);)
                }
                Op::InstanceNorm { .. } => quote! {
                    norm::instance_norm_grad(x, dy, batch, #channels, #inner, #gamma, #stats, dx, #dgamma, #dbeta);
                },
                Op::GroupNorm { groups, .. } => {
                    let groups = usize_lit(*groups as usize);
                    quote! {
                        norm::group_norm_grad(
                            x, dy, batch, #channels, #inner, #groups, #gamma, #stats, dx, #dgamma, #dbeta,
                        );
                    }
                }
                _ => quote!(),
            };
            with_dx_or_scratch(has_dx, x_ty.numel(), call)
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
            if_dx(quote!(norm::lrn_grad(x, dy, batch, #channels, #inner, #size, #a, #b, #c, dx);))
        }
        Op::Affine { scale, shift } => {
            let (s, ds, dt) = (p(scale), cx.param_grad(*scale)?, cx.param_grad(*shift)?);
            let call = quote!(norm::affine_grad(x, dy, batch, #channels, #inner, #s, dx, #ds, #dt););
            with_dx_or_scratch(has_dx, x_ty.numel(), call)
        }
        Op::Add => {
            return Err(Error::Malformed(
                "a VJP step for add, whose gradient passes through".into(),
            ))
        }
    };
    let after = if fused_in_product || !has_dx || then_calls.is_empty() {
        quote!()
    } else {
        quote! {
            let (first_row, rows) = (0usize, &mut *dx);
            #(#then_calls)*
        }
    };
    Ok(quote! {{
        let (x, dy) = (#x, #dy);
        #dx_bind
        #(#then_bindings)*
        #body
        #after
    }})
}

/// DropConnect's VJP around the product's: the masked weight the forward
/// used (into `masked`), and, after the product's weight gradient went to a
/// zeroed `dmasked`, that gradient times the mask added into `dw`.
fn masked_weight(w: &TokenStream, dw: &TokenStream) -> (TokenStream, TokenStream) {
    let before = quote! {
        for ((m, w), k) in masked.iter_mut().zip(#w).zip(mask) {
            *m = w * k;
        }
        dmasked.fill(0.0);
    };
    let after = quote! {
        for ((g, d), k) in (#dw).iter_mut().zip(dmasked.iter()).zip(mask) {
            *g += d * k;
        }
    };
    (before, after)
}

/// A norm's or affine's VJP computes dx with the parameter gradients: into
/// scratch when nothing needs dx.
fn with_dx_or_scratch(has_dx: bool, per_sample: usize, call: TokenStream) -> TokenStream {
    if has_dx {
        call
    } else {
        let n = usize_lit(per_sample);
        quote! {
            let dx = &mut scratch[..batch * #n];
            #call
        }
    }
}

/// The fused activations of a step: bindings of what they read, and the
/// statements applying them to `rows`, which start at sample `first_row`.
fn then_acts(cx: &Context<'_>, then: &[ValueId]) -> Result<(Vec<TokenStream>, Vec<TokenStream>), Error> {
    let (mut bindings, mut calls) = (Vec::new(), Vec::new());
    for (k, v) in then.iter().enumerate() {
        let i = cx
            .producers
            .index(*v)
            .ok_or_else(|| Error::Malformed(format!("a fused VJP of %{}", v.0)))?;
        let op = &cx.train.ops[i];
        let Op::Act(act) = &op.op else {
            return Err(Error::Malformed(format!("a fused {}", op.op.name())));
        };
        let ty = cx.train.value_type(op.result);
        let (from, value) = match cx.rules[i].reads.first() {
            Some(Read::Output) => (quote!(act::From::Output), op.result),
            _ => (quote!(act::From::Input), op.args[0]),
        };
        let a = activation(act, cx.fields)?;
        let saved = cx.saved(value);
        let name = format_ident!("saved{}", k);
        let (per_sample, channels, inner) = (usize_lit(ty.numel()), usize_lit(ty.channels()), usize_lit(ty.inner()));
        bindings.push(quote!(let #name: &[f32] = #saved;));
        calls.push(quote! {
            let start = first_row * #per_sample;
            #a.backward_in_place(&#name[start..start + rows.len()], #from, rows, #channels, #inner);
        });
    }
    Ok((bindings, calls))
}

/// What a step's comment says: its kind and the forward op's layer.
fn step_comment(cx: &Context<'_>, step: &Step) -> String {
    let what = match &step.kind {
        StepKind::Loss { fused: true, .. } => format!("loss {} (fused with the last op)", cx.backward.loss),
        StepKind::Loss { .. } => format!("loss {}", cx.backward.loss),
        StepKind::Sum => "sum of gradients".to_string(),
        StepKind::Penalty { param } => format!("penalty on {}", cx.module.param(*param).name),
        StepKind::Vjp { of } => {
            let name = cx.producers.op(cx.train, *of).map_or("?", |op| op.op.name());
            let mut s = format!("vjp of {name}");
            for v in &step.then {
                if let Some(Op::Act(a)) = cx.producers.op(cx.train, *v).map(|o| &o.op) {
                    s.push_str(&format!(" then {}", a.name()));
                }
            }
            s
        }
    };
    format!("backward: {what} [{}]", step.layer)
}
