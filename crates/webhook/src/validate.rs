//! Validation of the three kinds (the validating paths).
//!
//! First the parsers the reconcilers use (`scm_core::parse_cluster_spiffe_id`,
//! `scm_core::parse_static_entry`, `scm_federation::parse_federated_trust_domain`), so the webhook refuses exactly what the
//! controller could not process. Then, beyond upstream, each ClusterSPIFFEID template is
//! rendered against a synthetic pod, node and namespace (`TemplateData::synthetic`):
//!
//! - the SPIFFE ID must render, parse, and be in the configured trust domain;
//! - each workload selector must render to `type:value`;
//! - each DNS name template must render; a result that is not a DNS name is a warning
//!   (upstream stopped validating them in #180, SPIRE rejects bad ones per entry).
//!
//! A synthetic pod cannot know label or annotation values, and a template may index into
//! lists the synthetic pod leaves empty. So when a template reads a map (`.Labels`,
//! `.Annotations`, `index`) or fails only on data (index out of range, nil pointer), a
//! bad *rendered value* is a warning, not a denial; unknown fields, unknown functions,
//! syntax errors and a wrong trust domain are always denied.
//!
//! Warnings (AdmissionResponse.warnings) for legal but suspicious input: a className this
//! install does not process; a TTL under a minute; DNS names that are not DNS names; a
//! ClusterStaticEntry SPIFFE ID or parent ID outside the trust domain (SPIRE 1.13 refuses
//! both, "is not a member of trust domain"); an https_spiffe federation without a
//! bootstrap bundle.

use std::time::Duration;

use kube::core::DynamicObject;
use scm_api::{ClusterFederatedTrustDomainSpec, ClusterSPIFFEIDSpec, ClusterStaticEntrySpec};
use scm_spiffe::{BundleEndpointProfile, Selector, SpiffeId};
use serde_json::Value;

use crate::AdmissionSettings;
use crate::admission::{CrdKind, Decision};

/// A problem with one field (`field` is a JSON path like `spec.selectors[1]`): the
/// parsers' own type, so the webhook and the reconciler report the same thing.
pub use scm_core::FieldError;

/// The parsers name fields relative to the spec; admission names them from the object.
fn in_spec(mut e: FieldError) -> FieldError {
    if !(e.field.starts_with("spec") || e.field.starts_with("metadata")) {
        e.field = format!("spec.{}", e.field);
    }
    e
}

/// Errors (deny) and warnings (allow, tell the user) for one object.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

impl Verdict {
    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }
    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
}

pub(crate) fn validate_object(
    settings: &AdmissionSettings,
    kind: CrdKind,
    object: &DynamicObject,
    name: &str,
) -> Decision {
    let Some(spec) = object.data.get("spec") else {
        return Decision::forbidden(format!("{} {name:?} is invalid: spec: Required value", kind.as_str()));
    };
    let verdict = match kind {
        CrdKind::ClusterSPIFFEID => {
            decode::<ClusterSPIFFEIDSpec>(spec).map(|s| validate_cluster_spiffe_id(settings, &s))
        }
        CrdKind::ClusterStaticEntry => {
            decode::<ClusterStaticEntrySpec>(spec).map(|s| validate_cluster_static_entry(settings, &s))
        }
        CrdKind::ClusterFederatedTrustDomain => precheck_profile_type(spec)
            .and_then(|()| decode::<ClusterFederatedTrustDomainSpec>(spec))
            .map(|s| validate_cluster_federated_trust_domain(settings, &s)),
    };
    let verdict = match verdict {
        Ok(v) => v,
        Err(Rejection::Field(e)) => Verdict { errors: vec![e], warnings: vec![] },
        Err(Rejection::Decode(msg)) => {
            return Decision::bad_request(format!("{} {name:?} could not be decoded: spec: {msg}", kind.as_str()));
        }
    };
    if verdict.errors.is_empty() {
        Decision { denial: None, warnings: verdict.warnings, patch: None }
    } else {
        let errors: Vec<String> = verdict.errors.iter().map(ToString::to_string).collect();
        let mut d = Decision::forbidden(format!("{} {name:?} is invalid: {}", kind.as_str(), errors.join("; ")));
        d.warnings = verdict.warnings;
        d
    }
}

