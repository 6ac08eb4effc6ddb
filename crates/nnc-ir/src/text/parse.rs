//! The parser. pest checks each line's shape against `grammar/ir.pest`;
//! this file turns the tree into a [`Module`]: it resolves `@param` and
//! `%value` names, reads each op's attributes, and recomputes every result
//! type with [`Op::output_type`].
//!
//! The input is untrusted (hand-edited pass tests, files from users), so
//! nothing here indexes, unwraps or overflows. Three limits keep the shape
//! rules' arithmetic in range: at most [`MAX_ELEMENTS`] elements per value
//! or parameter, integer attributes at most [`MAX_ATTR`], and at most
//! [`MAX_NESTING`] open parentheses on a line, which also bounds recursion.

use crate::{
    Act, BinaryOp, ConvGeometry, Derivation, Dist, Epilogue, EpilogueStep, Function, Init, Mode, Module, Op, OpData,
    ParamData, ParamId, ParamRole, ParamSource, PoolGeometry, ValueId, ValueType,
};
use nnc_diag::Loc;
use pest::error::LineColLocation;
use pest::iterators::Pair;
use pest::{Parser as _, Span};
use std::collections::HashMap;
use std::fmt;

pub(super) mod grammar {
    #[derive(pest_derive::Parser)]
    #[grammar = "../../grammar/ir.pest"]
    pub struct IrParser;
}

use grammar::IrParser;
pub(super) use grammar::Rule;

/// At most 2³² elements per sample in a value, or in a parameter.
const MAX_ELEMENTS: u64 = 1 << 32;
/// Integer attributes (kernel, stride, pads, groups, ...) are at most 2²⁴:
/// with [`MAX_ELEMENTS`], products such as `dilation · (kernel − 1)` and
/// `channels · groups` stay far below `usize::MAX`.
const MAX_ATTR: u64 = 1 << 24;
/// Open parentheses allowed on one line; derivations nest this deep at most.
const MAX_NESTING: usize = 64;

/// A malformed IR text: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for ParseError {}

pub(super) type Result<T> = std::result::Result<T, ParseError>;

/// An error at the start of `span`.
pub(super) fn error_at(span: Span<'_>, message: impl Into<String>) -> ParseError {
    let (line, col) = span.start_pos().line_col();
    ParseError {
        line,
        col,
        message: message.into(),
    }
}

/// Parses the text form back into a module. `// note:` lines outside
/// functions become [`Module::notes`]; other comments are skipped.
pub fn parse_module(text: &str) -> Result<Module> {
    check_nesting(text)?;
    let mut pairs = IrParser::parse(Rule::module, text).map_err(from_pest)?;
    let module = pairs.next().ok_or_else(|| ParseError {
        line: 1,
        col: 1,
        message: "empty parse".to_string(),
    })?;
    read_module(module)
}

/// Rejects lines with more than [`MAX_NESTING`] open parentheses before
/// pest (and our own recursion over derivations) can run deep.
fn check_nesting(text: &str) -> Result<()> {
    for (i, line) in text.split('\n').enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut depth = 0usize;
        for (col, c) in line.chars().enumerate() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_NESTING {
                return Err(ParseError {
                    line: i + 1,
                    col: col + 1,
                    message: format!("more than {MAX_NESTING} nested parentheses"),
                });
            }
        }
    }
    Ok(())
}

fn from_pest(error: pest::error::Error<Rule>) -> ParseError {
    let error = error.renamed_rules(describe);
    let (line, col) = match error.line_col {
        LineColLocation::Pos(at) | LineColLocation::Span(at, _) => at,
    };
    ParseError {
        line,
        col,
        message: error.variant.message().into_owned(),
    }
}

