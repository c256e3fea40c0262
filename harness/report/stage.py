"""The report stage: every upstream output → `reports/<run>/` with `report.md`, one
self-contained `report.html`, `plots/*.png` and `evidence.json`.

The evidence file carries every number in the report plus the sha256 of every input file it
came from and the content hashes that tie them to the data and the model (mined records,
dataset, tokenizer, adapter, frozen thresholds, benchmark files, eval prompts), so a reader can
check which data and which model produced a verdict. The report directory is written beside
its final place and swapped in whole, so a crash never leaves a report that mixes two runs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.benchmarks import SHA256 as BENCHMARK_SHA256
from harness.io import atomic_write_json, atomic_write_text, sha256_bytes
from harness.report.collect import collect
from harness.report.document import Document, to_html, to_markdown
from harness.report.sections import build
from harness.rundir import EVIDENCE, REPORT_HTML, REPORT_MD, publish
from harness.stages import require_output

log = logging.getLogger(__name__)


def report_dir(configured: str | Path) -> Path:
    """`configured` (the config's `report_dir`), plus the job number for the jobs of a multirun
    (which share a run_name)."""
    out = Path(configured)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except ValueError:  # composed outside a Hydra app (tests, notebooks)
        return out
    return out / str(hc.job.num) if hc.mode == RunMode.MULTIRUN else out


def write_report(out_dir: Path, doc: Document, evidence: dict, files: dict[str, str]) -> None:
    """Write md + html + plots + evidence (+ `files`: name -> text) and swap them in whole."""
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for fig in doc.figures:
        (partial / "plots").mkdir(parents=True, exist_ok=True)
        (partial / "plots" / f"{fig.name}.png").write_bytes(fig.png)
    evidence["plots"] = {f.name: {"file": f"plots/{f.name}.png", "sha256": sha256_bytes(f.png)}
                         for f in doc.figures}
    atomic_write_json(partial / EVIDENCE, evidence)
    for name, text in files.items():
        atomic_write_text(partial / name, text)
    publish(partial, out_dir)


def run(cfg: DictConfig, out: Path) -> dict:
    require_output(cfg, "gate")
    evidence = collect(Path(cfg.run_dir), cfg.run_name, BENCHMARK_SHA256)
    # select: the report group may be missing from an older conf/config.yaml defaults list
    doc = build(evidence, OmegaConf.select(cfg, "report.max_flips", default=20))
    target = report_dir(cfg.report_dir)
    write_report(target, doc, evidence, {REPORT_MD: to_markdown(doc), REPORT_HTML: to_html(doc)})
    log.info("report → %s (and report.html, evidence.json)", (target / REPORT_MD).resolve())
    return {"report": str((target / REPORT_MD).resolve()),
            "html": str((target / REPORT_HTML).resolve()),
            "decision": evidence["verdict"]["decision"]}
