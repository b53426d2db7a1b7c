#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/) from the repository's own fixtures:
the 320 Go template cases, the config test files, admission reviews shaped like the
apiserver's, and SPIFFE bundles. Run by `make fuzz`; the corpora are not committed."""
import json
import os
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"


def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


for i, case in enumerate(json.loads((root / "crates/template/testdata/cases.json").read_text())):
    put("template", f"case-{i}", case["template"])
put("template", "bomb", "spiffe://example.org/{{range 2000000000}}aaaaaaaa{{end}}")

for f in sorted((root / "crates/config/testdata").rglob("*.yaml")):
    put("config", f.name, f.read_bytes())


def review(kind, resource, group, obj, op="CREATE", sub=None):
    req = {
        "uid": "u1", "kind": {"group": group, "version": "v1alpha1" if group else "v1", "kind": kind},
        "resource": {"group": group, "version": "v1alpha1" if group else "v1", "resource": resource},
        "name": obj["metadata"]["name"], "operation": op, "userInfo": {"username": "x"},
        "object": obj, "oldObject": obj if op == "UPDATE" else None, "dryRun": False,
    }
    if sub:
        req["subResource"] = sub
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})


g = "spire.spiffe.io"
csid = {"apiVersion": f"{g}/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": "web"},
        "spec": {"spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}",
                 "podSelector": {"matchLabels": {"app": "web"}}, "dnsNameTemplates": ["{{ .PodMeta.Name }}"],
                 "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace }}"], "ttl": "1h",
                 "federatesWith": ["other.org"], "autoPopulateDNSNames": True}}
cse = {"apiVersion": f"{g}/v1alpha1", "kind": "ClusterStaticEntry", "metadata": {"name": "s"},
       "spec": {"spiffeID": "spiffe://example.org/s", "parentID": "spiffe://example.org/spire/server",
                "selectors": ["unix:uid:0"], "dnsNames": ["a.example"], "x509SVIDTTL": "1h"}}
cftd = {"apiVersion": f"{g}/v1alpha1", "kind": "ClusterFederatedTrustDomain", "metadata": {"name": "f"},
        "spec": {"trustDomain": "other.org", "bundleEndpointURL": "https://other.org/bundle",
                 "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": "spiffe://other.org/spire/server"},
                 "trustDomainBundle": "{\"keys\":[]}"}}
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
       "spec": {"nodeName": "n", "containers": [{"name": "a", "image": "x"}]}}
binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "ns"},
           "target": {"kind": "Node", "name": "n"}}
# The first byte picks the route (Route::ALL order): validate csid, cse, cftd; mutate
# csid, cse, cftd; observe pods.
seeds = [(0, review("ClusterSPIFFEID", "clusterspiffeids", g, csid)),
         (1, review("ClusterStaticEntry", "clusterstaticentries", g, cse)),
         (2, review("ClusterFederatedTrustDomain", "clusterfederatedtrustdomains", g, cftd)),
         (3, review("ClusterSPIFFEID", "clusterspiffeids", g, csid, "UPDATE")),
         (4, review("ClusterStaticEntry", "clusterstaticentries", g, cse)),
         (5, review("ClusterFederatedTrustDomain", "clusterfederatedtrustdomains", g, cftd)),
         (6, review("Pod", "pods", "", pod)),
         (6, review("Binding", "pods", "", binding, sub="binding"))]
for i, (route, body) in enumerate(seeds):
    put("admission", f"review-{i}", bytes([route]) + body.encode())

jwks = {"spiffe_sequence": 1, "spiffe_refresh_hint": 300, "keys": [
    {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256",
     "x": "fK-wKTnKL7KFLM27lqq5DC-bxrVaH6rDV-IcCSEOeL4", "y": "wq-g3TQWxYlV51TCPH030yXsRxvujD4hUUaIQrXk4KI"},
    {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": ["MIIBAA=="],
     "x": "fK-wKTnKL7KFLM27lqq5DC-bxrVaH6rDV-IcCSEOeL4", "y": "wq-g3TQWxYlV51TCPH030yXsRxvujD4hUUaIQrXk4KI"}]}
put("bundle", "jwks", json.dumps(jwks))
spire_bundle = os.environ.get("SPIRE_BUNDLE_FILE")
if spire_bundle and os.path.exists(spire_bundle):
    put("bundle", "spire", pathlib.Path(spire_bundle).read_bytes())
print("seeded", {t.name: len(list(t.iterdir())) for t in corpus.iterdir()})
