//! Which parts of a pod a template can read (`.PodMeta.X`, `.PodSpec.X`), so that the
//! pod cache can keep only those, and the trimming itself.
//!
//! The analysis is conservative: whenever a template could reach a pod struct as a
//! whole (bare `.`, a bare variable, `.PodSpec` passed to `with`/`index`/a variable, a
//! method such as `.PodSpec.String`), the whole struct is kept. A field of a field
//! (`.PodSpec.Containers` inside `range`) keeps the top-level field whole.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::model::{D_OBJECT_META, D_POD_SPEC};
use crate::parse::{Arg, ListNode, Node, PipeNode};

/// Top-level fields of one struct (Go field names), or the whole struct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    all: bool,
    names: BTreeSet<&'static str>,
}

impl FieldSet {
    /// Every field.
    pub fn all() -> Self {
        FieldSet { all: true, names: BTreeSet::new() }
    }

    /// Whether the whole struct is needed.
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether field `name` (a Go field name) is needed.
    pub fn contains(&self, name: &str) -> bool {
        self.all || self.names.contains(name)
    }

    /// True when every field `other` needs is needed here too.
    pub fn covers(&self, other: &FieldSet) -> bool {
        self.all || (!other.all && other.names.is_subset(&self.names))
    }

    pub fn union(&mut self, other: &FieldSet) {
        if other.all {
            *self = FieldSet::all();
        } else if !self.all {
            self.names.extend(other.names.iter().copied());
        }
    }

    fn set_all(&mut self) {
        *self = FieldSet::all();
    }

    /// Adds a field by Go name; a name that is not a field of `fields` (a method, or
    /// something the template engine will reject anyway) keeps the whole struct.
    fn add(&mut self, fields: &'static [&'static str], name: &str) {
        if self.all {
            return;
        }
        match fields.iter().find(|f| **f == name) {
            Some(f) => {
                self.names.insert(f);
            }
            None => self.set_all(),
        }
    }
}

impl fmt::Display for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("*");
        }
        let names: Vec<&str> = self.names.iter().copied().collect();
        write!(f, "{{{}}}", names.join(","))
    }
}

/// The pod fields a set of templates can read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFields {
    pub meta: FieldSet,
    pub spec: FieldSet,
}

impl PodFields {
    /// The whole pod.
    pub fn all() -> Self {
        PodFields { meta: FieldSet::all(), spec: FieldSet::all() }
    }

