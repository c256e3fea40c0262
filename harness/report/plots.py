"""The report's figures, drawn with matplotlib's Agg backend (no display needed) into PNG bytes
that the markdown links and the HTML embeds. Each function takes evidence and returns None
when there is nothing to draw."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"base": "#8c8c8c", "candidate": "#1f77b4"}
STATUS = {"pass": "#2ca02c", "warn": "#ff7f0e", "fail": "#d62728", "inconclusive": "#9467bd",
          "missing": "#000000"}
OUTCOMES = (("wins", "#2ca02c"), ("ties", "#c7c7c7"), ("losses", "#d62728"))


def _png(fig, top: float = 1.0) -> bytes:
    """`top` < 1 leaves room above the axes for a figure legend."""
    buf = io.BytesIO()
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def gate(checks: list[dict]) -> bytes | None:
    """One row per check: the statistic's CI against the margin it must clear (the side that
    passes is shaded)."""
    drawn = [c for c in checks if c.get("ci")]
    if not drawn:
        return None
    fig, axes = plt.subplots(len(drawn), 1, figsize=(7, 0.9 + 0.8 * len(drawn)), squeeze=False)
    for ax, c in zip(axes[:, 0], drawn, strict=True):
        rel = c.get("statistic") == "relative_gain"
        lo, hi = c["relative_gain_ci"] if rel else c["ci"]
        point = c.get("relative_gain") if rel else c.get("delta")
        finite = [v for v in (lo, hi, point, c.get("margin", 0)) if v is not None and math.isfinite(v)]
        color = STATUS.get(c["status"], "#000000")
        span = (max(finite) - min(finite)) or 0.1
        ax.hlines(0, *(_clip(v, finite) for v in (lo, hi)), color=color, linewidth=4)
        if point is not None:
            ax.plot([_clip(point, finite)], [0], "o", color="black")
        ax.axvline(c.get("margin", 0), color="#444444", linestyle="--", linewidth=1)
        ax.axvspan(c.get("margin", 0), max(finite) + span, color="#2ca02c", alpha=0.08, zorder=0)
        ax.axvline(0, color="#dddddd", linewidth=1, zorder=0)
        ax.set_yticks([])
        ax.set_ylabel(c["name"], rotation=0, ha="right", va="center")
        ax.set_title(f"{c['metric']}: {'relative gain' if rel else 'candidate − base'} "
                     f"({c['status']})", fontsize=9, loc="left")
        ax.set_xlim(min(finite) - 0.15 * span, max(finite) + 0.15 * span)
    return _png(fig)


def _clip(v: float, finite: list[float]) -> float:
    """An infinite CI bound (a gain over a zero base) drawn at the edge of the axis."""
    if math.isfinite(v):
        return v
    span = (max(finite) - min(finite)) or 0.1
    return max(finite) + 0.1 * span if v > 0 else min(finite) - 0.1 * span


def pass_rates(pass_at_1: dict) -> bytes | None:
    """pass@1 per task, base vs candidate, with the Wilson intervals."""
    if not pass_at_1:
        return None
    tasks = list(pass_at_1)
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.38
    for i, label in enumerate(("base", "candidate")):
        xs = [t + (i - 0.5) * width for t in range(len(tasks))]
        values = [pass_at_1[t][label]["pass@1"] for t in tasks]
        cis = [pass_at_1[t][label]["ci"] or [v, v] for t, v in zip(tasks, values, strict=True)]
        err = [[v - lo for v, (lo, _) in zip(values, cis, strict=True)],
               [hi - v for v, (_, hi) in zip(values, cis, strict=True)]]
        ax.bar(xs, values, width, yerr=err, capsize=3, label=label, color=COLORS[label])
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _png(fig)


def judge_scores(criteria: dict) -> bytes | None:
    """Distribution of the judge's scores per criterion, base vs candidate."""
    if not criteria:
        return None
    names = sorted(criteria)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names) + 0.6, 2.8), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        for i, label in enumerate(("base", "candidate")):
            dist = (criteria[name].get(label) or {}).get("distribution") or {}
            xs = [s + (i - 0.5) * 0.38 for s in range(1, 6)]
            ax.bar(xs, [dist.get(str(s), 0) for s in range(1, 6)], 0.38, label=label,
                   color=COLORS[label])
        ax.set_xticks(range(1, 6))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("score")
    axes[0][0].set_ylabel("answers")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=8,
               frameon=False)
    return _png(fig, top=0.88)


