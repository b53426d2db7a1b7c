//! Spec parsing shared by `declare_entries` and the admission webhook, so the webhook
//! refuses exactly what the controller cannot process.

use std::fmt;
use std::time::Duration;

use scm_api::{ClusterSPIFFEIDSpec, ClusterStaticEntrySpec};
use scm_spiffe::{AdditionalAttributes, Entry, Selector, SpiffeId, TrustDomain};

use crate::duration::ttl_from_go_duration;
use crate::labels::{LabelSelectorMatcher, parse_label_selector};
use crate::tmpl::Template;
pub use crate::tmpl::{DNS_NAME_TEMPLATE_NAME, SPIFFE_ID_TEMPLATE_NAME, WORKLOAD_SELECTOR_TEMPLATE_NAME};

/// A problem with one field of a spec. `field` is a JSON path such as
/// `spec.workloadSelectorTemplates[1]`. Displays as `spec.x: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// A ClusterSPIFFEID spec with its templates parsed and selectors compiled
/// (upstream `ParsedClusterSPIFFEIDSpec`, plus `fallback` and `class_name`).
#[derive(Debug, Clone)]
pub struct ParsedClusterSPIFFEID {
    pub spiffe_id_template: Template,
    /// `None`: every namespace.
    pub namespace_selector: Option<LabelSelectorMatcher>,
    /// `None`: every pod of a selected namespace.
    pub pod_selector: Option<LabelSelectorMatcher>,
    /// Whole seconds.
    pub ttl: Duration,
    /// Whole seconds.
    pub jwt_ttl: Duration,
    pub federates_with: Vec<TrustDomain>,
    pub dns_name_templates: Vec<Template>,
    pub workload_selector_templates: Vec<Template>,
    pub admin: bool,
    pub downstream: bool,
    pub auto_populate_dns_names: bool,
    pub hint: String,
    pub class_name: String,
    pub fallback: bool,
    /// SPIRE >= 1.15's attributes; `None` when the spec sets neither (not managed).
    pub additional_attributes: Option<AdditionalAttributes>,
}

/// Upstream `ParseClusterSPIFFEIDSpec`, same order of checks. Additionally (upstream does
/// this while decoding the object) the TTLs must be Go durations; negative TTLs and TTLs
/// over `i32::MAX` seconds are refused.
pub fn parse_cluster_spiffe_id(spec: &ClusterSPIFFEIDSpec) -> Result<ParsedClusterSPIFFEID, FieldError> {
    if spec.spiffe_id_template.is_empty() {
        return Err(FieldError::new("spec.spiffeIDTemplate", "empty SPIFFEID template"));
    }
    let spiffe_id_template = Template::parse(SPIFFE_ID_TEMPLATE_NAME, &spec.spiffe_id_template)
        .map_err(|e| FieldError::new("spec.spiffeIDTemplate", format!("invalid SPIFFEID template: {e}")))?;
    let (namespace_selector, pod_selector) = parse_selectors(spec)?;
    let federates_with = parse_federates_with(spec.federates_with.as_deref())?;
    let dns_name_templates = parse_templates(
        spec.dns_name_templates.as_deref(),
        DNS_NAME_TEMPLATE_NAME,
        "spec.dnsNameTemplates",
        "invalid dnsNameTemplate value",
    )?;
    let workload_selector_templates = parse_templates(
        spec.workload_selector_templates.as_deref(),
        WORKLOAD_SELECTOR_TEMPLATE_NAME,
        "spec.workloadSelectorTemplates",
        "invalid workloadSelectorTemplates value",
    )?;
    let ttl = parse_ttl(spec.ttl.as_deref(), "spec.ttl")?;
    let jwt_ttl = parse_ttl(spec.jwt_ttl.as_deref(), "spec.jwtTtl")?;
    Ok(ParsedClusterSPIFFEID {
        spiffe_id_template,
        namespace_selector,
        pod_selector,
        ttl,
        jwt_ttl,
        federates_with,
        dns_name_templates,
        workload_selector_templates,
        admin: spec.admin.unwrap_or(false),
        downstream: spec.downstream.unwrap_or(false),
        auto_populate_dns_names: spec.auto_populate_dns_names.unwrap_or(false),
        hint: spec.hint.clone().unwrap_or_default(),
        class_name: spec.class_name.clone().unwrap_or_default(),
        fallback: spec.fallback.unwrap_or(false),
        additional_attributes: additional_attributes(spec.disable_x509_svid_prefetch, spec.jwt_svid_include_jti),
    })
}

