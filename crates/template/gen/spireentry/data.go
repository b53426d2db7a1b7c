// Package spireentry mirrors upstream's pkg/spireentry templateData so that Go
// prints the same type names in errors (e.g. "*spireentry.templateData").
package spireentry

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type templateData struct {
	TrustDomain   string
	ClusterName   string
	ClusterDomain string
	PodMeta       *metav1.ObjectMeta
	PodSpec       *corev1.PodSpec
	NodeMeta      *metav1.ObjectMeta
	NodeSpec      *corev1.NodeSpec
}

// New builds the data exactly as upstream's renderPodEntry does (pod != nil)
// or as the parent-ID rendering does (pod == nil: PodMeta/PodSpec stay nil).
func New(trustDomain, clusterName, clusterDomain string, pod *corev1.Pod, node *corev1.Node) any {
	d := &templateData{
		TrustDomain:   trustDomain,
		ClusterName:   clusterName,
		ClusterDomain: clusterDomain,
		NodeMeta:      &node.ObjectMeta,
		NodeSpec:      &node.Spec,
	}
	if pod != nil {
		d.PodMeta = &pod.ObjectMeta
		d.PodSpec = &pod.Spec
	}
	return d
}
