//! `plan` and `explain` against the real peers: the controller binary runs the commands
//! with the test's configuration, against the kube-apiserver and the test's spire-server
//! (also as the kubectl plugin `kubectl-spire`, through the real kubectl). Each test
//! checks the commands wrote nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::entries::Fixture;
use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);

/// Runs the binary (or `program`) with `args`; (exit code, stdout, stderr).
fn run_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(program);
    cmd.args(args).env("KUBECONFIG", peers().env.get("KUBECONFIG")).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the tool");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tool(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().unwrap()]);
    run_program(&controller_bin(), &all, &[])
}

fn tool_json(config: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out, err) = tool(config, &all);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}\n{err}"));
    (code, v)
}

/// Saves a command's output under target/tooling-output/ (the README's examples are
/// taken from there).
fn keep(name: &str, text: &str) {
    let dir = root().join("target/tooling-output");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(name), text);
}

/// The same config file with `extra` appended (a config change the controller has not seen).
fn changed_config(fx: &Fixture, name: &str, edit: impl Fn(&str) -> String) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&fx.ctl.config_path).unwrap();
    let path = fx.ctl.dir.join(name);
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

async fn ids(fx: &Fixture) -> Vec<String> {
    let mut v: Vec<String> = fx.entries().await.into_iter().map(|e| format!("{}={:?}", e.id, e)).collect();
    v.sort();
    v
}