/// What pest's "expected ..." messages call each rule.
fn describe(rule: &Rule) -> String {
    let text = match rule {
        Rule::EOI => "end of file",
        Rule::WHITESPACE | Rule::word_char => "a space",
        Rule::skip | Rule::comment => "a comment",
        Rule::eol => "end of line",
        Rule::dist => "a distribution",
        Rule::factor => "an operand",
        Rule::operand => "an operand",
        Rule::module | Rule::model | Rule::kw_model => "`model NAME`",
        Rule::note | Rule::note_text => "`// note:`",
        Rule::param | Rule::kw_param => "`param`",
        Rule::func | Rule::kw_func => "`func`",
        Rule::func_end => "`}`",
        Rule::param_type => "a parameter type like `f32[10,800]`",
        Rule::value_type => "a value type like `f32[N,800]`",
        Rule::role => "a parameter role",
        Rule::l1 => "`l1=`",
        Rule::l2 => "`l2=`",
        Rule::init | Rule::kw_init => "`init`",
        Rule::derive | Rule::kw_derive => "`derive`",
        Rule::scheme => "an init scheme",
        Rule::fan_in => "`fan_in=`",
        Rule::fan_out => "`fan_out=`",
        Rule::constant | Rule::normal | Rule::truncated_normal | Rule::uniform | Rule::orthogonal => "a distribution",
        Rule::expr | Rule::term => "an expression",
        Rule::add_op => "`+` or `-`",
        Rule::mul_op => "`*` or `/`",
        Rule::sqrt | Rule::scale_rows | Rule::scale_cols | Rule::mat_vec => "a function call",
        Rule::func_name => "`@train` or `@infer`",
        Rule::op_line => "an op line `%K: TYPE = ...`",
        Rule::op_head => "an op like `linear[layer0]`",
        Rule::layer => "a layer name",
        Rule::operands => "operands",
        Rule::attr => "an attribute `key=value`",
        Rule::pads => "`[top,left,bottom,right]`",
        Rule::epilogue => "`epilogue(...)`",
        Rule::step => "an epilogue step",
        Rule::locs => "`loc(...)`",
        Rule::loc => "`line:col`",
        Rule::ret | Rule::kw_return => "`return`",
        Rule::value_ref => "a value like `%3`",
        Rule::param_ref => "a parameter like `@layer0.weight`",
        Rule::param_name => "a parameter name",
        Rule::ident => "a name",
        Rule::uint => "a whole number",
        Rule::number => "a number",
        Rule::saving => "`saving ...`",
        Rule::saved | Rule::record_ref => "a saved value like `%3` or `stats(%3)`",
        Rule::backward => "`func @backward(...)`",
        Rule::target_type | Rule::class_target => "a target type like `class[N] < 10` or `f32[N,1]`",
        Rule::loss_spec => "a loss",
        Rule::step_line => "a backward step",
        Rule::loss_step | Rule::loss_head => "`loss[LAYER] of %K`",
        Rule::fused => "`fused`",
        Rule::vjp_step | Rule::vjp_head => "a VJP like `linear.vjp[layer0]`",
        Rule::reads => "`reads(...)`",
        Rule::grads => "`grads(...)`",
        Rule::then_list | Rule::then_item => "`then(ACT of %K, ...)`",
        Rule::sum_step | Rule::sum_head => "`sum[LAYER] %dA, %dB`",
        Rule::penalty_step | Rule::penalty_head => "`penalty[LAYER] @PARAM`",
        Rule::grad_ref => "a gradient like `%d3`",
    };
    text.to_string()
}

/// The children of a pair, without keywords, read front to back.
pub(super) struct Items<'i> {
    /// Where "missing" errors point.
    span: Span<'i>,
    pairs: std::iter::Peekable<std::vec::IntoIter<Pair<'i, Rule>>>,
}

impl<'i> Items<'i> {
    pub(super) fn new(pair: Pair<'i, Rule>) -> Items<'i> {
        let span = pair.as_span();
        let pairs: Vec<Pair<'i, Rule>> = pair
            .into_inner()
            .filter(|p| {
                !matches!(
                    p.as_rule(),
                    Rule::kw_model
                        | Rule::kw_param
                        | Rule::kw_init
                        | Rule::kw_derive
                        | Rule::kw_func
                        | Rule::kw_return
                        | Rule::func_end
                        | Rule::EOI
                )
            })
            .collect();
        Items {
            span,
            pairs: pairs.into_iter().peekable(),
        }
    }

    /// The next child, which the grammar says must be a `rule`.
    pub(super) fn expect(&mut self, rule: Rule) -> Result<Pair<'i, Rule>> {
        match self.pairs.next() {
            Some(p) if p.as_rule() == rule => Ok(p),
            _ => Err(error_at(
                self.span,
                format!("internal: expected {} here", describe(&rule)),
            )),
        }
    }

    /// The next child if it is a `rule`.
    pub(super) fn optional(&mut self, rule: Rule) -> Option<Pair<'i, Rule>> {
        self.pairs.next_if(|p| p.as_rule() == rule)
    }
}

impl<'i> Iterator for Items<'i> {
    type Item = Pair<'i, Rule>;

    fn next(&mut self) -> Option<Pair<'i, Rule>> {
        self.pairs.next()
    }
}

