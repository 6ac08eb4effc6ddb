//! The parameters of the generated struct: which ones the forward pass
//! reads (its fields), which stored tensors they need, and the code that
//! draws, reads and folds them.

use crate::emit::f32_lit;
use crate::Error;
use nnc_ir::{BinaryOp, Derivation, Dist, Function, Init, Module, Op, ParamId, ParamSource};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;
use std::collections::{BTreeMap, BTreeSet};

/// The fields of the generated struct, one per parameter the forward pass
/// reads.
pub(crate) struct Fields {
    /// Field name of each read parameter.
    pub(crate) ident: BTreeMap<ParamId, Ident>,
    /// Parameters read as a dense layer's weight (kept as a `DenseWeight`
    /// laid out for the CPU, with `[out, in]`).
    pub(crate) dense: BTreeMap<ParamId, (usize, usize)>,
    /// Parameters read as a conv layer's weight (kept as a `ConvWeight`
    /// packed for the CPU), with the name of the conv's geometry constant.
    pub(crate) conv: BTreeMap<ParamId, Ident>,
    /// Elements of each read parameter.
    lens: BTreeMap<ParamId, usize>,
}

impl Fields {
    /// The fields of `func`'s parameters; with `lay_out`, dense and
    /// conv weights are kept laid out for the CPU (inference: they never
    /// change).
    pub(crate) fn new(module: &Module, func: &Function, lay_out: bool) -> Result<Fields, Error> {
        let mut ident = BTreeMap::new();
        let mut taken = BTreeSet::new();
        for id in func.params_read() {
            let p = module
                .params
                .get(id.0 as usize)
                .ok_or_else(|| Error::Malformed(format!("an op reads parameter #{}", id.0)))?;
            let base = field_name(&p.name);
            let mut name = base.clone();
            // A suffix `_2`, not another `_`: `__` inside a name is not
            // snake case, which `#![deny(warnings)]` refuses.
            for k in 2.. {
                if taken.insert(name.clone()) {
                    break;
                }
                name = format!("{base}_{k}");
            }
            ident.insert(id, Ident::new(&name, Span::call_site()));
        }
        let dense = func
            .ops
            .iter()
            .filter_map(|op| match &op.op {
                Op::Linear { weight, .. } if lay_out => Some((*weight, module.param(*weight).out_and_in())),
                _ => None,
            })
            .collect();
        let conv = crate::emit::conv_geometry_names(func)
            .into_iter()
            .filter(|_| lay_out)
            .filter_map(|(index, name)| match &func.ops[index].op {
                Op::Conv2d { weight, .. } => Some((*weight, name)),
                _ => None,
            })
            .collect();
        let lens = ident
            .keys()
            .map(|id| (*id, module.param(*id).shape.iter().product()))
            .collect();
        Ok(Fields {
            ident,
            dense,
            conv,
            lens,
        })
    }

    /// Elements of a read parameter.
    pub(crate) fn len(&self, id: ParamId) -> usize {
        self.lens.get(&id).copied().unwrap_or(0)
    }

    /// `self.<field>` for a parameter read as a slice.
    pub(crate) fn slice(&self, id: ParamId) -> TokenStream {
        let f = &self.ident[&id];
        quote!(&self.#f)
    }
}

/// A field name for a §7 name: `layer0.norm.running_var` →
/// `layer0_norm_running_var`; a derived (primed) one ends in `_folded`.
pub(crate) fn field_name(param: &str) -> String {
    let primes = param.chars().filter(|c| *c == '\'').count();
    let mut name: String = param
        .trim_end_matches('\'')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'p');
    }
    for _ in 0..primes {
        name.push_str("_folded");
    }
    snake_case_underscores(&name)
}

