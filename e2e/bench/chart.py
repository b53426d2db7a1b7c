#!/usr/bin/env python3
"""How the controllers grow with the cluster: an SVG chart from scale runs.

    e2e/bench/chart.py OUT.svg RESULTS_DIR [RESULTS_DIR ...]

Each RESULTS_DIR is one `e2e/bench/run.sh scale [one-pod] upstream` run (any pod count);
its `ours-rep*.json`, `upstream-rep*.json` and (if run with BENCH_ALSO=musl=...)
`musl-rep*.json` give, per controller and pod count: time to converge, steady RSS and peak
RSS over the run. Three panels (log-scaled pod count on x), this controller against the Go
one. Standard library only: the SVG is written by hand.
"""

import glob
import json
import math
import os
import sys


# The series drawn (other BENCH_ALSO builds in a run are left out).
NAMES = {"ours": "this controller (glibc)", "musl": "this controller (musl, shipped)", "upstream": "Go controller"}
COLORS = {"ours": "#1f77b4", "musl": "#2ca02c", "upstream": "#d62728"}


def load(dirs):
    """{label: {pods: {"converge": s, "steady": MiB, "peak": MiB}}}"""
    out = {}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*-rep*.json"))):
            r = json.load(open(path))
            pods = r["world"]["pods"]
            c = r.get("converge", {})
            idle = r.get("idle", {})
            row = {
                "converge": c.get("seconds"),
                "peak": (r.get("vm_hwm_kib_final") or 0) / 1024 or None,
                "steady": (idle.get("vm_rss_kib") or 0) / 1024 or None,
            }
            if r["label"] in NAMES:
                out.setdefault(r["label"], {})[pods] = row
    return out


def panel(x0, y0, w, h, title, unit, series, key):
    """One panel: a log x axis (pods) and a linear y axis from 0."""
    pods = sorted({p for s in series.values() for p in s})
    vals = [s[p][key] for s in series.values() for p in s if s[p][key]]
    if not pods or not vals:
        return ""
    ymax = max(vals) * 1.15
    lx0, lx1 = math.log10(min(pods)), math.log10(max(pods))
    if lx1 == lx0:
        lx0, lx1 = lx0 - 0.5, lx1 + 0.5
    px = lambda p: x0 + 50 + (math.log10(p) - lx0) / (lx1 - lx0) * (w - 70)
    py = lambda v: y0 + h - 30 - v / ymax * (h - 60)
    svg = [f'<text x="{x0 + w / 2}" y="{y0 + 16}" text-anchor="middle" font-weight="bold">{title}</text>']
    svg.append(f'<line x1="{x0 + 50}" y1="{y0 + h - 30}" x2="{x0 + w - 20}" y2="{y0 + h - 30}" stroke="#444"/>')
    svg.append(f'<line x1="{x0 + 50}" y1="{y0 + 30}" x2="{x0 + 50}" y2="{y0 + h - 30}" stroke="#444"/>')
    for p in pods:
        svg.append(f'<text x="{px(p)}" y="{y0 + h - 12}" text-anchor="middle" font-size="11">{p:,}</text>')
    for i in range(5):
        v = ymax * i / 4
        svg.append(f'<text x="{x0 + 45}" y="{py(v) + 4}" text-anchor="end" font-size="11">{v:.0f}</text>')
        svg.append(f'<line x1="{x0 + 50}" y1="{py(v)}" x2="{x0 + w - 20}" y2="{py(v)}" stroke="#ddd"/>')
    svg.append(f'<text x="{x0 + 12}" y="{y0 + h / 2}" font-size="11" transform="rotate(-90 {x0 + 12} {y0 + h / 2})" text-anchor="middle">{unit}</text>')
    colors = COLORS
    for label, s in sorted(series.items()):
        pts = [(px(p), py(s[p][key])) for p in sorted(s) if s[p][key]]
        color = colors.get(label, "#555")
        svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (color, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
        for (x, y), p in zip(pts, [p for p in sorted(s) if s[p][key]]):
            svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
            svg.append(f'<text x="{x + 5:.1f}" y="{y - 5:.1f}" font-size="10" fill="{color}">{s[p][key]:.0f}</text>')
    return "\n".join(svg)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    series = load(sys.argv[2:])
    w, h = 420, 300
    body = [
        panel(0, 0, w, h, "time to converge", "seconds", series, "converge"),
        panel(w, 0, w, h, "steady RSS after idle", "MiB", series, "steady"),
        panel(2 * w, 0, w, h, "peak RSS", "MiB", series, "peak"),
    ]
    legend = []
    for i, label in enumerate(label for label in NAMES if label in series):
        legend.append(f'<rect x="{60 + i * 260}" y="{h + 8}" width="12" height="12" fill="{COLORS[label]}"/>')
        legend.append(f'<text x="{78 + i * 260}" y="{h + 19}" font-size="12">{NAMES[label]}</text>')
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * w}" height="{h + 30}" font-family="sans-serif" font-size="12">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body + legend) + "\n</svg>\n"
    )
    open(sys.argv[1], "w").write(svg)


if __name__ == "__main__":
    main()
