"""`preview.md`: N random pairs per kind, as the model will read them, so that a person can
judge the data before paying for training (`data.mine.preview`, 0 for none)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from harness.io import atomic_write_text


def write_preview(records: list[dict], n: int, seed: int, path: Path) -> Path | None:
    """N pairs per kind (a stable sample for a seed), each with its provenance; FIM sources
    show their path and first lines only."""
    if n <= 0:
        return None
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r)
    rng = random.Random(f"{seed}:preview")
    parts = [f"# {n} random pairs per kind\n"]
    for kind in sorted(by_kind):
        pool = by_kind[kind]
        parts.append(f"\n## {kind} ({min(n, len(pool))} of {len(pool)})\n")
        for i, r in enumerate(rng.sample(pool, min(n, len(pool))), 1):
            where = f"{r['split']}, {r['committed_at'][:10]}, {', '.join(r['shas'])[:40]}"
            if kind == "fim_source":
                head = "\n".join(r["content"].split("\n")[:15])
                parts.append(f"\n### {i}. `{r['path']}` ({where})\n\n````\n{head}\n````\n")
                continue
            part = f", part {r['part'][0]} of {r['part'][1]}" if r.get("part") else ""
            parts.append(f"\n### {i}. {r['id']} ({where}{part}; {r.get('change_class') or kind})\n\n"
                         f"**Prompt**\n\n````\n{r['instruction']}\n````\n\n**Target**\n\n````\n{r['response']}\n````\n")
    return atomic_write_text(path, "".join(parts))
