"""The `harness` command: `harness <command> [hydra overrides…]`.

Every command is a Hydra app over `conf/`, so `key=value` overrides, `-m` multiruns and
`--cfg job` work the same way for every stage. The few flags a deploy pipeline expects
(`--force`, `--reason`, `--sweep`, a run name after `promote`) are translated to overrides.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from harness.pipeline import STAGES

USAGE = """usage: harness <command> [key=value ...] [-m]

pipeline (each stage runs its missing inputs first; up-to-date stages are skipped):
  mine      git history -> records.jsonl (+ mine_stats.json)
  format    records -> chat + FIM dataset rendered with the model's tokenizer
  train     LoRA/QLoRA adapter + manifest.json
  eval      base vs candidate: HumanEval/MBPP pass@1, FIM, LLM judge
  gate      thresholds -> verdict.json (exit 0 deploy, 3 no-deploy, 4 inconclusive)
  report    reports/<run>/report.md, report.html, evidence.json   [--sweep runs/<multirun>]
  run       all of the above

deploy:
  promote <run> [--force --reason TEXT]   make a run's adapter live (deploy verdicts only)
  rollback [--reason TEXT]                make the previous adapter live again
  registry                                what is live, and the history
  merge     merge a run's adapter into its base model → runs/<run>/merged/
  merge-adapters   combine adapters into a new candidate run (registry.merge.*)
  export    GGUF (f16/q8_0/q4_0) + Ollama Modelfile + vLLM dir, verified → runs/<run>/export/
  serve     OpenAI-compatible server over the base model + adapters

tools:
  score-generations  score a bigcode-evaluation-harness generations file in the sandbox
  build-tiny         build (or find) the cached offline tiny model and print its path

Stages of one run share runs/<run_name>/: chain them with the same run_name=...
Examples: harness run experiment=smoke ; harness train run_name=r1 train.lr=1e-4"""

EXIT_ERROR = 2
STAGE_COMMANDS = (*STAGES, "run")
# command -> "module:function"; the function takes the composed config and returns what to print
TOOLS = {
    "promote": "harness.registry.commands:promote",
    "rollback": "harness.registry.commands:rollback",
    "registry": "harness.registry.commands:status",
    "merge": "harness.train.merge:merge",
    "merge-adapters": "harness.registry.merge:merge_adapters",
    "export": "harness.export.command:export",
    "serve": "harness.serve.cli:serve",
    "score-generations": "harness.eval.bigcode:score_file",
    "build-tiny": "harness.models.tiny:build_from_cfg",
}
COMMANDS = (*STAGE_COMMANDS, *TOOLS)
LOCKED = (*STAGE_COMMANDS, "merge", "merge-adapters", "export")  # they write into runs/<run_name>/
FLAGS = {"--force": ("registry.force", False), "--reason": ("registry.reason", True),
         "--sweep": ("report.sweep", True)}

log = logging.getLogger("harness")


def translate(command: str, args: list[str]) -> list[str]:
    """Flags and a bare run name → Hydra overrides (values JSON-quoted, so any text works)."""
    out: list[str] = []
    it = iter(args)
    for arg in it:
        name, eq, inline = arg.partition("=")
        if name in FLAGS:
            key, takes_value = FLAGS[name]
            value = inline if eq else (next(it, None) if takes_value else "true")
            if value is None:
                raise SystemExit(f"harness: {name} needs a value")
            out.append(f"{key}={json.dumps(value) if takes_value else value}")
        elif command == "promote" and "=" not in arg and not arg.startswith("-"):
            out.append(f"run_name={arg}")
        else:
            out.append(arg)
    return out


def command_line_run_names(overrides: list[str]) -> list[str]:
    """Every literal `run_name` the overrides set (each value of a sweep), parsed by Hydra's own
    override grammar so quoting and `a,b` sweeps read as Hydra will read them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(
            [a for a in overrides if a.lstrip("+~").startswith("run_name=")])
    except Exception:  # malformed: Hydra refuses it itself, with its own message
        return []
    names: list[str] = []
    for o in parsed:
        values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        names += [str(v) for v in values if "${" not in str(v)]  # interpolations: checked later
    return names


