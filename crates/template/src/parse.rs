//! Parser and parse tree: a port of Go's `text/template/parse/{parse,node}.go` (Go 1.26).
//!
//! The port is deliberately literal (same token look-ahead buffer, same error sites), so
//! that the set of accepted templates, the error messages (`template: NAME:LINE: msg`) and
//! the node positions used by execution errors all match Go.

use std::collections::BTreeMap;

use crate::gofmt::quote_go;
use crate::lex::{Item, ItemType, Lexer};

/// Go's text/template builtin function names (the only functions upstream provides).
pub(crate) const BUILTINS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println", "urlquery", "eq",
    "ge", "gt", "le", "lt", "ne",
];

/// Nesting limit for parenthesised pipelines and control structures. Go allows 10000
/// nested parentheses and unlimited control nesting; we stop earlier so that hostile
/// input cannot overflow the (smaller) Rust thread stack.
const MAX_NESTING: usize = 200;

// ---------------------------------------------------------------------------------------
// Nodes

#[derive(Debug, Clone)]
pub(crate) struct ListNode {
    #[allow(dead_code)] // kept for parity with Go's parse tree
    pub pos: usize,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text {
        pos: usize,
        text: String,
    },
    Action(ActionNode),
    If(BranchNode),
    Range(BranchNode),
    With(BranchNode),
    Template(TemplateNode),
    Break {
        pos: usize,
    },
    Continue {
        pos: usize,
    },
    /// `{{end}}` / `{{else}}`: only produced transiently while parsing.
    End {
        pos: usize,
    },
    Else {
        pos: usize,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct ActionNode {
    pub pos: usize,
    pub pipe: PipeNode,
}

#[derive(Debug, Clone)]
pub(crate) struct BranchNode {
    pub pos: usize,
    pub pipe: PipeNode,
    pub list: ListNode,
    pub else_list: Option<ListNode>,
}

#[derive(Debug, Clone)]
pub(crate) struct TemplateNode {
    pub pos: usize,
    pub name: String,
    pub pipe: Option<PipeNode>,
}

#[derive(Debug, Clone)]
pub(crate) struct PipeNode {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<VariableNode>,
    pub cmds: Vec<CommandNode>,
}

#[derive(Debug, Clone)]
pub(crate) struct VariableNode {
    pub pos: usize,
    pub ident: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct CommandNode {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) struct NumberNode {
    pub pos: usize,
    pub is_int: bool,
    pub is_uint: bool,
    pub is_float: bool,
    pub is_complex: bool,
    pub int64: i64,
    pub uint64: u64,
    pub float64: f64,
    pub complex: (f64, f64),
    pub text: String,
}

/// Operands of a command (Go's Identifier/Dot/Nil/Variable/Field/Bool/Number/String/Pipe/
/// Chain nodes).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Identifier { pos: usize, name: String },
    Dot { pos: usize },
    Nil { pos: usize },
    Variable(VariableNode),
    Field { pos: usize, ident: Vec<String> },
    Bool { pos: usize, val: bool },
    Number(Box<NumberNode>),
    String { pos: usize, quoted: String, text: String },
    Pipe(Box<PipeNode>),
    Chain { pos: usize, node: Box<Arg>, fields: Vec<String> },
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Identifier { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Field { pos, .. }
            | Arg::Bool { pos, .. }
            | Arg::String { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Variable(v) => v.pos,
            Arg::Number(n) => n.pos,
            Arg::Pipe(p) => p.pos,
        }
    }

    pub fn write_to(&self, sb: &mut String) {
        match self {
            Arg::Identifier { name, .. } => sb.push_str(name),
            Arg::Dot { .. } => sb.push('.'),
            Arg::Nil { .. } => sb.push_str("nil"),
            Arg::Variable(v) => v.write_to(sb),
            Arg::Field { ident, .. } => {
                for id in ident {
                    sb.push('.');
                    sb.push_str(id);
                }
            }
            Arg::Bool { val, .. } => sb.push_str(if *val { "true" } else { "false" }),
            Arg::Number(n) => sb.push_str(&n.text),
            Arg::String { quoted, .. } => sb.push_str(quoted),
            Arg::Pipe(p) => p.write_to(sb),
            Arg::Chain { node, fields, .. } => {
                if let Arg::Pipe(p) = node.as_ref() {
                    sb.push('(');
                    p.write_to(sb);
                    sb.push(')');
                } else {
                    node.write_to(sb);
                }
                for f in fields {
                    sb.push('.');
                    sb.push_str(f);
                }
            }
        }
    }

    pub fn to_go_string(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }
}

impl VariableNode {
    pub fn write_to(&self, sb: &mut String) {
        for (i, id) in self.ident.iter().enumerate() {
            if i > 0 {
                sb.push('.');
            }
            sb.push_str(id);
        }
    }
}

impl PipeNode {
    pub fn write_to(&self, sb: &mut String) {
        if !self.decl.is_empty() {
            for (i, v) in self.decl.iter().enumerate() {
                if i > 0 {
                    sb.push_str(", ");
                }
                v.write_to(sb);
            }
            sb.push_str(if self.is_assign { " = " } else { " := " });
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                sb.push_str(" | ");
            }
            c.write_to(sb);
        }
    }
}

impl CommandNode {
    pub fn write_to(&self, sb: &mut String) {
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                sb.push(' ');
            }
            if let Arg::Pipe(p) = arg {
                sb.push('(');
                p.write_to(sb);
                sb.push(')');
                continue;
            }
            arg.write_to(sb);
        }
    }
}

