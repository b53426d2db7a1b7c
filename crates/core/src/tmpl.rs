//! The one place this crate touches the template engine.
//!
//! TEMPORARY: `scm-template` has not landed yet, so this is a tiny stand-in with the
//! announced API (`Template::parse`, `Template::render`, `TemplateData::{for_pod, for_node,
//! synthetic}`, `DEFAULT_PARENT_ID_TEMPLATE`). It understands `{{ .A.B }}` field paths and
//! `{{ index .X.Labels "k" }}` only. Replaced by `pub use scm_template::...` when it lands.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{NodeSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub const DEFAULT_PARENT_ID_TEMPLATE: &str =
    "spiffe://{{ .TrustDomain }}/spire/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.UID }}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TemplateError {}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Field(String),
    Index(String, String),
}

#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(name: &str, src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            parts.push(Part::Lit(rest[..start].to_owned()));
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(TemplateError(format!("template: {name}:1: unclosed action")));
            };
            let action = after[..end].trim();
            let words: Vec<&str> = action.split_whitespace().collect();
            match words.as_slice() {
                [field] if field.starts_with('.') => parts.push(Part::Field(field[1..].to_owned())),
                ["index", field, key] if field.starts_with('.') => {
                    parts.push(Part::Index(field[1..].to_owned(), key.trim_matches('"').to_owned()))
                }
                [f, ..] => {
                    return Err(TemplateError(format!("template: {name}:1: function {f:?} not defined")));
                }
                [] => return Err(TemplateError(format!("template: {name}:1: missing value for command"))),
            }
            rest = &after[end + 2..];
        }
        parts.push(Part::Lit(rest.to_owned()));
        Ok(Template { name: name.to_owned(), parts })
    }

    pub fn render(&self, data: &TemplateData) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field(path) => match data.values.get(path) {
                    Some(v) => out.push_str(v),
                    None if path.starts_with("PodMeta") && !data.has_pod => {
                        return Err(TemplateError(format!(
                            "template: {}:1: executing \"{}\" at <.{path}>: nil pointer evaluating *v1.ObjectMeta",
                            self.name, self.name
                        )));
                    }
                    None => out.push_str("<no value>"),
                },
                Part::Index(path, key) => {
                    if let Some(v) = data.values.get(&format!("{path}.{key}")) {
                        out.push_str(v);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    values: BTreeMap<String, String>,
    has_pod: bool,
}

impl TemplateData {
    pub fn synthetic(trust_domain: &str, cluster_name: &str, cluster_domain: &str) -> TemplateData {
        let mut values = BTreeMap::new();
        values.insert("TrustDomain".into(), trust_domain.into());
        values.insert("ClusterName".into(), cluster_name.into());
        values.insert("ClusterDomain".into(), cluster_domain.into());
        TemplateData { values, has_pod: false }
    }

    pub fn for_node(
        trust_domain: &str,
        cluster_name: &str,
        cluster_domain: &str,
        node_meta: &ObjectMeta,
        node_spec: &NodeSpec,
    ) -> TemplateData {
        let mut d = Self::synthetic(trust_domain, cluster_name, cluster_domain);
        add_meta(&mut d.values, "NodeMeta", node_meta);
        if let Some(id) = &node_spec.provider_id {
            d.values.insert("NodeSpec.ProviderID".into(), id.clone());
        }
        d
    }

    #[allow(clippy::too_many_arguments)]
    pub fn for_pod(
        trust_domain: &str,
        cluster_name: &str,
        cluster_domain: &str,
        pod_meta: &ObjectMeta,
        pod_spec: &PodSpec,
        node_meta: &ObjectMeta,
        node_spec: &NodeSpec,
    ) -> TemplateData {
        let mut d = Self::for_node(trust_domain, cluster_name, cluster_domain, node_meta, node_spec);
        d.has_pod = true;
        add_meta(&mut d.values, "PodMeta", pod_meta);
        d.values.insert(
            "PodSpec.ServiceAccountName".into(),
            pod_spec.service_account_name.clone().unwrap_or_default(),
        );
        d.values.insert("PodSpec.NodeName".into(), pod_spec.node_name.clone().unwrap_or_default());
        d
    }
}

fn add_meta(values: &mut BTreeMap<String, String>, prefix: &str, meta: &ObjectMeta) {
    values.insert(format!("{prefix}.Name"), meta.name.clone().unwrap_or_default());
    values.insert(format!("{prefix}.Namespace"), meta.namespace.clone().unwrap_or_default());
    values.insert(format!("{prefix}.UID"), meta.uid.clone().unwrap_or_default());
    for (k, v) in meta.labels.iter().flatten() {
        values.insert(format!("{prefix}.Labels.{k}"), v.clone());
    }
    for (k, v) in meta.annotations.iter().flatten() {
        values.insert(format!("{prefix}.Annotations.{k}"), v.clone());
    }
}