/// Runs of `_` after the first other character become one (`x_.weight`
/// gives `x__weight`, which is not snake case); leading ones stay (`_`
/// as a layer name).
fn snake_case_underscores(name: &str) -> String {
    let lead = name.len() - name.trim_start_matches('_').len();
    let mut out = name[..lead].to_string();
    for c in name[lead..].chars() {
        if !(c == '_' && out.len() > lead && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// The stored parameters loading needs (read by the forward pass, or by a
/// derivation of one that is) with their initialisers, and the derived ones
/// to compute with their derivations, both in table order (derivations only
/// read earlier parameters).
pub(crate) type Closure<'m> = (Vec<(ParamId, &'m Init)>, Vec<(ParamId, &'m Derivation)>);

pub(crate) fn closure<'m>(module: &'m Module, read: &BTreeMap<ParamId, Ident>) -> Closure<'m> {
    let needed = module.params_needed(read.keys().copied());
    let (mut stored, mut derived) = (Vec::new(), Vec::new());
    for (i, p) in module.params.iter().enumerate().filter(|(i, _)| needed[*i]) {
        let id = ParamId(i as u32);
        match &p.source {
            ParamSource::Init(init) => stored.push((id, init)),
            ParamSource::Derived(d) => derived.push((id, d)),
        }
    }
    (stored, derived)
}

/// `[750, 800]`: a shape as an array literal.
pub(crate) fn dims(shape: &[usize]) -> TokenStream {
    let dims = shape.iter().map(|d| usize_lit(*d));
    quote!([#(#dims),*])
}

/// An unsuffixed integer literal (every place it goes is typed `usize`).
pub(crate) fn usize_lit(n: usize) -> Literal {
    Literal::usize_unsuffixed(n)
}

/// The runtime distribution a stored parameter is drawn from.
pub(crate) fn distribution(init: &Init, rt: &TokenStream) -> TokenStream {
    let d = quote!(#rt::init::Distribution);
    match init.dist {
        Dist::Constant { value } => {
            let v = f32_lit(value);
            quote!(#d::Constant(#v))
        }
        Dist::Normal { mean, std } => {
            let (m, s) = (f32_lit(mean), f32_lit(std));
            quote!(#d::Normal { mean: #m, std: #s })
        }
        Dist::TruncatedNormal { mean, std, low, high } => {
            let (m, s, l, h) = (f32_lit(mean), f32_lit(std), f32_lit(low), f32_lit(high));
            quote!(#d::TruncatedNormal { mean: #m, std: #s, low: #l, high: #h })
        }
        Dist::Uniform { low, high } => {
            let (l, h) = (f32_lit(low), f32_lit(high));
            quote!(#d::Uniform { low: #l, high: #h })
        }
        Dist::Orthogonal { gain } => {
            let g = f32_lit(gain);
            quote!(#d::Orthogonal { gain: #g })
        }
    }
}

/// A derivation as an expression over `Folded` values read from `weights`.
fn derivation(module: &Module, d: &Derivation) -> TokenStream {
    match d {
        Derivation::Param(id) => {
            let name = &module.param(*id).name;
            quote!(Folded::param(&weights, #name))
        }
        Derivation::Const(c) => {
            let c = f32_lit(*c);
            quote!(Folded::scalar(#c))
        }
        Derivation::Sqrt(x) => {
            let x = operand(module, x);
            quote!(#x.sqrt())
        }
        Derivation::Binary { op, lhs, rhs } => {
            let (a, b) = (operand(module, lhs), operand(module, rhs));
            match op {
                BinaryOp::Add => quote!(#a + #b),
                BinaryOp::Sub => quote!(#a - #b),
                BinaryOp::Mul => quote!(#a * #b),
                BinaryOp::Div => quote!(#a / #b),
            }
        }
        Derivation::ScaleRows { matrix, scale } => {
            let (m, s) = (operand(module, matrix), derivation(module, scale));
            quote!(#m.scale_rows(#s))
        }
        Derivation::ScaleCols { matrix, scale } => {
            let (m, s) = (operand(module, matrix), derivation(module, scale));
            quote!(#m.scale_cols(#s))
        }
        Derivation::MatVec { matrix, vector } => {
            let (m, v) = (operand(module, matrix), derivation(module, vector));
            quote!(#m.mat_vec(#v))
        }
    }
}

/// A derivation where it is a receiver or an operand: parenthesised when it
/// is itself an operation (and only then, so rustc sees no needless parens).
pub(crate) fn operand(module: &Module, d: &Derivation) -> TokenStream {
    let inner = derivation(module, d);
    match d {
        Derivation::Binary { .. } => quote!((#inner)),
        _ => inner,
    }
}
