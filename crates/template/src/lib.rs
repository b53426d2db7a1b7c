//! Go `text/template` rendering for spire-controller-manager's templates (SPIFFE ID, DNS
//! name, workload selector and parent ID templates), byte-for-byte like Go, with
//! upstream's data model. Pure: no I/O.
//!
//! # What is reproduced
//!
//! * **Parsing** is a line-by-line port of Go 1.26's `text/template/parse` (lexer, parser,
//!   error sites), with the builtin function set only (upstream registers no functions).
//!   Whatever Go rejects at `template.New(name).Parse(src)` is rejected here with the same
//!   text, e.g. `template: spiffeIDTemplate:1: function "lower" not defined`.
//! * **Execution** is a port of `text/template/exec.go` and `funcs.go` over a small
//!   reflection stand-in, so that errors carry Go's text
//!   (`template: NAME:1:11: executing "NAME" at <.PodMeta.Name>: nil pointer evaluating
//!   *v1.ObjectMeta.Name`), unknown fields are errors (`can't evaluate field Nope in type
//!   *v1.ObjectMeta`), and printing follows Go (`map[]` for a nil map, `<no value>` for a
//!   missing key via `.Labels.x`, `""` via `index`, `<nil>` for a nil `*int64`, times as
//!   `2024-01-02 03:04:05 +0000 UTC`).
//! * **Data** ([`TemplateData`]) is upstream's `templateData` with **Go field names**
//!   (`.PodMeta.UID`, `.PodSpec.ServiceAccountName`, `.NodeSpec.PodCIDRs`, ...) over the
//!   k8s-openapi types. Values are borrowed: building the data is free and evaluating
//!   `.PodMeta.Name` allocates nothing.
//! * `printf` is delegated to the `gotmpl` crate's port of Go's `fmt`.
//!
//! # Known divergences (see README.md)
//!
//! * Printing a whole Kubernetes struct (`{{ .PodMeta }}`, `{{ index .PodSpec.Containers 0 }}`,
//!   a slice of structs) is not reproduced: it fails with [`ErrorKind::Unsupported`].
//!   Go prints the protobuf-generated `String()` form there, which no sane SPIFFE ID uses.
//! * Reaching into fields of types we do not model (probes, security contexts, affinity,
//!   volume sources, resource quantities) and calling methods other than `ObjectMeta.GetX`
//!   and the simple `Time` accessors fail with [`ErrorKind::Unsupported`].
//! * `print`/`printf` of a non-nil pointer to a number/bool/string prints the pointee;
//!   Go prints the (random) address.
//! * Nesting deeper than 200 (parse) / 300 (execution) levels is rejected (Go allows more)
//!   to protect the Rust stack.
//! * Slicing a string in the middle of a UTF-8 sequence yields U+FFFD (Go emits the raw
//!   bytes; our output is a Rust `String`).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

mod exec;
mod funcs;
mod gofmt;
mod lex;
mod model;
mod parse;
mod value;

mod synthetic;
mod usage;

pub use usage::{FieldSet, PodFields};

/// Upstream's default parent ID template (`defaultParentIDTemplate`): the SPIRE
/// `k8s_psat` agent ID of the node the pod runs on.
pub const DEFAULT_PARENT_ID_TEMPLATE: &str =
    "spiffe://{{ .TrustDomain }}/spire/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.UID }}";

/// Template names upstream uses (they appear in Go's error messages).
pub const SPIFFE_ID_TEMPLATE_NAME: &str = "spiffeIDTemplate";
/// See [`SPIFFE_ID_TEMPLATE_NAME`].
pub const DNS_NAME_TEMPLATE_NAME: &str = "dnsNameTemplate";
/// See [`SPIFFE_ID_TEMPLATE_NAME`].
pub const WORKLOAD_SELECTOR_TEMPLATE_NAME: &str = "workloadSelectorTemplate";
/// See [`SPIFFE_ID_TEMPLATE_NAME`].
pub const PARENT_ID_TEMPLATE_NAME: &str = "parentIDTemplate";

/// Which phase an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Go's `Parse` would fail with the same message.
    Parse,
    /// Go's `Execute` would fail; the message is Go's (exactly, in all tested cases).
    Exec,
    /// Go would *succeed* (or fail differently) but this implementation cannot reproduce
    /// the result byte-for-byte (e.g. printing a whole Kubernetes struct). The message
    /// has Go's exec-error shape and names the construct.
    Unsupported,
    /// The execution went over its [`Budget`] (Go would go on, for as long as it takes):
    /// `template: NAME: execution budget exceeded: more than 10000 range iterations`.
    Budget,
}

