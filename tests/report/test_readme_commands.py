"""Every `harness` command shown in README.md and docs/guide-*.md parses and composes.

Commands that need a GPU, the hub or an API key (a 7B model, an OpenAI judge) cannot run here,
so each one goes through the real CLI (`harness.cli.main`) with Hydra's `--cfg job`: the
command name, its flags and every override are parsed exactly as a user's would be, and each
`key=value` it sets must be in the composed config. Multiruns are expanded into their jobs.
What the commands do is tested where it can run offline: promote/rollback (tests/registry),
report --sweep (test_report_sweep.py), merge-adapters (tests/registry), serve (tests/serve).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("guide-*.md"))]
# The CLI's flags, as the overrides they stand for (harness/cli.py translates them).
FLAGS = {"--force": ("registry.force", None), "--reason": ("registry.reason", 1),
         "--sweep": ("report.sweep", 1)}
POSITIONAL = {"promote": "run_name"}  # `harness promote <run>`


def commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith("harness "):
                    found.append((doc.name, line.strip()))
    return found


def expected(argv: list[str]) -> tuple[list[str], list[tuple[str, object]]]:
    """The Hydra overrides a command line stands for, and the (key, value) pairs it sets."""
    command, rest = argv[0], argv[1:]
    overrides, settings = [], []
    while rest:
        arg = rest.pop(0)
        if arg in FLAGS:
            key, takes = FLAGS[arg]
            settings.append((key, rest.pop(0) if takes else True))
        elif not arg.startswith("-") and "=" not in arg and command in POSITIONAL:
            settings.append((POSITIONAL[command], arg))
        elif arg != "-m":
            overrides.append(arg)
    return overrides, settings


def jobs(overrides: list[str]) -> list[list[str]]:
    """A multirun's jobs: every combination of its swept values."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
               if o.is_sweep_override() else [o.input_line] for o in parsed]
    return [list(job) for job in itertools.product(*choices)]


def compose(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([argv[0], "--cfg=job", *argv[1:]])
        except SystemExit as e:
            pytest.fail(f"`harness {' '.join(argv)}` exited {e.code}: {out.getvalue()[-500:]}")
    return yaml.safe_load(out.getvalue())


def test_the_docs_show_commands_for_every_part():
    shown = {shlex.split(line)[1] for _, line in commands()}
    assert {"run", "eval", "report", "promote", "rollback", "registry", "serve",
            "merge-adapters"} <= shown


@pytest.mark.parametrize("doc, line", commands(), ids=lambda v: v if len(v) < 40 else v[:40])
def test_a_documented_command_parses_and_sets_what_it_says(doc, line, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing may be written next to the docs
    argv = [os.path.expandvars(a) for a in shlex.split(line, comments=True)[1:]]  # as a shell
    overrides, settings = expected(argv)
    for job in jobs(overrides) if "-m" in argv else [overrides]:
        cfg = OmegaConf.create(compose(argv[:1] + [a for a in argv[1:] if a != "-m" and
                                                   a not in overrides] + job))
        sets = list(settings)
        for o in OverridesParser.create().parse_overrides(job):
            key = o.get_key_element().lstrip("+~")
            if key.startswith("hydra") or (ROOT / "conf" / key.replace(".", "/")).is_dir():
                continue  # hydra's own settings and config-group choices
            sets.append((key, o.value()))
        for key, value in sets:
            got = OmegaConf.select(cfg, key)
            got = OmegaConf.to_container(got) if OmegaConf.is_config(got) else got
            assert got == value or str(got) == str(value), (doc, line, key, got, value)