    /// Fields given by Go name (`"PodMeta.Labels"`, `"PodSpec.NodeName"`); unknown names
    /// keep the whole struct, like a template would.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = PodFields::default();
        for p in paths {
            let idents: Vec<String> = p.split('.').map(str::to_string).collect();
            out.add_path(&idents);
        }
        out
    }

    pub fn covers(&self, other: &PodFields) -> bool {
        self.meta.covers(&other.meta) && self.spec.covers(&other.spec)
    }

    pub fn union(&mut self, other: &PodFields) {
        self.meta.union(&other.meta);
        self.spec.union(&other.spec);
    }

    /// Drops every field of `meta` that is not needed.
    pub fn retain_meta(&self, meta: &mut ObjectMeta) {
        retain_meta(&self.meta, meta);
    }

    /// Drops every field of `spec` that is not needed.
    pub fn retain_spec(&self, spec: &mut PodSpec) {
        retain_spec(&self.spec, spec);
    }

    /// A field path read from the root of the template data (`["PodSpec", "NodeName"]`).
    fn add_path(&mut self, idents: &[String]) {
        match idents.first().map(String::as_str) {
            Some("PodSpec") => match idents.get(1) {
                None => self.spec.set_all(),
                Some(f) => self.spec.add(D_POD_SPEC.fields, f),
            },
            Some("PodMeta") => match idents.get(1) {
                None => self.meta.set_all(),
                // `GetLabels` reads `Labels`.
                Some(f) => {
                    let field = f.strip_prefix("Get").filter(|rest| D_OBJECT_META.fields.contains(rest)).unwrap_or(f);
                    self.meta.add(D_OBJECT_META.fields, field)
                }
            },
            _ => {}
        }
    }

    fn walk_list(&mut self, list: &ListNode) {
        for node in &list.nodes {
            self.walk_node(node);
        }
    }

    fn walk_node(&mut self, node: &Node) {
        match node {
            // `{{ $x := . }}` only binds: uses of `$x` are analysed where they occur.
            Node::Action(a) if !a.pipe.decl.is_empty() => self.walk_pipe_binding(&a.pipe),
            Node::Action(a) => self.walk_pipe(&a.pipe),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                self.walk_pipe_binding(&b.pipe);
                self.walk_list(&b.list);
                if let Some(e) = &b.else_list {
                    self.walk_list(e);
                }
            }
            // Every defined template is analysed as if its dot were the root data, so
            // passing the root on (`{{ template "x" . }}`) reads nothing by itself.
            Node::Template(t) => {
                if let Some(p) = &t.pipe {
                    self.walk_pipe_binding(p);
                }
            }
            Node::Text { .. } | Node::Break { .. } | Node::Continue { .. } | Node::End { .. } | Node::Else { .. } => {}
        }
    }

    /// A pipe whose value becomes dot or a variable rather than being printed or passed
    /// to a function: a bare `.` or `$x` there just passes the root along.
    fn walk_pipe_binding(&mut self, pipe: &PipeNode) {
        if let [cmd] = pipe.cmds.as_slice()
            && let [arg] = cmd.args.as_slice()
            && match arg {
                Arg::Dot { .. } => true,
                Arg::Variable(v) => v.ident.len() == 1,
                _ => false,
            }
        {
            return;
        }
        self.walk_pipe(pipe);
    }

    fn walk_pipe(&mut self, pipe: &PipeNode) {
        for cmd in &pipe.cmds {
            for arg in &cmd.args {
                self.walk_arg(arg);
            }
        }
    }

    fn walk_arg(&mut self, arg: &Arg) {
        match arg {
            // The whole data (or whatever dot is bound to): assume the pod may be reached.
            Arg::Dot { .. } => *self = PodFields::all(),
            Arg::Variable(v) => {
                if v.ident.len() == 1 {
                    *self = PodFields::all();
                } else {
                    // A variable may hold the root data (`$` always does).
                    self.add_path(&v.ident[1..]);
                }
            }
            Arg::Field { ident, .. } => self.add_path(ident),
            Arg::Chain { node, .. } => self.walk_arg(node),
            Arg::Pipe(p) => self.walk_pipe(p),
            Arg::Identifier { .. } | Arg::Nil { .. } | Arg::Bool { .. } | Arg::Number(_) | Arg::String { .. } => {}
        }
    }
}

impl fmt::Display for PodFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PodMeta{} PodSpec{}", self.meta, self.spec)
    }
}

impl crate::Template {
    /// The pod fields this template (and every template it defines) can read.
    pub fn pod_fields(&self) -> PodFields {
        let mut out = PodFields::default();
        for tree in self.inner.trees.values() {
            out.walk_list(tree);
        }
        out
    }
}

fn retain_meta(keep: &FieldSet, m: &mut ObjectMeta) {
    if keep.all {
        return;
    }
    let mut out = ObjectMeta::default();
    macro_rules! keep_only {
        ($($go:literal => $field:ident),* $(,)?) => {
            $(if keep.names.contains($go) { out.$field = std::mem::take(&mut m.$field); })*
        };
    }
    keep_only! {
        "Name" => name,
        "GenerateName" => generate_name,
        "Namespace" => namespace,
        "SelfLink" => self_link,
        "UID" => uid,
        "ResourceVersion" => resource_version,
        "Generation" => generation,
        "CreationTimestamp" => creation_timestamp,
        "DeletionTimestamp" => deletion_timestamp,
        "DeletionGracePeriodSeconds" => deletion_grace_period_seconds,
        "Labels" => labels,
        "Annotations" => annotations,
        "OwnerReferences" => owner_references,
        "Finalizers" => finalizers,
        "ManagedFields" => managed_fields,
    }
    *m = out;
}

