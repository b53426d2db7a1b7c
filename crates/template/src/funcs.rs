//! Go text/template's builtin functions (`funcs.go`), over [`Val`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::gofmt::{html_escape, js_escape, query_escape};
use crate::model::{self, Obj};
use crate::value::{INT, Kind, STRING, Ty, UINT8, Unsupported, Val, nil_ptr_text};

/// Why a builtin failed: a Go error (reported as `error calling X: ...`) or something
/// this implementation cannot reproduce.
pub(crate) enum CallErr {
    Go(String),
    Unsupported(String),
}

impl From<Unsupported> for CallErr {
    fn from(u: Unsupported) -> Self {
        CallErr::Unsupported(u.0)
    }
}

type CallResult<'a> = Result<Val<'a>, CallErr>;

fn go_err<T>(msg: impl Into<String>) -> Result<T, CallErr> {
    Err(CallErr::Go(msg.into()))
}

/// Parameter types of builtins, as far as `evalArg`/`validateType` care.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Param {
    /// `reflect.Value`
    Rv,
    /// `interface{}`
    Any,
    /// `string`
    Str,
    /// `nil` type (evaluating the operand of a chain node)
    Untyped,
}

pub(crate) struct Sig {
    pub num_in: usize,
    pub variadic: bool,
    /// Parameter types; for variadic functions the last entry is the element type.
    pub params: &'static [Param],
}

pub(crate) fn builtin_sig(name: &str) -> Sig {
    use Param::*;
    match name {
        "and" | "or" | "index" | "slice" | "eq" | "call" => Sig { num_in: 2, variadic: true, params: &[Rv, Rv] },
        "html" | "js" | "urlquery" | "print" | "println" => Sig { num_in: 1, variadic: true, params: &[Any] },
        "printf" => Sig { num_in: 2, variadic: true, params: &[Str, Any] },
        "len" | "not" => Sig { num_in: 1, variadic: false, params: &[Rv] },
        _ => Sig { num_in: 2, variadic: false, params: &[Rv, Rv] }, // ne lt le gt ge
    }
}

pub(crate) const METHOD_SIG: Sig = Sig { num_in: 0, variadic: false, params: &[] };

/// Calls builtin `name` with evaluated arguments (`and`/`or` are handled by the caller).
pub(crate) fn call_builtin<'a>(name: &str, argv: Vec<Val<'a>>, callee_name: &str) -> CallResult<'a> {
    let mut it = argv.into_iter();
    match name {
        "index" => {
            let item = it.next().unwrap_or(Val::Invalid);
            index(item, it.collect())
        }
        "slice" => {
            let item = it.next().unwrap_or(Val::Invalid);
            slice(item, it.collect())
        }
        "len" => length(it.next().unwrap_or(Val::Invalid)),
        "not" => Ok(Val::Bool(!it.next().unwrap_or(Val::Invalid).truth(), &crate::value::BOOL)),
        "eq" => {
            let a = it.next().unwrap_or(Val::Invalid);
            let rest: Vec<_> = it.collect();
            eq(&a, &rest).map(boolean)
        }
        "ne" => {
            let a = it.next().unwrap_or(Val::Invalid);
            let b = it.next().unwrap_or(Val::Invalid);
            eq(&a, std::slice::from_ref(&b)).map(|t| boolean(!t))
        }
        "lt" | "le" | "gt" | "ge" => {
            let a = it.next().unwrap_or(Val::Invalid);
            let b = it.next().unwrap_or(Val::Invalid);
            let r = match name {
                "lt" => lt(&a, &b)?,
                "le" => le(&a, &b)?,
                "gt" => !le(&a, &b)?,
                _ => !lt(&a, &b)?,
            };
            Ok(boolean(r))
        }
        "print" => Ok(owned(sprint(&it.collect::<Vec<_>>())?)),
        "println" => Ok(owned(sprintln(&it.collect::<Vec<_>>())?)),
        "printf" => {
            let format = it.next().unwrap_or(Val::Invalid);
            let format = match &format {
                Val::Str(s, _) => s.to_string(),
                _ => String::new(),
            };
            Ok(owned(sprintf(&format, &it.collect::<Vec<_>>())?))
        }
        "html" => Ok(owned(html_escape(&eval_args(it.collect())?))),
        "js" => Ok(owned(js_escape(&eval_args(it.collect())?))),
        "urlquery" => Ok(owned(query_escape(&eval_args(it.collect())?))),
        "call" => {
            let f = it.next().unwrap_or(Val::Invalid);
            if !f.is_valid() {
                return go_err("call of nil");
            }
            go_err(format!("non-function {} of type {}", callee_name, f.type_name()))
        }
        _ => go_err(format!("unknown builtin {name}")),
    }
}