def dispatch(command: str, cfg) -> int:
    """Run `command` (a stage command holding its run directory's lock); returns the exit code."""
    from harness.paths import check_run_name

    check_run_name(cfg.run_name)
    if command in LOCKED:
        from harness.runlock import run_lock

        with run_lock(cfg.run_dir, " ".join(["harness", command, *sys.argv[1:-1]])):
            return _dispatch(command, cfg)
    return _dispatch(command, cfg)


def _dispatch(command: str, cfg) -> int:
    if command in TOOLS:
        module, func = TOOLS[command].split(":")
        result = getattr(importlib.import_module(module), func)(cfg)
        if result is not None:
            print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
        return 0
    from harness.stages import run_stage

    if command == "report" and cfg.report.get("sweep"):
        from harness.report.sweep import sweep_report

        print(json.dumps(sweep_report(cfg.report, cfg.report_dir), indent=2, default=str))
        return 0
    from harness.config_check import check_config
    from harness.preflight import check_run

    summary: dict = {}
    stages = STAGES if command == "run" else (command,)
    check_config(cfg)  # every setting's type and range first: the preflight reads them
    check_run(cfg, stages)  # judge, model, memory, disk: fail before the first expensive step
    for stage in stages:
        summary = run_stage(cfg, stage)
    log.info("outputs in %s", Path(cfg.run_dir).resolve())
    if command == "gate":
        from harness.gate.rules import EXIT_CODES

        log.info("verdict: %s", summary["verdict"])
        return EXIT_CODES[summary["verdict"]]
    return 0


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

    from harness.errors import HarnessError

    overrides = translate(command, argv)
    try:  # before Hydra makes runs/<run_name>/, which `run_name=../../x` would put elsewhere
        from harness.paths import check_run_name

        for name in command_line_run_names(overrides):
            check_run_name(name)
    except HarnessError as e:
        print(f"harness: {e}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.argv = [f"harness {command}", *overrides, f"hydra.job.name={command}"]
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(early_lock(command, overrides))
        except HarnessError as e:
            print(f"harness: {e}", file=sys.stderr)
            sys.exit(EXIT_ERROR)
        _run_hydra(command)


def early_lock(command: str, overrides: list[str]):
    """The run directory's lock, taken before Hydra writes `.hydra/` and its log there (a
    refused second command would otherwise overwrite the holder's saved config), when the run
    directory is known from the command line: one run_name, no multirun, Hydra's default
    `runs/<run_name>`. Otherwise `dispatch` takes it once the config is composed."""
    if command not in LOCKED or any(o.startswith("-") or o.lstrip("+~").startswith("hydra.run.dir")
                                    for o in overrides):  # -m, --cfg job, …: Hydra's own modes
        return contextlib.nullcontext()
    names = command_line_run_names(overrides)
    if len(names) != 1:
        return contextlib.nullcontext()
    from harness.runlock import run_lock

    return run_lock(Path("runs") / names[0], " ".join(["harness", command, *overrides]))


def _run_hydra(command: str) -> None:
    import hydra

    from harness.errors import HarnessError
    from harness.paths import CONF_DIR

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def app(cfg):
        keep_logging_when_log_files_fail()
        try:
            code = dispatch(command, cfg)
        except HarnessError as e:
            log.error("%s", e)
            sys.exit(EXIT_ERROR)
        if code:
            sys.exit(code)
        if command in STAGE_COMMANDS:
            from harness.sweep import task_result

            return task_result(cfg.run_dir)  # in a multirun: the objective Hydra sweepers optimise
        return None

    app()


def keep_logging_when_log_files_fail() -> None:
    """Hydra logs to `runs/<run>/<command>.log` as well as the console. When that disk fills, the
    error saying so must not be buried under logging's own traceback for every later record: the
    first failed write prints one line and drops that file; the console goes on logging."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handleError = functools.partial(_drop_log_file, handler)


def _drop_log_file(handler: logging.FileHandler, record: logging.LogRecord) -> None:
    logging.getLogger().removeHandler(handler)
    print(f"harness: cannot write the log file {handler.baseFilename} ({sys.exc_info()[1]}); "
          "logging goes on to the console only", file=sys.stderr)
    with contextlib.suppress(OSError, ValueError):
        handler.close()


if __name__ == "__main__":
    main()
