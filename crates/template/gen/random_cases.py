#!/usr/bin/env python3
"""Optional differential check: random (mostly invalid) templates, compared with Go.

    mkdir -p /tmp/fuzz/data && cp ../testdata/data/*.json /tmp/fuzz/data/
    python3 random_cases.py SEED COUNT > /tmp/fuzz/cases.json
    go run . /tmp/fuzz
    SCM_TEMPLATE_TESTDATA=/tmp/fuzz cargo test -p scm-template --test golden

Expected differences are the documented ones (printing whole Kubernetes structs).
"""
import json, random, sys
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
fields = [".PodMeta", ".PodMeta.Name", ".PodMeta.Labels", ".PodMeta.Labels.app", ".PodMeta.Labels.nope", ".PodSpec.Containers",
          ".PodSpec.ServiceAccountName", ".NodeMeta.UID", ".TrustDomain", ".ClusterDomain", ".PodSpec.Priority", ".PodSpec.HostNetwork",
          ".PodMeta.Finalizers", ".NodeSpec.PodCIDRs", ".PodMeta.Generation", ".Nope", ".PodMeta.UID", ".PodSpec.ActiveDeadlineSeconds",
          ".PodMeta.CreationTimestamp", ".PodMeta.Annotations", ".", "$", "$.PodMeta.Namespace", "$x", "$x.Name", ".Name"]
funcs = ["and", "or", "not", "len", "index", "slice", "print", "printf", "println", "html", "js", "urlquery", "eq", "ne", "lt", "le", "gt", "ge", "call", "nofunc"]
lits = ['"a"', '"%s"', '"%d-%v"', "`raw`", "0", "1", "2", "-1", "1.5", "'x'", "true", "false", "nil", '"app"', '"spiffe.io/spiffe-id"', "3"]
kw = ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"]
seps = [" ", " ", " ", "", "  ", "\n"]

def operand(d=0):
    r = random.random()
    if r < 0.45: return random.choice(fields)
    if r < 0.75: return random.choice(lits)
    if r < 0.85 and d < 2: return "(" + pipeline(d+1) + ")"
    if r < 0.92 and d < 2: return "(" + pipeline(d+1) + ")" + random.choice([".Name", ".Labels", ".X"])
    return random.choice(funcs)

def command(d=0):
    if random.random() < 0.5:
        n = random.randint(0, 3)
        return " ".join([random.choice(funcs)] + [operand(d) for _ in range(n)])
    return operand(d)

def pipeline(d=0):
    s = command(d)
    while random.random() < 0.25:
        s += " | " + command(d)
    if random.random() < 0.1:
        s = random.choice(["$x := ", "$x = ", "$i, $x := "]) + s
    return s

def action():
    r = random.random()
    open_ = random.choice(["{{", "{{", "{{- ", "{{ "])
    close_ = random.choice(["}}", "}}", " -}}", " }}"])
    if r < 0.55:
        return open_ + pipeline() + close_
    if r < 0.8:
        k = random.choice(["if", "range", "with"])
        body = "".join(piece() for _ in range(random.randint(0, 2)))
        s = open_ + k + " " + pipeline() + close_ + body
        if random.random() < 0.3:
            s += "{{ else }}" + "".join(piece() for _ in range(random.randint(0, 2)))
        if random.random() < 0.9:
            s += "{{ end }}"
        return s
    if r < 0.85:
        return open_ + random.choice(kw) + random.choice(["", " " + operand()]) + close_
    if r < 0.9:
        return '{{ define "d" }}' + piece() + '{{ end }}{{ template "d" ' + random.choice([".", "", ".PodMeta"]) + ' }}'
    if r < 0.95:
        return open_ + "/* c */" + close_
    # raw garbage
    if random.random() < 0.5:
        return random.choice(["{{", "}}", "{{ ) }}", "{{ .X.}}", "{{ $ }}", "{{ 1 2 }}", "{{ |. }}", "{{.PodMeta.Name|len}}", "{{ 'ab' }}", "{{ \"\\q\" }}", "{{ 0x }}", "{{ 1e }}"])
    alphabet = list("{}()|.$:=,-+ \t\n\"'`/*#@!0123456789abcxyzéü_") + ["{{", "}}", "{{-", "-}}", " - ", "/*", "*/", ":=", "if", "end", "else", "range", ".PodMeta", "$x", "0x1p-2", "1_000", "'\\n'", "1i", "nil", "true"]
    return "{{" + "".join(random.choice(alphabet) for _ in range(random.randint(1, 10))) + "}}"

def piece():
    r = random.random()
    if r < 0.3:
        return random.choice(["spiffe://", "/", "-", "x", " ", "\n", "ü", "a b"])
    return action()

cases = []
datas = ["pod-basic", "pod-minimal", "node-only", "pod-empty", "pod-unicode"]
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1500):
    t = "".join(piece() for _ in range(random.randint(1, 3)))
    cases.append({"id": f"f{i}", "name": random.choice(["spiffeIDTemplate", "parentIDTemplate"]), "template": t, "data": random.choice(datas)})
json.dump(cases, sys.stdout, indent=1, ensure_ascii=False)