fn boolean<'a>(b: bool) -> Val<'a> {
    Val::Bool(b, &crate::value::BOOL)
}

fn owned<'a>(s: String) -> Val<'a> {
    Val::Str(Cow::Owned(s), &STRING)
}

fn can_be_nil(ty: &Ty) -> bool {
    matches!(ty.kind, Kind::Ptr(_) | Kind::Map(..) | Kind::Slice(_))
}

/// The zero value of `ty` (used for missing map keys in `index`).
pub(crate) fn zero<'a>(ty: &'static Ty) -> Val<'a> {
    match ty.kind {
        Kind::Bool => Val::Bool(false, ty),
        Kind::Int => Val::Int(0, ty),
        Kind::Uint => Val::Uint(0, ty),
        Kind::Float => Val::Float(0.0, ty),
        Kind::Complex => Val::Complex(0.0, 0.0),
        Kind::String => Val::Str(Cow::Borrowed(""), ty),
        Kind::Ptr(_) => Val::Ptr(None, ty),
        Kind::Map(..) => Val::Map(None, ty),
        Kind::Slice(_) => Val::Slice(None, ty),
        Kind::Struct(_) => Val::Struct(Obj::Opaque(ty)),
    }
}

/// Go's `indexArg`.
fn index_arg(index: &Val, cap: usize) -> Result<usize, CallErr> {
    let x: i64 = match index {
        Val::Int(i, _) => *i,
        Val::Uint(u, _) => *u as i64,
        Val::Invalid => return go_err("cannot index slice/array with nil"),
        v => {
            return go_err(format!("cannot index slice/array with type {}", v.type_name()));
        }
    };
    if x < 0 || x as u64 > cap as u64 {
        return go_err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

/// Go's `prepareArg` for map keys.
fn prepare_arg<'a>(value: Val<'a>, arg_ty: &'static Ty) -> Result<Val<'a>, CallErr> {
    let Some(vt) = value.ty() else {
        if !can_be_nil(arg_ty) {
            return go_err(format!("value is nil; should be of type {}", arg_ty.name));
        }
        return Ok(zero(arg_ty));
    };
    if vt.is(arg_ty) {
        return Ok(value);
    }
    if vt.int_like() && arg_ty.int_like() {
        return Ok(match value {
            Val::Int(i, _) if matches!(arg_ty.kind, Kind::Int) => Val::Int(i, arg_ty),
            Val::Int(i, _) => Val::Uint(i as u64, arg_ty),
            Val::Uint(u, _) if matches!(arg_ty.kind, Kind::Uint) => Val::Uint(u, arg_ty),
            Val::Uint(u, _) => Val::Int(u as i64, arg_ty),
            v => v,
        });
    }
    go_err(format!("value has type {}; should be {}", vt.name, arg_ty.name))
}

/// Go's `index`.
pub(crate) fn index<'a>(item: Val<'a>, indexes: Vec<Val<'a>>) -> CallResult<'a> {
    if !item.is_valid() {
        return go_err("index of untyped nil");
    }
    let mut item = item;
    for index in indexes {
        let (it, is_nil) = item.indirect();
        if is_nil {
            return go_err("index of nil pointer");
        }
        item = match it {
            Val::Str(s, _) => {
                let x = index_arg(&index, s.len())?;
                if x == s.len() {
                    return go_err("reflect: string index out of range");
                }
                Val::Uint(s.as_bytes()[x] as u64, &UINT8)
            }
            Val::Slice(s, ty) => {
                let len = s.map(|s| s.len()).unwrap_or(0);
                let x = index_arg(&index, len)?;
                match s {
                    Some(s) if x < len => s.get(x, ty.elem().unwrap_or(&STRING)),
                    _ => return go_err("reflect: slice index out of range"),
                }
            }
            Val::Map(m, ty) => {
                let Kind::Map(kt, et) = ty.kind else { unreachable!("map type") };
                let key = prepare_arg(index, kt)?;
                let found = match (&key, m) {
                    (Val::Str(k, _), Some(m)) => m.get(k, et),
                    _ => None,
                };
                found.unwrap_or_else(|| zero(et))
            }
            v => return go_err(format!("can't index item of type {}", v.type_name())),
        };
    }
    Ok(item)
}

/// Go's `slice`.
pub(crate) fn slice<'a>(item: Val<'a>, indexes: Vec<Val<'a>>) -> CallResult<'a> {
    if !item.is_valid() {
        return go_err("slice of untyped nil");
    }
    let (item, is_nil) = item.indirect();
    if is_nil {
        return go_err("slice of nil pointer");
    }
    if indexes.len() > 3 {
        return go_err(format!("too many slice indexes: {}", indexes.len()));
    }
    let (len, cap) = match &item {
        Val::Str(s, _) => {
            if indexes.len() == 3 {
                return go_err("cannot 3-index slice a string");
            }
            (s.len(), s.len())
        }
        Val::Slice(s, _) => {
            let l = s.map(|s| s.len()).unwrap_or(0);
            (l, l)
        }
        v => return go_err(format!("can't slice item of type {}", v.type_name())),
    };
    let mut idx = [0usize, len, 0];
    for (i, index) in indexes.iter().enumerate() {
        idx[i] = index_arg(index, cap)?;
    }
    if idx[0] > idx[1] {
        return go_err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return go_err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    let (i, j) = (idx[0], idx[1]);
    Ok(match item {
        Val::Str(s, ty) => {
            let sub = match s {
                Cow::Borrowed(b) => match b.get(i..j) {
                    Some(x) => Cow::Borrowed(x),
                    None => Cow::Owned(String::from_utf8_lossy(&b.as_bytes()[i..j]).into_owned()),
                },
                Cow::Owned(o) => Cow::Owned(String::from_utf8_lossy(&o.as_bytes()[i..j]).into_owned()),
            };
            Val::Str(sub, ty)
        }
        Val::Slice(s, ty) => Val::Slice(Some(s.map(|s| s.sub(i, j)).unwrap_or(crate::value::SliceRef::Str(&[]))), ty),
        _ => unreachable!(),
    })
}

/// Go's `length`.
pub(crate) fn length<'a>(item: Val<'a>) -> CallResult<'a> {
    let (item, is_nil) = item.indirect();
    if is_nil {
        return go_err("len of nil pointer");
    }
    let n = match &item {
        Val::Str(s, _) => s.len(),
        Val::Slice(s, _) => s.map(|s| s.len()).unwrap_or(0),
        Val::Map(m, _) => m.map(|m| m.len()).unwrap_or(0),
        Val::Invalid => return go_err("reflect: call of reflect.Value.Type on zero Value"),
        v => return go_err(format!("len of type {}", v.type_name())),
    };
    Ok(Val::Int(n as i64, &INT))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Basic {
    Bool,
    Complex,
    Int,
    Float,
    String,
    Uint,
}

fn basic_kind(v: &Val) -> Option<Basic> {
    Some(match v {
        Val::Bool(..) => Basic::Bool,
        Val::Int(..) => Basic::Int,
        Val::Uint(..) => Basic::Uint,
        Val::Float(..) => Basic::Float,
        Val::Complex(..) => Basic::Complex,
        Val::Str(..) => Basic::String,
        _ => return None,
    })
}

fn as_int(v: &Val) -> i64 {
    match v {
        Val::Int(i, _) => *i,
        _ => 0,
    }
}

fn as_uint(v: &Val) -> u64 {
    match v {
        Val::Uint(u, _) => *u,
        _ => 0,
    }
}

fn as_float(v: &Val) -> f64 {
    match v {
        Val::Float(f, _) => *f,
        _ => 0.0,
    }
}

fn as_str<'b>(v: &'b Val) -> &'b str {
    match v {
        Val::Str(s, _) => s,
        _ => "",
    }
}