impl ListNode {
    pub fn write_to(&self, sb: &mut String) {
        for n in &self.nodes {
            n.write_to(sb);
        }
    }
}

impl Node {
    pub fn pos(&self) -> usize {
        match self {
            Node::Text { pos, .. }
            | Node::Break { pos }
            | Node::Continue { pos }
            | Node::End { pos }
            | Node::Else { pos } => *pos,
            Node::Action(a) => a.pos,
            Node::If(b) | Node::Range(b) | Node::With(b) => b.pos,
            Node::Template(t) => t.pos,
        }
    }

    pub fn write_to(&self, sb: &mut String) {
        match self {
            Node::Text { text, .. } => sb.push_str(text),
            Node::Action(a) => {
                sb.push_str("{{");
                a.pipe.write_to(sb);
                sb.push_str("}}");
            }
            Node::If(b) => b.write_to("if", sb),
            Node::Range(b) => b.write_to("range", sb),
            Node::With(b) => b.write_to("with", sb),
            Node::Template(t) => {
                sb.push_str("{{template ");
                sb.push_str(&quote_go(&t.name));
                if let Some(p) = &t.pipe {
                    sb.push(' ');
                    p.write_to(sb);
                }
                sb.push_str("}}");
            }
            Node::Break { .. } => sb.push_str("{{break}}"),
            Node::Continue { .. } => sb.push_str("{{continue}}"),
            Node::End { .. } => sb.push_str("{{end}}"),
            Node::Else { .. } => sb.push_str("{{else}}"),
        }
    }

    pub fn to_go_string(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }
}

impl BranchNode {
    fn write_to(&self, name: &str, sb: &mut String) {
        sb.push_str("{{");
        sb.push_str(name);
        sb.push(' ');
        self.pipe.write_to(sb);
        sb.push_str("}}");
        self.list.write_to(sb);
        if let Some(e) = &self.else_list {
            sb.push_str("{{else}}");
            e.write_to(sb);
        }
        sb.push_str("{{end}}");
    }
}

/// Go's `parse.IsEmptyTree` for a list.
fn is_empty_list(l: &ListNode) -> bool {
    l.nodes.iter().all(|n| match n {
        Node::Text { text, .. } => text.trim().is_empty(),
        _ => false,
    })
}

// ---------------------------------------------------------------------------------------
// Parser

/// A parse error, already formatted like Go (`template: NAME:LINE: msg`).
#[derive(Debug, Clone)]
pub(crate) struct ParseError(pub String);

type PResult<T> = Result<T, ParseError>;

/// The trees produced by one `Parse` call, keyed by template name.
pub(crate) type TreeSet = BTreeMap<String, ListNode>;

/// Go's `template.New(name).Parse(text)`: returns the tree set (top-level template plus
/// `{{define}}`/`{{block}}` templates).
pub(crate) fn parse(name: &str, text: &str) -> PResult<TreeSet> {
    let mut lex = Lexer::new(text);
    let mut tree_set = TreeSet::new();
    let mut depth = 0usize;
    let mut t = Tree::new(name.to_string(), name, &mut lex, &mut tree_set, &mut depth);
    t.parse()?;
    t.add()?;
    Ok(tree_set)
}

struct Tree<'p, 's> {
    name: String,
    parse_name: &'p str,
    root: ListNode,
    lex: &'p mut Lexer<'s>,
    tree_set: &'p mut TreeSet,
    token: [Option<Item>; 3],
    peek_count: usize,
    vars: Vec<String>,
    action_line: usize,
    range_depth: usize,
    /// Shared nesting counter (parens and control structures), see [`MAX_NESTING`].
    nesting: &'p mut usize,
}

impl<'p, 's> Tree<'p, 's> {
    fn new(
        name: String,
        parse_name: &'p str,
        lex: &'p mut Lexer<'s>,
        tree_set: &'p mut TreeSet,
        nesting: &'p mut usize,
    ) -> Self {
        Tree {
            name,
            parse_name,
            root: ListNode { pos: 0, nodes: Vec::new() },
            lex,
            tree_set,
            token: [None, None, None],
            peek_count: 0,
            vars: vec!["$".to_string()],
            action_line: 0,
            range_depth: 0,
            nesting,
        }
    }

