"""What quantization costs on the user's own code: the run's held-out FIM holes (lines that
test-split commits added, never trained on), completed by the merged model and by each
exported file, scored the way `harness eval` scores FIM (exact match, edit similarity).

Models without FIM sentinels (SmolLM2) complete the hole from the prefix alone; the output
is cut to the hole's number of lines before scoring.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.errors import HarnessError
from harness.eval import fim_task
from harness.format.fim import Hole, encode, fim_prompt_ids, fim_tokens
from harness.io import read_jsonl

log = logging.getLogger(__name__)


def held_out(run_dir: Path, n: int, context_lines: int, max_middle_lines: int, seed: int) -> list[tuple[str, Hole]]:
    """(item id, hole) from the run's mined held-out files; [] when the run has none."""
    records = Path(run_dir) / "mine" / "records.jsonl"
    if not records.exists():
        return []
    sources = [r for r in read_jsonl(records) if r["kind"] == "fim_source" and r["split"] == "test"]
    return fim_task.held_out_holes(sources, n, max_middle_lines, context_lines, seed)


def build_prompts(tokenizer, fim_cfg, holes: list[tuple[str, Hole]], budget: int) -> tuple[str, list[list[int]], list[int]]:
    """(mode, prompt ids, extra stop ids): FIM with the model's sentinels, else plain completion."""
    try:
        toks = fim_tokens(tokenizer, fim_cfg)
    except HarnessError:
        return "completion", [encode(tokenizer, h.prefix)[-budget:] for _, h in holes], []
    return "fim", [fim_prompt_ids(tokenizer, toks, h.prefix, h.suffix, budget) for _, h in holes], [toks.end]


def _cut(text: str, hole: Hole, mode: str) -> str:
    if mode == "completion":
        return "".join(text.splitlines(keepends=True)[:max(1, hole.middle.count("\n"))])
    return text


def score(tokenizer, holes: list[tuple[str, Hole]], outputs: list[list[int]], mode: str,
          reference: list[str] | None = None) -> tuple[dict, list[str]]:
    """Mean FIM metrics of `outputs` (token ids), and agreement with the reference texts."""
    texts = [_cut(tokenizer.decode(o, skip_special_tokens=True), h, mode)
             for (_, h), o in zip(holes, outputs, strict=True)]
    rows = [fim_task.score(h.middle, t) for (_, h), t in zip(holes, texts, strict=True)]
    metrics = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    if reference is not None:
        metrics["same_output_as_merged"] = sum(a == b for a, b in zip(texts, reference, strict=True)) / len(texts)
    return metrics, texts