#[tokio::test]
async fn plan_in_sync_after_a_config_change_and_with_drift() {
    let fx = Fixture::new("tool-plan", "").await;
    fx.apply_cspiffeid("tool-plan-sa", json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"})).await;
    create_pod(&fx.client, &fx.ns, "web", &fx.node, "web", &[("app", "web")]).await;
    fx.wait_entries("the pod's entry", |e| e.len() == 1).await;

    // In sync.
    let (code, out, err) = tool(&fx.ctl.config_path, &["plan"]);
    keep("plan-in-sync.txt", &out);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("In sync: a pass would write nothing."), "{out}");
    assert!(out.contains("0 to create, 0 to update, 0 to delete; 1 in sync"), "{out}");
    let (code, v) = tool_json(&fx.ctl.config_path, &["plan"]);
    assert_eq!((code, v["inSync"].clone()), (0, json!(true)), "{v:#}");

    // Right after a config change: the namespace becomes ignored.
    let before = ids(&fx).await;
    let ignored = changed_config(&fx, "ignore.yaml", |t| format!("{t}ignoreNamespaces: [\"^{}$\"]\n", fx.ns));
    let (code, out, err) = tool(&ignored, &["plan"]);
    keep("plan-config-change.txt", &out);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("0 to create, 0 to update, 1 to delete"), "{out}");
    assert!(out.contains("(no object declares it)"), "{out}");
    assert!(out.contains(&format!("/ns/{}/sa/web", fx.ns)), "{out}");

    // Drift: the controller is stopped, then the object changes and a pod appears.
    let mut fx = fx;
    fx.ctl.stop();
    fx.apply_cspiffeid(
        "tool-plan-sa",
        json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
               "ttl": "1h", "dnsNameTemplates": ["{{ .PodMeta.Name }}.example"]}),
    )
    .await;
    create_pod(&fx.client, &fx.ns, "api", &fx.node, "api", &[("app", "api")]).await;
    let (code, out, err) = tool(&fx.ctl.config_path, &["plan"]);
    keep("plan-drift.txt", &out);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("1 to create, 1 to update, 0 to delete"), "{out}");
    assert!(out.contains("ClusterSPIFFEID tool-plan-sa"), "{out}");
    assert!(out.contains("x509SVIDTTL: 0s -> 3600s"), "{out}");
    assert!(out.contains("dnsNames: [] -> [\"web.example\"]"), "{out}");
    assert!(out.contains(&format!("+ create spiffe://example.org/ns/{}/sa/api", fx.ns)), "{out}");
    let (code, v) = tool_json(&fx.ctl.config_path, &["plan"]);
    assert_eq!(code, 2);
    let src = &v["entries"]["bySource"][0];
    assert_eq!(src["name"], "tool-plan-sa", "{v:#}");
    let fields: Vec<&str> =
        src["updates"][0]["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(fields, ["x509SVIDTTL", "dnsNames"]);

    // A bad configuration is an error (exit 1) naming the key.
    let bad = changed_config(&fx, "bad.yaml", |t| t.replace("trustDomain: example.org", "trustDomain: \"bad domain\""));
    let (code, _, err) = tool(&bad, &["plan"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("trustDomain"), "{err}");

    assert_eq!(ids(&fx).await, before, "plan wrote nothing to SPIRE");
}

#[tokio::test]
async fn plan_with_foreign_entries() {
    let fx = Fixture::new("tool-foreign", "entryIDPrefix: scm\n").await;
    fx.apply_cspiffeid("tool-foreign-sa", json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"})).await;
    create_pod(&fx.client, &fx.ns, "web", &fx.node, "web", &[("app", "web")]).await;
    fx.wait_entries("the pod's entry", |e| e.len() == 1 && e[0].id.starts_with("scm.")).await;

    // Entries made by hand, by another controller, and a join-token node entry.
    fx.spire.cli_ok(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/host",
        "-spiffeID",
        "spiffe://example.org/by-hand",
        "-selector",
        "unix:uid:1000",
    ]);
    fx.spire.cli_ok(&[
        "entry",
        "create",
        "-parentID",
        "spiffe://example.org/spire/agent/join_token/tok",
        "-spiffeID",
        "spiffe://example.org/node-1",
        "-selector",
        "spiffe_id:spiffe://example.org/spire/agent/join_token/tok",
    ]);
    let c = fx.spire.client().await;
    let mut other = scm_spiffe::Entry::new(
        scm_spiffe::SpiffeId::parse("spiffe://example.org/other-controller").unwrap(),
        scm_spiffe::SpiffeId::parse("spiffe://example.org/host").unwrap(),
        vec![scm_spiffe::Selector::new("unix", "uid:2000")],
    );
    other.id = "other.0001".into();
    let made = c.create_entries(&[other]).await.expect("create");
    assert!(made.iter().all(|r| r.is_ok()), "{made:?}");
    let before = ids(&fx).await;

    let (code, out, err) = tool(&fx.ctl.config_path, &["plan"]);
    keep("plan-foreign.txt", &out);
    assert_eq!(code, 0, "with entryIDPrefix the foreign entries are left alone: {out}\n{err}");
    assert!(out.contains("3 left alone"), "{out}");
    assert!(out.contains("spiffe://example.org/by-hand (foreign: its ID has no entryIDPrefix)"), "{out}");
    assert!(out.contains("other.0001 spiffe://example.org/other-controller (other prefix \"other.\""), "{out}");

    // The migration question: the same cluster with no entryIDPrefix would delete them,
    // all but the join-token entry.
    let no_prefix = changed_config(&fx, "no-prefix.yaml", |t| {
        format!("{}deletionGuard:\n  minEntries: 1\n", t.replace("entryIDPrefix: scm\n", ""))
    });
    let (code, out, err) = tool(&no_prefix, &["plan"]);
    keep("plan-foreign-no-prefix.txt", &out);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(out.contains("0 to create, 0 to update, 2 to delete; 1 in sync, 1 left alone"), "{out}");
    assert!(out.contains("spiffe://example.org/node-1 (join token entry)"), "{out}");
    assert!(out.contains("note: the deletion guard would hold these 2 deletes (of 3 owned entries)"), "{out}");
    let (_, v) = tool_json(&no_prefix, &["plan"]);
    let deleted: Vec<&str> =
        v["entries"]["deletes"].as_array().unwrap().iter().map(|d| d["entry"]["spiffeID"].as_str().unwrap()).collect();
    assert!(
        deleted.contains(&"spiffe://example.org/by-hand") && deleted.contains(&"spiffe://example.org/other-controller")
    );
    assert_eq!(v["entries"]["leftAlone"][0]["reason"], "JoinToken");
    assert_eq!(v["deletionGuard"]["wouldHold"], true, "{v:#}");

    assert_eq!(ids(&fx).await, before, "plan wrote nothing to SPIRE");
}

/// The code of `cr`'s verdict in an `explain pod -o json` answer ("Applies" when it applies).
fn verdict(v: &Value, cr: &str) -> String {
    let Some(x) = v["clusterSPIFFEIDs"].as_array().unwrap().iter().find(|x| x["name"] == cr) else {
        panic!("no verdict for {cr}: {v:#}");
    };
    if x["applies"] == true { "Applies".into() } else { x["reason"]["code"].as_str().unwrap().to_owned() }
}

fn reason<'a>(v: &'a Value, cr: &str) -> &'a Value {
    &v["clusterSPIFFEIDs"].as_array().unwrap().iter().find(|x| x["name"] == cr).unwrap()["reason"]
}