    /// A tree sharing the lexer and tree set (Go's `New(...)` + `startParse(t.funcs, t.lex,
    /// t.treeSet)` for `{{define}}` and `{{block}}`).
    fn child<'c>(&'c mut self, name: String) -> Tree<'c, 's> {
        Tree::new(name, self.parse_name, &mut *self.lex, &mut *self.tree_set, &mut *self.nesting)
    }

    fn tok(&self, i: usize) -> &Item {
        self.token[i].as_ref().expect("token present")
    }

    fn next(&mut self) -> Item {
        if self.peek_count > 0 {
            self.peek_count -= 1;
        } else {
            self.token[0] = Some(self.lex.next_item());
        }
        self.tok(self.peek_count).clone()
    }

    fn backup(&mut self) {
        self.peek_count += 1;
    }

    fn backup2(&mut self, t1: Item) {
        self.token[1] = Some(t1);
        self.peek_count = 2;
    }

    fn backup3(&mut self, t2: Item, t1: Item) {
        self.token[1] = Some(t1);
        self.token[2] = Some(t2);
        self.peek_count = 3;
    }

    fn peek(&mut self) -> Item {
        if self.peek_count > 0 {
            return self.tok(self.peek_count - 1).clone();
        }
        self.peek_count = 1;
        self.token[0] = Some(self.lex.next_item());
        self.tok(0).clone()
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.typ != ItemType::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn errorf(&self, msg: impl AsRef<str>) -> ParseError {
        let line = self.token[0].as_ref().map(|t| t.line).unwrap_or(0);
        ParseError(format!("template: {}:{}: {}", self.parse_name, line, msg.as_ref()))
    }

    fn expect(&mut self, expected: ItemType, context: &str) -> PResult<Item> {
        let token = self.next_non_space();
        if token.typ != expected {
            return Err(self.unexpected(&token, context));
        }
        Ok(token)
    }

    fn expect_one_of(&mut self, e1: ItemType, e2: ItemType, context: &str) -> PResult<Item> {
        let token = self.next_non_space();
        if token.typ != e1 && token.typ != e2 {
            return Err(self.unexpected(&token, context));
        }
        Ok(token)
    }

    fn unexpected(&self, token: &Item, context: &str) -> ParseError {
        if token.typ == ItemType::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != token.line {
                extra = format!(" in action started at {}:{}", self.parse_name, self.action_line);
                if token.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{}{}", token.describe(), extra));
        }
        self.errorf(format!("unexpected {} in {}", token.describe(), context))
    }

    fn add(&mut self) -> PResult<()> {
        match self.tree_set.get(&self.name) {
            Some(tree) if !is_empty_list(tree) => {
                if !is_empty_list(&self.root) {
                    return Err(
                        self.errorf(format!("template: multiple definition of template {}", quote_go(&self.name)))
                    );
                }
                Ok(())
            }
            _ => {
                let root = std::mem::replace(&mut self.root, ListNode { pos: 0, nodes: Vec::new() });
                self.tree_set.insert(self.name.clone(), root);
                Ok(())
            }
        }
    }

    fn parse(&mut self) -> PResult<()> {
        self.root = ListNode { pos: self.peek().pos, nodes: Vec::new() };
        while self.peek().typ != ItemType::Eof {
            if self.peek().typ == ItemType::LeftDelim {
                let delim = self.next();
                if self.next_non_space().typ == ItemType::Define {
                    let mut new_t = self.child("definition".to_string());
                    new_t.parse_definition()?;
                    continue;
                }
                self.backup2(delim);
            }
            let n = self.text_or_action()?;
            match n {
                Node::End { .. } | Node::Else { .. } => {
                    return Err(self.errorf(format!("unexpected {}", n.to_go_string())));
                }
                n => self.root.nodes.push(n),
            }
        }
        Ok(())
    }

    fn parse_definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let name = self.expect_one_of(ItemType::String, ItemType::RawString, CONTEXT)?;
        self.name = unquote(&name.val).map_err(|e| self.errorf(e))?;
        self.expect(ItemType::RightDelim, CONTEXT)?;
        let (list, end) = self.item_list()?;
        self.root = list;
        if !matches!(end, Node::End { .. }) {
            return Err(self.errorf(format!("unexpected {} in {}", end.to_go_string(), CONTEXT)));
        }
        self.add()
    }

    fn item_list(&mut self) -> PResult<(ListNode, Node)> {
        let mut list = ListNode { pos: self.peek_non_space().pos, nodes: Vec::new() };
        while self.peek_non_space().typ != ItemType::Eof {
            let n = self.text_or_action()?;
            match n {
                Node::End { .. } | Node::Else { .. } => return Ok((list, n)),
                n => list.nodes.push(n),
            }
        }
        Err(self.errorf("unexpected EOF"))
    }

    fn text_or_action(&mut self) -> PResult<Node> {
        let token = self.next_non_space();
        match token.typ {
            ItemType::Text => Ok(Node::Text { pos: token.pos, text: token.val }),
            ItemType::LeftDelim => {
                self.action_line = token.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&token, "input")),
        }
    }

    fn action(&mut self) -> PResult<Node> {
        let token = self.next_non_space();
        match token.typ {
            ItemType::Block => return self.block_control(),
            ItemType::Break => return self.break_control(token.pos),
            ItemType::Continue => return self.continue_control(token.pos),
            ItemType::Else => return self.else_control(),
            ItemType::End => return self.end_control(),
            ItemType::If => return Ok(Node::If(self.parse_control("if")?)),
            ItemType::Range => return Ok(Node::Range(self.parse_control("range")?)),
            ItemType::Template => return self.template_control(),
            ItemType::With => return Ok(Node::With(self.parse_control("with")?)),
            _ => {}
        }
        self.backup();
        let token = self.peek();
        let pipe = self.pipeline("command", ItemType::RightDelim)?;
        Ok(Node::Action(ActionNode { pos: token.pos, pipe }))
    }

    fn break_control(&mut self, pos: usize) -> PResult<Node> {
        let token = self.next_non_space();
        if token.typ != ItemType::RightDelim {
            return Err(self.unexpected(&token, "{{break}}"));
        }
        if self.range_depth == 0 {
            return Err(self.errorf("{{break}} outside {{range}}"));
        }
        Ok(Node::Break { pos })
    }

    fn continue_control(&mut self, pos: usize) -> PResult<Node> {
        let token = self.next_non_space();
        if token.typ != ItemType::RightDelim {
            return Err(self.unexpected(&token, "{{continue}}"));
        }
        if self.range_depth == 0 {
            return Err(self.errorf("{{continue}} outside {{range}}"));
        }
        Ok(Node::Continue { pos })
    }

    fn pipeline(&mut self, context: &str, end: ItemType) -> PResult<PipeNode> {
        let token = self.peek_non_space();
        let mut pipe = PipeNode { pos: token.pos, is_assign: false, decl: Vec::new(), cmds: Vec::new() };
        // Declarations or assignments ("goto decls" in Go is this loop).
        loop {
            let v = self.peek_non_space();
            if v.typ != ItemType::Variable {
                break;
            }
            self.next();
            let token_after_variable = self.peek();
            let next = self.peek_non_space();
            if next.typ == ItemType::Assign || next.typ == ItemType::Declare {
                pipe.is_assign = next.typ == ItemType::Assign;
                self.next_non_space();
                pipe.decl.push(new_variable(v.pos, &v.val));
                self.vars.push(v.val.clone());
            } else if next.typ == ItemType::Char && next.val == "," {
                self.next_non_space();
                pipe.decl.push(new_variable(v.pos, &v.val));
                self.vars.push(v.val.clone());
                if context == "range" && pipe.decl.len() < 2 {
                    match self.peek_non_space().typ {
                        ItemType::Variable | ItemType::RightDelim | ItemType::RightParen => {
                            continue;
                        }
                        _ => return Err(self.errorf("range can only initialize variables")),
                    }
                }
                return Err(self.errorf(format!("too many declarations in {context}")));
            } else if token_after_variable.typ == ItemType::Space {
                self.backup3(v, token_after_variable);
            } else {
                self.backup2(v);
            }
            break;
        }
        loop {
            let token = self.next_non_space();
            match token.typ {
                t if t == end => {
                    self.check_pipeline(&pipe, context)?;
                    return Ok(pipe);
                }
                ItemType::Bool
                | ItemType::CharConstant
                | ItemType::Complex
                | ItemType::Dot
                | ItemType::Field
                | ItemType::Identifier
                | ItemType::Number
                | ItemType::Nil
                | ItemType::RawString
                | ItemType::String
                | ItemType::Variable
                | ItemType::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&token, context)),
            }
        }
    }

    fn check_pipeline(&self, pipe: &PipeNode, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return Err(self.errorf(format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool { .. } | Arg::Dot { .. } | Arg::Nil { .. } | Arg::Number(_) | Arg::String { .. }
            ) {
                return Err(self.errorf(format!("non executable command in pipeline stage {}", i + 1)));
            }
        }
        Ok(())
    }

    fn enter(&mut self) -> PResult<()> {
        if *self.nesting >= MAX_NESTING {
            return Err(self.errorf("max expression depth exceeded"));
        }
        *self.nesting += 1;
        Ok(())
    }

    fn leave(&mut self) {
        *self.nesting -= 1;
    }

    fn parse_control(&mut self, context: &str) -> PResult<BranchNode> {
        self.enter()?;
        let mark = self.vars.len();
        let r = self.parse_control_inner(context);
        self.vars.truncate(mark);
        self.leave();
        r
    }

    fn parse_control_inner(&mut self, context: &str) -> PResult<BranchNode> {
        let pipe = self.pipeline(context, ItemType::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let r = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = r?;
        let mut else_list = None;
        match next {
            Node::End { .. } => {}
            Node::Else { pos, .. } => {
                if context == "if" && self.peek().typ == ItemType::If {
                    self.next();
                    let inner = self.parse_control("if")?;
                    else_list = Some(ListNode { pos, nodes: vec![Node::If(inner)] });
                } else if context == "with" && self.peek().typ == ItemType::With {
                    self.next();
                    let inner = self.parse_control("with")?;
                    else_list = Some(ListNode { pos, nodes: vec![Node::With(inner)] });
                } else {
                    let (l, next) = self.item_list()?;
                    if !matches!(next, Node::End { .. }) {
                        return Err(self.errorf(format!("expected end; found {}", next.to_go_string())));
                    }
                    else_list = Some(l);
                }
            }
            _ => unreachable!("item_list returns only end/else"),
        }
        Ok(BranchNode { pos: pipe.pos, pipe, list, else_list })
    }

    fn end_control(&mut self) -> PResult<Node> {
        let t = self.expect(ItemType::RightDelim, "end")?;
        Ok(Node::End { pos: t.pos })
    }

    fn else_control(&mut self) -> PResult<Node> {
        let peek = self.peek_non_space();
        if peek.typ == ItemType::If || peek.typ == ItemType::With {
            return Ok(Node::Else { pos: peek.pos });
        }
        let token = self.expect(ItemType::RightDelim, "else")?;
        Ok(Node::Else { pos: token.pos })
    }

    fn block_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "block clause";
        let token = self.next_non_space();
        let name = self.parse_template_name(&token, CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, ItemType::RightDelim)?;
        // Go reports a bad terminator with the *outer* tree's current line; the block tree
        // has its own look-ahead buffer, so the outer line does not move meanwhile.
        let outer_line = self.token[0].as_ref().map(|t| t.line).unwrap_or(0);
        let parse_name = self.parse_name;
        self.enter()?;
        let res = {
            let mut block = self.child(name.clone());
            match block.item_list() {
                Ok((_, end)) if !matches!(end, Node::End { .. }) => Err(ParseError(format!(
                    "template: {}:{}: unexpected {} in {}",
                    parse_name,
                    outer_line,
                    end.to_go_string(),
                    CONTEXT
                ))),
                Ok((list, _)) => {
                    block.root = list;
                    block.add()
                }
                Err(e) => Err(e),
            }
        };
        self.leave();
        res?;
        Ok(Node::Template(TemplateNode { pos: token.pos, name, pipe: Some(pipe) }))
    }

    fn template_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "template clause";
        let token = self.next_non_space();
        let name = self.parse_template_name(&token, CONTEXT)?;
        let mut pipe = None;
        if self.next_non_space().typ != ItemType::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(CONTEXT, ItemType::RightDelim)?);
        }
        Ok(Node::Template(TemplateNode { pos: token.pos, name, pipe }))
    }

    fn parse_template_name(&self, token: &Item, context: &str) -> PResult<String> {
        match token.typ {
            ItemType::String | ItemType::RawString => unquote(&token.val).map_err(|e| self.errorf(e)),
            _ => Err(self.unexpected(token, context)),
        }
    }

    fn command(&mut self) -> PResult<CommandNode> {
        let mut cmd = CommandNode { pos: self.peek_non_space().pos, args: Vec::new() };
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                cmd.args.push(operand);
            }
            let token = self.next();
            match token.typ {
                ItemType::Space => continue,
                ItemType::RightDelim | ItemType::RightParen => self.backup(),
                ItemType::Pipe => {}
                _ => return Err(self.unexpected(&token, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.errorf("empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ == ItemType::Field {
            let chain_pos = self.peek().pos;
            let mut fields = Vec::new();
            while self.peek().typ == ItemType::Field {
                let f = self.next();
                fields.push(f.val[1..].to_string());
            }
            return Ok(Some(match node {
                Arg::Field { ident, .. } => {
                    let mut ident = ident;
                    ident.extend(fields);
                    Arg::Field { pos: chain_pos, ident }
                }
                Arg::Variable(v) => {
                    let mut ident = v.ident;
                    ident.extend(fields);
                    Arg::Variable(VariableNode { pos: chain_pos, ident })
                }
                Arg::Bool { .. } | Arg::String { .. } | Arg::Number(_) | Arg::Nil { .. } | Arg::Dot { .. } => {
                    return Err(self.errorf(format!("unexpected . after term {}", quote_go(&node.to_go_string()))));
                }
                node => Arg::Chain { pos: chain_pos, node: Box::new(node), fields },
            }));
        }
        Ok(Some(node))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let token = self.next_non_space();
        let node = match token.typ {
            ItemType::Identifier => {
                if !BUILTINS.contains(&token.val.as_str()) {
                    return Err(self.errorf(format!("function {} not defined", quote_go(&token.val))));
                }
                Arg::Identifier { pos: token.pos, name: token.val }
            }
            ItemType::Dot => Arg::Dot { pos: token.pos },
            ItemType::Nil => Arg::Nil { pos: token.pos },
            ItemType::Variable => {
                let v = new_variable(token.pos, &token.val);
                if !self.vars.iter().any(|n| *n == v.ident[0]) {
                    return Err(self.errorf(format!("undefined variable {}", quote_go(&v.ident[0]))));
                }
                Arg::Variable(v)
            }
            ItemType::Field => Arg::Field { pos: token.pos, ident: split_field(&token.val[1..]) },
            ItemType::Bool => Arg::Bool { pos: token.pos, val: token.val == "true" },
            ItemType::CharConstant | ItemType::Complex | ItemType::Number => {
                let n = new_number(token.pos, &token.val, token.typ).map_err(|e| self.errorf(e))?;
                Arg::Number(Box::new(n))
            }
            ItemType::LeftParen => {
                self.enter()?;
                let r = self.pipeline("parenthesized pipeline", ItemType::RightParen);
                self.leave();
                Arg::Pipe(Box::new(r?))
            }
            ItemType::String | ItemType::RawString => {
                let s = unquote(&token.val).map_err(|e| self.errorf(e))?;
                Arg::String { pos: token.pos, quoted: token.val, text: s }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(node))
    }
}

fn new_variable(pos: usize, ident: &str) -> VariableNode {
    VariableNode { pos, ident: ident.split('.').map(str::to_string).collect() }
}

fn split_field(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------
// strconv ports

/// Go's `strconv.Unquote` for `"..."`, `` `...` `` and `'...'` literals.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    const SYNTAX: &str = "invalid syntax";
    let b = s.as_bytes();
    if b.len() < 2 {
        return Err(SYNTAX.into());
    }
    let quote = b[0];
    if quote != b[b.len() - 1] {
        return Err(SYNTAX.into());
    }
    let inner = &s[1..s.len() - 1];
    match quote {
        b'`' => {
            if inner.contains('`') {
                return Err(SYNTAX.into());
            }
            Ok(inner.replace('\r', ""))
        }
        b'"' | b'\'' => {
            if quote == b'"' && inner.contains('\n') {
                return Err(SYNTAX.into());
            }
            if !inner.contains('\\') && !inner.contains(quote as char) {
                if quote == b'\'' && inner.chars().count() != 1 {
                    return Err(SYNTAX.into());
                }
                return Ok(inner.to_string());
            }
            let mut out = String::new();
            let mut rest = inner;
            while !rest.is_empty() {
                let (c, tail) = unquote_char(rest, quote as char).map_err(|_| SYNTAX.to_string())?;
                out.push_str(&c);
                rest = tail;
                if quote == b'\'' && !rest.is_empty() {
                    return Err(SYNTAX.into());
                }
            }
            Ok(out)
        }
        _ => Err(SYNTAX.into()),
    }
}

/// Go's `strconv.UnquoteChar`; returns the decoded text (a rune, or a raw byte for
/// `\xNN`/octal escapes above 0x7F which we map to U+FFFD since Rust strings are UTF-8)
/// and the remaining input.
pub(crate) fn unquote_char(s: &str, quote: char) -> Result<(String, &str), ()> {
    let mut chars = s.chars();
    let c = chars.next().ok_or(())?;
    if c == quote && (quote == '\'' || quote == '"') {
        return Err(());
    }
    if c != '\\' {
        return Ok((c.to_string(), chars.as_str()));
    }
    let c = chars.next().ok_or(())?;
    let rest = chars.as_str();
    let simple = match c {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        '\\' => Some('\\'),
        '\'' | '"' => {
            if c != quote {
                return Err(());
            }
            Some(c)
        }
        _ => None,
    };
    if let Some(v) = simple {
        return Ok((v.to_string(), rest));
    }
    match c {
        'x' | 'u' | 'U' => {
            let n = match c {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            if rest.len() < n || !rest.is_char_boundary(n) {
                return Err(());
            }
            let v = u32::from_str_radix(&rest[..n], 16).map_err(|_| ())?;
            if rest[..n].starts_with(['+', '-']) {
                return Err(());
            }
            if c == 'x' {
                // A single byte; non-ASCII bytes cannot be represented in a Rust string.
                let ch = if v < 0x80 { char::from(v as u8) } else { '\u{FFFD}' };
                return Ok((ch.to_string(), &rest[n..]));
            }
            let ch = char::from_u32(v).ok_or(())?;
            Ok((ch.to_string(), &rest[n..]))
        }
        '0'..='7' => {
            let digits = format!("{}{}", c, rest.get(..2).ok_or(())?);
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(());
            }
            let v = u32::from_str_radix(&digits, 8).map_err(|_| ())?;
            if v > 255 {
                return Err(());
            }
            let ch = if v < 0x80 { char::from(v as u8) } else { '\u{FFFD}' };
            Ok((ch.to_string(), &rest[2..]))
        }
        _ => Err(()),
    }
}

/// Go's `underscoreOK`.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut s = b;
    if !s.is_empty() && (s[0] == b'-' || s[0] == b'+') {
        s = &s[1..];
    }
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1] | 0x20 == b'x';
    }
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
            i += 1;
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            i += 1;
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
        i += 1;
    }
    saw != b'_'
}

