//! Execution: a port of Go's `text/template/exec.go` (Go 1.26) over [`Val`].
//!
//! Function names and the places where the "current node" (`s.at(node)`) is updated
//! follow Go, because the node ends up in error messages:
//! `template: NAME:LINE:COL: executing "NAME" at <NODE>: MSG`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::funcs::{self, CallErr, METHOD_SIG, Param, Sig};
use crate::gofmt::quote_go;
use crate::model::{self, FieldLookup, MethodId, MethodLookup};
use crate::parse::{Arg, BranchNode, CommandNode, ListNode, Node, NumberNode, PipeNode, TemplateNode};
use crate::value::{BOOL, FLOAT64, INT, Kind, STRING, Val};
use crate::{ErrorKind, TemplateData, TemplateError};

/// Maximum nesting of `{{template}}` calls plus control structures during execution.
/// (Go allows 100000 template calls; a Rust thread stack is much smaller.)
const MAX_EXEC_DEPTH: usize = 300;

/// How often (in walked nodes) the execution clock is read.
const CLOCK_EVERY: u64 = 256;

/// Parsed templates that share one source text.
#[derive(Debug)]
pub(crate) struct Templates {
    pub name: String,
    pub source: String,
    pub trees: BTreeMap<String, ListNode>,
}

#[derive(Clone, Copy)]
enum NodeRef<'t> {
    Node(&'t Node),
    Pipe(&'t PipeNode),
    Cmd(&'t CommandNode),
    Arg(&'t Arg),
}

impl NodeRef<'_> {
    fn pos(&self) -> usize {
        match self {
            NodeRef::Node(n) => n.pos(),
            NodeRef::Pipe(p) => p.pos,
            NodeRef::Cmd(c) => c.pos,
            NodeRef::Arg(a) => a.pos(),
        }
    }

    fn context(&self) -> String {
        let mut s = String::new();
        match self {
            NodeRef::Node(n) => n.write_to(&mut s),
            NodeRef::Pipe(p) => p.write_to(&mut s),
            NodeRef::Cmd(c) => c.write_to(&mut s),
            NodeRef::Arg(a) => a.write_to(&mut s),
        }
        s
    }
}

enum Flow {
    Err(TemplateError),
    Break,
    Continue,
}

type R<T> = Result<T, Flow>;

#[derive(Clone, Copy)]
enum Callee<'t> {
    Builtin(&'t str),
    Method(MethodId),
}

struct State<'t, 'o> {
    budget: &'o crate::Budget,
    /// Range iterations so far.
    iterations: u64,
    /// Nodes walked so far (the clock is read every [`CLOCK_EVERY`] steps).
    steps: u64,
    started: std::time::Instant,
    t: &'t Templates,
    /// Name of the template being executed (`{{define}}`d templates have their own).
    name: &'t str,
    node: Option<NodeRef<'t>>,
    vars: Vec<(&'t str, Val<'t>)>,
    depth: usize,
    out: &'o mut String,
}

/// Executes the template named `t.name` against `data`, appending to `out`.
pub(crate) fn execute<'t>(
    t: &'t Templates,
    data: &'t TemplateData<'_>,
    out: &mut String,
    budget: &crate::Budget,
) -> Result<(), TemplateError> {
    let root = data.root();
    let Some(tree) = t.trees.get(&t.name) else {
        return Err(TemplateError::new(
            ErrorKind::Exec,
            format!("template: {}: {} is an incomplete or empty template", t.name, quote_go(&t.name)),
        ));
    };
    let mut s = State {
        budget,
        iterations: 0,
        steps: 0,
        started: std::time::Instant::now(),
        t,
        name: &t.name,
        node: None,
        vars: vec![("$", root.clone())],
        depth: 0,
        out,
    };
    match s.walk_list(&root, tree) {
        Ok(()) => Ok(()),
        Err(Flow::Err(e)) => Err(e),
        // The parser only accepts break/continue inside range.
        Err(Flow::Break | Flow::Continue) => Ok(()),
    }
}

impl<'t> State<'t, '_> {
    fn at(&mut self, node: NodeRef<'t>) {
        self.node = Some(node);
    }

    fn error(&self, kind: ErrorKind, msg: &str) -> Flow {
        let text = match self.node {
            None => format!("template: {}: {}", self.name, msg),
            Some(n) => {
                let pos = n.pos().min(self.t.source.len());
                let before = &self.t.source.as_bytes()[..pos];
                let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
                let col = match before.iter().rposition(|&b| b == b'\n') {
                    None => pos,
                    Some(i) => pos - (i + 1),
                };
                format!(
                    "template: {}:{}:{}: executing {} at <{}>: {}",
                    self.t.name,
                    line,
                    col,
                    quote_go(self.name),
                    n.context(),
                    msg
                )
            }
        };
        Flow::Err(TemplateError::new(kind, text))
    }

    fn errorf(&self, msg: impl AsRef<str>) -> Flow {
        self.error(ErrorKind::Exec, msg.as_ref())
    }

    fn unsupported(&self, msg: impl AsRef<str>) -> Flow {
        self.error(ErrorKind::Unsupported, msg.as_ref())
    }

    fn set_var(&mut self, name: &str, value: Val<'t>) -> R<()> {
        for v in self.vars.iter_mut().rev() {
            if v.0 == name {
                v.1 = value;
                return Ok(());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    fn set_top_var(&mut self, n: usize, value: Val<'t>) {
        let i = self.vars.len() - n;
        self.vars[i].1 = value;
    }

    fn var_value(&self, name: &str) -> R<Val<'t>> {
        for v in self.vars.iter().rev() {
            if v.0 == name {
                return Ok(v.1.clone());
            }
        }
        Err(self.errorf(format!("undefined variable: {name}")))
    }

    /// The execution budget (see [`crate::Budget`]): checked at every node, every range
    /// iteration, every write and every function result.
    fn over_budget(&self, what: String) -> Flow {
        Flow::Err(TemplateError::new(
            ErrorKind::Budget,
            format!("template: {}: execution budget exceeded: {what}", self.t.name),
        ))
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps.is_multiple_of(CLOCK_EVERY) && self.started.elapsed() > self.budget.max_time {
            return Err(self.over_budget(format!("ran longer than {:?}", self.budget.max_time)));
        }
        if self.out.len() > self.budget.max_output_bytes {
            return Err(self.over_budget(format!("output longer than {} bytes", self.budget.max_output_bytes)));
        }
        Ok(())
    }

    fn iteration(&mut self) -> R<()> {
        self.iterations += 1;
        if self.iterations > self.budget.max_range_iterations {
            return Err(self.over_budget(format!("more than {} range iterations", self.budget.max_range_iterations)));
        }
        self.step()
    }

    /// A function's result (`printf`, `print`, ...) must fit the value budget.
    fn check_value(&self, v: &Val<'t>) -> R<()> {
        if let Val::Str(s, _) = v
            && s.len() > self.budget.max_value_bytes
        {
            return Err(self.over_budget(format!("a value longer than {} bytes", self.budget.max_value_bytes)));
        }
        Ok(())
    }

    fn enter(&mut self) -> R<()> {
        if self.depth >= MAX_EXEC_DEPTH {
            return Err(self.errorf(format!("exceeded maximum template depth ({MAX_EXEC_DEPTH})")));
        }
        self.depth += 1;
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Walk

    fn walk_list(&mut self, dot: &Val<'t>, list: &'t ListNode) -> R<()> {
        for n in &list.nodes {
            self.walk(dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Val<'t>, node: &'t Node) -> R<()> {
        self.at(NodeRef::Node(node));
        self.step()?;
        match node {
            Node::Action(a) => {
                let val = self.eval_pipeline(dot, &a.pipe)?;
                if a.pipe.decl.is_empty() {
                    self.print_value(NodeRef::Node(node), val)?;
                }
                Ok(())
            }
            Node::Break { .. } => Err(Flow::Break),
            Node::Continue { .. } => Err(Flow::Continue),
            Node::If(b) => self.walk_if_or_with(false, dot, b),
            Node::With(b) => self.walk_if_or_with(true, dot, b),
            Node::Range(r) => self.walk_range(dot, r, node),
            Node::Template(t) => self.walk_template(dot, t, node),
            Node::Text { text, .. } => {
                self.out.push_str(text);
                Ok(())
            }
            Node::End { .. } | Node::Else { .. } => Err(self.errorf(format!("unknown node: {}", node.to_go_string()))),
        }
    }

    fn walk_if_or_with(&mut self, is_with: bool, dot: &Val<'t>, b: &'t BranchNode) -> R<()> {
        self.enter()?;
        let mark = self.vars.len();
        let r = (|| {
            let val = self.eval_pipeline(dot, &b.pipe)?;
            if val.truth() {
                if is_with { self.walk_list(&val, &b.list) } else { self.walk_list(dot, &b.list) }
            } else if let Some(e) = &b.else_list {
                self.walk_list(dot, e)
            } else {
                Ok(())
            }
        })();
        self.vars.truncate(mark);
        self.depth -= 1;
        r
    }

    fn walk_range(&mut self, dot: &Val<'t>, r: &'t BranchNode, node: &'t Node) -> R<()> {
        self.at(NodeRef::Node(node));
        self.enter()?;
        let mark = self.vars.len();
        let res = self.walk_range_inner(dot, r);
        self.vars.truncate(mark);
        self.depth -= 1;
        match res {
            Err(Flow::Break) => Ok(()),
            other => other,
        }
    }

    fn one_iteration(&mut self, r: &'t BranchNode, mark: usize, index: Val<'t>, elem: Val<'t>) -> R<()> {
        self.iteration()?;
        let decl = &r.pipe.decl;
        if !decl.is_empty() {
            if r.pipe.is_assign {
                if decl.len() > 1 {
                    self.set_var(&decl[0].ident[0], index.clone())?;
                } else {
                    self.set_var(&decl[0].ident[0], elem.clone())?;
                }
            } else {
                self.set_top_var(1, elem.clone());
            }
        }
        if decl.len() > 1 {
            if r.pipe.is_assign {
                self.set_var(&decl[1].ident[0], elem.clone())?;
            } else {
                self.set_top_var(2, index);
            }
        }
        let res = self.walk_list(&elem, &r.list);
        self.vars.truncate(mark);
        match res {
            Err(Flow::Continue) => Ok(()),
            other => other,
        }
    }

    fn walk_range_inner(&mut self, dot: &Val<'t>, r: &'t BranchNode) -> R<()> {
        let (val, _) = self.eval_pipeline(dot, &r.pipe)?.indirect();
        let mark = self.vars.len();
        match &val {
            Val::Int(_, ty) | Val::Uint(_, ty) => {
                if r.pipe.decl.len() > 1 {
                    return Err(
                        self.errorf(format!("can't use {} to iterate over more than one variable", val.to_v_lossy()))
                    );
                }
                let count: u64 = match &val {
                    Val::Uint(u, _) => *u,
                    Val::Int(n, _) => (*n).max(0) as u64,
                    _ => 0,
                };
                if count > 0 {
                    for i in 0..count {
                        let elem = match &val {
                            Val::Uint(..) => Val::Uint(i, ty),
                            _ => Val::Int(i as i64, ty),
                        };
                        self.one_iteration(r, mark, Val::Invalid, elem)?;
                    }
                    return Ok(());
                }
            }
            Val::Slice(s, ty) => {
                if let Some(s) = s.filter(|s| s.len() > 0) {
                    let et = ty.elem().unwrap_or(&STRING);
                    for i in 0..s.len() {
                        self.one_iteration(r, mark, Val::Int(i as i64, &INT), s.get(i, et))?;
                    }
                    return Ok(());
                }
            }
            Val::Map(m, ty) => {
                if let Some(m) = m.filter(|m| m.len() > 0) {
                    let Kind::Map(kt, et) = ty.kind else { unreachable!() };
                    for (k, v) in m.entries(kt, et) {
                        self.one_iteration(r, mark, k, v)?;
                    }
                    return Ok(());
                }
            }
            Val::Invalid => {}
            v => return Err(self.errorf(format!("range can't iterate over {}", v.to_v_lossy()))),
        }
        if let Some(e) = &r.else_list {
            self.walk_list(dot, e)?;
        }
        Ok(())
    }

    fn walk_template(&mut self, dot: &Val<'t>, t: &'t TemplateNode, node: &'t Node) -> R<()> {
        self.at(NodeRef::Node(node));
        let Some((name, tree)) = self.t.trees.get_key_value(&t.name) else {
            return Err(self.errorf(format!("template {} not defined", quote_go(&t.name))));
        };
        self.enter()?;
        let new_dot = match &t.pipe {
            Some(p) => self.eval_pipeline(dot, p),
            None => Ok(Val::Invalid),
        };
        let new_dot = match new_dot {
            Ok(v) => v,
            Err(e) => {
                self.depth -= 1;
                return Err(e);
            }
        };
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
        let saved_name = std::mem::replace(&mut self.name, name.as_str());
        let r = self.walk_list(&new_dot, tree);
        self.vars = saved_vars;
        self.name = saved_name;
        self.depth -= 1;
        r
    }

    // -----------------------------------------------------------------------------------
    // Eval

    fn eval_pipeline(&mut self, dot: &Val<'t>, pipe: &'t PipeNode) -> R<Val<'t>> {
        self.at(NodeRef::Pipe(pipe));
        let mut value: Option<Val<'t>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Val::Invalid);
        for v in &pipe.decl {
            if pipe.is_assign {
                self.set_var(&v.ident[0], value.clone())?;
            } else {
                self.vars.push((v.ident[0].as_str(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &'t [Arg], fin: &Option<Val<'t>>) -> R<()> {
        if args.len() > 1 || fin.is_some() {
            return Err(self.errorf(format!("can't give argument to non-function {}", args[0].to_go_string())));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Val<'t>, cmd: &'t CommandNode, fin: Option<Val<'t>>) -> R<Val<'t>> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { .. } => return self.eval_field_node(dot, first, &cmd.args, fin),
            Arg::Chain { .. } => return self.eval_chain_node(dot, first, &cmd.args, fin),
            Arg::Identifier { name, .. } => {
                return self.eval_function(dot, first, name, NodeRef::Cmd(cmd), &cmd.args, fin);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &fin)?;
                return self.eval_pipeline(dot, p);
            }
            Arg::Variable(_) => return self.eval_variable_node(dot, first, &cmd.args, fin),
            _ => {}
        }
        self.at(NodeRef::Arg(first));
        self.not_a_function(&cmd.args, &fin)?;
        match first {
            Arg::Bool { val, .. } => Ok(Val::Bool(*val, &BOOL)),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => Err(self.errorf("nil is not a command")),
            Arg::Number(n) => self.ideal_constant(first, n),
            Arg::String { text, .. } => Ok(Val::Str(Cow::Borrowed(text), &STRING)),
            _ => Err(self.errorf(format!("can't evaluate command {}", quote_go(&first.to_go_string())))),
        }
    }

    fn ideal_constant(&mut self, node: &'t Arg, n: &NumberNode) -> R<Val<'t>> {
        self.at(NodeRef::Arg(node));
        let text = n.text.as_str();
        let is_hex_int = text.len() > 2
            && text.as_bytes()[0] == b'0'
            && matches!(text.as_bytes()[1], b'x' | b'X')
            && !text.contains(['p', 'P']);
        let is_rune_int = text.starts_with('\'');
        if n.is_complex {
            return Ok(Val::Complex(n.complex.0, n.complex.1));
        }
        if n.is_float && !is_hex_int && !is_rune_int && text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Ok(Val::Float(n.float64, &FLOAT64));
        }
        if n.is_int {
            return Ok(Val::Int(n.int64, &INT));
        }
        if n.is_uint {
            return Err(self.errorf(format!("{text} overflows int")));
        }
        Ok(Val::Invalid)
    }

    fn eval_field_node(&mut self, dot: &Val<'t>, field: &'t Arg, args: &'t [Arg], fin: Option<Val<'t>>) -> R<Val<'t>> {
        self.at(NodeRef::Arg(field));
        let Arg::Field { ident, .. } = field else { unreachable!() };
        self.eval_field_chain(dot, dot.clone(), field, ident, args, fin)
    }

    fn eval_chain_node(&mut self, dot: &Val<'t>, chain: &'t Arg, args: &'t [Arg], fin: Option<Val<'t>>) -> R<Val<'t>> {
        self.at(NodeRef::Arg(chain));
        let Arg::Chain { node, fields, .. } = chain else { unreachable!() };
        if fields.is_empty() {
            return Err(self.errorf("internal error: no fields in evalChainNode"));
        }
        if let Arg::Nil { .. } = node.as_ref() {
            return Err(self.errorf(format!("indirection through explicit nil in {}", chain.to_go_string())));
        }
        let pipe = self.eval_arg(dot, Param::Untyped, node)?;
        self.eval_field_chain(dot, pipe, chain, fields, args, fin)
    }

    fn eval_variable_node(&mut self, dot: &Val<'t>, var: &'t Arg, args: &'t [Arg], fin: Option<Val<'t>>) -> R<Val<'t>> {
        self.at(NodeRef::Arg(var));
        let Arg::Variable(v) = var else { unreachable!() };
        let value = self.var_value(&v.ident[0])?;
        if v.ident.len() == 1 {
            self.not_a_function(args, &fin)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, var, &v.ident[1..], args, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Val<'t>,
        receiver: Val<'t>,
        node: &'t Arg,
        ident: &'t [String],
        args: &'t [Arg],
        fin: Option<Val<'t>>,
    ) -> R<Val<'t>> {
        let n = ident.len();
        let mut receiver = receiver;
        for id in &ident[..n - 1] {
            receiver = self.eval_field(dot, id, node, &[], None, receiver)?;
        }
        self.eval_field(dot, &ident[n - 1], node, args, fin, receiver)
    }

    fn eval_function(
        &mut self,
        dot: &Val<'t>,
        ident: &'t Arg,
        name: &'t str,
        cmd: NodeRef<'t>,
        args: &'t [Arg],
        fin: Option<Val<'t>>,
    ) -> R<Val<'t>> {
        self.at(NodeRef::Arg(ident));
        if !crate::parse::BUILTINS.contains(&name) {
            return Err(self.errorf(format!("{} is not a defined function", quote_go(name))));
        }
        self.eval_call(dot, Callee::Builtin(name), Val::Invalid, cmd, name, args, fin)
    }

    fn eval_field(
        &mut self,
        dot: &Val<'t>,
        field_name: &'t str,
        node: &'t Arg,
        args: &'t [Arg],
        fin: Option<Val<'t>>,
        receiver: Val<'t>,
    ) -> R<Val<'t>> {
        let Some(typ) = receiver.ty() else {
            return Ok(Val::Invalid);
        };
        let (receiver, is_nil) = receiver.indirect();
        match model::method(typ, field_name) {
            MethodLookup::Found(id) => {
                return self.eval_call(dot, Callee::Method(id), receiver, NodeRef::Arg(node), field_name, args, fin);
            }
            MethodLookup::Unsupported => {
                return Err(self.unsupported(format!(
                    "method {} of type {} is not supported by this implementation",
                    field_name, typ.name
                )));
            }
            MethodLookup::Missing => {}
        }
        let has_args = args.len() > 1 || fin.is_some();
        match &receiver {
            Val::Struct(obj) => match obj.field(field_name) {
                FieldLookup::Found(v) => {
                    if has_args {
                        return Err(
                            self.errorf(format!("{field_name} has arguments but cannot be invoked as function"))
                        );
                    }
                    return Ok(v);
                }
                FieldLookup::Unsupported => {
                    return Err(self.unsupported(format!(
                        "field {} of type {} is not supported by this implementation",
                        field_name,
                        obj.ty().name
                    )));
                }
                FieldLookup::Missing => {}
            },
            Val::Map(m, ty) => {
                if let Kind::Map(kt, et) = ty.kind
                    && kt.is(&STRING)
                {
                    if has_args {
                        return Err(self.errorf(format!("{field_name} is not a method but has arguments")));
                    }
                    return Ok(m.and_then(|m| m.get(field_name, et)).unwrap_or(Val::Invalid));
                }
            }
            Val::Ptr(None, pty) if is_nil => {
                let elem = pty.elem();
                let missing = match elem.and_then(model::desc) {
                    Some(d) => d.modeled && !d.fields.contains(&field_name),
                    None => false,
                };
                if !missing {
                    return Err(self.errorf(format!("nil pointer evaluating {}.{}", typ.name, field_name)));
                }
            }
            _ => {}
        }
        Err(self.errorf(format!("can't evaluate field {} in type {}", field_name, typ.name)))
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_call(
        &mut self,
        dot: &Val<'t>,
        fun: Callee<'t>,
        receiver: Val<'t>,
        node: NodeRef<'t>,
        name: &'t str,
        args: &'t [Arg],
        fin: Option<Val<'t>>,
    ) -> R<Val<'t>> {
        let args = if args.is_empty() { args } else { &args[1..] };
        let sig: Sig = match fun {
            Callee::Builtin(b) => funcs::builtin_sig(b),
            Callee::Method(_) => METHOD_SIG,
        };
        let num_in = args.len() + usize::from(fin.is_some());
        let mut num_fixed = args.len();
        if sig.variadic {
            num_fixed = sig.num_in - 1;
            if num_in < num_fixed {
                return Err(self.errorf(format!(
                    "wrong number of args for {}: want at least {} got {}",
                    name,
                    sig.num_in - 1,
                    args.len()
                )));
            }
        } else if num_in != sig.num_in {
            return Err(self.errorf(format!("wrong number of args for {}: want {} got {}", name, sig.num_in, num_in)));
        }

        if let Callee::Builtin(b @ ("and" | "or")) = fun {
            let mut v = Val::Invalid;
            for arg in args {
                v = self.eval_arg(dot, Param::Rv, arg)?;
                if v.truth() == (b == "or") {
                    return Ok(v);
                }
            }
            if let Some(f) = fin {
                v = self.validate_type(f, Param::Rv)?;
            }
            return Ok(v);
        }

        let mut argv = Vec::with_capacity(num_in);
        let mut i = 0;
        while i < num_fixed && i < args.len() {
            argv.push(self.eval_arg(dot, sig.params[i], &args[i])?);
            i += 1;
        }
        if sig.variadic {
            let elem = *sig.params.last().expect("variadic has params");
            while i < args.len() {
                argv.push(self.eval_arg(dot, elem, &args[i])?);
                i += 1;
            }
        }
        let mut callee_name = String::new();
        if let Some(f) = fin {
            if matches!(fun, Callee::Builtin("call")) && args.is_empty() {
                callee_name = f.reflect_string();
            }
            let t = if sig.variadic {
                if num_in - 1 < num_fixed { sig.params[num_in - 1] } else { *sig.params.last().expect("params") }
            } else {
                sig.params[sig.num_in - 1]
            };
            argv.push(self.validate_type(f, t)?);
        }
        if matches!(fun, Callee::Builtin("call")) && !args.is_empty() {
            callee_name = args[0].to_go_string();
        }

        if let Callee::Builtin(b) = fun {
            self.check_call_cost(b, &argv)?;
        }
        let result = match fun {
            Callee::Builtin(b) => funcs::call_builtin(b, argv, &callee_name),
            Callee::Method(id) => model::call_method(&receiver, id).map_err(CallErr::Go),
        };
        match result {
            Ok(v) => {
                self.check_value(&v)?;
                Ok(v)
            }
            Err(CallErr::Go(e)) => {
                self.at(node);
                Err(self.errorf(format!("error calling {name}: {e}")))
            }
            Err(CallErr::Unsupported(e)) => {
                self.at(node);
                Err(self.unsupported(format!("{name}: {e}")))
            }
        }
    }

    /// Bounds what a value-building builtin (`printf`, `print`, `println`, `html`, `js`,
    /// `urlquery`) may allocate *before* it runs; its result is checked against
    /// [`crate::Budget::max_value_bytes`] afterwards, but one call could otherwise build
    /// gigabytes first: `printf "%0999999999d" 1`, `printf "%[1]s%[1]s…" $big`,
    /// `print $big $big $big …`.
    ///
    /// * A printf width or precision (written in the format, or taken from an argument
    ///   by `*`) larger than `max_value_bytes` is refused outright. Digits outside a
    ///   verb (`printf "id-1234567"`) are text, not widths.
    /// * The result's size is over-estimated (every argument escaped at its worst, every
    ///   width paid once per element of a slice or map argument, every argument paid by
    ///   every directive when the format picks arguments by index) and refused when the
    ///   estimate is over 8 × `max_value_bytes`.
    fn check_call_cost(&self, builtin: &str, argv: &[Val<'t>]) -> R<()> {
        let limit = self.budget.max_value_bytes as u64;
        let (format, args) = match builtin {
            "printf" => match argv.split_first() {
                Some((Val::Str(f, _), rest)) => (Some(f.as_ref()), rest),
                _ => (None, argv),
            },
            "print" | "println" | "html" | "js" | "urlquery" => (None, argv),
            _ => return Ok(()),
        };
        let sizes = args.iter().map(rough_len).fold(0u64, u64::saturating_add);
        let mut estimate = sizes.saturating_mul(6);
        if let Some(format) = format {
            let widest = args.iter().map(rough_len).max().unwrap_or(0);
            let elems = args.iter().map(elements).max().unwrap_or(1).max(1);
            let directives = printf_directives(format, args);
            let mut indexed = false;
            for d in &directives {
                if d.width > limit || d.precision > limit {
                    return Err(self.over_budget(format!("a printf width or precision over {limit}")));
                }
                indexed |= d.indexed;
                estimate = estimate.saturating_add((d.width + d.precision + 8).saturating_mul(elems));
            }
            if indexed {
                estimate = estimate.saturating_add(widest.saturating_mul(6).saturating_mul(directives.len() as u64));
            }
            estimate = estimate.saturating_add(format.len() as u64);
        }
        if estimate > limit.saturating_mul(8) {
            return Err(
                self.over_budget(format!("a value longer than {limit} bytes ({builtin} of about {estimate} bytes)"))
            );
        }
        Ok(())
    }

    /// Go's `validateType`.
    fn validate_type(&mut self, value: Val<'t>, typ: Param) -> R<Val<'t>> {
        match typ {
            Param::Untyped | Param::Rv | Param::Any => Ok(value),
            Param::Str => match value {
                Val::Invalid => Err(self.errorf("invalid value; expected string")),
                Val::Str(_, t) if t.is(&STRING) => Ok(value),
                Val::Ptr(inner, pty) if pty.elem().is_some_and(|e| e.is(&STRING)) => match inner {
                    Some(v) => Ok(*v),
                    None => Err(self.errorf("dereference of nil pointer of type string")),
                },
                v => Err(self.errorf(format!("wrong type for value; expected string; got {}", v.type_name()))),
            },
        }
    }

    /// Go's `evalArg`.
    fn eval_arg(&mut self, dot: &Val<'t>, typ: Param, n: &'t Arg) -> R<Val<'t>> {
        self.at(NodeRef::Arg(n));
        match n {
            Arg::Dot { .. } => return self.validate_type(dot.clone(), typ),
            Arg::Nil { .. } => {
                return match typ {
                    Param::Rv | Param::Any => Ok(Val::Invalid),
                    Param::Str => Err(self.errorf("cannot assign nil to string")),
                    Param::Untyped => Err(self.errorf("evalEmptyInterface: nil (can't happen)")),
                };
            }
            Arg::Field { .. } => {
                let v = self.eval_field_node(dot, n, std::slice::from_ref(n), None)?;
                return self.validate_type(v, typ);
            }
            Arg::Variable(_) => {
                let v = self.eval_variable_node(dot, n, &[], None)?;
                return self.validate_type(v, typ);
            }
            Arg::Pipe(p) => {
                let v = self.eval_pipeline(dot, p)?;
                return self.validate_type(v, typ);
            }
            Arg::Identifier { name, .. } => {
                let v = self.eval_function(dot, n, name, NodeRef::Arg(n), &[], None)?;
                return self.validate_type(v, typ);
            }
            Arg::Chain { .. } => {
                let v = self.eval_chain_node(dot, n, &[], None)?;
                return self.validate_type(v, typ);
            }
            _ => {}
        }
        match typ {
            Param::Str => {
                self.at(NodeRef::Arg(n));
                match n {
                    Arg::String { text, .. } => Ok(Val::Str(Cow::Borrowed(text), &STRING)),
                    _ => Err(self.errorf(format!("expected string; found {}", n.to_go_string()))),
                }
            }
            Param::Rv | Param::Any => self.eval_empty_interface(dot, n),
            Param::Untyped => Err(self.errorf(format!("can't handle {} for arg of type <nil>", n.to_go_string()))),
        }
    }

    fn eval_empty_interface(&mut self, dot: &Val<'t>, n: &'t Arg) -> R<Val<'t>> {
        self.at(NodeRef::Arg(n));
        match n {
            Arg::Bool { val, .. } => Ok(Val::Bool(*val, &BOOL)),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Field { .. } => self.eval_field_node(dot, n, &[], None),
            Arg::Identifier { name, .. } => self.eval_function(dot, n, name, NodeRef::Arg(n), &[], None),
            Arg::Nil { .. } => Err(self.errorf("evalEmptyInterface: nil (can't happen)")),
            Arg::Number(num) => self.ideal_constant(n, num),
            Arg::String { text, .. } => Ok(Val::Str(Cow::Borrowed(text), &STRING)),
            Arg::Variable(_) => self.eval_variable_node(dot, n, &[], None),
            Arg::Pipe(p) => self.eval_pipeline(dot, p),
            Arg::Chain { .. } => {
                Err(self.errorf(format!("can't handle assignment of {} to empty interface argument", n.to_go_string())))
            }
        }
    }

    /// Go's `printValue` + `printableValue`.
    fn print_value(&mut self, node: NodeRef<'t>, v: Val<'t>) -> R<()> {
        self.at(node);
        let v = if matches!(v, Val::Ptr(..)) { v.indirect().0 } else { v };
        if !v.is_valid() {
            self.out.push_str("<no value>");
            return Ok(());
        }
        if let Err(e) = v.fmt_v(self.out, 0) {
            return Err(self.unsupported(e.0));
        }
        self.step()
    }
}

/// One printf directive's width and precision (0 when absent), as Go's `fmt` parses
/// them; `indexed` when it picks its argument with `[n]`.
struct Directive {
    width: u64,
    precision: u64,
    indexed: bool,
}

/// The directives of a printf format (Go's `doPrintf` grammar: flags, `[n]`, width or
/// `*`, `.` precision or `*`, `[n]`, verb). `*` takes its value from `args`.
fn printf_directives(format: &str, args: &[Val<'_>]) -> Vec<Directive> {
    let b = format.as_bytes();
    let mut out = Vec::new();
    let mut arg = 0usize;
    let mut i = 0;
    let number = |i: &mut usize| -> u64 {
        let mut n: u64 = 0;
        while *i < b.len() && b[*i].is_ascii_digit() {
            n = n.saturating_mul(10).saturating_add(u64::from(b[*i] - b'0'));
            *i += 1;
        }
        n
    };
    let star = |arg: &mut usize| -> u64 {
        let v = match args.get(*arg) {
            Some(Val::Int(n, _)) => n.unsigned_abs(),
            Some(Val::Uint(n, _)) => *n,
            _ => 0,
        };
        *arg = arg.saturating_add(1);
        v
    };
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        let mut d = Directive { width: 0, precision: 0, indexed: false };
        while i < b.len() && matches!(b[i], b'#' | b'0' | b'+' | b'-' | b' ') {
            i += 1;
        }
        let index = |i: &mut usize, arg: &mut usize, d: &mut Directive| {
            if *i < b.len() && b[*i] == b'[' {
                *i += 1;
                let n = number(i);
                if *i < b.len() && b[*i] == b']' {
                    *i += 1;
                }
                *arg = usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(1);
                d.indexed = true;
            }
        };
        index(&mut i, &mut arg, &mut d);
        if i < b.len() && b[i] == b'*' {
            i += 1;
            d.width = star(&mut arg);
        } else {
            d.width = number(&mut i);
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            index(&mut i, &mut arg, &mut d);
            if i < b.len() && b[i] == b'*' {
                i += 1;
                d.precision = star(&mut arg);
            } else {
                d.precision = number(&mut i);
            }
        }
        index(&mut i, &mut arg, &mut d);
        match format[i..].chars().next() {
            Some('%') => i += 1,
            Some(c) => {
                i += c.len_utf8();
                arg = arg.saturating_add(1);
                out.push(d);
            }
            None => out.push(d),
        }
    }
    out
}

/// An upper bound of the bytes `fmt` prints for `v` before escaping (a float's `%f`
/// can be 330 digits; a composite value pays a generous amount per element).
fn rough_len(v: &Val<'_>) -> u64 {
    match v {
        Val::Str(s, _) => s.len() as u64,
        Val::Float(..) | Val::Complex(..) => 700,
        Val::Map(Some(crate::value::MapRef::StrStr(m)), _) => {
            m.iter().map(|(k, v)| (k.len() + v.len() + 2) as u64).sum::<u64>().saturating_add(16)
        }
        Val::Slice(Some(crate::value::SliceRef::Str(v)), _) => {
            v.iter().map(|s| s.len() as u64 + 1).sum::<u64>().saturating_add(16)
        }
        Val::Map(..) | Val::Slice(..) => elements(v).saturating_mul(256).saturating_add(16),
        _ => 64,
    }
}

/// Elements of a slice or map argument (a printf verb applies to each), else 1.
fn elements(v: &Val<'_>) -> u64 {
    match v {
        Val::Map(Some(m), _) => m.len() as u64,
        Val::Slice(Some(s), _) => s.len() as u64,
        _ => 1,
    }
}