fn read_module(pair: Pair<'_, Rule>) -> Result<Module> {
    let mut items = Items::new(pair);
    let model = items.expect(Rule::model)?;
    let name = Items::new(model).expect(Rule::ident)?;
    let mut module = Module::new(name.as_str());
    let mut params = Vec::new();
    let mut functions = Vec::new();
    let mut backward = None;
    for item in items {
        match item.as_rule() {
            Rule::note => {
                let text = Items::new(item).expect(Rule::note_text)?;
                module.notes.push(text.as_str().to_string());
            }
            Rule::param => params.push(item),
            Rule::func => functions.push(item),
            Rule::backward if backward.is_some() => {
                return Err(error_at(item.as_span(), "a second @backward function"))
            }
            Rule::backward => backward = Some(item),
            _ => return Err(error_at(item.as_span(), "internal: unexpected item")),
        }
    }
    // Parameters may name parameters further down the table, so all names
    // are known before any derivation or op is read.
    let mut names = HashMap::new();
    for (i, param) in params.iter().enumerate() {
        let name_pair = Items::new(param.clone()).expect(Rule::param_ref)?;
        let name = param_name(&name_pair);
        if names.insert(name, ParamId(i as u32)).is_some() {
            return Err(error_at(
                name_pair.as_span(),
                format!("parameter @{name} is declared twice"),
            ));
        }
    }
    let reader = Reader { names };
    for param in params {
        module.params.push(reader.param(param)?);
    }
    let mut saving = None;
    for function in functions {
        let (span, function, saved) = reader.function(&module, function)?;
        if module.function(function.mode).is_some() {
            return Err(error_at(span, format!("a second @{} function", function.mode)));
        }
        if let Some(saved) = saved {
            saving = Some(saved);
        }
        module.functions.push(function);
    }
    match (backward, saving) {
        (Some(pair), saving) => {
            module.backward = Some(super::parse_grad::backward(&reader.names, &module, pair, saving)?);
        }
        (None, Some((span, _))) => {
            return Err(error_at(span, "`saving` without a @backward function"));
        }
        (None, None) => {}
    }
    Ok(module)
}

/// `@name` without the sigil.
pub(super) fn param_name<'i>(pair: &Pair<'i, Rule>) -> &'i str {
    let text = pair.as_str();
    text.strip_prefix('@').unwrap_or(text)
}

pub(super) fn f32_of(pair: &Pair<'_, Rule>) -> Result<f32> {
    pair.as_str()
        .parse::<f32>()
        .map_err(|_| error_at(pair.as_span(), format!("`{}` is not a number", pair.as_str())))
}

/// A whole number no larger than `max`.
pub(super) fn uint_of(pair: &Pair<'_, Rule>, max: u64) -> Result<u64> {
    match pair.as_str().parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(error_at(
            pair.as_span(),
            format!("`{}` is larger than {max}", pair.as_str()),
        )),
    }
}

/// A count: a dimension, a fan, a location.
fn usize_of(pair: &Pair<'_, Rule>) -> Result<usize> {
    uint_of(pair, MAX_ELEMENTS).map(|n| n as usize)
}

fn u32_of(pair: &Pair<'_, Rule>) -> Result<u32> {
    uint_of(pair, u64::from(u32::MAX)).map(|n| n as u32)
}

/// The `K` of `%K`.
pub(super) fn value_number(pair: &Pair<'_, Rule>) -> Result<u32> {
    u32_of(&Items::new(pair.clone()).expect(Rule::uint)?)
}

/// Dimensions from `uint` children, at most [`MAX_ELEMENTS`] in all.
fn dims_of(pair: Pair<'_, Rule>) -> Result<Vec<usize>> {
    let span = pair.as_span();
    let dims: Vec<usize> = Items::new(pair).map(|d| usize_of(&d)).collect::<Result<_>>()?;
    let mut total: u64 = 1;
    for d in &dims {
        total = total.saturating_mul(*d as u64);
    }
    if total > MAX_ELEMENTS {
        return Err(error_at(span, format!("more than {MAX_ELEMENTS} elements")));
    }
    Ok(dims)
}

pub(super) fn value_type_of(pair: Pair<'_, Rule>) -> Result<ValueType> {
    let span = pair.as_span();
    let dims = dims_of(pair)?;
    // Every value has per-sample axes (inputs are 1-D or 3-D); shape rules
    // index the first.
    if dims.is_empty() {
        return Err(error_at(span, "a value type needs a dimension after `N`"));
    }
    Ok(ValueType::new(dims))
}

/// The exactly `N` numbers inside a pair (a distribution's arguments).
fn numbers<const N: usize>(pair: Pair<'_, Rule>) -> Result<[f32; N]> {
    let span = pair.as_span();
    let values: Vec<f32> = Items::new(pair).map(|p| f32_of(&p)).collect::<Result<_>>()?;
    <[f32; N]>::try_from(values).map_err(|_| error_at(span, "internal: wrong number of numbers"))
}

/// Resolves names while reading parameters and functions.
struct Reader<'i> {
    names: HashMap<&'i str, ParamId>,
}

