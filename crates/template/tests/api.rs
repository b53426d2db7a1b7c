//! API-level behaviour (the Go parity itself is covered by `golden.rs`).

use k8s_openapi::api::core::v1::{NodeSpec, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scm_template::{DEFAULT_PARENT_ID_TEMPLATE, ErrorKind, Template, TemplateData};

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

#[test]
fn template_is_shareable() {
    assert_send_sync_clone::<Template>();
    assert_send_sync_clone::<scm_template::TemplateError>();
    let t = Template::parse("spiffeIDTemplate", "x{{ .TrustDomain }}").unwrap();
    assert_eq!(t.name(), "spiffeIDTemplate");
    assert_eq!(t.source(), "x{{ .TrustDomain }}");
    let t2 = t.clone();
    let handle =
        std::thread::spawn(move || t2.render(&TemplateData::synthetic("example.org", "c", "cluster.local")).unwrap());
    assert_eq!(handle.join().unwrap(), "xexample.org");
}

#[test]
fn constructors() {
    let pod_meta = ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), ..Default::default() };
    let pod_spec = PodSpec { service_account_name: Some("sa".into()), ..Default::default() };
    let node_meta = ObjectMeta { name: Some("n".into()), uid: Some("node-uid".into()), ..Default::default() };
    let node_spec = NodeSpec::default();

    let t = Template::parse(
        "spiffeIDTemplate",
        "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
    )
    .unwrap();
    let data = TemplateData::for_pod("example.org", "c1", "", &pod_meta, &pod_spec, &node_meta, &node_spec);
    assert_eq!(t.render(&data).unwrap(), "spiffe://example.org/ns/ns/sa/sa");

    let parent = Template::parse("parentIDTemplate", DEFAULT_PARENT_ID_TEMPLATE).unwrap();
    let node_data = TemplateData::for_node("example.org", "c1", "", &node_meta, &node_spec);
    assert_eq!(parent.render(&node_data).unwrap(), "spiffe://example.org/spire/agent/k8s_psat/c1/node-uid");
    assert_eq!(parent.render(&data).unwrap(), "spiffe://example.org/spire/agent/k8s_psat/c1/node-uid");

    let err = t.render(&node_data).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exec);
    assert_eq!(
        err.to_string(),
        r#"template: spiffeIDTemplate:1:42: executing "spiffeIDTemplate" at <.PodMeta.Namespace>: nil pointer evaluating *v1.ObjectMeta.Namespace"#
    );
    let err = t.render(&data.clone().without_pod()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exec);
}

