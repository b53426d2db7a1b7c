// Command gen renders crates/template/testdata/cases.json with Go's real
// text/template and upstream's templateData, writing expected.json.
//
//	cd crates/template/gen && go run . ../testdata
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"

	"scm-template-gen/spireentry"
)

type testCase struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Template string `json:"template"`
	Data     string `json:"data"`
}

type dataSet struct {
	TrustDomain   string       `json:"trustDomain"`
	ClusterName   string       `json:"clusterName"`
	ClusterDomain string       `json:"clusterDomain"`
	Pod           *corev1.Pod  `json:"pod"`
	Node          *corev1.Node `json:"node"`
}

type result struct {
	ID         string  `json:"id"`
	Output     *string `json:"output,omitempty"`
	ParseError *string `json:"parseError,omitempty"`
	ExecError  *string `json:"execError,omitempty"`
	// Partial is what Go had written before an exec error (informational).
	Partial *string `json:"partial,omitempty"`
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func main() {
	// metav1.Time decodes to time.Local; the controller runs with UTC.
	time.Local = time.UTC
	dir := "../testdata"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	raw, err := os.ReadFile(filepath.Join(dir, "cases.json"))
	must(err)
	var cases []testCase
	must(json.Unmarshal(raw, &cases))

	sets := map[string]any{}
	results := make([]result, 0, len(cases))
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.ID] {
			must(fmt.Errorf("duplicate case id %q", c.ID))
		}
		seen[c.ID] = true
		data, ok := sets[c.Data]
		if !ok {
			raw, err := os.ReadFile(filepath.Join(dir, "data", c.Data+".json"))
			must(err)
			var ds dataSet
			must(json.Unmarshal(raw, &ds))
			if ds.Node == nil {
				must(fmt.Errorf("data set %q has no node", c.Data))
			}
			data = spireentry.New(ds.TrustDomain, ds.ClusterName, ds.ClusterDomain, ds.Pod, ds.Node)
			sets[c.Data] = data
		}
		r := result{ID: c.ID}
		tmpl, err := template.New(c.Name).Parse(c.Template)
		if err != nil {
			s := err.Error()
			r.ParseError = &s
		} else {
			var buf bytes.Buffer
			if err := tmpl.Execute(&buf, data); err != nil {
				s, p := err.Error(), buf.String()
				r.ExecError, r.Partial = &s, &p
			} else {
				s := buf.String()
				r.Output = &s
			}
		}
		results = append(results, r)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	must(enc.Encode(results))
	must(os.WriteFile(filepath.Join(dir, "expected.json"), out.Bytes(), 0o644))
	fmt.Printf("wrote %d results to %s\n", len(results), filepath.Join(dir, "expected.json"))
}
