//! Compares every case in `testdata/cases.json` with the output of Go's real
//! `text/template` recorded in `testdata/expected.json` (see `gen/`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Node, Pod};
use scm_template::{ErrorKind, Template, TemplateData};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    id: String,
    name: String,
    template: String,
    data: String,
    /// Set for constructs this implementation deliberately does not reproduce: the
    /// render must then fail with `ErrorKind::Unsupported`.
    #[serde(default)]
    divergence: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expected {
    id: String,
    output: Option<String>,
    parse_error: Option<String>,
    exec_error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataSet {
    trust_domain: String,
    cluster_name: String,
    cluster_domain: String,
    pod: Option<Pod>,
    node: Node,
}

/// `SCM_TEMPLATE_TESTDATA` points the test at another fixture directory (used for
/// ad-hoc differential runs with generated cases).
fn testdata() -> PathBuf {
    match std::env::var_os("SCM_TEMPLATE_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata"),
    }
}

fn read<T: for<'de> Deserialize<'de>>(path: PathBuf) -> T {
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Go's JSON encoder replaces invalid UTF-8 with U+FFFD, as do we; nothing else to do.
fn check(case: &Case, want: &Expected, ds: &DataSet) -> Result<(), String> {
    let data = match &ds.pod {
        Some(pod) => {
            TemplateData::from_pod_and_node(&ds.trust_domain, &ds.cluster_name, &ds.cluster_domain, pod, &ds.node)
        }
        None => TemplateData::from_node(&ds.trust_domain, &ds.cluster_name, &ds.cluster_domain, &ds.node),
    };
    let parsed = Template::parse(&case.name, &case.template);
    if let Some(want_err) = &want.parse_error {
        return match parsed {
            Ok(_) => Err(format!("parse succeeded, Go failed with {want_err:?}")),
            Err(e) if e.kind() != ErrorKind::Parse => Err(format!("wrong error kind {:?}: {e}", e.kind())),
            Err(e) if e.message() != want_err => Err(format!("parse error\n   got: {e}\n  want: {want_err}")),
            Err(_) => Ok(()),
        };
    }
    let tmpl = parsed.map_err(|e| format!("parse failed, Go parsed it: {e}"))?;
    let got = tmpl.render(&data);
    if let Some(reason) = &case.divergence {
        return match got {
            Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
            other => Err(format!("documented divergence ({reason}) must fail as Unsupported, got {other:?}")),
        };
    }
    match (got, &want.output, &want.exec_error) {
        (Ok(out), Some(w), _) if &out == w => Ok(()),
        (Ok(out), Some(w), _) => Err(format!("output\n   got: {out:?}\n  want: {w:?}")),
        (Ok(out), None, Some(w)) => Err(format!("rendered {out:?}, Go failed with {w:?}")),
        (Err(e), _, Some(w)) if e.kind() == ErrorKind::Exec && e.message() == w => Ok(()),
        (Err(e), _, Some(w)) => Err(format!("exec error ({:?})\n   got: {e}\n  want: {w}", e.kind())),
        (Err(e), Some(w), _) => Err(format!("render failed ({:?}): {e}\n  Go rendered {w:?}", e.kind())),
        (res, None, None) => Err(format!("expected.json entry is empty; got {res:?}")),
    }
}

/// The pod cache keeps only the fields `Template::pod_fields` names: rendering from a
/// pod trimmed that way must give exactly what the whole pod gives, output or error.
fn check_trimmed(case: &Case, ds: &DataSet) -> Result<(), String> {
    let (Some(pod), Ok(tmpl)) = (&ds.pod, Template::parse(&case.name, &case.template)) else {
        return Ok(());
    };
    let keep = tmpl.pod_fields();
    let mut trimmed = pod.clone();
    keep.retain_meta(&mut trimmed.metadata);
    if let Some(spec) = trimmed.spec.as_mut() {
        keep.retain_spec(spec);
    }
    let render = |p: &Pod| {
        tmpl.render(&TemplateData::from_pod_and_node(
            &ds.trust_domain,
            &ds.cluster_name,
            &ds.cluster_domain,
            p,
            &ds.node,
        ))
    };
    let (full, cut) = (render(pod), render(&trimmed));
    if full != cut {
        return Err(format!("trimmed to {keep}: got {cut:?}, the whole pod gives {full:?}"));
    }
    Ok(())
}

#[test]
fn matches_go_text_template() {
    let cases: Vec<Case> = read(testdata().join("cases.json"));
    let expected: Vec<Expected> = read(testdata().join("expected.json"));
    let expected: BTreeMap<String, Expected> = expected.into_iter().map(|e| (e.id.clone(), e)).collect();
    let mut sets: BTreeMap<String, DataSet> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let Some(want) = expected.get(&case.id) else {
            failures.push(format!("{}: missing from expected.json (re-run the Go generator)", case.id));
            continue;
        };
        let ds = sets
            .entry(case.data.clone())
            .or_insert_with(|| read(testdata().join("data").join(format!("{}.json", case.data))));
        if let Err(msg) = check(case, want, ds).and_then(|()| check_trimmed(case, ds)) {
            failures.push(format!("{} [{}] {:?}: {msg}", case.id, case.name, case.template));
        }
    }
    assert!(cases.len() >= 60 || std::env::var_os("SCM_TEMPLATE_TESTDATA").is_some(), "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Go:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