#[tokio::test]
async fn explain_every_reason() {
    let fx = Fixture::new("tool-explain", "ignoreNamespaces: [\"-ign$\"]\n").await;
    let (ns, class) = (fx.ns.clone(), fx.class.clone());
    let ign = format!("{ns}-ign");
    create_namespace(&fx.client, &ign, &[]).await;
    let both =
        json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns, ign]}]});
    let sa = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}";
    let app = |values: &[&str]| json!({"matchExpressions": [{"key": "app", "operator": "In", "values": values}]});
    let n = |s: &str| format!("{class}-{s}");
    fx.apply_cspiffeid(
        &n("sa"),
        json!({"spiffeIDTemplate": sa, "namespaceSelector": both, "podSelector": app(&["web", "pending", "ghost"])}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // a younger object: masked
    fx.apply_cspiffeid(&n("twin"), json!({"spiffeIDTemplate": sa, "podSelector": app(&["web"])})).await;
    fx.apply_cspiffeid(
        &n("nsel"),
        json!({"spiffeIDTemplate": sa, "namespaceSelector": {"matchLabels": {"team": "nobody"}}}),
    )
    .await;
    fx.apply_cspiffeid(&n("psel"), json!({"spiffeIDTemplate": sa, "podSelector": app(&["other"])})).await;
    fx.apply_cspiffeid(&n("fb"), json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/fallback/{{ .PodMeta.Name }}", "podSelector": app(&["web", "lonely"]), "fallback": true})).await;
    fx.apply_cspiffeid(
        &n("broken"),
        json!({"spiffeIDTemplate": "spiffe://other.test/{{ .PodMeta.Name }}", "podSelector": app(&["broken"])}),
    )
    .await;
    fx.apply_cspiffeid(&n("fed"), json!({"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/fed/{{ .PodMeta.Name }}", "podSelector": app(&["fed"]), "federatesWith": ["partner.test"]})).await;
    let mut other_class = fx.cspiffeid(&n("other-class"), json!({"spiffeIDTemplate": sa}));
    other_class["spec"]["className"] = json!("someone-else");
    apply_json(&fx.client, "clusterspiffeids", other_class).await;
    let mut classless = fx.cspiffeid(&n("classless"), json!({"spiffeIDTemplate": sa}));
    classless["spec"].as_object_mut().unwrap().remove("className");
    apply_json(&fx.client, "clusterspiffeids", classless).await;
    apply_json(
        &fx.client,
        "clusterfederatedtrustdomains",
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterFederatedTrustDomain", "metadata": {"name": n("partner")},
               "spec": {"className": class, "trustDomain": "partner.test", "bundleEndpointURL": "https://127.0.0.1:9/bundle",
                        "bundleEndpointProfile": {"type": "https_web"}}}),
    )
    .await;

    for (pod, node, label) in [
        ("web", fx.node.as_str(), "web"),
        ("lonely", fx.node.as_str(), "lonely"),
        ("pending", "", "pending"),
        ("ghost", "no-such-node", "ghost"),
        ("broken", fx.node.as_str(), "broken"),
        ("fed", fx.node.as_str(), "fed"),
        ("nobody", fx.node.as_str(), "nobody"),
    ] {
        create_pod(&fx.client, &ns, pod, node, pod, &[("app", label)]).await;
    }
    create_pod(&fx.client, &ign, "web", &fx.node, "web", &[("app", "web")]).await;
    // web (sa), lonely (fallback), and fed, written without partner.test (no bundle).
    fx.wait_entries("web's, lonely's and fed's entries", |e| e.len() == 3).await;
    let cfg = fx.ctl.config_path.clone();
    let before = ids(&fx).await;

    let (code, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/web")]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(verdict(&v, &n("sa")), "Applies");
    assert_eq!(verdict(&v, &n("twin")), "Masked");
    assert_eq!(reason(&v, &n("twin"))["winner"]["name"], n("sa"));
    assert_eq!(verdict(&v, &n("nsel")), "NamespaceNotSelected");
    assert_eq!(verdict(&v, &n("psel")), "PodNotSelected");
    assert_eq!(verdict(&v, &n("fb")), "FallbackSkipped");
    assert_eq!(reason(&v, &n("fb"))["by"], json!([n("sa"), n("twin")]));
    assert_eq!(verdict(&v, &n("other-class")), "ClassMismatch");
    assert!(reason(&v, &n("other-class"))["message"].as_str().unwrap().contains("\"someone-else\""));
    assert_eq!(verdict(&v, &n("classless")), "ClassMismatch");
    assert!(reason(&v, &n("classless"))["message"].as_str().unwrap().contains("watchClassless is false"));
    assert_eq!(v["entries"][0]["spire"]["state"], "InSync", "{v:#}");
    let (_, text, _) = tool(&cfg, &["explain", "pod", &format!("{ns}/web")]);
    keep("explain-selected.txt", &text);
    assert!(text.contains("SPIRE: in sync (entry "), "{text}");

    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ign}/web")]);
    assert_eq!(verdict(&v, &n("sa")), "NamespaceIgnored");
    assert_eq!(reason(&v, &n("sa"))["pattern"], "-ign$");
    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/pending")]);
    assert_eq!(verdict(&v, &n("sa")), "PodNotScheduled");
    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/ghost")]);
    assert_eq!(verdict(&v, &n("sa")), "NodeMissing");
    assert_eq!(reason(&v, &n("sa"))["node"], "no-such-node");
    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/lonely")]);
    assert_eq!(verdict(&v, &n("fb")), "Applies");
    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/broken")]);
    assert_eq!(verdict(&v, &n("broken")), "RenderFailed");
    assert_eq!(reason(&v, &n("broken"))["field"], "spec.spiffeIDTemplate");
    assert!(reason(&v, &n("broken"))["error"].as_str().unwrap().contains("other.test"), "{v:#}");
    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/fed")]);
    assert_eq!(verdict(&v, &n("fed")), "Applies");
    assert_eq!(v["entries"][0]["spire"]["state"], "InSync", "written without partner.test: {v:#}");
    assert_eq!(v["entries"][0]["missingBundles"], json!(["partner.test"]));
    let (_, text, _) = tool(&cfg, &["explain", "pod", &format!("{ns}/fed")]);
    keep("explain-no-bundle.txt", &text);
    assert!(text.contains("federatesWith partner.test: SPIRE holds no bundle"), "{text}");

    // The pod with no identity.
    let (code, text, err) = tool(&cfg, &["explain", "pod", "nobody", "-n", &ns]);
    keep("explain-no-identity.txt", &text);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("The pod has no identity"), "{text}");
    assert!(text.contains("Entries the pod should have: 0"), "{text}");
    let (_, v) = tool_json(&cfg, &["explain", "pod", &format!("{ns}/nobody")]);
    assert_eq!(v["hasIdentity"], false);

    // A pod that does not exist is an error.
    let (code, _, err) = tool(&cfg, &["explain", "pod", &format!("{ns}/nope")]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("pod {ns}/nope not found")), "{err}");

    // explain clusterspiffeid and trustdomain.
    let (code, text, err) = tool(&cfg, &["explain", "clusterspiffeid", &n("sa")]);
    keep("explain-clusterspiffeid.txt", &text);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains(&format!("namespace {ign} selected but ignored")), "{text}");
    assert!(text.contains(&format!("{ns}/pending: does not apply: the pod is not scheduled")), "{text}");
    let (_, text, _) = tool(&cfg, &["explain", "clusterspiffeid", &n("other-class")]);
    assert!(text.contains("not used by this controller: className \"someone-else\""), "{text}");
    let text = eventually(WAIT, "the relationship is created", || async {
        let (_, text, _) = tool(&cfg, &["explain", "trustdomain", &n("partner")]);
        text.contains("relationship in SPIRE: in sync").then_some(text)
    })
    .await;
    keep("explain-trustdomain.txt", &text);
    assert!(text.contains("bundle: SPIRE holds no bundle for it yet"), "{text}");
    let (code, text, _) = tool(&cfg, &["plan"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("ClusterSPIFFEID {}: SPIRE holds no bundle for federatesWith partner.test", n("fed"))),
        "{text}"
    );

    // As a kubectl plugin, through the real kubectl (found on PATH), with kubectl's flags.
    let bin_dir = fx.ctl.dir.join("plugin-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let link = bin_dir.join("kubectl-spire");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(controller_bin(), &link).unwrap();
    let (code, out, err) = run_program(
        &link,
        &["explain", "pod", "nobody", "-n", &ns, "--context", "admin", "--config", cfg.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("The pod has no identity"), "{out}");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let kubectl = std::path::PathBuf::from(peers().env.get("KUBECTL"));
    let (code, out, err) = run_program(
        &kubectl,
        &["spire", "explain", "pod", &format!("{ns}/web"), "--config", cfg.to_str().unwrap()],
        &[("PATH", &path)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("Pod {ns}/web")) && out.contains("applies ->"), "{out}");
    let (code, _, err) = run_program(&kubectl, &["spire"], &[("PATH", &path)]);
    assert_eq!(code, 1, "no subcommand: the plugin never starts the controller");
    assert!(err.contains("usage: kubectl spire"), "{err}");

    assert_eq!(ids(&fx).await, before, "explain wrote nothing to SPIRE");
}
