//! Kubernetes label selectors with `metav1.LabelSelectorAsSelector` semantics and validation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// From `matchLabels`: the label is present with exactly this value.
    Equals(String, String),
    /// The label is present and its value is one of these.
    In(String, Vec<String>),
    /// The label is absent, or present with a value not among these.
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        match self {
            Requirement::Equals(k, v) => get(k).is_some_and(|have| have == v),
            Requirement::In(k, vs) => get(k).is_some_and(|have| vs.iter().any(|v| v == have)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|have| !vs.iter().any(|v| v == have)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        }
    }
}

/// A parsed label selector: all requirements must hold. No requirements matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelectorMatcher {
    pub requirements: Vec<Requirement>,
}

impl LabelSelectorMatcher {
    /// Matches everything (an empty selector).
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// `metav1.LabelSelectorAsSelector` for a present selector: `matchLabels` become equality
/// requirements, `matchExpressions` In/NotIn/Exists/DoesNotExist. Validation as
/// `labels.NewRequirement`: keys are qualified names, values valid label values, In/NotIn
/// need values, Exists/DoesNotExist take none, unknown operators are refused.
/// The error names the offending sub-path (e.g. `matchExpressions[0].operator: ...`).
pub fn parse_label_selector(sel: &LabelSelector) -> Result<LabelSelectorMatcher, String> {
    let mut requirements = Vec::new();
    if let Some(match_labels) = &sel.match_labels {
        for (k, v) in match_labels {
            let path = format!("matchLabels[{k:?}]");
            validate_label_key(k).map_err(|e| format!("{path}: Invalid value: {k:?}: {e}"))?;
            validate_label_value(v).map_err(|e| format!("{path}: Invalid value: {v:?}: {e}"))?;
            requirements.push(Requirement::Equals(k.clone(), v.clone()));
        }
    }
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let path = format!("matchExpressions[{i}]");
        let values = expr.values.clone().unwrap_or_default();
        let key = expr.key.clone();
        validate_label_key(&key).map_err(|e| format!("{path}.key: Invalid value: {key:?}: {e}"))?;
        let req = match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(format!(
                        "{path}.values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                    ));
                }
                if expr.operator == "In" {
                    Requirement::In(key, values.clone())
                } else {
                    Requirement::NotIn(key, values.clone())
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(format!(
                        "{path}.values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                    ));
                }
                if expr.operator == "Exists" { Requirement::Exists(key) } else { Requirement::DoesNotExist(key) }
            }
            other => {
                return Err(format!("{path}.operator: {other:?} is not a valid label selector operator"));
            }
        };
        for (j, v) in values.iter().enumerate() {
            validate_label_value(v).map_err(|e| format!("{path}.values[{j}]: Invalid value: {v:?}: {e}"))?;
        }
        requirements.push(req);
    }
    Ok(LabelSelectorMatcher { requirements })
}

const QUALIFIED_NAME_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;

/// `validation.IsQualifiedName`.
fn validate_label_key(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Err("prefix part must be non-empty".into());
            }
            if prefix.len() > DNS1123_SUBDOMAIN_MAX {
                return Err(format!("prefix part must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
            }
            if !is_dns1123_subdomain(prefix) {
                return Err("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
            }
            name
        }
        _ => {
            return Err("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into());
        }
    };
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > QUALIFIED_NAME_MAX {
        return Err(format!("name part must be no more than {QUALIFIED_NAME_MAX} characters"));
    }
    if !is_qualified_name_part(name) {
        return Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// `validation.IsValidLabelValue`.
fn validate_label_value(v: &str) -> Result<(), String> {
    if v.len() > LABEL_VALUE_MAX {
        return Err(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        return Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let b = label.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty() && alnum(&b[0]) && alnum(&b[b.len() - 1]) && b.iter().all(|c| alnum(c) || *c == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn sel(ml: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: if ml.is_empty() { None } else { Some(labels(ml)) },
            match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
        }
    }

    #[test]
    fn operators() {
        let app_web = labels(&[("app", "web"), ("tier", "front")]);
        let app_db = labels(&[("app", "db")]);
        let none = BTreeMap::new();
        // (selector, matches app_web, matches app_db, matches no labels)
        let cases: Vec<(LabelSelector, bool, bool, bool)> = vec![
            (sel(&[], vec![]), true, true, true),
            (sel(&[("app", "web")], vec![]), true, false, false),
            (sel(&[("app", "web"), ("tier", "front")], vec![]), true, false, false),
            (sel(&[], vec![expr("app", "In", Some(&["web", "api"]))]), true, false, false),
            (sel(&[], vec![expr("app", "NotIn", Some(&["web"]))]), false, true, true),
            (sel(&[], vec![expr("tier", "Exists", None)]), true, false, false),
            (sel(&[], vec![expr("tier", "DoesNotExist", None)]), false, true, true),
            (sel(&[], vec![expr("tier", "DoesNotExist", Some(&[]))]), false, true, true),
            (sel(&[("app", "db")], vec![expr("tier", "DoesNotExist", None)]), false, true, false),
        ];
        for (i, (s, web, db, empty)) in cases.into_iter().enumerate() {
            let m = parse_label_selector(&s).unwrap();
            assert_eq!(m.matches(Some(&app_web)), web, "case {i} web");
            assert_eq!(m.matches(Some(&app_db)), db, "case {i} db");
            assert_eq!(m.matches(Some(&none)), empty, "case {i} empty");
            assert_eq!(m.matches(None), empty, "case {i} none");
        }
    }

    #[test]
    fn validation() {
        let bad: Vec<(LabelSelector, &str)> = vec![
            (sel(&[], vec![expr("app", "Equals", Some(&["x"]))]), "matchExpressions[0].operator"),
            (sel(&[], vec![expr("app", "In", None)]), "matchExpressions[0].values"),
            (sel(&[], vec![expr("app", "NotIn", Some(&[]))]), "matchExpressions[0].values"),
            (sel(&[], vec![expr("app", "Exists", Some(&["x"]))]), "matchExpressions[0].values"),
            (sel(&[], vec![expr("app", "DoesNotExist", Some(&["x"]))]), "matchExpressions[0].values"),
            (sel(&[], vec![expr("", "Exists", None)]), "matchExpressions[0].key"),
            (sel(&[], vec![expr("a b", "Exists", None)]), "matchExpressions[0].key"),
            (sel(&[], vec![expr("Bad_Prefix/x", "Exists", None)]), "matchExpressions[0].key"),
            (sel(&[], vec![expr("a/b/c", "Exists", None)]), "matchExpressions[0].key"),
            (sel(&[], vec![expr("/x", "Exists", None)]), "matchExpressions[0].key"),
            (
                sel(&[], vec![expr("ok", "Exists", None), expr("x", "In", Some(&["bad value"]))]),
                "matchExpressions[1].values[0]",
            ),
            (sel(&[("-bad", "v")], vec![]), "matchLabels"),
            (sel(&[("k", "v-")], vec![]), "matchLabels"),
            (sel(&[("k", &"v".repeat(64))], vec![]), "matchLabels"),
        ];
        for (s, want) in bad {
            let err = parse_label_selector(&s).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
        for ok in ["app", "example.com/app", "a.b-c_d", "k8s.io/x.y"] {
            assert!(parse_label_selector(&sel(&[(ok, "")], vec![])).is_ok(), "{ok}");
        }
    }
}
