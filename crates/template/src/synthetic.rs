//! A made-up, fully populated pod and node for dry-running templates.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HostAlias, LocalObjectReference, NodeSpec, PodOS, PodReadinessGate,
    PodResourceClaim, PodSchedulingGate, PodSpec, Taint, Toleration, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use crate::TemplateData;

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn time(secs: i64) -> Option<Time> {
    Timestamp::from_second(secs).ok().map(Time)
}

pub(crate) fn data(trust_domain: &str, cluster_name: &str, cluster_domain: &str) -> TemplateData<'static> {
    let pod_meta = ObjectMeta {
        name: s("synthetic-7d9c8b6f4-x2x9q"),
        generate_name: s("synthetic-7d9c8b6f4-"),
        namespace: s("synthetic-namespace"),
        self_link: s("/api/v1/namespaces/synthetic-namespace/pods/synthetic-7d9c8b6f4-x2x9q"),
        uid: s("00000000-0000-4000-8000-000000000001"),
        resource_version: s("1"),
        generation: Some(1),
        creation_timestamp: time(1_704_164_645),
        deletion_timestamp: time(1_704_168_245),
        deletion_grace_period_seconds: Some(30),
        labels: map(&[("app", "synthetic"), ("app.kubernetes.io/name", "synthetic"), ("spiffe.io/spiffe-id", "true")]),
        annotations: map(&[("example.com/annotation", "value")]),
        owner_references: Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "synthetic-7d9c8b6f4".into(),
            uid: "00000000-0000-4000-8000-000000000002".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        finalizers: Some(vec!["example.com/finalizer".into()]),
        managed_fields: Some(vec![Default::default()]),
    };
    let container = Container {
        name: "synthetic".into(),
        image: s("registry.example.com/synthetic:1.0.0"),
        command: Some(vec!["/bin/synthetic".into()]),
        args: Some(vec!["--flag".into()]),
        working_dir: s("/"),
        ports: Some(vec![ContainerPort {
            name: s("http"),
            container_port: 8080,
            host_port: Some(18080),
            protocol: s("TCP"),
            host_ip: s("0.0.0.0"),
        }]),
        env: Some(vec![EnvVar { name: "SYNTHETIC".into(), value: s("true"), value_from: None }]),
        image_pull_policy: s("IfNotPresent"),
        termination_message_path: s("/dev/termination-log"),
        termination_message_policy: s("File"),
        restart_policy: s("Always"),
        stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(true),
        ..Default::default()
    };
    let pod_spec = PodSpec {
        volumes: Some(vec![Volume { name: "synthetic-volume".into(), ..Default::default() }]),
        init_containers: Some(vec![Container { name: "synthetic-init".into(), ..container.clone() }]),
        containers: vec![container],
        restart_policy: s("Always"),
        termination_grace_period_seconds: Some(30),
        active_deadline_seconds: Some(3600),
        dns_policy: s("ClusterFirst"),
        node_selector: map(&[("kubernetes.io/os", "linux")]),
        service_account_name: s("synthetic-service-account"),
        service_account: s("synthetic-service-account"),
        automount_service_account_token: Some(true),
        node_name: s("synthetic-node"),
        host_network: Some(true),
        host_pid: Some(true),
        host_ipc: Some(true),
        share_process_namespace: Some(true),
        image_pull_secrets: Some(vec![LocalObjectReference { name: "synthetic-secret".into() }]),
        hostname: s("synthetic-hostname"),
        subdomain: s("synthetic-subdomain"),
        scheduler_name: s("default-scheduler"),
        tolerations: Some(vec![Toleration {
            key: s("example.com/taint"),
            operator: s("Exists"),
            value: s("value"),
            effect: s("NoSchedule"),
            toleration_seconds: Some(300),
        }]),
        host_aliases: Some(vec![HostAlias { ip: "127.0.0.1".into(), hostnames: Some(vec!["synthetic.local".into()]) }]),
        priority_class_name: s("synthetic-priority"),
        priority: Some(1000),
        readiness_gates: Some(vec![PodReadinessGate { condition_type: "example.com/ready".into() }]),
        runtime_class_name: s("synthetic-runtime"),
        enable_service_links: Some(true),
        preemption_policy: s("PreemptLowerPriority"),
        set_hostname_as_fqdn: Some(true),
        os: Some(PodOS { name: "linux".into() }),
        host_users: Some(true),
        scheduling_gates: Some(vec![PodSchedulingGate { name: "example.com/gate".into() }]),
        resource_claims: Some(vec![PodResourceClaim {
            name: "synthetic-claim".into(),
            resource_claim_name: s("synthetic-claim"),
            resource_claim_template_name: None,
        }]),
        ..Default::default()
    };
    let node_meta = ObjectMeta {
        name: s("synthetic-node"),
        uid: s("00000000-0000-4000-8000-000000000003"),
        resource_version: s("1"),
        generation: Some(1),
        creation_timestamp: time(1_704_067_199),
        labels: map(&[("kubernetes.io/hostname", "synthetic-node"), ("kubernetes.io/os", "linux")]),
        annotations: map(&[("example.com/annotation", "value")]),
        finalizers: Some(vec!["example.com/finalizer".into()]),
        ..Default::default()
    };
    let node_spec = NodeSpec {
        pod_cidr: s("10.0.0.0/24"),
        pod_cidrs: Some(vec!["10.0.0.0/24".into(), "fd00::/64".into()]),
        provider_id: s("synthetic://synthetic-node"),
        unschedulable: Some(true),
        taints: Some(vec![Taint {
            key: "example.com/taint".into(),
            value: s("value"),
            effect: "NoSchedule".into(),
            time_added: time(1_704_067_199),
        }]),
        external_id: s("synthetic-external-id"),
        ..Default::default()
    };
    TemplateData {
        trust_domain: Cow::Owned(trust_domain.to_string()),
        cluster_name: Cow::Owned(cluster_name.to_string()),
        cluster_domain: Cow::Owned(cluster_domain.to_string()),
        pod_meta: Some(Cow::Owned(pod_meta)),
        pod_spec: Some(Cow::Owned(pod_spec)),
        node_meta: Some(Cow::Owned(node_meta)),
        node_spec: Some(Cow::Owned(node_spec)),
    }
}