#[test]
fn error_kinds() {
    let e = Template::parse("dnsNameTemplate", "{{ lower .PodMeta.Name }}").unwrap_err();
    assert!(e.is_parse());
    assert_eq!(e.message(), r#"template: dnsNameTemplate:1: function "lower" not defined"#);

    let data = TemplateData::synthetic("example.org", "c", "");
    let e = Template::parse("t", "{{ .PodMeta.Nope }}").unwrap().render(&data).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exec);
    assert!(e.message().contains("can't evaluate field Nope in type *v1.ObjectMeta"), "{e}");

    let e = Template::parse("t", "{{ .PodMeta }}").unwrap().render(&data).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().starts_with(r#"template: t:1:3: executing "t" at <{{.PodMeta}}>: "#), "{e}");
}

#[test]
fn synthetic_data_is_fully_populated() {
    let data = TemplateData::synthetic("example.org", "demo", "cluster.local");
    for src in [
        "{{ .PodMeta.Name }}",
        "{{ .PodMeta.Namespace }}",
        "{{ .PodMeta.UID }}",
        "{{ .PodMeta.GenerateName }}",
        "{{ .PodMeta.Labels }}",
        "{{ .PodMeta.Annotations }}",
        "{{ .PodMeta.Finalizers }}",
        "{{ .PodMeta.CreationTimestamp }}",
        "{{ .PodMeta.DeletionTimestamp }}",
        "{{ .PodMeta.DeletionGracePeriodSeconds }}",
        "{{ (index .PodMeta.OwnerReferences 0).Name }}",
        "{{ .PodSpec.ServiceAccountName }}",
        "{{ .PodSpec.NodeName }}",
        "{{ .PodSpec.Hostname }}",
        "{{ .PodSpec.Subdomain }}",
        "{{ .PodSpec.NodeSelector }}",
        "{{ .PodSpec.Priority }}",
        "{{ .PodSpec.RuntimeClassName }}",
        "{{ (index .PodSpec.Containers 0).Name }}",
        "{{ (index .PodSpec.Containers 0).Image }}",
        "{{ (index (index .PodSpec.Containers 0).Ports 0).ContainerPort }}",
        "{{ (index (index .PodSpec.Containers 0).Env 0).Value }}",
        "{{ (index .PodSpec.InitContainers 0).Name }}",
        "{{ (index .PodSpec.Volumes 0).Name }}",
        "{{ (index .PodSpec.Tolerations 0).Key }}",
        "{{ .PodSpec.OS.Name }}",
        "{{ .NodeMeta.Name }}",
        "{{ .NodeMeta.UID }}",
        "{{ .NodeSpec.PodCIDR }}",
        "{{ .NodeSpec.PodCIDRs }}",
        "{{ .NodeSpec.ProviderID }}",
        "{{ (index .NodeSpec.Taints 0).Effect }}",
        "{{ .TrustDomain }}/{{ .ClusterName }}/{{ .ClusterDomain }}",
    ] {
        let out = Template::parse("t", src).unwrap().render(&data).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(
            !out.is_empty() && !out.contains("<no value>") && !out.contains("<nil>") && out != "[]" && out != "map[]",
            "{src} -> {out:?}"
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(30_000), ")".repeat(30_000));
    let e = Template::parse("t", &parens).unwrap_err();
    assert_eq!(e.message(), "template: t:1: max expression depth exceeded");

    let ifs = format!("{}x{}", "{{ if true }}".repeat(2_000), "{{ end }}".repeat(2_000));
    assert!(Template::parse("t", &ifs).unwrap_err().is_parse());

    let ok = format!("{}x{}", "{{ if true }}".repeat(150), "{{ end }}".repeat(150));
    let data = TemplateData::synthetic("example.org", "c", "");
    assert_eq!(Template::parse("t", &ok).unwrap().render(&data).unwrap(), "x");

    let recursive = r#"{{ define "r" }}{{ if true }}{{ template "r" . }}{{ end }}{{ end }}{{ template "r" . }}"#;
    let e = Template::parse("t", recursive).unwrap().render(&data).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exec);
    assert!(e.message().contains("exceeded maximum template depth"), "{e}");
}

/// Hostile templates end quickly with a budget error instead of running for ever or
/// taking the process's memory.
#[test]
fn execution_budget() {
    let data = TemplateData::synthetic("example.org", "c", "cluster.local");
    let bombs = [
        ("range over a huge int", "spiffe://example.org/{{range 2000000000}}aaaaaaaa{{end}}", "output longer than"),
        ("range over a huge int, writing nothing", "{{range 2000000000}}{{end}}", "range iterations"),
        ("nested ranges", "{{range 100000}}{{range 100000}}{{end}}{{end}}", "range iterations"),
        ("printf width", r#"{{printf "%0999999999d" 1}}"#, "printf width"),
        ("printf star width", r#"{{printf "%*d" 999999999 1}}"#, "printf width"),
        (
            "doubling a variable",
            r#"{{$x := "aaaaaaaaaaaaaaaa"}}{{range 40}}{{$x = printf "%s%s" $x $x}}{{end}}{{$x}}"#,
            "a value longer than",
        ),
        (
            "doubling with print",
            r#"{{$x := "aaaaaaaa"}}{{range 40}}{{$x = print $x $x}}{{end}}"#,
            "a value longer than",
        ),
        ("output", r#"{{range 9000}}{{printf "%0100d" 1}}{{end}}"#, "output longer than"),
        (
            "one printf reusing a big argument",
            &format!(r#"{{{{$x := printf "%060000d" 1}}}}{{{{printf "{}" $x}}}}"#, "%[1]s".repeat(2000)),
            "a value longer than",
        ),
        (
            "one printf of many widths",
            &format!(r#"{{{{printf "{}" 1}}}}"#, "%[1]060000d".repeat(2000)),
            "a value longer than",
        ),
        (
            "one print of many big arguments",
            &format!(r#"{{{{$x := printf "%060000d" 1}}}}{{{{print{}}}}}"#, " $x".repeat(5000)),
            "a value longer than",
        ),
        (
            "template calls fanning out (2^40 calls, no range, no output)",
            &(0..40)
                .map(|i| {
                    format!(
                        r#"{{{{define "a{i}"}}}}{{{{template "a{n}"}}}}{{{{template "a{n}"}}}}{{{{end}}}}"#,
                        n = i + 1
                    )
                })
                .chain(["{{define \"a40\"}}{{end}}{{template \"a0\"}}".to_string()])
                .collect::<String>(),
            "ran longer than",
        ),
        ("star precision", r#"{{printf "%.*f" 999999999 1.5}}"#, "printf width"),
    ];
    for (what, src, want) in bombs {
        let t = Template::parse("spiffeIDTemplate", src).unwrap();
        let started = std::time::Instant::now();
        let err = t.render(&data).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Budget, "{what}: {err}");
        assert!(err.message().starts_with("template: spiffeIDTemplate: execution budget exceeded: "), "{what}: {err}");
        assert!(err.message().contains(want), "{what}: {err}");
        // Not a timed assertion of speed: a sanity bound far above the budget's 100 ms.
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{what} took {:?}", started.elapsed());
    }
    // Time: a budget of nothing stops a long but small loop.
    let budget = scm_template::Budget { max_time: std::time::Duration::ZERO, ..Default::default() };
    let t = Template::parse("spiffeIDTemplate", "{{range 5000}}{{end}}").unwrap();
    let err = t.render_with(&data, &budget).unwrap_err();
    assert!(err.message().contains("ran longer than"), "{err}");
    // Digits outside a verb are text, not widths; a `*` that is text takes no argument.
    let ok = Template::parse("spiffeIDTemplate", r#"{{printf "spiffe://example.org/1234567/%s/*%d" "a" 99999999}}"#)
        .unwrap();
    assert_eq!(ok.render(&data).unwrap(), "spiffe://example.org/1234567/a/*99999999");
    // Found by fuzzing: an argument index past usize::MAX, then a verb.
    let t = Template::parse("t", r#"{{printf "%[222222222222222222222222222]d%d" 1}}"#).unwrap();
    assert!(t.render(&data).is_ok());
    // Ordinary templates are untouched.
    let ok = Template::parse("spiffeIDTemplate", "{{range 100}}{{end}}spiffe://{{ .TrustDomain }}").unwrap();
    assert_eq!(ok.render(&data).unwrap(), "spiffe://example.org");
    // A source too large is refused at parse.
    let huge = "x".repeat(scm_template::MAX_SOURCE_BYTES + 1);
    let err = Template::parse("spiffeIDTemplate", &huge).unwrap_err();
    assert!(err.is_parse() && err.message().contains("more than"), "{err}");
}
