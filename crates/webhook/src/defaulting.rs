//! Defaulting (the mutating paths). Only defaults that make implicit behaviour explicit;
//! the reasoning for each is in the crate README ("Defaulting"). In short:
//!
//! 1. `spec.className` is **not** defaulted unless the install opts in
//!    ([`crate::AdmissionSettings::default_class_name`]), and then only when the install has
//!    a className, `watchClassless` is false and the object has no class. Stamping a class
//!    always changes which installs act on an object, so it is never on by default.
//! 2. The label `spire.spiffe.io/class-name` mirrors `spec.className` (what the SPIRE helm
//!    chart writes on its own objects, and what a label-filtered cache selects on): added
//!    when absent, kept in step on UPDATE when it mirrored the old class, never overwritten
//!    when someone set it to something else (a warning says so).
//!
//! The patch is `json_patch::diff` of the object before and after, on the raw JSON, so
//! fields this crate does not model are untouched. Unchanged object ⇒ no patch.

use kube::core::DynamicObject;
use serde_json::Value;

use crate::AdmissionSettings;
use crate::admission::{CrdKind, Decision};

pub(crate) fn default_object(
    settings: &AdmissionSettings,
    _kind: CrdKind,
    object: &DynamicObject,
    old: Option<&DynamicObject>,
) -> Decision {
    let original = match serde_json::to_value(object) {
        Ok(v) => v,
        Err(err) => return Decision::bad_request(format!("encoding object: {err}")),
    };
    let mut defaulted = original.clone();
    let mut warnings = Vec::new();
    apply_defaults(settings, &mut defaulted, old, &mut warnings);
    let patch = json_patch::diff(&original, &defaulted);
    Decision { denial: None, warnings, patch: (!patch.0.is_empty()).then_some(patch) }
}

fn spec_class(obj: &Value) -> &str {
    obj.pointer("/spec/className").and_then(Value::as_str).unwrap_or("")
}

fn label_class(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/labels").and_then(|l| l.get(scm_api::CLASS_NAME_LABEL)).and_then(Value::as_str)
}

fn apply_defaults(
    settings: &AdmissionSettings,
    obj: &mut Value,
    old: Option<&DynamicObject>,
    warnings: &mut Vec<String>,
) {
    // 1. spec.className (opt-in; see module docs and README).
    if settings.default_class_name
        && !settings.class_name.is_empty()
        && !settings.watch_classless
        && spec_class(obj).is_empty()
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("className".into(), Value::String(settings.class_name.clone()));
    }

    // 2. The class-name label mirrors spec.className.
    let class = spec_class(obj).to_owned();
    let label = label_class(obj).map(str::to_owned);
    let old_value = old.and_then(|o| serde_json::to_value(o).ok());
    let old_mirrored = old_value.as_ref().and_then(|o| {
        let (c, l) = (spec_class(o), label_class(o)?);
        (c == l).then(|| l.to_owned())
    });
    match (&label, class.is_empty()) {
        (None, false) => {
            if is_label_value(&class) {
                set_label(obj, Some(&class));
            }
        }
        (Some(l), _) if *l == class => {}
        (Some(l), _) => {
            // The label differs from the class. If it was our mirror of the old class and the
            // class changed in this update, follow the class; otherwise leave it alone.
            if old_mirrored.as_deref() == Some(l.as_str()) && (class.is_empty() || is_label_value(&class)) {
                set_label(obj, (!class.is_empty()).then_some(class.as_str()));
            } else {
                warnings.push(format!(
                    "metadata.labels[{}]={l:?} differs from spec.className={class:?}; a controller filtering by that label and one filtering by spec.className will disagree",
                    scm_api::CLASS_NAME_LABEL
                ));
            }
        }
        (None, true) => {}
    }
}

fn set_label(obj: &mut Value, value: Option<&str>) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
    if labels.is_null() {
        *labels = Value::Object(Default::default());
    }
    let Some(labels) = labels.as_object_mut() else {
        return;
    };
    match value {
        Some(v) => {
            labels.insert(scm_api::CLASS_NAME_LABEL.into(), Value::String(v.to_owned()));
        }
        None => {
            labels.remove(scm_api::CLASS_NAME_LABEL);
        }
    }
}

/// Kubernetes label value rules: ≤ 63 characters, alphanumerics with `-`, `_`, `.` inside.
pub(crate) fn is_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    v.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_values() {
        for ok in ["", "a", "spire-system-spire", "A.b_c-9"] {
            assert!(is_label_value(ok), "{ok}");
        }
        for bad in ["-a", "a-", "a b", "a/b", &"x".repeat(64)] {
            assert!(!is_label_value(bad), "{bad}");
        }
    }

    fn settings(class: &str, watch_classless: bool, default_class_name: bool) -> AdmissionSettings {
        let mut s = AdmissionSettings::new(scm_spiffe::TrustDomain::parse("example.org").unwrap(), "c");
        s.class_name = class.into();
        s.watch_classless = watch_classless;
        s.default_class_name = default_class_name;
        s
    }

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn class_name_default_is_opt_in_and_only_without_watch_classless() {
        let o = obj(
            json!({"apiVersion":"spire.spiffe.io/v1alpha1","kind":"ClusterSPIFFEID","metadata":{"name":"x"},"spec":{"spiffeIDTemplate":"t"}}),
        );
        let d = default_object(&settings("blue", false, false), CrdKind::ClusterSPIFFEID, &o, None);
        assert!(d.patch.is_none());
        let d = default_object(&settings("blue", true, true), CrdKind::ClusterSPIFFEID, &o, None);
        assert!(d.patch.is_none());
        let d = default_object(&settings("", false, true), CrdKind::ClusterSPIFFEID, &o, None);
        assert!(d.patch.is_none());
        let d = default_object(&settings("blue", false, true), CrdKind::ClusterSPIFFEID, &o, None);
        let patch = serde_json::to_value(d.patch.unwrap()).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op":"add","path":"/metadata/labels","value":{"spire.spiffe.io/class-name":"blue"}},
                {"op":"add","path":"/spec/className","value":"blue"}
            ])
        );
    }

    #[test]
    fn label_follows_class_on_update_only_when_it_was_a_mirror() {
        let s = settings("", false, false);
        let old =
            obj(json!({"metadata":{"name":"x","labels":{"spire.spiffe.io/class-name":"a"}},"spec":{"className":"a"}}));
        let new =
            obj(json!({"metadata":{"name":"x","labels":{"spire.spiffe.io/class-name":"a"}},"spec":{"className":"b"}}));
        let d = default_object(&s, CrdKind::ClusterStaticEntry, &new, Some(&old));
        assert_eq!(
            serde_json::to_value(d.patch.unwrap()).unwrap(),
            json!([{"op":"replace","path":"/metadata/labels/spire.spiffe.io~1class-name","value":"b"}])
        );
        // Someone set the label to something else deliberately: keep it, warn.
        let old =
            obj(json!({"metadata":{"name":"x","labels":{"spire.spiffe.io/class-name":"z"}},"spec":{"className":"a"}}));
        let new =
            obj(json!({"metadata":{"name":"x","labels":{"spire.spiffe.io/class-name":"z"}},"spec":{"className":"b"}}));
        let d = default_object(&s, CrdKind::ClusterStaticEntry, &new, Some(&old));
        assert!(d.patch.is_none());
        assert_eq!(d.warnings.len(), 1);
    }
}
