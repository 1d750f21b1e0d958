"""`anybind report RUN_DIR`: one self-contained HTML file about a run (plots inline, no network).

It evaluates the run on its evaluation data (or `--data`) and draws: the training curves
(metrics.jsonl), zero-shot accuracy and the confusion matrix per modality, retrieval R@K for
every pair (emergent pairs hatched), an embedding map (PCA) coloured by modality and by class,
the similarity of class centroids across modalities, the geometry numbers, and the results of
the adapters given or found in RUN/adapters. Every plot sits in a <figure data-plot=NAME> with
the numbers it draws as JSON beside it, so what is shown can be checked against the run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.checkpoint import atomic_write_text
from anybind.config.schema import Source
from anybind.errors import AnybindError
from anybind.evaluate.expert_load import expert_load_report
from anybind.recipes.data import build_dataset
from anybind.recipes.evaluate import embed_dataset, score_embeddings
from anybind.report import plots
from anybind.space import Space, load_space

MAP_POINTS = 1500  # per modality, a seeded pick


def build_report(
    run_dir: str | Path,
    *,
    sources: list[Source] | None = None,
    adapters: list[Path] | None = None,
    out: Path | None = None,
    progress: bool = True,
) -> Path:
    run_dir = Path(run_dir)
    space = load_space(run_dir)
    sources = sources or space.config.data.eval
    if not sources:
        raise AnybindError("no evaluation data: pass --data or set data.eval in the config")
    dataset, _ = build_dataset(sources, space.config, space.modalities, progress=progress)
    if space.backbone is not None:
        space.backbone.reset_load()
    emb, labels, count = embed_dataset(space, dataset, space.config.eval.batch_size, progress)
    names = list(getattr(dataset, "class_names", None) or space.config.data.class_names or [])
    report = score_embeddings(space, emb, labels, count, class_names=names)
    sections = [
        training_section(run_dir),
        zero_shot_section(report),
        retrieval_section(report),
        map_section(emb, labels, names),
        similarity_section(emb, labels, names),
        geometry_section(report),
        adaptation_section(run_dir, adapters or []),
        robustness_section(run_dir),
        experts_section(space),
    ]
    page = document(run_dir, space, report, [s for s in sections if s])
    out = out or run_dir / "report.html"
    atomic_write_text(out, page)
    return out


def figure(name: str, image: str, data: Any, caption: str) -> str:
    # a <script> holds raw text: only a closing tag inside it needs escaping
    payload = json.dumps(data).replace("</", "<\\/")
    return (
        f'<figure data-plot="{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{image}"><figcaption>{html.escape(caption)}</figcaption>'
        f'<script type="application/json" class="plot-data">{payload}</script></figure>'
    )


def training_section(run_dir: Path) -> str:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return ""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line (a crash while writing) is not a point
    if not rows:
        return ""
    steps = [int(r["step"]) for r in rows]
    terms = sorted({k for r in rows for k in r if k.endswith("_loss")})
    series = {"loss": [float(r["loss"]) for r in rows]}
    series |= {t: [float(r.get(t, float("nan"))) for r in rows] for t in terms}
    loss = plots.curves(steps, series, "training loss", "loss")
    lr = plots.curves(steps, {"lr": [float(r.get("lr", float("nan"))) for r in rows]},
                      "learning rate", "lr")  # fmt: skip
    return "<h2>Training</h2>" + figure(
        "training-loss", loss, {"step": steps, **series}, "loss and its terms per logged step"
    ) + figure("learning-rate", lr, {"step": steps, "lr": [r.get("lr") for r in rows]},
               "learning rate")  # fmt: skip


def zero_shot_section(report: dict[str, Any]) -> str:
    zs = report["zero_shot"]
    if not zs:
        return ""
    modalities = list(zs)
    top1 = [zs[m]["top1"] for m in modalities]
    parts = ["<h2>Zero-shot classification</h2>", figure(
        "zero-shot", plots.bars(modalities, {"top-1": top1}, "zero-shot top-1"),
        {"modality": modalities, "top1": top1}, "zero-shot top-1 per modality (class prompts)",
    )]  # fmt: skip
    for m in modalities:
        confusion = np.array(zs[m]["confusion"])
        classes = list(zs[m]["per_class_recall"])
        image = plots.heatmap(confusion, classes, classes, f"{m}: true (rows) vs predicted")
        data = {"modality": m, "classes": classes, "confusion": confusion.tolist()}
        parts.append(figure(f"confusion-{m}", image, data, f"confusion matrix, {m}"))
    return "".join(parts)


def retrieval_section(report: dict[str, Any]) -> str:
    rt = report["retrieval"]
    if not rt:
        return ""
    pairs = list(rt)
    groups = {f"R@{k}": [rt[p][f"R@{k}"] for p in pairs] for k in (1, 5, 10)}
    emergent = [bool(rt[p]["emergent"]) for p in pairs]
    labels = [p.replace("->", "→") for p in pairs]
    image = plots.bars(labels, groups, "retrieval (hatched: emergent, never trained together)",
                       marked=emergent)  # fmt: skip
    data = {"pair": pairs, **groups, "emergent": emergent}
    return "<h2>Retrieval</h2>" + figure("retrieval", image, data, "R@1/5/10 for every pair")


def _pick(n: int, limit: int) -> np.ndarray:
    return np.sort(np.random.default_rng(0).choice(n, size=min(n, limit), replace=False))


def map_section(emb: dict, labels: torch.Tensor, names: list[str]) -> str:
    if not emb:
        return ""
    vectors, modality, klass = [], [], []
    for m, (e, rows) in emb.items():
        pick = _pick(len(e), MAP_POINTS)
        vectors.append(e[pick].numpy())
        modality += [m] * len(pick)
        ys = labels[rows[pick]].tolist()
        klass += [names[y] if 0 <= y < len(names) else "unlabelled" for y in ys]
    x = np.concatenate(vectors)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    by_modality = plots.scatter(points, modality, "embedding map (PCA), by modality")
    by_class = plots.scatter(points, klass, "embedding map (PCA), by class")
    data = {"points": np.round(points, 5).tolist(), "modality": modality, "class": klass}
    return "<h2>Embedding map</h2>" + figure(
        "map-modality", by_modality, data, "PCA of the embeddings: the modality gap shows as "
        "separate clouds") + figure("map-class", by_class, {"class": klass},
                                    "the same points, coloured by class")  # fmt: skip


def similarity_section(emb: dict, labels: torch.Tensor, names: list[str]) -> str:
    rows, centroids = [], []
    for m, (e, r) in emb.items():
        ys = labels[r]
        for c, name in enumerate(names):
            mask = ys == c
            if bool(mask.any()):
                centroid = torch.nn.functional.normalize(e[mask].mean(0), dim=0)
                rows.append(f"{m}:{name}")
                centroids.append(centroid)
    if len(rows) < 2:
        return ""
    matrix = (torch.stack(centroids) @ torch.stack(centroids).T).numpy()
    image = plots.heatmap(matrix, rows, rows, "cosine similarity of class centroids", ".2f")
    data = {"rows": rows, "similarity": np.round(matrix, 6).tolist()}
    caption = "class centroids of every modality against each other"
    return "<h2>Similarity</h2>" + figure("similarity", image, data, caption)


def geometry_section(report: dict[str, Any]) -> str:
    g = report["geometry"]
    lines = ["<h2>Geometry</h2><table><tr><th>pair / modality</th><th>modality gap</th>"
             "<th>alignment</th><th>uniformity</th></tr>"]  # fmt: skip
    for pair, gap in g.get("modality_gap", {}).items():
        al = g.get("alignment", {}).get(pair)
        lines.append(f"<tr><td>{html.escape(pair)}</td><td>{gap:.4f}</td>"
                     f"<td>{'' if al is None else f'{al:.4f}'}</td><td></td></tr>")  # fmt: skip
    for m, u in g.get("uniformity", {}).items():
        lines.append(f"<tr><td>{html.escape(m)}</td><td></td><td></td><td>{u:.4f}</td></tr>")
    return "".join(lines) + "</table>"


def adaptation_section(run_dir: Path, adapters: list[Path]) -> str:
    found = list(adapters) + sorted(p.parent for p in (run_dir / "adapters").glob("*/result.json"))
    results = []
    for folder in dict.fromkeys(found):
        path = Path(folder) / "result.json"
        if not path.is_file():
            raise AnybindError(f"{folder}: no result.json (made by `anybind adapt --out`)")
        r = json.loads(path.read_text(encoding="utf-8"))
        results.append((Path(folder).name, r))
    if not results:
        return ""
    labels = [f"{n} ({r['method']})" for n, r in results]
    groups = {"zero-shot": [r["zero_shot"]["top1"] for _, r in results],
              "adapted": [r["adapted"]["top1"] for _, r in results]}  # fmt: skip
    image = plots.bars(labels, groups, "adaptation: top-1 on the held-out target part")
    return "<h2>Adaptation</h2>" + figure("adaptation", image, {"adapter": labels, **groups},
                                          "each adapter against zero-shot")  # fmt: skip


def robustness_section(run_dir: Path) -> str:
    """The curves of RUN/robustness.json (`anybind eval --robustness`), when it exists."""
    path = run_dir / "robustness.json"
    if not path.is_file():
        return ""
    r = json.loads(path.read_text(encoding="utf-8"))
    parts = ["<h2>Robustness</h2>"]
    if r.get("subsets"):
        subsets = list(r["subsets"])
        image = plots.bars(subsets, {"top-1": list(r["subsets"].values())},
                           "joint embedding from each subset of the fused modalities")  # fmt: skip
        parts.append(figure("robustness-subsets", image, r["subsets"], "modalities present"))
    for m, by_name in r.get("corruptions", {}).items():
        series = {
            f"{name}: {target}": entry["top1"]
            for name, targets in by_name.items()
            for target, entry in targets.items()
        }
        if not series:
            continue
        image = plots.curves(r["levels"], series, f"{m} corrupted", "top-1", "corruption level")
        data = {"level": r["levels"], **series}
        parts.append(figure(f"robustness-{m}", image, data, f"accuracy as {m} is corrupted"))
    return "".join(parts)


def experts_section(space: Space) -> str:
    """A routed backbone's expert load on the report's data: each expert's share of each
    modality's tokens, per layer."""
    if space.backbone is None or not space.backbone.routed:
        return ""
    load = expert_load_report(space.backbone.load())
    if not load:
        return ""
    rows = [f"{m} L{i}" for m, layers in load["share"].items() for i in range(len(layers))]
    matrix = np.array([s for layers in load["share"].values() for s in layers])
    experts = [f"e{e}" for e in range(load["experts"])]
    image = plots.heatmap(
        matrix, rows, experts, "share of each modality's tokens per expert", fmt=".2f"
    )
    return "<h2>Expert load</h2>" + figure(
        "expert-load", image, load, "routed experts: share of tokens per modality and layer"
    )


def document(run_dir: Path, space: Space, report: dict[str, Any], sections: list[str]) -> str:
    title = f"anybind report: {html.escape(str(run_dir))}"
    towers = ", ".join(space.towers)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}}
figure{{display:inline-block;margin:.5rem;vertical-align:top}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2rem .6rem}}</style>
</head><body><h1>{title}</h1>
<p>modalities: {html.escape(towers)}; {report["samples"]} evaluation samples
(<code>{html.escape(report["name"])}</code>).</p>
{"".join(sections)}
</body></html>
"""