impl<'i> Reader<'i> {
    fn param_id(&self, pair: &Pair<'i, Rule>) -> Result<ParamId> {
        let name = param_name(pair);
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| error_at(pair.as_span(), format!("unknown parameter @{name}")))
    }

    fn param(&self, pair: Pair<'i, Rule>) -> Result<ParamData> {
        let mut items = Items::new(pair);
        let name = param_name(&items.expect(Rule::param_ref)?).to_string();
        let shape = dims_of(items.expect(Rule::param_type)?)?;
        let role_pair = items.expect(Rule::role)?;
        let role = ParamRole::from_name(role_pair.as_str()).ok_or_else(|| {
            let roles: Vec<&str> = ParamRole::ALL.iter().map(|r| r.name()).collect();
            error_at(
                role_pair.as_span(),
                format!(
                    "unknown role `{}`; expected one of {}",
                    role_pair.as_str(),
                    roles.join(", ")
                ),
            )
        })?;
        let source = match items.next() {
            Some(p) if p.as_rule() == Rule::init => ParamSource::Init(init_of(p)?),
            Some(p) if p.as_rule() == Rule::derive => {
                let expr = Items::new(p).expect(Rule::expr)?;
                ParamSource::Derived(self.derivation(expr)?)
            }
            _ => return Err(error_at(items.span, "internal: expected init or derive")),
        };
        let penalty = |pair: Option<Pair<'_, Rule>>| match pair {
            Some(p) => f32_of(&Items::new(p).expect(Rule::number)?),
            None => Ok(0.0),
        };
        let l1 = penalty(items.optional(Rule::l1))?;
        let l2 = penalty(items.optional(Rule::l2))?;
        Ok(ParamData {
            name,
            shape,
            role,
            source,
            l1,
            l2,
        })
    }

    /// An `expr`, `term` or factor. Recursion depth is bounded by
    /// [`MAX_NESTING`]: every level of nesting opens a parenthesis.
    fn derivation(&self, pair: Pair<'i, Rule>) -> Result<Derivation> {
        match pair.as_rule() {
            Rule::expr | Rule::term => {
                let mut items = Items::new(pair);
                let first = items.next().ok_or_else(|| error_at(items.span, "internal: empty"))?;
                let mut acc = self.derivation(first)?;
                // `a - b - c` is `(a - b) - c`: fold to the left.
                while let Some(op) = items.next() {
                    let op = match op.as_str() {
                        "+" => BinaryOp::Add,
                        "-" => BinaryOp::Sub,
                        "*" => BinaryOp::Mul,
                        _ => BinaryOp::Div,
                    };
                    let rhs = items
                        .next()
                        .ok_or_else(|| error_at(items.span, "internal: no operand"))?;
                    acc = Derivation::binary(op, acc, self.derivation(rhs)?);
                }
                Ok(acc)
            }
            Rule::param_ref => Ok(Derivation::Param(self.param_id(&pair)?)),
            Rule::number => Ok(Derivation::Const(f32_of(&pair)?)),
            Rule::sqrt => {
                let x = Items::new(pair).expect(Rule::expr)?;
                Ok(Derivation::sqrt(self.derivation(x)?))
            }
            Rule::scale_rows | Rule::scale_cols | Rule::mat_vec => {
                let rule = pair.as_rule();
                let mut items = Items::new(pair);
                let a = self.derivation(items.expect(Rule::expr)?)?;
                let b = self.derivation(items.expect(Rule::expr)?)?;
                Ok(match rule {
                    Rule::scale_rows => Derivation::scale_rows(a, b),
                    Rule::scale_cols => Derivation::scale_cols(a, b),
                    _ => Derivation::mat_vec(a, b),
                })
            }
            _ => Err(error_at(pair.as_span(), "internal: unexpected expression")),
        }
    }

    /// A `func` block, where its name is (for a duplicate-mode error), and
    /// its `saving` list if it has one.
    #[allow(clippy::type_complexity)]
    fn function(
        &self,
        module: &Module,
        pair: Pair<'i, Rule>,
    ) -> Result<(Span<'i>, Function, Option<(Span<'i>, Vec<Pair<'i, Rule>>)>)> {
        let mut items = Items::new(pair);
        let name = items.expect(Rule::func_name)?;
        let mode_name = name.as_str().strip_prefix('@').unwrap_or(name.as_str());
        let mode = Mode::from_name(mode_name).ok_or_else(|| {
            error_at(
                name.as_span(),
                format!("unknown function @{mode_name}; expected @train or @infer"),
            )
        })?;
        let input = items.expect(Rule::value_ref)?;
        let input_type = value_type_of(items.expect(Rule::value_type)?)?;
        let output_type = items.expect(Rule::value_type)?;
        let output_span = output_type.as_span();
        let output_type = value_type_of(output_type)?;
        let mut body = Body {
            reader: self,
            params: module.param_shapes(),
            function: Function::new(mode, input_type),
            values: HashMap::new(),
        };
        body.values.insert(value_number(&input)?, ValueId(0));
        let mut saving = None;
        for item in items {
            match item.as_rule() {
                Rule::op_line => body.op_line(item)?,
                Rule::ret => {
                    let mut ret = Items::new(item);
                    let value = ret.expect(Rule::value_ref)?;
                    body.function.output = body.value(&value)?;
                    if let Some(list) = ret.optional(Rule::saving) {
                        saving = Some((list.as_span(), list.into_inner().collect()));
                    }
                }
                _ => return Err(error_at(item.as_span(), "internal: unexpected line")),
            }
        }
        let function = body.function;
        let returned = function.values.get(function.output.0 as usize);
        if returned != Some(&output_type) {
            let returned = returned.map_or("?".to_string(), |t| t.to_string());
            return Err(error_at(
                output_span,
                format!("declared output type {output_type} but the returned value is {returned}"),
            ));
        }
        if saving.is_some() && mode != Mode::Train {
            return Err(error_at(
                name.as_span(),
                "only @train keeps values for a backward (`saving`)",
            ));
        }
        Ok((name.as_span(), function, saving))
    }
}

