#!/usr/bin/env python3
"""The module graph of the binary's src/: who imports whom (crate:: and super:: paths,
test modules left out), and the rules ARCHITECTURE.md states:

- no cycle between rooms (top-level modules of src/);
- reconcile/ never imports k8s/ or manifests (adapters point at the ports, not back).

usage: tools/imports.py [SRC_DIR] [--check]   (exit 1 on a broken rule with --check)
"""
import collections
import os
import re
import sys

FORBIDDEN = {
    "reconcile": {"k8s", "manifests", "cli", "tooling"},
    "k8s": {"cli", "tooling"},
    "manifests": {"cli", "k8s", "tooling"},
}


def module_of(root, path):
    parts = os.path.relpath(path, root)[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def graph(root):
    edges = collections.defaultdict(set)
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            m = module_of(root, path)
            text = open(path, encoding="utf-8").read()
            text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
            text = re.sub(r"//[^\n]*", "", text)
            targets = re.findall(r"crate::([a-z0-9_]+(?:::[a-z0-9_]+)?)", text)
            parent = m.split("::")[0]
            targets += [parent + "::" + t for t in re.findall(r"super::([a-z0-9_]+)", text) if "::" in m]
            for t in targets:
                top = t.split("::")[0]
                if not os.path.exists(os.path.join(root, top)) and not os.path.exists(os.path.join(root, top + ".rs")):
                    continue
                target = t if os.path.isdir(os.path.join(root, top)) else top
                if target != m and target.split("::")[0] != m or ("::" in target and target != m):
                    if target != m:
                        edges[m].add(target)
    return edges


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "src")
    edges = graph(root)
    for m in sorted(edges):
        print(f"{m} -> {', '.join(sorted(edges[m]))}")
    rooms = collections.defaultdict(set)
    for a, bs in edges.items():
        for b in bs:
            ra, rb = a.split("::")[0], b.split("::")[0]
            if ra != rb:
                rooms[ra].add(rb)
    broken = []
    for a in sorted(rooms):
        for b in sorted(rooms[a]):
            if a in rooms.get(b, ()) and a < b:
                broken.append(f"cycle between rooms {a} and {b}")
            if b in FORBIDDEN.get(a, ()):
                broken.append(f"{a} imports {b}")
    print("rules:", "; ".join(broken) if broken else "ok (no cycle between rooms; adapters point at ports)")
    if broken and "--check" in sys.argv:
        sys.exit(1)


if __name__ == "__main__":
    main()