enum Rejection {
    Decode(String),
    Field(FieldError),
}

fn decode<T: serde::de::DeserializeOwned>(spec: &Value) -> Result<T, Rejection> {
    T::deserialize(spec).map_err(|e| Rejection::Decode(e.to_string()))
}

/// The profile type is an enum in the typed spec; name the field instead of failing the
/// decode with serde's text.
fn precheck_profile_type(spec: &Value) -> Result<(), Rejection> {
    match spec.pointer("/bundleEndpointProfile/type") {
        Some(Value::String(t)) if t == "https_spiffe" || t == "https_web" => Ok(()),
        Some(Value::String(t)) => Err(Rejection::Field(FieldError::new(
            "spec.bundleEndpointProfile.type",
            format!("unknown bundle endpoint profile type {t:?}; expected https_spiffe or https_web"),
        ))),
        _ => Ok(()), // absent or not a string: the decoder reports it
    }
}

// ------------------------------------------------------------------- ClusterSPIFFEID

pub fn validate_cluster_spiffe_id(settings: &AdmissionSettings, spec: &ClusterSPIFFEIDSpec) -> Verdict {
    let mut v = Verdict::default();
    class_warning(settings, spec.class_name.as_deref(), &mut v);
    let parsed = match scm_core::parse_cluster_spiffe_id(spec) {
        Ok(p) => p,
        Err(e) => {
            v.errors.push(in_spec(e));
            return v;
        }
    };
    ttl_warning("spec.ttl", parsed.ttl, &mut v);
    ttl_warning("spec.jwtTtl", parsed.jwt_ttl, &mut v);
    additional_attributes(settings, spec.disable_x509_svid_prefetch, spec.jwt_svid_include_jti, false, &mut v);

    let Some(data) = synthetic_data(settings) else {
        return v;
    };
    let td = &settings.trust_domain;

    // SPIFFE ID.
    let field = "spec.spiffeIDTemplate";
    let src = &spec.spiffe_id_template;
    match render(&parsed.spiffe_id_template, &data) {
        Err(e) => render_failure(field, src, &e, &mut v),
        Ok(rendered) => {
            match SpiffeId::parse(&rendered) {
                Ok(id) if id.is_member_of(td) => {}
                Ok(id) => v.error(
                    field,
                    format!(
                        "renders to {:?}, which is not in the trust domain {:?} (rendered against a synthetic pod)",
                        id.as_str(),
                        td.name()
                    ),
                ),
                Err(e) => {
                    let msg =
                        format!("renders to an invalid SPIFFE ID {rendered:?}: {e} (rendered against a synthetic pod)");
                    if reads_unknowable_data(src) {
                        v.warn(format!("{field}: {msg}; it reads labels or annotations, so pods with the right values may still render"));
                    } else if let Some(td_part) = rendered.strip_prefix("spiffe://").and_then(|r| r.split('/').next())
                        && !td_part.is_empty()
                        && td_part != td.name()
                        && !reads_unknowable_data(src)
                    {
                        v.error(field, format!("{msg}; the trust domain must be {:?}", td.name()));
                    } else {
                        v.error(field, msg);
                    }
                }
            }
        }
    }

    // Workload selectors.
    for (i, (tmpl, src)) in
        parsed.workload_selector_templates.iter().zip(spec.workload_selector_templates.iter().flatten()).enumerate()
    {
        let field = format!("spec.workloadSelectorTemplates[{i}]");
        match render(tmpl, &data) {
            Err(e) => render_failure(&field, src, &e, &mut v),
            Ok(rendered) => {
                if let Err(e) = Selector::parse(&rendered) {
                    let msg =
                        format!("renders to an invalid selector {rendered:?}: {e} (rendered against a synthetic pod)");
                    if reads_unknowable_data(src) {
                        v.warn(format!("{field}: {msg}"));
                    } else {
                        v.error(field, msg);
                    }
                }
            }
        }
    }

    // DNS names: render errors are errors; bad names only warnings.
    for (i, (tmpl, src)) in parsed.dns_name_templates.iter().zip(spec.dns_name_templates.iter().flatten()).enumerate() {
        let field = format!("spec.dnsNameTemplates[{i}]");
        match render(tmpl, &data) {
            Err(e) => render_failure(&field, src, &e, &mut v),
            Ok(rendered) => {
                if !is_dns_name(&rendered) {
                    v.warn(format!(
                        "{field}: renders to {rendered:?} for a synthetic pod, which is not a DNS name; SPIRE will refuse such entries"
                    ));
                }
            }
        }
    }
    v
}