fn retain_spec(keep: &FieldSet, s: &mut PodSpec) {
    if keep.all {
        return;
    }
    // Built afresh, so that fields k8s-openapi models but templates cannot name
    // (Go's PodSpec has no such field yet, or names it otherwise) are dropped too.
    let mut out = PodSpec::default();
    macro_rules! keep_only {
        ($($go:literal => $field:ident),* $(,)?) => {
            $(if keep.names.contains($go) { out.$field = std::mem::take(&mut s.$field); })*
        };
    }
    keep_only! {
        "Volumes" => volumes,
        "InitContainers" => init_containers,
        "Containers" => containers,
        "EphemeralContainers" => ephemeral_containers,
        "RestartPolicy" => restart_policy,
        "TerminationGracePeriodSeconds" => termination_grace_period_seconds,
        "ActiveDeadlineSeconds" => active_deadline_seconds,
        "DNSPolicy" => dns_policy,
        "NodeSelector" => node_selector,
        "ServiceAccountName" => service_account_name,
        "DeprecatedServiceAccount" => service_account,
        "AutomountServiceAccountToken" => automount_service_account_token,
        "NodeName" => node_name,
        "HostNetwork" => host_network,
        "HostPID" => host_pid,
        "HostIPC" => host_ipc,
        "ShareProcessNamespace" => share_process_namespace,
        "SecurityContext" => security_context,
        "ImagePullSecrets" => image_pull_secrets,
        "Hostname" => hostname,
        "Subdomain" => subdomain,
        "Affinity" => affinity,
        "SchedulerName" => scheduler_name,
        "Tolerations" => tolerations,
        "HostAliases" => host_aliases,
        "PriorityClassName" => priority_class_name,
        "Priority" => priority,
        "DNSConfig" => dns_config,
        "ReadinessGates" => readiness_gates,
        "RuntimeClassName" => runtime_class_name,
        "EnableServiceLinks" => enable_service_links,
        "PreemptionPolicy" => preemption_policy,
        "Overhead" => overhead,
        "TopologySpreadConstraints" => topology_spread_constraints,
        "SetHostnameAsFQDN" => set_hostname_as_fqdn,
        "OS" => os,
        "HostUsers" => host_users,
        "SchedulingGates" => scheduling_gates,
        "ResourceClaims" => resource_claims,
        "Resources" => resources,
    }
    *s = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Template;

    fn fields(src: &str) -> String {
        Template::parse("t", src).unwrap().pod_fields().to_string()
    }

    #[test]
    fn field_paths() {
        assert_eq!(
            fields("ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"),
            "PodMeta{Namespace} PodSpec{ServiceAccountName}"
        );
        assert_eq!(fields("{{ .TrustDomain }}/{{ .NodeMeta.UID }}"), "PodMeta{} PodSpec{}");
        assert_eq!(fields(r#"{{ index .PodMeta.Labels "app" }}"#), "PodMeta{Labels} PodSpec{}");
        assert_eq!(fields("{{ .PodMeta.GetAnnotations }}"), "PodMeta{Annotations} PodSpec{}");
        assert_eq!(fields("{{ $.PodSpec.NodeName }}"), "PodMeta{} PodSpec{NodeName}");
        assert_eq!(fields("{{ range .PodSpec.Containers }}{{ .Image }}{{ end }}"), "PodMeta{} PodSpec{Containers}");
        assert_eq!(fields("{{ (index .PodSpec.Containers 0).Name }}"), "PodMeta{} PodSpec{Containers}");
        assert_eq!(
            fields(r#"{{ define "x" }}{{ .PodSpec.Hostname }}{{ end }}{{ template "x" $ }}"#),
            "PodMeta{} PodSpec{Hostname}"
        );
        assert_eq!(
            fields(r#"{{ define "x" }}{{ .PodMeta.Name }}{{ end }}{{ template "x" . }}"#),
            "PodMeta{Name} PodSpec{}"
        );
        assert_eq!(
            fields("{{ $x := . }}{{ $x.PodSpec.NodeName }}{{ with $y := $ }}{{ $y.PodMeta.UID }}{{ end }}"),
            "PodMeta{UID} PodSpec{NodeName}"
        );
        assert_eq!(
            fields(r#"{{ if eq .PodMeta.Name "a" }}{{ .PodSpec.Subdomain }}{{ else }}{{ .PodMeta.UID }}{{ end }}"#),
            "PodMeta{Name,UID} PodSpec{Subdomain}"
        );
    }

    #[test]
    fn whole_structs_when_they_may_escape() {
        assert_eq!(fields("{{ with .PodSpec }}{{ .NodeName }}{{ end }}"), "PodMeta{} PodSpec*");
        assert_eq!(fields("{{ $s := .PodMeta }}{{ $s.Name }}"), "PodMeta* PodSpec{}");
        assert_eq!(fields("{{ .PodSpec.String }}"), "PodMeta{} PodSpec*");
        assert_eq!(fields("{{ .PodMeta.DeepCopy.Name }}"), "PodMeta* PodSpec{}");
        assert_eq!(fields("{{ . }}"), "PodMeta* PodSpec*");
        assert_eq!(fields("{{ with $x := . }}{{ $x }}{{ end }}"), "PodMeta* PodSpec*");
        assert_eq!(fields(r#"{{ printf "%v" $ }}"#), "PodMeta* PodSpec*");
        assert_eq!(fields("{{ (.PodSpec).NodeName }}"), "PodMeta{} PodSpec*");
    }

    #[test]
    fn union_and_cover() {
        let a = PodFields::of(["PodMeta.Labels", "PodSpec.NodeName"]);
        let mut b = PodFields::of(["PodSpec.Containers"]);
        assert!(!a.covers(&b) && !b.covers(&a));
        b.union(&a);
        assert!(b.covers(&a));
        assert_eq!(b.to_string(), "PodMeta{Labels} PodSpec{Containers,NodeName}");
        assert!(PodFields::all().covers(&b));
        assert!(!b.covers(&PodFields::all()));
        assert!(b.covers(&PodFields::default()));
    }

    /// Whatever the analysis keeps, rendering the trimmed pod gives what the whole pod
    /// gives, for every field the synthetic data sets.
    #[test]
    fn trimmed_data_renders_the_same() {
        let full = crate::TemplateData::synthetic("example.org", "c", "cluster.local");
        let srcs = [
            "{{ .PodMeta.Namespace }}/{{ .PodSpec.ServiceAccountName }}/{{ .PodMeta.Labels }}",
            "{{ range .PodSpec.Containers }}{{ .Name }}={{ .Image }};{{ end }}",
            r#"{{ index .PodMeta.Annotations "a" }} {{ .PodMeta.GetUID }} {{ .PodSpec.NodeName }}"#,
            "{{ .PodMeta.CreationTimestamp }} {{ len .PodSpec.Volumes }} {{ .PodSpec.Hostname }}.{{ .PodSpec.Subdomain }}",
            "{{ .PodMeta.OwnerReferences }}",
        ];
        for src in srcs {
            let t = Template::parse("t", src).unwrap();
            let keep = t.pod_fields();
            let mut meta = full.pod_meta.as_deref().unwrap().clone();
            let mut spec = full.pod_spec.as_deref().unwrap().clone();
            keep.retain_meta(&mut meta);
            keep.retain_spec(&mut spec);
            assert_ne!(&spec, full.pod_spec.as_deref().unwrap(), "{src}: something was dropped");
            let trimmed = crate::TemplateData {
                pod_meta: Some(std::borrow::Cow::Owned(meta)),
                pod_spec: Some(std::borrow::Cow::Owned(spec)),
                ..full.clone()
            };
            assert_eq!(t.render(&trimmed), t.render(&full), "{src}");
        }
    }

    #[test]
    fn retain_drops_the_rest() {
        let full = crate::TemplateData::synthetic("example.org", "c", "cluster.local");
        let mut spec = full.pod_spec.as_deref().unwrap().clone();
        PodFields::of(["PodSpec.NodeName"]).retain_spec(&mut spec);
        assert_eq!(
            spec,
            PodSpec { node_name: full.pod_spec.as_deref().unwrap().node_name.clone(), ..Default::default() }
        );
        let mut meta = full.pod_meta.as_deref().unwrap().clone();
        PodFields::of(["PodMeta.Labels", "PodMeta.UID"]).retain_meta(&mut meta);
        let orig = full.pod_meta.as_deref().unwrap();
        assert_eq!(meta, ObjectMeta { labels: orig.labels.clone(), uid: orig.uid.clone(), ..Default::default() });
    }
}