fn as_bool(v: &Val) -> bool {
    matches!(v, Val::Bool(true, _))
}

fn as_complex(v: &Val) -> (f64, f64) {
    match v {
        Val::Complex(r, i) => (*r, *i),
        _ => (0.0, 0.0),
    }
}

/// reflect.Kind equality for non-basic values (Go's `canCompare`).
fn same_kind(a: &Val, b: &Val) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b) || !a.is_valid() || !b.is_valid()
}

fn is_nil(v: &Val) -> bool {
    matches!(v, Val::Invalid | Val::Ptr(None, _) | Val::Map(None, _) | Val::Slice(None, _))
}

/// Identity of what a non-nil struct pointer points to, for `eq`.
fn pointee_addr(v: &Val) -> Option<(usize, &'static str)> {
    let Val::Ptr(Some(inner), ty) = v else {
        return None;
    };
    let Val::Struct(o) = inner.as_ref() else {
        return None;
    };
    let addr = match o {
        Obj::Root(d) => *d as *const _ as usize,
        Obj::ObjectMeta(m) => *m as *const _ as usize,
        Obj::PodSpec(s) => *s as *const _ as usize,
        Obj::NodeSpec(s) => *s as *const _ as usize,
        Obj::PodOS(s) => *s as *const _ as usize,
        _ => return None,
    };
    Some((addr, ty.name))
}

