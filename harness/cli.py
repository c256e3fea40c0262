"""The `harness` command: `harness <command> [hydra overrides…]`.

Every command is a Hydra app over `conf/`, so `key=value` overrides, `-m` multiruns and
`--cfg job` all work the same way for every stage.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

USAGE = """usage: harness <command> [key=value ...] [-m]

commands:
  mine      git history -> records.jsonl (+ mine_stats.json)
  format    records -> chat + FIM dataset rendered with the model's tokenizer
  train     LoRA/QLoRA adapter + manifest.json
  eval      base vs candidate: HumanEval/MBPP pass@1, FIM, LLM judge
  gate      thresholds -> verdict.json (exit 0 deploy, 3 no-deploy)
  report    reports/<run>/report.md + evidence.json
  run       all of the above, skipping stages that are up to date
  serve     OpenAI-compatible server over the base model + adapters
  build-tiny  build (or find) the cached offline tiny model and print its path

Stages of one run share runs/<run_name>/: chain them with the same run_name=...
Examples: harness run experiment=smoke ; harness train run_name=r1 train.lr=1e-4"""

EXIT_ERROR, EXIT_NO_DEPLOY = 2, 3
COMMANDS = ("mine", "format", "train", "eval", "gate", "report", "run", "serve", "build-tiny")

log = logging.getLogger("harness")


def dispatch(command: str, cfg) -> int:
    from harness.stages import STAGES, run_stage

    if command == "build-tiny":
        from harness.models.tiny import build_tiny_model

        print(build_tiny_model(cfg.cache_dir))
        return 0
    if command == "serve":
        from harness.serve.cli import serve

        serve(cfg)
        return 0
    stages = STAGES if command == "run" else (command,)
    summary: dict = {}
    for stage in stages:
        summary = run_stage(cfg, stage)
    if command in ("gate", "run"):
        verdict = summary.get("verdict") if command == "gate" else _read_verdict(cfg)
        log.info("verdict: %s", verdict)
        if command == "gate" and verdict != "deploy":
            return EXIT_NO_DEPLOY
    log.info("outputs in %s", Path(cfg.run_dir).resolve())
    return 0


def _read_verdict(cfg) -> str | None:
    from harness.io import read_json

    path = Path(cfg.run_dir) / "gate" / "verdict.json"
    return read_json(path)["decision"] if path.exists() else None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command = argv.pop(0)
    if command not in COMMANDS:
        print(f"harness: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import hydra

    from harness.errors import HarnessError
    from harness.paths import CONF_DIR

    sys.argv = [f"harness {command}", *argv, f"hydra.job.name={command}"]

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def app(cfg) -> None:
        try:
            code = dispatch(command, cfg)
        except HarnessError as e:
            log.error("%s", e)
            sys.exit(EXIT_ERROR)
        if code:
            sys.exit(code)

    app()


if __name__ == "__main__":
    main()