type Data = scm_template::TemplateData<'static>;

fn synthetic_data(s: &AdmissionSettings) -> Option<Data> {
    Some(Data::synthetic(s.trust_domain.name(), &s.cluster_name, &s.cluster_domain))
}

/// Renders; errors carry whether they come from the template's shape or from data.
fn render(t: &scm_template::Template, data: &Data) -> Result<String, RenderError> {
    t.render(data).map_err(|e| RenderError {
        unsupported: e.kind() == scm_template::ErrorKind::Unsupported,
        over_budget: e.kind() == scm_template::ErrorKind::Budget,
        message: e.to_string(),
    })
}

struct RenderError {
    /// A construct this implementation's template engine cannot reproduce.
    unsupported: bool,
    /// The execution went over its budget (scm_template::Budget).
    over_budget: bool,
    message: String,
}

/// Templates whose output depends on values a synthetic pod cannot have.
fn reads_unknowable_data(src: &str) -> bool {
    src.contains(".Labels") || src.contains(".Annotations") || src.contains("index ") || src.contains("OwnerReferences")
}

/// Execution failures that depend on the pod's data rather than the template's shape.
fn is_data_dependent(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["index out of range", "out of range", "nil pointer", "error calling index", "nil map"]
        .iter()
        .any(|p| m.contains(p))
}

fn render_failure(field: &str, src: &str, e: &RenderError, v: &mut Verdict) {
    let message = &e.message;
    if e.over_budget {
        // The reconciler runs under the same budget: it would fail on every pod.
        v.error(field, format!("does not render within the execution budget: {message}"));
    } else if e.unsupported {
        // The controller renders with the same engine, so it would fail on every pod.
        v.error(field, format!("uses a template construct this implementation cannot render: {message}"));
    } else if is_data_dependent(message) && reads_unknowable_data(src) {
        v.warn(format!(
            "{field}: does not render for a synthetic pod ({message}); pods with the data it reads may still render"
        ));
    } else {
        v.error(field, format!("does not render: {message}"));
    }
}

// ------------------------------------------------------------------- ClusterStaticEntry

pub fn validate_cluster_static_entry(settings: &AdmissionSettings, spec: &ClusterStaticEntrySpec) -> Verdict {
    let mut v = Verdict::default();
    class_warning(settings, spec.class_name.as_deref(), &mut v);
    let entry = match scm_core::parse_static_entry(spec) {
        Ok(e) => e,
        Err(e) => {
            v.errors.push(in_spec(e));
            return v;
        }
    };
    if !entry.spiffe_id.is_member_of(&settings.trust_domain) {
        v.warn(format!(
            "spec.spiffeID {:?} is not in the trust domain {:?}; SPIRE only registers IDs of its own trust domain",
            entry.spiffe_id.as_str(),
            settings.trust_domain.name()
        ));
    }
    // Upstream admits IDs of any trust domain here, but SPIRE (checked against 1.13.3)
    // refuses both: "invalid parent ID: ... is not a member of trust domain ...".
    if !entry.parent_id.is_member_of(&settings.trust_domain) {
        v.warn(format!(
            "spec.parentID {:?} is not in the trust domain {:?}; SPIRE refuses entries whose parent ID is outside its trust domain",
            entry.parent_id.as_str(),
            settings.trust_domain.name()
        ));
    }
    ttl_warning("spec.x509SVIDTTL", entry.x509_svid_ttl, &mut v);
    ttl_warning("spec.jwtSVIDTTL", entry.jwt_svid_ttl, &mut v);
    additional_attributes(
        settings,
        spec.disable_x509_svid_prefetch,
        spec.jwt_svid_include_jti,
        entry.store_svid,
        &mut v,
    );
    for (i, name) in entry.dns_names.iter().enumerate() {
        if !is_dns_name(name) {
            v.warn(format!("spec.dnsNames[{i}]: {name:?} is not a DNS name; SPIRE will refuse the entry"));
        }
    }
    v
}