/// Go's `eq`.
fn eq(arg1: &Val, arg2: &[Val]) -> Result<bool, CallErr> {
    if arg2.is_empty() {
        return go_err("missing argument for comparison");
    }
    let k1 = basic_kind(arg1);
    for arg in arg2 {
        let k2 = basic_kind(arg);
        let mut truth = false;
        if k1 != k2 {
            match (k1, k2) {
                (Some(Basic::Int), Some(Basic::Uint)) => {
                    truth = as_int(arg1) >= 0 && as_int(arg1) as u64 == as_uint(arg)
                }
                (Some(Basic::Uint), Some(Basic::Int)) => {
                    truth = as_int(arg) >= 0 && as_uint(arg1) == as_int(arg) as u64
                }
                _ => {
                    if arg1.is_valid() && arg.is_valid() {
                        return go_err(format!(
                            "incompatible types for comparison: {} and {}",
                            arg1.type_name(),
                            arg.type_name()
                        ));
                    }
                }
            }
        } else {
            truth = match k1 {
                Some(Basic::Bool) => as_bool(arg1) == as_bool(arg),
                Some(Basic::Complex) => as_complex(arg1) == as_complex(arg),
                Some(Basic::Float) => as_float(arg1) == as_float(arg),
                Some(Basic::Int) => as_int(arg1) == as_int(arg),
                Some(Basic::String) => as_str(arg1) == as_str(arg),
                Some(Basic::Uint) => as_uint(arg1) == as_uint(arg),
                None => {
                    if !same_kind(arg1, arg) {
                        return go_err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            fmt_s(arg1),
                            arg1.type_name(),
                            arg.type_name(),
                            arg.to_v_lossy()
                        ));
                    }
                    if is_nil(arg1) || is_nil(arg) {
                        is_nil(arg) == is_nil(arg1)
                    } else {
                        if matches!(arg, Val::Map(..) | Val::Slice(..)) {
                            return go_err(format!("non-comparable type {}: {}", fmt_s(arg), arg.type_name()));
                        }
                        match (pointee_addr(arg1), pointee_addr(arg)) {
                            (Some(a), Some(b)) => a == b,
                            _ => {
                                return Err(CallErr::Unsupported(format!(
                                    "comparing values of type {} and {} is not supported by this implementation",
                                    arg1.type_name(),
                                    arg.type_name()
                                )));
                            }
                        }
                    }
                }
            };
        }
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `fmt.Sprintf("%s", v)` for values in error messages.
fn fmt_s(v: &Val) -> String {
    match v {
        Val::Str(s, _) => s.to_string(),
        Val::Struct(Obj::Time(t, _)) => {
            let mut s = String::new();
            model::write_go_time(&mut s, *t);
            s
        }
        Val::Map(..) | Val::Slice(..) => v.to_v_lossy(),
        v => bad_verb('s', v).unwrap_or_else(|_| format!("%!s({})", v.type_name())),
    }
}