def pairwise(criteria: dict | None) -> bytes | None:
    """Head-to-head outcomes per criterion, from the candidate's side."""
    if not criteria:
        return None
    names = sorted(criteria)
    fig, ax = plt.subplots(figsize=(7, 0.7 + 0.5 * len(names)))
    left = [0.0] * len(names)
    for key, color in OUTCOMES:
        counts = [criteria[n].get(key) or 0 for n in names]
        ax.barh(names, counts, left=left, color=color, label=key)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_xlabel("comparisons (candidate's wins / ties / losses)")
    ax.legend(fontsize=8, ncol=3, loc="lower left", bbox_to_anchor=(0, 1), frameon=False)
    return _png(fig)


def loss(curve: list[dict], eval_curve: list[dict]) -> bytes | None:
    if not curve:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], color=COLORS["candidate"],
            label="training loss")
    if eval_curve:
        ax.plot([p["step"] for p in eval_curve], [p["loss"] for p in eval_curve], "o",
                color="#d62728", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return _png(fig)


def dropped(mine_stats: dict | None) -> bytes | None:
    """What mining kept and what each filter dropped."""
    if not mine_stats:
        return None
    items = sorted((mine_stats.get("dropped") or {}).items(), key=lambda kv: kv[1])
    kept = sum((mine_stats.get("kept") or {}).values())
    labels = [k for k, _ in items] + ["kept"]
    values = [v for _, v in items] + [kept]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.32 * len(labels)))
    ax.barh(labels, values, color=["#d62728"] * len(items) + ["#2ca02c"])
    ax.set_xlabel("records")
    return _png(fig)


def lengths(card: dict | None) -> bytes | None:
    hist = (card or {}).get("length_histogram")
    if not hist:
        return None
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.bar([f"{b['from']}–{b['to']}" for b in hist], [b["count"] for b in hist],
           color=COLORS["candidate"])
    ax.set_xlabel("tokens per training example")
    ax.set_ylabel("examples")
    ax.tick_params(axis="x", labelsize=7)
    return _png(fig)


def sweep(param: str, points: list[dict], checks: list[str]) -> bytes | None:
    """Each gate check's statistic (with its CI) against one swept hyperparameter."""
    if not points or not checks:
        return None
    numeric = all(isinstance(p["x"], int | float) and not isinstance(p["x"], bool) for p in points)
    xs_all = sorted({p["x"] for p in points}, key=str)
    fig, axes = plt.subplots(1, len(checks), figsize=(3.2 * len(checks) + 0.5, 3), squeeze=False)
    for ax, name in zip(axes[0], checks, strict=True):
        margin = None
        for p in points:
            c = p["checks"].get(name)
            if not c or c.get("value") is None or not math.isfinite(c["value"]):
                continue
            x = p["x"] if numeric else xs_all.index(p["x"])
            lo, hi = c["ci"] if c.get("ci") and all(map(math.isfinite, c["ci"])) else (c["value"],) * 2
            ax.errorbar([x], [c["value"]], yerr=[[c["value"] - lo], [hi - c["value"]]], fmt="o",
                        capsize=3, color=STATUS.get(c["status"], "#000000"))
            margin = c.get("margin", margin)
        if margin is not None:
            ax.axhline(margin, color="#444444", linestyle="--", linewidth=1)
        if numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all], fontsize=8)
        ax.set_xlabel(param)
        ax.set_title(name, fontsize=9)
    return _png(fig)