/// What one execution may cost. Templates come from custom resources anyone with
/// create rights on them writes, and run in the webhook and the reconciler: Go's
/// `{{range 2000000000}}` or `{{printf "%0999999999d" 1}}` must end quickly with an error,
/// not take the process's memory. The defaults are far above anything an identity
/// needs (a SPIFFE ID is at most 2048 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Range iterations in one execution, all ranges together (default 10,000).
    pub max_range_iterations: u64,
    /// Bytes written by one execution (default 64 KiB).
    pub max_output_bytes: usize,
    /// Bytes of any string a function returns, and the largest printf width or
    /// precision (default 64 KiB).
    pub max_value_bytes: usize,
    /// Wall-clock time of one execution (default 100 ms).
    pub max_time: std::time::Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_range_iterations: 10_000,
            max_output_bytes: 64 * 1024,
            max_value_bytes: 64 * 1024,
            max_time: std::time::Duration::from_millis(100),
        }
    }
}

/// The largest template source parsed (a SPIFFE ID template is a line).
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// A template error; `Display` is Go's error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    kind: ErrorKind,
    message: String,
}

impl TemplateError {
    pub(crate) fn new(kind: ErrorKind, message: String) -> Self {
        TemplateError { kind, message }
    }

    /// Parse, exec, or unsupported.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True for errors Go's `Parse` reports (the admission webhook rejects these).
    pub fn is_parse(&self) -> bool {
        self.kind == ErrorKind::Parse
    }

    /// Go's error text, e.g. `template: spiffeIDTemplate:1: unclosed action`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

/// A parsed template: Go's `template.New(name).Parse(src)`.
///
/// Cheap to clone (shared), `Send + Sync`; parse once, render many times, from any
/// thread.
#[derive(Clone)]
pub struct Template {
    inner: Arc<exec::Templates>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template").field("name", &self.inner.name).field("source", &self.inner.source).finish()
    }
}

impl Template {
    /// Parses `src` like Go's `template.New(name).Parse(src)` with no extra functions.
    ///
    /// Errors have kind [`ErrorKind::Parse`] and Go's message, e.g.
    /// `template: spiffeIDTemplate:1: function "nofunc" not defined`.
    pub fn parse(name: &str, src: &str) -> Result<Template, TemplateError> {
        if src.len() > MAX_SOURCE_BYTES {
            return Err(TemplateError::new(
                ErrorKind::Parse,
                format!("template: {name}: source is {} bytes, more than the {MAX_SOURCE_BYTES} allowed", src.len()),
            ));
        }
        let trees = parse::parse(name, src).map_err(|e| TemplateError::new(ErrorKind::Parse, e.0))?;
        Ok(Template { inner: Arc::new(exec::Templates { name: name.to_string(), source: src.to_string(), trees }) })
    }

    /// Executes the template against `data` like Go's `tmpl.Execute(&buf, data)` (with
    /// `data` a `*templateData`) and returns what Go would have written.
    ///
    /// On error nothing is returned (Go may have written a prefix before failing).
    ///
    /// Runs under the default [`Budget`].
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        self.render_with(data, &Budget::default())
    }

    /// [`Template::render`] under `budget`.
    pub fn render_with(&self, data: &TemplateData<'_>, budget: &Budget) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.inner.source.len() + 32);
        exec::execute(&self.inner, data, &mut out, budget)?;
        Ok(out)
    }

    /// The template source, as given to [`Template::parse`].
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// The template name, as given to [`Template::parse`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Upstream's `templateData`:
///
/// | field | Go type | here |
/// |---|---|---|
/// | `.TrustDomain` | `string` | trust domain name (no scheme) |
/// | `.ClusterName` | `string` | |
/// | `.ClusterDomain` | `string` | may be empty |
/// | `.PodMeta` | `*metav1.ObjectMeta` | nil for the parent ID template |
/// | `.PodSpec` | `*corev1.PodSpec` | nil for the parent ID template |
/// | `.NodeMeta` | `*metav1.ObjectMeta` | |
/// | `.NodeSpec` | `*corev1.NodeSpec` | |
///
/// Borrows the Kubernetes objects (or owns them, for [`TemplateData::synthetic`]);
/// construction copies nothing.
#[derive(Debug, Clone)]
pub struct TemplateData<'a> {
    pub(crate) trust_domain: Cow<'a, str>,
    pub(crate) cluster_name: Cow<'a, str>,
    pub(crate) cluster_domain: Cow<'a, str>,
    pub(crate) pod_meta: Option<Cow<'a, ObjectMeta>>,
    pub(crate) pod_spec: Option<Cow<'a, PodSpec>>,
    pub(crate) node_meta: Option<Cow<'a, ObjectMeta>>,
    pub(crate) node_spec: Option<Cow<'a, NodeSpec>>,
}