/// An op's value arguments, and its parameters with where each is written.
type Operands<'i> = (Vec<ValueId>, Vec<(ParamId, Span<'i>)>);

/// One function being read.
struct Body<'r, 'i> {
    reader: &'r Reader<'i>,
    params: Vec<&'r [usize]>,
    function: Function,
    /// Printed value number → arena id.
    values: HashMap<u32, ValueId>,
}

impl<'r, 'i> Body<'r, 'i> {
    fn value(&self, pair: &Pair<'i, Rule>) -> Result<ValueId> {
        let number = value_number(pair)?;
        self.values
            .get(&number)
            .copied()
            .ok_or_else(|| error_at(pair.as_span(), format!("%{number} is not defined")))
    }

    fn op_line(&mut self, pair: Pair<'i, Rule>) -> Result<()> {
        let mut items = Items::new(pair);
        let result = items.expect(Rule::value_ref)?;
        let number = value_number(&result)?;
        if self.values.contains_key(&number) {
            return Err(error_at(result.as_span(), format!("%{number} is defined twice")));
        }
        let declared_pair = items.expect(Rule::value_type)?;
        let declared_span = declared_pair.as_span();
        let declared = value_type_of(declared_pair)?;
        let head = items.expect(Rule::op_head)?;
        let head_span = head.as_span();
        let mut head_items = Items::new(head);
        let name = head_items.expect(Rule::ident)?.as_str();
        let layer = head_items.expect(Rule::layer)?.as_str().to_string();

        let (args, params) = match items.optional(Rule::operands) {
            Some(operands) => self.operands(operands)?,
            None => (Vec::new(), Vec::new()),
        };
        let mut attrs = Attrs::new(name, head_span);
        while let Some(attr) = items.optional(Rule::attr) {
            attrs.push(attr)?;
        }
        let epilogue = match items.optional(Rule::epilogue) {
            Some(e) if matches!(name, "linear" | "conv2d") => self.epilogue(e)?,
            Some(e) => {
                return Err(error_at(
                    e.as_span(),
                    format!("{name} takes no epilogue; only linear and conv2d do"),
                ))
            }
            None => Epilogue::default(),
        };
        let locs = match items.optional(Rule::locs) {
            Some(locs) => Items::new(locs).map(|l| loc_of(l)).collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let op = build_op(name, head_span, &params, &mut attrs, epilogue)?;
        attrs.finish()?;

        let arg_types: Vec<&ValueType> = args
            .iter()
            .filter_map(|a| self.function.values.get(a.0 as usize))
            .collect();
        match op.output_type(&arg_types, &self.params) {
            Ok(computed) if computed == declared => {}
            Ok(computed) => {
                return Err(error_at(
                    declared_span,
                    format!("declared type {declared} but {name} gives {computed}"),
                ))
            }
            Err(e) => return Err(error_at(head_span, e.to_string())),
        }
        let result = self.function.add_value(declared);
        self.function.ops.push(OpData {
            op,
            args,
            result,
            layer,
            locs,
        });
        self.values.insert(number, result);
        Ok(())
    }

    /// Value arguments, then parameters with where each was written.
    fn operands(&self, pair: Pair<'i, Rule>) -> Result<Operands<'i>> {
        let mut args = Vec::new();
        let mut params = Vec::new();
        for operand in Items::new(pair) {
            if operand.as_rule() == Rule::param_ref {
                params.push((self.reader.param_id(&operand)?, operand.as_span()));
            } else if params.is_empty() {
                args.push(self.value(&operand)?);
            } else {
                return Err(error_at(operand.as_span(), "value arguments come before parameters"));
            }
        }
        Ok((args, params))
    }

    fn epilogue(&self, pair: Pair<'i, Rule>) -> Result<Epilogue> {
        let mut steps = Vec::new();
        for step in Items::new(pair) {
            let mut items = Items::new(step);
            let name_pair = items.expect(Rule::ident)?;
            let name = name_pair.as_str();
            let mut attrs = Attrs::new(name, name_pair.as_span());
            for attr in items {
                attrs.push(attr)?;
            }
            let step = if name == "affine" {
                EpilogueStep::Affine {
                    scale: attrs.param("scale", self.reader)?,
                    shift: attrs.param("shift", self.reader)?,
                }
            } else if name == "add" {
                EpilogueStep::Add
            } else if name == "maxpool" {
                EpilogueStep::MaxPool {
                    window: attrs.u32("window")?,
                }
            } else {
                let slope = match name {
                    "prelu" => Some(attrs.param("weight", self.reader)?),
                    _ => None,
                };
                let act = act_of(name, &mut attrs, slope)?
                    .ok_or_else(|| error_at(name_pair.as_span(), format!("unknown epilogue step `{name}`")))?;
                EpilogueStep::Act(act)
            };
            attrs.finish()?;
            steps.push(step);
        }
        Ok(Epilogue { steps })
    }
}

pub(super) fn loc_of(pair: Pair<'_, Rule>) -> Result<Loc> {
    let mut items = Items::new(pair);
    let line = u32_of(&items.expect(Rule::uint)?)?;
    let col = u32_of(&items.expect(Rule::uint)?)?;
    Ok(Loc { line, col })
}

fn init_of(pair: Pair<'_, Rule>) -> Result<Init> {
    let mut items = Items::new(pair);
    let scheme = items.expect(Rule::scheme)?.as_str().to_string();
    let fan = |pair: Option<Pair<'_, Rule>>| -> Result<Option<usize>> {
        match pair {
            Some(p) => Ok(Some(usize_of(&Items::new(p).expect(Rule::uint)?)?)),
            None => Ok(None),
        }
    };
    let fan_in = fan(items.optional(Rule::fan_in))?;
    let fan_out = fan(items.optional(Rule::fan_out))?;
    let dist = items
        .next()
        .ok_or_else(|| error_at(items.span, "internal: no distribution"))?;
    let dist = match dist.as_rule() {
        Rule::constant => {
            let [value] = numbers(dist)?;
            Dist::Constant { value }
        }
        Rule::normal => {
            let [mean, std] = numbers(dist)?;
            Dist::Normal { mean, std }
        }
        Rule::truncated_normal => {
            let [mean, std, low, high] = numbers(dist)?;
            Dist::TruncatedNormal { mean, std, low, high }
        }
        Rule::uniform => {
            let [low, high] = numbers(dist)?;
            Dist::Uniform { low, high }
        }
        _ => {
            let [gain] = numbers(dist)?;
            Dist::Orthogonal { gain }
        }
    };
    Ok(Init {
        scheme,
        fan_in,
        fan_out,
        dist,
    })
}

/// The op `name` with these parameter operands and attributes (which it
/// takes from `attrs`; the caller rejects any left over).
fn build_op(
    name: &str,
    head: Span<'_>,
    params: &[(ParamId, Span<'_>)],
    attrs: &mut Attrs<'_>,
    epilogue: Epilogue,
) -> Result<Op> {
    let op = match name {
        "linear" => {
            let (weight, bias) = weight_bias(name, head, params)?;
            Op::Linear {
                weight,
                bias,
                dropconnect: attrs.opt_f32("dropconnect")?,
                epilogue,
            }
        }
        "conv2d" => {
            let (weight, bias) = weight_bias(name, head, params)?;
            let geometry = ConvGeometry {
                kernel: attrs.u32("kernel")?,
                stride: attrs.u32("stride")?,
                dilation: attrs.u32("dilation")?,
                groups: attrs.u32("groups")?,
                pads: attrs.pads("pads")?,
            };
            Op::Conv2d {
                weight,
                bias,
                geometry,
                dropconnect: attrs.opt_f32("dropconnect")?,
                epilogue,
            }
        }
        "maxpool" | "avgpool" => {
            let [] = exactly(name, head, params)?;
            let geometry = PoolGeometry {
                kernel: attrs.u32("kernel")?,
                stride: attrs.u32("stride")?,
                pads: attrs.pads("pads")?,
            };
            if name == "maxpool" {
                Op::MaxPool(geometry)
            } else {
                Op::AvgPool(geometry)
            }
        }
        "globalavgpool" => {
            let [] = exactly(name, head, params)?;
            Op::GlobalAvgPool
        }
        "flatten" => {
            let [] = exactly(name, head, params)?;
            Op::Flatten
        }
        "add" => {
            let [] = exactly(name, head, params)?;
            Op::Add
        }
        "batch_norm" => {
            let [weight, bias, running_mean, running_var] = exactly(name, head, params)?;
            Op::BatchNorm {
                weight,
                bias,
                running_mean,
                running_var,
                eps: attrs.f32("eps")?,
                momentum: attrs.f32("momentum")?,
            }
        }
        "layer_norm" => {
            let [weight, bias] = exactly(name, head, params)?;
            let eps = attrs.f32("eps")?;
            Op::LayerNorm { weight, bias, eps }
        }
        "instance_norm" => {
            let [weight, bias] = exactly(name, head, params)?;
            let eps = attrs.f32("eps")?;
            Op::InstanceNorm { weight, bias, eps }
        }
        "group_norm" => {
            let [weight, bias] = exactly(name, head, params)?;
            Op::GroupNorm {
                weight,
                bias,
                groups: attrs.u32("groups")?,
                eps: attrs.f32("eps")?,
            }
        }
        "lrn" => {
            let [] = exactly(name, head, params)?;
            Op::Lrn {
                size: attrs.u32("size")?,
                alpha: attrs.f32("alpha")?,
                beta: attrs.f32("beta")?,
                bias: attrs.f32("bias")?,
            }
        }
        "affine" => {
            let [scale, shift] = exactly(name, head, params)?;
            Op::Affine { scale, shift }
        }
        "dropout" => {
            let [] = exactly(name, head, params)?;
            Op::Dropout { p: attrs.f32("p")? }
        }
        "alpha_dropout" => {
            let [] = exactly(name, head, params)?;
            Op::AlphaDropout { p: attrs.f32("p")? }
        }
        "dropblock" => {
            let [] = exactly(name, head, params)?;
            Op::DropBlock {
                p: attrs.f32("p")?,
                block: attrs.u32("block")?,
            }
        }
        _ => {
            // A standalone activation; PReLU's slope is its one operand.
            let slope = match name {
                "prelu" => {
                    let [weight] = exactly(name, head, params)?;
                    Some(weight)
                }
                _ => None,
            };
            let act = act_of(name, attrs, slope)?.ok_or_else(|| error_at(head, format!("unknown op `{name}`")))?;
            if slope.is_none() {
                let [] = exactly(name, head, params)?;
            }
            Op::Act(act)
        }
    };
    Ok(op)
}

/// The activation called `name`, or `None` if no activation is. `slope` is
/// PReLU's weight, found by the caller.
fn act_of(name: &str, attrs: &mut Attrs<'_>, slope: Option<ParamId>) -> Result<Option<Act>> {
    let act = match name {
        "sigmoid" => Act::Sigmoid,
        "tanh" => Act::Tanh,
        "relu" => Act::Relu,
        "leaky_relu" => Act::LeakyRelu {
            alpha: attrs.f32("alpha")?,
        },
        "prelu" => match slope {
            Some(weight) => Act::Prelu { weight },
            None => return Err(error_at(attrs.span, "prelu needs its slope parameter")),
        },
        "rrelu" => Act::Rrelu {
            lower: attrs.f32("lower")?,
            upper: attrs.f32("upper")?,
        },
        "elu" => Act::Elu {
            alpha: attrs.f32("alpha")?,
        },
        "selu" => Act::Selu,
        "softplus" => Act::Softplus {
            beta: attrs.f32("beta")?,
        },
        "gelu" => Act::Gelu,
        "silu" => Act::Silu,
        "maxout" => Act::Maxout {
            pieces: attrs.u32("pieces")?,
        },
        "softmax" => Act::Softmax,
        _ => return Ok(None),
    };
    Ok(Some(act))
}

/// Exactly `N` parameter operands.
fn exactly<const N: usize>(name: &str, head: Span<'_>, params: &[(ParamId, Span<'_>)]) -> Result<[ParamId; N]> {
    let ids: Vec<ParamId> = params.iter().map(|(id, _)| *id).collect();
    <[ParamId; N]>::try_from(ids).map_err(|ids| {
        let at = params.get(N).map_or(head, |(_, span)| *span);
        error_at(at, format!("{name} takes {N} parameter(s), got {}", ids.len()))
    })
}

/// A weight and an optional bias.
fn weight_bias(name: &str, head: Span<'_>, params: &[(ParamId, Span<'_>)]) -> Result<(ParamId, Option<ParamId>)> {
    match params {
        [(weight, _)] => Ok((*weight, None)),
        [(weight, _), (bias, _)] => Ok((*weight, Some(*bias))),
        _ => {
            let at = params.get(2).map_or(head, |(_, span)| *span);
            Err(error_at(
                at,
                format!(
                    "{name} takes a weight and an optional bias, got {} parameter(s)",
                    params.len()
                ),
            ))
        }
    }
}

