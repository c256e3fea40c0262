"""What quantization costs on the user's own code: the run's held-out FIM holes (lines that
test-split commits added, never trained on), completed by the merged model and by each
exported file, scored the way `harness eval` scores FIM (exact match, edit similarity).

Models without FIM sentinels (SmolLM2, `model.fim: left_to_right`) continue the prefix and
their next line is scored, as in `harness eval`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from harness.errors import HarnessError
from harness.eval import fim_task
from harness.format.fim import FimTokens, Hole, fim_tokens, is_left_to_right
from harness.io import read_jsonl
from harness.rundir import RECORDS, stage_dir

log = logging.getLogger(__name__)


def held_out(run_dir: Path, n: int, context_lines: int, max_middle_lines: int, seed: int) -> list[tuple[str, Hole]]:
    """(item id, hole) from the run's mined held-out files; [] when the run has none."""
    records = stage_dir(run_dir, "mine") / RECORDS
    if not records.exists():
        return []
    sources = [r for r in read_jsonl(records) if r["kind"] == "fim_source" and r["split"] == "test"]
    return fim_task.held_out_holes(sources, n, max_middle_lines, context_lines, seed)


def build_prompts(tokenizer, fim_cfg, holes: list[tuple[str, Hole]],
                  budget: int) -> tuple[FimTokens | None, list[list[int]], list[int]]:
    """(sentinels or None, prompt ids, extra stop ids), the way `harness eval` prompts: FIM
    with the model's sentinels, else (`model.fim: left_to_right`, or none found) the prefix."""
    toks = None
    if not is_left_to_right(fim_cfg):
        try:
            toks = fim_tokens(tokenizer, fim_cfg)
        except HarnessError:
            log.info("mini-eval: no FIM sentinels, so holes are completed left to right")
    return toks, fim_task.prompts(tokenizer, toks, holes, budget), [toks.end] if toks else []


def score(tokenizer, holes: list[tuple[str, Hole]], outputs: list[list[int]],
          toks: FimTokens | None, reference: list[str] | None = None) -> tuple[dict, list[str]]:
    """Mean FIM metrics of `outputs` (token ids), and how often they equal the reference's."""
    texts = [fim_task.answer(tokenizer.decode(o, skip_special_tokens=True), toks) for o in outputs]
    rows = [fim_task.score(h.middle, t) for (_, h), t in zip(holes, texts, strict=True)]
    metrics = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    if reference is not None:
        metrics["same_output_as_merged"] = sum(a == b for a, b in zip(texts, reference, strict=True)) / len(texts)
    return metrics, texts