/// The two label selectors of a ClusterSPIFFEID (`None` = everything). Used on its own to
/// find the pods a CR that fails to parse would select.
pub(crate) fn parse_selectors(
    spec: &ClusterSPIFFEIDSpec,
) -> Result<(Option<LabelSelectorMatcher>, Option<LabelSelectorMatcher>), FieldError> {
    let ns = spec
        .namespace_selector
        .as_ref()
        .map(parse_label_selector)
        .transpose()
        .map_err(|e| FieldError::new("spec.namespaceSelector", e))?;
    let pod = spec
        .pod_selector
        .as_ref()
        .map(parse_label_selector)
        .transpose()
        .map_err(|e| FieldError::new("spec.podSelector", e))?;
    Ok((ns, pod))
}

fn parse_federates_with(values: Option<&[String]>) -> Result<Vec<TrustDomain>, FieldError> {
    values
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            TrustDomain::parse(v).map_err(|e| {
                FieldError::new(format!("spec.federatesWith[{i}]"), format!("invalid federatesWith value: {e}"))
            })
        })
        .collect()
}

fn parse_templates(
    values: Option<&[String]>,
    name: &str,
    field: &str,
    what: &str,
) -> Result<Vec<Template>, FieldError> {
    values
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Template::parse(name, v).map_err(|e| FieldError::new(format!("{field}[{i}]"), format!("{what}: {e}")))
        })
        .collect()
}

fn parse_ttl(value: Option<&str>, field: &str) -> Result<Duration, FieldError> {
    ttl_from_go_duration(value.unwrap_or_default()).map_err(|e| FieldError::new(field, e))
}