/// One attribute as written: `key=value`.
struct Attr<'i> {
    key: &'i str,
    span: Span<'i>,
    /// `number`, `param_ref` or `pads`.
    value: Pair<'i, Rule>,
}

/// The attributes of an op or epilogue step; each reader takes one, and
/// [`Attrs::finish`] rejects the ones nobody took.
struct Attrs<'i> {
    /// The op or step name, for messages.
    owner: &'i str,
    /// Where errors about missing attributes point.
    span: Span<'i>,
    list: Vec<Attr<'i>>,
}

impl<'i> Attrs<'i> {
    fn new(owner: &'i str, span: Span<'i>) -> Attrs<'i> {
        Attrs {
            owner,
            span,
            list: Vec::new(),
        }
    }

    fn push(&mut self, pair: Pair<'i, Rule>) -> Result<()> {
        let span = pair.as_span();
        let mut items = Items::new(pair);
        let key = items.expect(Rule::ident)?.as_str();
        let value = items
            .next()
            .ok_or_else(|| error_at(span, "internal: attribute without value"))?;
        if self.list.iter().any(|a| a.key == key) {
            return Err(error_at(span, format!("`{key}` is given twice")));
        }
        self.list.push(Attr { key, span, value });
        Ok(())
    }

    fn take(&mut self, key: &str) -> Option<Pair<'i, Rule>> {
        let i = self.list.iter().position(|a| a.key == key)?;
        Some(self.list.remove(i).value)
    }

    fn required(&mut self, key: &str) -> Result<Pair<'i, Rule>> {
        self.take(key)
            .ok_or_else(|| error_at(self.span, format!("{} needs `{key}=`", self.owner)))
    }

    /// The value, which must be a `rule` (`what` says which kind).
    fn of_kind(&self, key: &str, value: Pair<'i, Rule>, rule: Rule, what: &str) -> Result<Pair<'i, Rule>> {
        if value.as_rule() == rule {
            Ok(value)
        } else {
            Err(error_at(value.as_span(), format!("`{key}` takes {what}")))
        }
    }

    fn f32(&mut self, key: &str) -> Result<f32> {
        let value = self.required(key)?;
        f32_of(&self.of_kind(key, value, Rule::number, "a number")?)
    }

    fn opt_f32(&mut self, key: &str) -> Result<Option<f32>> {
        match self.take(key) {
            Some(value) => Ok(Some(f32_of(&self.of_kind(key, value, Rule::number, "a number")?)?)),
            None => Ok(None),
        }
    }

    fn u32(&mut self, key: &str) -> Result<u32> {
        let value = self.required(key)?;
        let value = self.of_kind(key, value, Rule::number, "a whole number")?;
        match value.as_str().parse::<u32>() {
            Ok(n) if u64::from(n) <= MAX_ATTR => Ok(n),
            _ => Err(error_at(
                value.as_span(),
                format!("`{key}` takes a whole number up to {MAX_ATTR}"),
            )),
        }
    }

    fn pads(&mut self, key: &str) -> Result<[u32; 4]> {
        let value = self.required(key)?;
        let value = self.of_kind(key, value, Rule::pads, "`[top,left,bottom,right]`")?;
        let span = value.as_span();
        let pads: Vec<u32> = Items::new(value)
            .map(|p| uint_of(&p, MAX_ATTR).map(|n| n as u32))
            .collect::<Result<_>>()?;
        <[u32; 4]>::try_from(pads)
            .map_err(|_| error_at(span, format!("`{key}` takes four numbers: [top,left,bottom,right]")))
    }

    fn param(&mut self, key: &str, reader: &Reader<'i>) -> Result<ParamId> {
        let value = self.required(key)?;
        reader.param_id(&self.of_kind(key, value, Rule::param_ref, "a parameter like `@name`")?)
    }

    fn finish(self) -> Result<()> {
        match self.list.first() {
            Some(attr) => Err(error_at(
                attr.span,
                format!("{} takes no attribute `{}`", self.owner, attr.key),
            )),
            None => Ok(()),
        }
    }
}
