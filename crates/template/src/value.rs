//! Runtime values: a tiny stand-in for Go's `reflect.Value` over the upstream data model.
//!
//! Every value carries its static Go type ([`Ty`]) because Go's messages name types
//! (`can't evaluate field X in type *v1.ObjectMeta`) and because Go's behaviour depends
//! on the kind (nil pointer vs nil map vs struct). Values borrow from the Kubernetes
//! objects, so evaluating `.PodMeta.Name` allocates nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::gofmt::format_float_g;
use crate::model::{self, Obj};

/// A Go type, as far as the template engine needs it.
#[derive(Debug)]
pub(crate) struct Ty {
    /// Go's `reflect.Type.String()`, e.g. `*v1.ObjectMeta`, `map[string]string`.
    pub name: &'static str,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    Complex,
    String,
    Struct(&'static model::StructDesc),
    Ptr(&'static Ty),
    Slice(&'static Ty),
    Map(&'static Ty, &'static Ty),
}

impl Ty {
    pub fn elem(&self) -> Option<&'static Ty> {
        match self.kind {
            Kind::Ptr(e) | Kind::Slice(e) | Kind::Map(_, e) => Some(e),
            _ => None,
        }
    }

    pub fn is(&self, other: &Ty) -> bool {
        std::ptr::eq(self, other) || self.name == other.name
    }

    pub fn int_like(&self) -> bool {
        matches!(self.kind, Kind::Int | Kind::Uint)
    }
}

macro_rules! go_types {
    ($($id:ident = $name:literal : $kind:expr;)*) => {
        $(pub(crate) static $id: Ty = Ty { name: $name, kind: $kind };)*
    };
}

go_types! {
    BOOL = "bool": Kind::Bool;
    INT = "int": Kind::Int;
    INT32 = "int32": Kind::Int;
    INT64 = "int64": Kind::Int;
    UINT8 = "uint8": Kind::Uint;
    FLOAT64 = "float64": Kind::Float;
    COMPLEX128 = "complex128": Kind::Complex;
    STRING = "string": Kind::String;
}

/// One list of `(index, element)` pairs produced by `range`.
pub(crate) type Entries<'a> = Vec<(Val<'a>, Val<'a>)>;

/// A borrowed Go slice.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SliceRef<'a> {
    Str(&'a [String]),
    Containers(&'a [core::Container]),
    Ephemeral(&'a [core::EphemeralContainer]),
    Volumes(&'a [core::Volume]),
    Ports(&'a [core::ContainerPort]),
    Env(&'a [core::EnvVar]),
    OwnerRefs(&'a [meta::OwnerReference]),
    ManagedFields(&'a [meta::ManagedFieldsEntry]),
    Tolerations(&'a [core::Toleration]),
    Taints(&'a [core::Taint]),
    LocalRefs(&'a [core::LocalObjectReference]),
    HostAliases(&'a [core::HostAlias]),
    ReadinessGates(&'a [core::PodReadinessGate]),
    SchedulingGates(&'a [core::PodSchedulingGate]),
    ResourceClaims(&'a [core::PodResourceClaim]),
    /// Elements we do not model (their type is the slice's element type).
    Opaque(usize),
}

macro_rules! slice_dispatch {
    ($s:expr, $v:ident => $e:expr, opaque $n:ident => $o:expr) => {
        match $s {
            SliceRef::Str($v) => $e,
            SliceRef::Containers($v) => $e,
            SliceRef::Ephemeral($v) => $e,
            SliceRef::Volumes($v) => $e,
            SliceRef::Ports($v) => $e,
            SliceRef::Env($v) => $e,
            SliceRef::OwnerRefs($v) => $e,
            SliceRef::ManagedFields($v) => $e,
            SliceRef::Tolerations($v) => $e,
            SliceRef::Taints($v) => $e,
            SliceRef::LocalRefs($v) => $e,
            SliceRef::HostAliases($v) => $e,
            SliceRef::ReadinessGates($v) => $e,
            SliceRef::SchedulingGates($v) => $e,
            SliceRef::ResourceClaims($v) => $e,
            SliceRef::Opaque($n) => $o,
        }
    };
}

macro_rules! slice_rewrap {
    ($s:expr, $v:ident => $e:expr, opaque $n:ident => $o:expr) => {
        match $s {
            SliceRef::Str($v) => SliceRef::Str($e),
            SliceRef::Containers($v) => SliceRef::Containers($e),
            SliceRef::Ephemeral($v) => SliceRef::Ephemeral($e),
            SliceRef::Volumes($v) => SliceRef::Volumes($e),
            SliceRef::Ports($v) => SliceRef::Ports($e),
            SliceRef::Env($v) => SliceRef::Env($e),
            SliceRef::OwnerRefs($v) => SliceRef::OwnerRefs($e),
            SliceRef::ManagedFields($v) => SliceRef::ManagedFields($e),
            SliceRef::Tolerations($v) => SliceRef::Tolerations($e),
            SliceRef::Taints($v) => SliceRef::Taints($e),
            SliceRef::LocalRefs($v) => SliceRef::LocalRefs($e),
            SliceRef::HostAliases($v) => SliceRef::HostAliases($e),
            SliceRef::ReadinessGates($v) => SliceRef::ReadinessGates($e),
            SliceRef::SchedulingGates($v) => SliceRef::SchedulingGates($e),
            SliceRef::ResourceClaims($v) => SliceRef::ResourceClaims($e),
            SliceRef::Opaque($n) => SliceRef::Opaque($o),
        }
    };
}

impl<'a> SliceRef<'a> {
    pub fn len(&self) -> usize {
        slice_dispatch!(*self, v => v.len(), opaque n => n)
    }

    pub fn sub(&self, from: usize, to: usize) -> SliceRef<'a> {
        slice_rewrap!(*self, v => &v[from..to], opaque _n => to - from)
    }

    /// Element `i` (caller checks bounds); `elem` is the slice's element type.
    pub fn get(&self, i: usize, elem: &'static Ty) -> Val<'a> {
        match *self {
            SliceRef::Str(v) => Val::Str(Cow::Borrowed(v[i].as_str()), elem),
            SliceRef::Containers(v) => Val::Struct(Obj::Container(&v[i])),
            SliceRef::Ephemeral(v) => Val::Struct(Obj::EphemeralContainer(&v[i])),
            SliceRef::Volumes(v) => Val::Struct(Obj::Volume(&v[i])),
            SliceRef::Ports(v) => Val::Struct(Obj::ContainerPort(&v[i])),
            SliceRef::Env(v) => Val::Struct(Obj::EnvVar(&v[i])),
            SliceRef::OwnerRefs(v) => Val::Struct(Obj::OwnerReference(&v[i])),
            SliceRef::ManagedFields(v) => Val::Struct(Obj::ManagedFieldsEntry(&v[i])),
            SliceRef::Tolerations(v) => Val::Struct(Obj::Toleration(&v[i])),
            SliceRef::Taints(v) => Val::Struct(Obj::Taint(&v[i])),
            SliceRef::LocalRefs(v) => Val::Struct(Obj::LocalObjectReference(&v[i])),
            SliceRef::HostAliases(v) => Val::Struct(Obj::HostAlias(&v[i])),
            SliceRef::ReadinessGates(v) => Val::Struct(Obj::PodReadinessGate(&v[i])),
            SliceRef::SchedulingGates(v) => Val::Struct(Obj::PodSchedulingGate(&v[i])),
            SliceRef::ResourceClaims(v) => Val::Struct(Obj::PodResourceClaim(&v[i])),
            SliceRef::Opaque(_) => Val::Struct(Obj::Opaque(elem)),
        }
    }
}

/// A borrowed Go map (keys are always string-kinded in the upstream types).
#[derive(Clone, Copy, Debug)]
pub(crate) enum MapRef<'a> {
    StrStr(&'a BTreeMap<String, String>),
    Quantities(&'a BTreeMap<String, Quantity>),
}

impl<'a> MapRef<'a> {
    pub fn len(&self) -> usize {
        match self {
            MapRef::StrStr(m) => m.len(),
            MapRef::Quantities(m) => m.len(),
        }
    }

    pub fn get(&self, key: &str, elem: &'static Ty) -> Option<Val<'a>> {
        match self {
            MapRef::StrStr(m) => m.get(key).map(|v| Val::Str(Cow::Borrowed(v.as_str()), elem)),
            MapRef::Quantities(m) => m.get(key).map(|_| Val::Struct(Obj::Opaque(elem))),
        }
    }

    /// Entries sorted by key (Go's `fmtsort` order for string keys: byte-wise).
    pub fn entries(&self, key_ty: &'static Ty, elem: &'static Ty) -> Entries<'a> {
        match self {
            MapRef::StrStr(m) => m
                .iter()
                .map(|(k, v)| (Val::Str(Cow::Borrowed(k.as_str()), key_ty), Val::Str(Cow::Borrowed(v.as_str()), elem)))
                .collect(),
            MapRef::Quantities(m) => m
                .keys()
                .map(|k| (Val::Str(Cow::Borrowed(k.as_str()), key_ty), Val::Struct(Obj::Opaque(elem))))
                .collect(),
        }
    }
}

/// A Go value. `Invalid` is the zero `reflect.Value` (what a missing map key yields).
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    Invalid,
    Bool(bool, &'static Ty),
    Int(i64, &'static Ty),
    Uint(u64, &'static Ty),
    Float(f64, &'static Ty),
    Complex(f64, f64),
    Str(Cow<'a, str>, &'static Ty),
    /// A pointer; `None` is nil. The type is the pointer type (`*int64`).
    Ptr(Option<Box<Val<'a>>>, &'static Ty),
    Struct(Obj<'a>),
    /// A map; `None` is a nil map.
    Map(Option<MapRef<'a>>, &'static Ty),
    /// A slice; `None` is a nil slice.
    Slice(Option<SliceRef<'a>>, &'static Ty),
}

/// Printing of a value that this implementation cannot reproduce byte-for-byte.
#[derive(Debug)]
pub(crate) struct Unsupported(pub String);

impl<'a> Val<'a> {
    pub fn str(s: &'a str) -> Val<'a> {
        Val::Str(Cow::Borrowed(s), &STRING)
    }

    pub fn ty(&self) -> Option<&'static Ty> {
        Some(match self {
            Val::Invalid => return None,
            Val::Bool(_, t) | Val::Int(_, t) | Val::Uint(_, t) | Val::Float(_, t) | Val::Str(_, t) => t,
            Val::Complex(..) => &COMPLEX128,
            Val::Ptr(_, t) | Val::Map(_, t) | Val::Slice(_, t) => t,
            Val::Struct(o) => o.ty(),
        })
    }

    /// Go's `reflect.Type.String()` (or `<nil>` for an invalid value).
    pub fn type_name(&self) -> &'static str {
        self.ty().map(|t| t.name).unwrap_or("<nil>")
    }

    pub fn is_valid(&self) -> bool {
        !matches!(self, Val::Invalid)
    }

    /// Go's `indirect`: follow non-nil pointers; returns `(value, isNil)`.
    pub fn indirect(self) -> (Val<'a>, bool) {
        let mut v = self;
        loop {
            match v {
                Val::Ptr(Some(inner), _) => v = *inner,
                Val::Ptr(None, _) => return (v, true),
                _ => return (v, false),
            }
        }
    }

    /// Go's `isTrue` (after `indirectInterface`).
    pub fn truth(&self) -> bool {
        match self {
            Val::Invalid => false,
            Val::Bool(b, _) => *b,
            Val::Int(i, _) => *i != 0,
            Val::Uint(u, _) => *u != 0,
            Val::Float(f, _) => *f != 0.0,
            Val::Complex(r, i) => *r != 0.0 || *i != 0.0,
            Val::Str(s, _) => !s.is_empty(),
            Val::Ptr(p, _) => p.is_some(),
            Val::Struct(_) => true,
            Val::Map(m, _) => m.map(|m| m.len()).unwrap_or(0) > 0,
            Val::Slice(s, _) => s.map(|s| s.len()).unwrap_or(0) > 0,
        }
    }

    /// `fmt.Sprint`-style `%v` formatting of one value (Go's `printValue` at `depth`).
    /// Structs other than times are not reproduced (see the crate docs).
    pub fn fmt_v(&self, out: &mut String, depth: usize) -> Result<(), Unsupported> {
        match self {
            Val::Invalid => out.push_str(if depth == 0 { "<nil>" } else { "<invalid reflect.Value>" }),
            Val::Bool(b, _) => out.push_str(if *b { "true" } else { "false" }),
            Val::Int(i, _) => {
                let _ = write!(out, "{i}");
            }
            Val::Uint(u, _) => {
                let _ = write!(out, "{u}");
            }
            Val::Float(f, _) => out.push_str(&format_float_g(*f)),
            Val::Complex(r, i) => {
                out.push('(');
                out.push_str(&format_float_g(*r));
                let im = format_float_g(*i);
                if !im.starts_with(['-', '+']) {
                    out.push('+');
                }
                out.push_str(&im);
                out.push_str("i)");
            }
            Val::Str(s, _) => out.push_str(s),
            Val::Ptr(None, ty) => out.push_str(nil_ptr_text(ty)),
            Val::Ptr(Some(inner), ty) => {
                // Go prints the address of a non-struct pointer (not reproducible) and
                // `&{...}`/String() for struct pointers; we print the pointee.
                if let Kind::Ptr(e) = ty.kind
                    && let Kind::Struct(_) = e.kind
                    && !matches!(**inner, Val::Struct(Obj::Time(..)))
                {
                    return Err(unsupported_print(ty));
                }
                inner.fmt_v(out, depth)?;
            }
            Val::Struct(Obj::Time(t, _)) => model::write_go_time(out, *t),
            Val::Struct(o) => return Err(unsupported_print(o.ty())),
            Val::Map(m, ty) => {
                out.push_str("map[");
                if let Some(m) = m {
                    let (kt, et) = match ty.kind {
                        Kind::Map(k, e) => (k, e),
                        _ => (&STRING, &STRING),
                    };
                    for (i, (k, v)) in m.entries(kt, et).iter().enumerate() {
                        if i > 0 {
                            out.push(' ');
                        }
                        k.fmt_v(out, depth + 1)?;
                        out.push(':');
                        v.fmt_v(out, depth + 1)?;
                    }
                }
                out.push(']');
            }
            Val::Slice(s, ty) => {
                out.push('[');
                if let Some(s) = s {
                    let et = ty.elem().unwrap_or(&STRING);
                    for i in 0..s.len() {
                        if i > 0 {
                            out.push(' ');
                        }
                        s.get(i, et).fmt_v(out, depth + 1)?;
                    }
                }
                out.push(']');
            }
        }
        Ok(())
    }

    /// `%v` into a fresh string; unsupported values yield a placeholder (used only inside
    /// error messages).
    pub fn to_v_lossy(&self) -> String {
        let mut s = String::new();
        if self.fmt_v(&mut s, 0).is_err() {
            s = format!("{{{}}}", self.type_name());
        }
        s
    }

    /// Go's `reflect.Value.String()`.
    pub fn reflect_string(&self) -> String {
        match self {
            Val::Invalid => "<invalid Value>".into(),
            Val::Str(s, _) => s.to_string(),
            v => format!("<{} Value>", v.type_name()),
        }
    }
}

/// What `fmt` prints for a nil pointer of type `ty`: the generated Kubernetes types have
/// a `String()` method on the pointer that returns "nil"; everything else prints `<nil>`.
pub(crate) fn nil_ptr_text(ty: &Ty) -> &'static str {
    match ty.kind {
        Kind::Ptr(e) => match e.kind {
            Kind::Struct(d) if d.gogo_string => "nil",
            _ => "<nil>",
        },
        _ => "<nil>",
    }
}

pub(crate) fn unsupported_print(ty: &Ty) -> Unsupported {
    Unsupported(format!(
        "printing a value of type {} is not supported by this implementation (only strings, numbers, booleans, times, and maps/slices of those can be printed)",
        ty.name
    ))
}