/// Upstream `renderStaticEntry`: the spec taken literally. SPIFFE and parent IDs may be in
/// any trust domain. TTLs truncated to whole seconds.
pub fn parse_static_entry(spec: &ClusterStaticEntrySpec) -> Result<Entry, FieldError> {
    let spiffe_id = SpiffeId::parse(&spec.spiffe_id)
        .map_err(|e| FieldError::new("spec.spiffeID", format!("failed to parse SPIFFEID: {e}")))?;
    let parent_id = SpiffeId::parse(&spec.parent_id)
        .map_err(|e| FieldError::new("spec.parentID", format!("failed to parse ParentID: {e}")))?;
    let selectors = spec
        .selectors
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Selector::parse(s)
                .map_err(|e| FieldError::new(format!("spec.selectors[{i}]"), format!("failed to parse Selectors: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let federates_with = parse_federates_with(spec.federates_with.as_deref())?;
    let x509_svid_ttl = parse_ttl(spec.x509_svid_ttl.as_deref(), "spec.x509SVIDTTL")?;
    let jwt_svid_ttl = parse_ttl(spec.jwt_svid_ttl.as_deref(), "spec.jwtSVIDTTL")?;
    Ok(Entry {
        id: String::new(),
        spiffe_id,
        parent_id,
        selectors,
        x509_svid_ttl,
        jwt_svid_ttl,
        federates_with,
        admin: spec.admin.unwrap_or(false),
        downstream: spec.downstream.unwrap_or(false),
        dns_names: spec.dns_names.clone().unwrap_or_default(),
        hint: spec.hint.clone().unwrap_or_default(),
        store_svid: spec.store_svid.unwrap_or(false),
        additional_attributes: additional_attributes(spec.disable_x509_svid_prefetch, spec.jwt_svid_include_jti),
        revision: 0,
    })
}

/// The additional attributes a spec declares: none when it sets neither field, so that
/// what SPIRE holds (set by other tools) is left alone.
fn additional_attributes(
    disable_x509_svid_prefetch: Option<bool>,
    jwt_svid_include_jti: Option<bool>,
) -> Option<AdditionalAttributes> {
    if disable_x509_svid_prefetch.is_none() && jwt_svid_include_jti.is_none() {
        return None;
    }
    Some(AdditionalAttributes {
        disable_x509_svid_prefetch: disable_x509_svid_prefetch.unwrap_or(false),
        jwt_svid_include_jti: jwt_svid_include_jti.unwrap_or(false),
    })
}

/// Upstream `reconcileClass`: `(cr == "" && watchClassless) || cr == config`.
/// A missing className is `""`.
pub fn class_matches(class_name: Option<&str>, settings_class: &str, watch_classless: bool) -> bool {
    let cr = class_name.unwrap_or("");
    (cr.is_empty() && watch_classless) || cr == settings_class
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn base() -> ClusterSPIFFEIDSpec {
        ClusterSPIFFEIDSpec {
            spiffe_id_template: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn class_filter_all_combos() {
        // (cr className, config className, watchClassless, processed)
        let cases = [
            (None, "", false, true),
            (None, "", true, true),
            (Some(""), "", false, true),
            (Some("a"), "", false, false),
            (Some("a"), "", true, false),
            (None, "a", false, false),
            (None, "a", true, true),
            (Some(""), "a", true, true),
            (Some("a"), "a", false, true),
            (Some("a"), "a", true, true),
            (Some("b"), "a", true, false),
            (Some("b"), "a", false, false),
        ];
        for (cr, cfg, wc, want) in cases {
            assert_eq!(class_matches(cr, cfg, wc), want, "{cr:?} {cfg:?} {wc}");
        }
    }

    #[test]
    fn cluster_spiffe_id_parse_errors() {
        let bad_sel = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: "Bogus".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let cases: Vec<(ClusterSPIFFEIDSpec, &str)> = vec![
            (ClusterSPIFFEIDSpec::default(), "spec.spiffeIDTemplate"),
            (ClusterSPIFFEIDSpec { spiffe_id_template: "{{ nosuchfunc }}".into(), ..base() }, "spec.spiffeIDTemplate"),
            (ClusterSPIFFEIDSpec { namespace_selector: Some(bad_sel.clone()), ..base() }, "spec.namespaceSelector"),
            (ClusterSPIFFEIDSpec { pod_selector: Some(bad_sel), ..base() }, "spec.podSelector"),
            (
                ClusterSPIFFEIDSpec { federates_with: Some(vec!["ok.org".into(), "Bad.org".into()]), ..base() },
                "spec.federatesWith[1]",
            ),
            (
                ClusterSPIFFEIDSpec { dns_name_templates: Some(vec!["a".into(), "{{ x".into()]), ..base() },
                "spec.dnsNameTemplates[1]",
            ),
            (
                ClusterSPIFFEIDSpec { workload_selector_templates: Some(vec!["{{ nofunc }}".into()]), ..base() },
                "spec.workloadSelectorTemplates[0]",
            ),
            (ClusterSPIFFEIDSpec { ttl: Some("1 hour".into()), ..base() }, "spec.ttl"),
            (ClusterSPIFFEIDSpec { jwt_ttl: Some("-1s".into()), ..base() }, "spec.jwtTtl"),
        ];
        for (spec, field) in cases {
            let err = parse_cluster_spiffe_id(&spec).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.to_string().starts_with(&format!("{field}: ")));
        }
    }

    #[test]
    fn cluster_spiffe_id_parse_ok() {
        let spec = ClusterSPIFFEIDSpec {
            ttl: Some("1h".into()),
            jwt_ttl: Some("90.5s".into()),
            federates_with: Some(vec!["a.org".into(), "b.org".into()]),
            admin: Some(true),
            hint: Some("h".into()),
            fallback: Some(true),
            class_name: Some("c".into()),
            ..base()
        };
        let p = parse_cluster_spiffe_id(&spec).unwrap();
        assert_eq!(p.ttl, Duration::from_secs(3600));
        assert_eq!(p.jwt_ttl, Duration::from_secs(90));
        assert_eq!(p.federates_with.len(), 2);
        assert!(p.admin && !p.downstream && p.fallback);
        assert_eq!((p.hint.as_str(), p.class_name.as_str()), ("h", "c"));
        assert!(p.namespace_selector.is_none() && p.pod_selector.is_none());
    }

    #[test]
    fn static_entry_parse() {
        let spec = ClusterStaticEntrySpec {
            spiffe_id: "spiffe://other.org/workload".into(),
            parent_id: "spiffe://example.org/spire/server".into(),
            selectors: vec!["unix:uid:0".into()],
            store_svid: Some(true),
            x509_svid_ttl: Some("1m30.9s".into()),
            dns_names: Some(vec!["b".into(), "a".into(), "b".into()]),
            ..Default::default()
        };
        let e = parse_static_entry(&spec).unwrap();
        assert_eq!(e.spiffe_id.as_str(), "spiffe://other.org/workload");
        assert_eq!(e.selectors, vec![Selector::new("unix", "uid:0")]);
        assert!(e.store_svid);
        assert_eq!(e.x509_svid_ttl, Duration::from_secs(90));
        assert_eq!(e.dns_names, vec!["b", "a", "b"]);

        let bad: Vec<(ClusterStaticEntrySpec, &str)> = vec![
            (ClusterStaticEntrySpec { spiffe_id: "nope".into(), ..spec.clone() }, "spec.spiffeID"),
            (ClusterStaticEntrySpec { parent_id: "".into(), ..spec.clone() }, "spec.parentID"),
            (
                ClusterStaticEntrySpec { selectors: vec!["a:b".into(), "novalue:".into()], ..spec.clone() },
                "spec.selectors[1]",
            ),
            (ClusterStaticEntrySpec { selectors: vec![":v".into()], ..spec.clone() }, "spec.selectors[0]"),
            (
                ClusterStaticEntrySpec { federates_with: Some(vec!["x y".into()]), ..spec.clone() },
                "spec.federatesWith[0]",
            ),
            (ClusterStaticEntrySpec { jwt_svid_ttl: Some("5".into()), ..spec.clone() }, "spec.jwtSVIDTTL"),
            (ClusterStaticEntrySpec { x509_svid_ttl: Some("-5s".into()), ..spec.clone() }, "spec.x509SVIDTTL"),
        ];
        for (s, field) in bad {
            assert_eq!(parse_static_entry(&s).unwrap_err().field, field);
        }
    }
}