/// Go's `lt`.
fn lt(arg1: &Val, arg2: &Val) -> Result<bool, CallErr> {
    const BAD: &str = "invalid type for comparison";
    let Some(k1) = basic_kind(arg1) else {
        return go_err(BAD);
    };
    let Some(k2) = basic_kind(arg2) else {
        return go_err(BAD);
    };
    if k1 != k2 {
        return match (k1, k2) {
            (Basic::Int, Basic::Uint) => Ok(as_int(arg1) < 0 || (as_int(arg1) as u64) < as_uint(arg2)),
            (Basic::Uint, Basic::Int) => Ok(as_int(arg2) >= 0 && as_uint(arg1) < as_int(arg2) as u64),
            _ => go_err(format!("incompatible types for comparison: {} and {}", arg1.type_name(), arg2.type_name())),
        };
    }
    Ok(match k1 {
        Basic::Bool | Basic::Complex => return go_err(BAD),
        Basic::Float => as_float(arg1) < as_float(arg2),
        Basic::Int => as_int(arg1) < as_int(arg2),
        Basic::String => as_str(arg1) < as_str(arg2),
        Basic::Uint => as_uint(arg1) < as_uint(arg2),
    })
}

fn le(arg1: &Val, arg2: &Val) -> Result<bool, CallErr> {
    if lt(arg1, arg2)? {
        return Ok(true);
    }
    eq(arg1, std::slice::from_ref(arg2))
}

/// `fmt.Sprint(args...)` (operands are `interface{}` values, not indirected).
pub(crate) fn sprint(args: &[Val]) -> Result<String, Unsupported> {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Val::Str(..));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        a.fmt_v(&mut out, 0)?;
        prev_string = is_string;
    }
    Ok(out)
}

/// `fmt.Sprintln(args...)`.
fn sprintln(args: &[Val]) -> Result<String, Unsupported> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        a.fmt_v(&mut out, 0)?;
    }
    out.push('\n');
    Ok(out)
}

/// Go's `evalArgs` (used by html, js, urlquery).
fn eval_args(args: Vec<Val>) -> Result<String, Unsupported> {
    if let [Val::Str(s, ty)] = args.as_slice()
        && ty.is(&STRING)
    {
        return Ok(s.to_string());
    }
    let args: Vec<Val> = args
        .into_iter()
        .map(|a| {
            let a = if matches!(a, Val::Ptr(..)) { a.indirect().0 } else { a };
            if a.is_valid() { a } else { Val::str("<no value>") }
        })
        .collect();
    sprint(&args)
}

// ---------------------------------------------------------------------------------------
// printf: delegated to gotmpl's port of Go's fmt.

const PRINTF_CACHE: usize = 16;

fn printf_template(n: usize) -> gotmpl::Template {
    let mut src = String::from("{{printf .F");
    for i in 0..n {
        src.push_str(&format!(" .A{i}"));
    }
    src.push_str("}}");
    gotmpl::Template::new("printf").parse(&src).expect("static printf template parses")
}

fn to_gotmpl(v: &Val) -> Result<gotmpl::Value, Unsupported> {
    use gotmpl::Value as G;
    Ok(match v {
        Val::Invalid => G::Nil,
        Val::Bool(b, _) => G::Bool(*b),
        Val::Int(i, _) => G::Int(*i),
        Val::Uint(u, _) => G::Uint(*u),
        Val::Float(f, _) => G::Float(*f),
        Val::Str(s, _) => G::String(Arc::from(s.as_ref())),
        Val::Complex(..) => {
            return Err(Unsupported("printf of complex numbers is not supported".into()));
        }
        Val::Ptr(None, ty) => match nil_ptr_text(ty) {
            "nil" => G::String(Arc::from("nil")),
            _ => G::Nil,
        },
        Val::Ptr(Some(inner), ty) => match inner.as_ref() {
            Val::Struct(Obj::Time(..)) => to_gotmpl(inner)?,
            Val::Struct(_) => return Err(crate::value::unsupported_print(ty)),
            other => to_gotmpl(other)?,
        },
        Val::Struct(Obj::Time(t, _)) => {
            let mut s = String::new();
            model::write_go_time(&mut s, *t);
            G::String(Arc::from(s))
        }
        Val::Struct(o) => return Err(crate::value::unsupported_print(o.ty())),
        Val::Map(m, ty) => {
            let mut out = BTreeMap::new();
            if let Some(m) = m {
                let Kind::Map(kt, et) = ty.kind else { unreachable!() };
                for (k, v) in m.entries(kt, et) {
                    let Val::Str(k, _) = k else { unreachable!() };
                    out.insert(Arc::from(k.as_ref()), to_gotmpl(&v)?);
                }
            }
            G::Map(Arc::new(out))
        }
        Val::Slice(s, ty) => {
            let mut out = Vec::new();
            if let Some(s) = s {
                let et = ty.elem().unwrap_or(&STRING);
                for i in 0..s.len() {
                    out.push(to_gotmpl(&s.get(i, et))?);
                }
            }
            G::List(Arc::from(out))
        }
    })
}