impl<'a> TemplateData<'a> {
    /// Data for the SPIFFE ID, DNS name and workload selector templates of a pod
    /// (upstream's `renderPodEntry`).
    #[allow(clippy::too_many_arguments)]
    pub fn for_pod(
        trust_domain: &'a str,
        cluster_name: &'a str,
        cluster_domain: &'a str,
        pod_meta: &'a ObjectMeta,
        pod_spec: &'a PodSpec,
        node_meta: &'a ObjectMeta,
        node_spec: &'a NodeSpec,
    ) -> Self {
        TemplateData {
            pod_meta: Some(Cow::Borrowed(pod_meta)),
            pod_spec: Some(Cow::Borrowed(pod_spec)),
            ..Self::for_node(trust_domain, cluster_name, cluster_domain, node_meta, node_spec)
        }
    }

    /// Data for the parent ID template: `.PodMeta` and `.PodSpec` are nil.
    pub fn for_node(
        trust_domain: &'a str,
        cluster_name: &'a str,
        cluster_domain: &'a str,
        node_meta: &'a ObjectMeta,
        node_spec: &'a NodeSpec,
    ) -> Self {
        TemplateData {
            trust_domain: Cow::Borrowed(trust_domain),
            cluster_name: Cow::Borrowed(cluster_name),
            cluster_domain: Cow::Borrowed(cluster_domain),
            pod_meta: None,
            pod_spec: None,
            node_meta: Some(Cow::Borrowed(node_meta)),
            node_spec: Some(Cow::Borrowed(node_spec)),
        }
    }

    /// [`TemplateData::for_pod`] from whole objects. A missing `spec` is Go's zero
    /// value (a non-nil pointer to an empty spec), as with `&pod.Spec` upstream.
    pub fn from_pod_and_node(
        trust_domain: &'a str,
        cluster_name: &'a str,
        cluster_domain: &'a str,
        pod: &'a Pod,
        node: &'a Node,
    ) -> Self {
        TemplateData {
            pod_meta: Some(Cow::Borrowed(&pod.metadata)),
            pod_spec: Some(pod.spec.as_ref().map(Cow::Borrowed).unwrap_or_default()),
            ..Self::from_node(trust_domain, cluster_name, cluster_domain, node)
        }
    }

    /// [`TemplateData::for_node`] from a whole `Node`.
    pub fn from_node(trust_domain: &'a str, cluster_name: &'a str, cluster_domain: &'a str, node: &'a Node) -> Self {
        TemplateData {
            trust_domain: Cow::Borrowed(trust_domain),
            cluster_name: Cow::Borrowed(cluster_name),
            cluster_domain: Cow::Borrowed(cluster_domain),
            pod_meta: None,
            pod_spec: None,
            node_meta: Some(Cow::Borrowed(&node.metadata)),
            node_spec: Some(node.spec.as_ref().map(Cow::Borrowed).unwrap_or_default()),
        }
    }

    /// A fully populated made-up pod and node (every modelled field set, every map and
    /// list non-empty), for dry-running templates, e.g. in the admission webhook.
    /// Go's webhook only parses; a dry run additionally catches unknown fields
    /// (`can't evaluate field Nope in type *v1.ObjectMeta`) and out-of-range indexes.
    pub fn synthetic(trust_domain: &str, cluster_name: &str, cluster_domain: &str) -> TemplateData<'static> {
        synthetic::data(trust_domain, cluster_name, cluster_domain)
    }

    /// Same data with `.PodMeta`/`.PodSpec` set to nil (what the parent ID template sees).
    pub fn without_pod(mut self) -> Self {
        self.pod_meta = None;
        self.pod_spec = None;
        self
    }
}
