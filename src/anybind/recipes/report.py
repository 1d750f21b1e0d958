"""Print evaluation reports as rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_report(reports: dict[str, dict[str, Any]], console: Console | None = None) -> None:
    """`reports` maps a data set name (e.g. "in-domain", "MNIST") to an evaluate_space report."""
    console = console or Console()
    zs = Table(title="Zero-shot classification (class-name prompts)")
    for col in ("data", "modality", "samples", "top-1", "top-5", "worst class"):
        zs.add_column(col, justify="right" if col not in ("data", "modality") else "left")
    rt = Table(title="Retrieval (match = same label, or the paired sample when unlabelled)")
    for col in ("data", "query → key", "R@1", "R@5", "R@10", "trained together"):
        rt.add_column(col, justify="right" if col.startswith("R@") else "left")
    geo = Table(title="Geometry")
    for col in ("data", "pair / modality", "modality gap", "alignment", "uniformity"):
        geo.add_column(col, justify="left" if col in ("data", "pair / modality") else "right")
    for data, report in reports.items():
        for m, r in report.get("zero_shot", {}).items():
            worst = min(r["per_class_recall"].items(), key=lambda kv: kv[1], default=("-", 0))
            top5 = next((v for k, v in r.items() if k.startswith("top") and k != "top1"), None)
            zs.add_row(
                data,
                m,
                str(r["n"]),
                f"{100 * r['top1']:.1f}%",
                f"{100 * top5:.1f}%" if top5 is not None else "-",
                f"{worst[0]} {100 * worst[1]:.0f}%",
            )
        for pair, r in report.get("retrieval", {}).items():
            rt.add_row(
                data,
                pair.replace("->", " → "),
                f"{100 * r['R@1']:.1f}",
                f"{100 * r['R@5']:.1f}",
                f"{100 * r['R@10']:.1f}",
                "no (emergent)" if r["emergent"] else "yes",
            )
        g = report.get("geometry", {})
        for pair, gap in g.get("modality_gap", {}).items():
            al = g.get("alignment", {}).get(pair)
            geo.add_row(data, pair, f"{gap:.3f}", f"{al:.3f}" if al is not None else "-", "")
        for m, u in g.get("uniformity", {}).items():
            geo.add_row(data, m, "", "", f"{u:.3f}")
    for table in (zs, rt, geo):
        if table.row_count:
            console.print(table)