// ------------------------------------------------------------------- ClusterFederatedTrustDomain

pub fn validate_cluster_federated_trust_domain(
    settings: &AdmissionSettings,
    spec: &ClusterFederatedTrustDomainSpec,
) -> Verdict {
    let mut v = Verdict::default();
    class_warning(settings, spec.class_name.as_deref(), &mut v);
    let rel = match scm_federation::parse_federated_trust_domain(spec) {
        Ok(r) => r,
        Err(e) => {
            v.errors.push(in_spec(e));
            return v;
        }
    };
    if rel.trust_domain == settings.trust_domain {
        v.warn(format!(
            "spec.trustDomain {:?} is this SPIRE server's own trust domain; SPIRE does not federate with itself",
            rel.trust_domain.name()
        ));
    }
    if let BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } = &rel.bundle_endpoint_profile
        && rel.trust_domain_bundle.is_none()
        && !endpoint_spiffe_id.is_member_of(&settings.trust_domain)
    {
        v.warn(format!(
            "spec.trustDomainBundle is empty: SPIRE can only authenticate the https_spiffe endpoint {:?} if it already holds the bundle of {:?}",
            endpoint_spiffe_id.as_str(),
            endpoint_spiffe_id.trust_domain_name()
        ));
    }
    v
}

// ------------------------------------------------------------------- shared checks

/// SPIRE 1.15's entry attributes: refused when the server is known not to store them
/// (the probe has run), and `disableX509SVIDPrefetch` beside `storeSVID` (SPIRE refuses
/// that pair).
fn additional_attributes(
    settings: &AdmissionSettings,
    disable_x509_svid_prefetch: Option<bool>,
    jwt_svid_include_jti: Option<bool>,
    store_svid: bool,
    v: &mut Verdict,
) {
    if settings.spire_fields.get().is_some_and(|u| u.additional_attributes) {
        for (field, value) in [
            ("spec.disableX509SVIDPrefetch", disable_x509_svid_prefetch),
            ("spec.jwtSVIDIncludeJTI", jwt_svid_include_jti),
        ] {
            if value.is_some() {
                v.errors.push(FieldError::new(
                    field,
                    "this SPIRE server does not store it (it needs SPIRE Server 1.15 or later); remove the field",
                ));
            }
        }
    }
    if store_svid && disable_x509_svid_prefetch == Some(true) {
        v.errors.push(FieldError::new(
            "spec.disableX509SVIDPrefetch",
            "SPIRE refuses it on an entry with storeSVID (an X509-SVID that is stored must be prefetched)",
        ));
    }
}

fn class_warning(settings: &AdmissionSettings, class: Option<&str>, v: &mut Verdict) {
    let class = class.unwrap_or("");
    if scm_core::class_matches(Some(class), &settings.class_name, settings.watch_classless) {
        return;
    }
    let msg = if class.is_empty() {
        format!(
            "spec.className is empty and this install (className {:?}, watchClassless=false) only processes objects of its class; this controller will ignore the object",
            settings.class_name
        )
    } else if settings.class_name.is_empty() {
        format!(
            "spec.className {class:?} is set but this install has no className and processes only classless objects; this controller will ignore the object"
        )
    } else {
        format!(
            "spec.className {class:?} is not this install's class {:?}; this controller will ignore the object",
            settings.class_name
        )
    };
    v.warn(msg);
}

fn ttl_warning(field: &str, ttl: Duration, v: &mut Verdict) {
    if !ttl.is_zero() && ttl < Duration::from_secs(60) {
        v.warn(format!(
            "{field} is {}s: SVIDs this short-lived are rotated constantly and SPIRE may refuse TTLs below its minimum",
            ttl.as_secs()
        ));
    }
}

/// An X.509 SAN DNS name: labels of letters, digits and `-` (not at either end), 1..=63
/// characters each, ≤ 253 in total; a leading `*.` wildcard label is allowed.
pub fn is_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || name.len() > 253 {
        return false;
    }
    rest.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in ["a", "svc.ns.svc", "x-y.example.org", "*.example.org", "1.2.3.4"] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a b", "<no value>", "a.*.b", "*", "a_b", &"x".repeat(64)] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