/// Whether Go's fmt accepts `verb` for a value of this kind (otherwise it prints
/// `%!verb(type=value)`).
fn verb_ok(v: &Val, verb: char) -> bool {
    match v {
        Val::Bool(..) => matches!(verb, 't' | 'v'),
        Val::Int(..) | Val::Uint(..) => matches!(verb, 'b' | 'c' | 'd' | 'o' | 'O' | 'q' | 'x' | 'X' | 'U' | 'v'),
        Val::Float(..) | Val::Complex(..) => matches!(verb, 'b' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 'x' | 'X' | 'v'),
        Val::Str(..) => matches!(verb, 'v' | 's' | 'q' | 'x' | 'X'),
        Val::Ptr(None, _) => {
            matches!(verb, 'v' | 'p' | 'b' | 'o' | 'd' | 'x' | 'X')
                || (crate::value::nil_ptr_text(v.ty().expect("typed")) == "nil" && matches!(verb, 's' | 'q'))
        }
        // Everything else is handed to gotmpl unchanged.
        _ => true,
    }
}

/// `type=value` as fmt prints it in `%!verb(...)` and `%!(EXTRA ...)` (String methods
/// are not called while fmt is reporting an error).
fn typed_value(v: &Val) -> Result<String, Unsupported> {
    Ok(match v {
        Val::Invalid => "<nil>".into(),
        Val::Ptr(None, ty) => format!("{}=<nil>", ty.name),
        v => {
            let mut s = format!("{}=", v.type_name());
            v.fmt_v(&mut s, 0)?;
            s
        }
    })
}

/// Go's fmt message for a bad verb (also used for `%s` in template error messages).
pub(crate) fn bad_verb(verb: char, v: &Val) -> Result<String, Unsupported> {
    Ok(match v {
        Val::Invalid => format!("%!{verb}(<nil>)"),
        v => format!("%!{verb}({})", typed_value(v)?),
    })
}

