//! Micro benchmark: building the data for a pod and rendering typical templates.
//!
//! `cargo run --release -p scm-template --example bench`

use std::hint::black_box;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use scm_template::{DEFAULT_PARENT_ID_TEMPLATE, Template, TemplateData};

const POD: &str = include_str!("../testdata/data/pod-basic.json");

fn main() {
    let v: serde_json::Value = serde_json::from_str(POD).expect("json");
    let pod: Pod = serde_json::from_value(v["pod"].clone()).expect("pod");
    let node: Node = serde_json::from_value(v["node"].clone()).expect("node");

    let cases = [
        (
            "spiffeIDTemplate",
            "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
        ),
        ("parentIDTemplate", DEFAULT_PARENT_ID_TEMPLATE),
        ("spiffeIDTemplate", r#"spiffe://{{ .TrustDomain }}/{{ index .PodMeta.Labels "app.kubernetes.io/name" }}"#),
        ("dnsNameTemplate", "{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.{{ .ClusterDomain }}"),
        ("workloadSelectorTemplate", "k8s:container-name:{{ (index .PodSpec.Containers 0).Name }}"),
        ("spiffeIDTemplate", r#"spiffe://{{ .TrustDomain }}/{{ printf "%s-%s" .PodMeta.Namespace .PodMeta.Name }}"#),
        (
            "spiffeIDTemplate",
            "{{ if .PodMeta.Labels.tier }}spiffe://{{ .TrustDomain }}/{{ .PodMeta.Labels.tier }}{{ else }}spiffe://{{ .TrustDomain }}/none{{ end }}",
        ),
    ];
    const N: u32 = 10_000;
    for (name, src) in cases {
        let t = Template::parse(name, src).expect("parses");
        // Warm up.
        for _ in 0..1000 {
            let data = TemplateData::from_pod_and_node("example.org", "demo", "cluster.local", &pod, &node);
            black_box(t.render(&data).expect("renders"));
        }
        let start = Instant::now();
        for _ in 0..N {
            let data = TemplateData::from_pod_and_node(
                black_box("example.org"),
                "demo",
                "cluster.local",
                black_box(&pod),
                &node,
            );
            black_box(t.render(&data).expect("renders"));
        }
        let per = start.elapsed().as_nanos() / u128::from(N);
        println!("{per:>7} ns/render (data + render, {N} renders)  {src}");
    }
    let start = Instant::now();
    for _ in 0..N {
        black_box(Template::parse("spiffeIDTemplate", black_box(cases[0].1)).expect("parses"));
    }
    println!("{:>7} ns/parse   {}", start.elapsed().as_nanos() / u128::from(N), cases[0].1);
}