#[derive(Debug, PartialEq)]
enum NumErr {
    Syntax,
    Range,
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
fn parse_uint0(s0: &str) -> Result<u64, NumErr> {
    if s0.is_empty() {
        return Err(NumErr::Syntax);
    }
    let mut s = s0;
    let base: u32;
    if s.as_bytes()[0] == b'0' {
        if s.len() >= 3 && matches!(s.as_bytes()[1] | 0x20, b'b' | b'o' | b'x') {
            base = match s.as_bytes()[1] | 0x20 {
                b'b' => 2,
                b'o' => 8,
                _ => 16,
            };
            s = &s[2..];
        } else {
            base = 8;
            s = &s[1..];
        }
    } else {
        base = 10;
    }
    let mut n: u64 = 0;
    let mut underscores = false;
    for c in s.bytes() {
        if c == b'_' {
            underscores = true;
            continue;
        }
        let d = match c {
            b'0'..=b'9' => (c - b'0') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 10,
            b'A'..=b'Z' => (c - b'A') as u32 + 10,
            _ => return Err(NumErr::Syntax),
        };
        if d >= base {
            return Err(NumErr::Syntax);
        }
        n = n.checked_mul(base as u64).and_then(|n| n.checked_add(d as u64)).ok_or(NumErr::Range)?;
    }
    if underscores && !underscore_ok(s0) {
        return Err(NumErr::Syntax);
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn parse_int0(s: &str) -> Result<i64, NumErr> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint0(body)?;
    if neg {
        if u > (i64::MAX as u64) + 1 {
            return Err(NumErr::Range);
        }
        Ok((u as i64).wrapping_neg())
    } else {
        if u > i64::MAX as u64 {
            return Err(NumErr::Range);
        }
        Ok(u as i64)
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for the literal forms the lexer produces.
fn parse_float(s: &str) -> Option<f64> {
    if s.contains('_') && !underscore_ok(s) {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'+') => (false, &clean[1..]),
        Some(b'-') => (true, &clean[1..]),
        _ => (false, &clean[..]),
    };
    let v = if body.len() > 2 && body.as_bytes()[0] == b'0' && body.as_bytes()[1] | 0x20 == b'x' {
        parse_hex_float(&body[2..])?
    } else {
        if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    if v.is_infinite() {
        return None; // Go reports a range error.
    }
    Some(if neg { -v } else { v })
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find(['p', 'P']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => return None, // hex float requires a 'p' exponent
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    if ip.is_empty() && fp.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in ip.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in fp.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    Some(v * 2f64.powi(exp))
}

/// Go's `(*Tree).newNumber`.
fn new_number(pos: usize, text: &str, typ: ItemType) -> Result<NumberNode, String> {
    let mut n = NumberNode {
        pos,
        is_int: false,
        is_uint: false,
        is_float: false,
        is_complex: false,
        int64: 0,
        uint64: 0,
        float64: 0.0,
        complex: (0.0, 0.0),
        text: text.to_string(),
    };
    match typ {
        ItemType::CharConstant => {
            let (r, tail) = unquote_char(&text[1..], text.chars().next().unwrap_or('\''))
                .map_err(|_| "invalid syntax".to_string())?;
            if tail != "'" {
                return Err(format!("malformed character constant: {text}"));
            }
            let r = r.chars().next().map(|c| c as u32).unwrap_or(0);
            n.int64 = r as i64;
            n.is_int = true;
            n.uint64 = r as u64;
            n.is_uint = true;
            n.float64 = r as f64;
            n.is_float = true;
            return Ok(n);
        }
        ItemType::Complex => {
            // "re+imi" / "re-imi": split at the last sign that is not an exponent sign.
            let b = text.as_bytes();
            let mut split = None;
            for i in (1..b.len()).rev() {
                if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E' | b'p' | b'P') {
                    split = Some(i);
                    break;
                }
            }
            let i = split.ok_or_else(|| "expected integer".to_string())?;
            let re = parse_float(&text[..i]).ok_or_else(|| "expected integer".to_string())?;
            let im = parse_float(&text[i..text.len() - 1]).ok_or_else(|| "expected integer".to_string())?;
            n.is_complex = true;
            n.complex = (re, im);
            simplify_complex(&mut n);
            return Ok(n);
        }
        _ => {}
    }
    if let Some(stripped) = text.strip_suffix('i')
        && let Some(f) = parse_float(stripped)
    {
        n.is_complex = true;
        n.complex = (0.0, f);
        simplify_complex(&mut n);
        return Ok(n);
    }
    let u = parse_uint0(text);
    if let Ok(u) = u {
        n.is_uint = true;
        n.uint64 = u;
    }
    if let Ok(i) = parse_int0(text) {
        n.is_int = true;
        n.int64 = i;
        if i == 0 {
            n.is_uint = true;
            n.uint64 = u.unwrap_or(0);
        }
    }
    if n.is_int {
        n.is_float = true;
        n.float64 = n.int64 as f64;
    } else if n.is_uint {
        n.is_float = true;
        n.float64 = n.uint64 as f64;
    } else if let Some(f) = parse_float(text) {
        if !text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Err(format!("integer overflow: {}", quote_go(text)));
        }
        n.is_float = true;
        n.float64 = f;
        if !n.is_int && (f as i64) as f64 == f {
            n.is_int = true;
            n.int64 = f as i64;
        }
        if !n.is_uint && f >= 0.0 && (f as u64) as f64 == f {
            n.is_uint = true;
            n.uint64 = f as u64;
        }
    }
    if !n.is_int && !n.is_uint && !n.is_float {
        return Err(format!("illegal number syntax: {}", quote_go(text)));
    }
    Ok(n)
}

fn simplify_complex(n: &mut NumberNode) {
    n.is_float = n.complex.1 == 0.0;
    if n.is_float {
        n.float64 = n.complex.0;
        n.is_int = (n.float64 as i64) as f64 == n.float64;
        if n.is_int {
            n.int64 = n.float64 as i64;
        }
        n.is_uint = n.float64 >= 0.0 && (n.float64 as u64) as f64 == n.float64;
        if n.is_uint {
            n.uint64 = n.float64 as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse("t", src).unwrap_err().0
    }

    #[test]
    fn go_messages() {
        assert_eq!(err("{{ .Foo"), "template: t:1: unclosed action");
        assert_eq!(err("{{ if }}"), "template: t:1: missing value for if");
        assert_eq!(err("{{ nofunc . }}"), r#"template: t:1: function "nofunc" not defined"#);
        assert_eq!(err("{{ .X }/x"), r#"template: t:1: unexpected "}" in operand"#);
        assert_eq!(err("a{{end}}"), "template: t:1: unexpected {{end}}");
        assert_eq!(err("{{ $x }}"), r#"template: t:1: undefined variable "$x""#);
    }

    #[test]
    fn numbers() {
        let n = new_number(0, "1_000", ItemType::Number).unwrap();
        assert!(n.is_int && n.int64 == 1000);
        let n = new_number(0, "0x10", ItemType::Number).unwrap();
        assert_eq!(n.int64, 16);
        let n = new_number(0, "017", ItemType::Number).unwrap();
        assert_eq!(n.int64, 15);
        let n = new_number(0, "1e3", ItemType::Number).unwrap();
        assert!(n.is_float && n.is_int && n.int64 == 1000);
        assert!(new_number(0, "089", ItemType::Number).unwrap_err().contains("integer overflow"));
        let n = new_number(0, "18446744073709551615", ItemType::Number).unwrap();
        assert!(n.is_uint && !n.is_int);
        let n = new_number(0, "'a'", ItemType::CharConstant).unwrap();
        assert_eq!(n.int64, 97);
        let n = new_number(0, "0", ItemType::Number).unwrap();
        assert!(n.is_int && n.int64 == 0);
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote(r#""a\tb\"c""#).unwrap(), "a\tb\"c");
        assert_eq!(unquote("`a\\n`").unwrap(), "a\\n");
        assert_eq!(unquote(r#""\u00e9""#).unwrap(), "é");
        assert!(unquote(r#""\q""#).is_err());
    }
}