/// Pre-processes a printf format for gotmpl's port of fmt so that the parts where Go's
/// output depends on Go types are produced here:
///
/// * verbs other than `%v` apply element-wise to slices and maps (`%q` of
///   `[]string{"a"}` is `["a"]`);
/// * bad verbs print Go's type names (`%!d(types.UID=...)`, `%!s(int64=3)`);
/// * surplus arguments are reported as `%!(EXTRA map[string]string=map[], ...)`.
///
/// Formats with explicit argument indexes or `*` widths are passed through unchanged.
fn rewrite_format<'a>(format: &str, args: &[Val<'a>]) -> Result<Option<(String, Vec<Val<'a>>)>, Unsupported> {
    let b = format.as_bytes();
    let mut out = String::with_capacity(format.len());
    let mut new_args = Vec::with_capacity(args.len());
    let mut arg = 0;
    let mut i = 0;
    let literal = |out: &mut String, s: &str| out.push_str(&s.replace('%', "%%"));
    while i < b.len() {
        if b[i] != b'%' {
            let next = format[i..].find('%').map(|x| i + x).unwrap_or(b.len());
            out.push_str(&format[i..next]);
            i = next;
            continue;
        }
        let start = i;
        i += 1;
        while i < b.len() && matches!(b[i], b'#' | b'0' | b'+' | b'-' | b' ') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && matches!(b[i], b'[' | b'*') {
            return Ok(None);
        }
        let Some(verb) = format[i..].chars().next() else {
            out.push_str(&format[start..]);
            break;
        };
        i += verb.len_utf8();
        let spec = &format[start..i];
        if verb == '%' || arg >= args.len() {
            out.push_str(spec);
            continue;
        }
        let a = &args[arg];
        arg += 1;
        match a {
            Val::Slice(s, ty) if !matches!(verb, 'v' | 'T' | 'p') => {
                out.push('[');
                if let Some(s) = s {
                    let et = ty.elem().unwrap_or(&STRING);
                    for j in 0..s.len() {
                        if j > 0 {
                            out.push(' ');
                        }
                        let e = s.get(j, et);
                        if verb_ok(&e, verb) {
                            out.push_str(spec);
                            new_args.push(e);
                        } else {
                            literal(&mut out, &bad_verb(verb, &e)?);
                        }
                    }
                }
                out.push(']');
            }
            Val::Map(m, ty) if !matches!(verb, 'v' | 'T' | 'p') => {
                out.push_str("map[");
                if let (Some(m), Kind::Map(kt, et)) = (m, &ty.kind) {
                    for (j, (k, v)) in m.entries(kt, et).into_iter().enumerate() {
                        if j > 0 {
                            out.push(' ');
                        }
                        for (n, x) in [k, v].into_iter().enumerate() {
                            if n == 1 {
                                out.push(':');
                            }
                            if verb_ok(&x, verb) {
                                out.push_str(spec);
                                new_args.push(x);
                            } else {
                                literal(&mut out, &bad_verb(verb, &x)?);
                            }
                        }
                    }
                }
                out.push(']');
            }
            Val::Ptr(None, ty) if verb != 'T' => {
                // fmt: String() for the generated Kubernetes types with v/s/q/x/X,
                // otherwise the pointer (0) for b/o/d/x/X, `<nil>` for v.
                let gogo = crate::value::nil_ptr_text(ty) == "nil";
                if gogo && matches!(verb, 'v' | 's' | 'q' | 'x' | 'X') {
                    out.push_str(spec);
                    new_args.push(Val::str("nil"));
                } else if matches!(verb, 'b' | 'o' | 'd' | 'x' | 'X') {
                    out.push_str(spec);
                    new_args.push(Val::Uint(0, &crate::value::UINT8));
                } else if verb == 'v' {
                    out.push_str(spec);
                    new_args.push(Val::Invalid);
                } else {
                    literal(&mut out, &bad_verb(verb, a)?);
                }
            }
            a if verb != 'T' && a.is_valid() && !verb_ok(a, verb) => literal(&mut out, &bad_verb(verb, a)?),
            _ => {
                out.push_str(spec);
                new_args.push(a.clone());
            }
        }
    }
    if arg < args.len() {
        let extra = args[arg..].iter().map(typed_value).collect::<Result<Vec<_>, _>>()?;
        literal(&mut out, &format!("%!(EXTRA {})", extra.join(", ")));
    }
    Ok(Some((out, new_args)))
}

/// `fmt.Sprintf(format, args...)`.
pub(crate) fn sprintf(format: &str, args: &[Val]) -> Result<String, Unsupported> {
    match rewrite_format(format, args)? {
        Some((f, a)) => sprintf_raw(&f, &a),
        None => sprintf_raw(format, args),
    }
}

fn sprintf_raw(format: &str, args: &[Val]) -> Result<String, Unsupported> {
    static CACHE: OnceLock<Vec<gotmpl::Template>> = OnceLock::new();
    let mut data = BTreeMap::new();
    data.insert(Arc::from("F"), gotmpl::Value::String(Arc::from(format)));
    for (i, a) in args.iter().enumerate() {
        data.insert(Arc::from(format!("A{i}").as_str()), to_gotmpl(a)?);
    }
    let data = gotmpl::Value::Map(Arc::new(data));
    let run = |t: &gotmpl::Template| t.execute_to_string(&data).map_err(|e| Unsupported(format!("printf: {e}")));
    if args.len() < PRINTF_CACHE {
        let cache = CACHE.get_or_init(|| (0..PRINTF_CACHE).map(printf_template).collect());
        run(&cache[args.len()])
    } else {
        run(&printf_template(args.len()))
    }
}
