"""Typed settings, checked before any work: one dataclass per config section.

A bad value (`train.max_steps=-5`, `train.lr=abc`, `train.lora.dropout=1.5`) used to pass
start-up and fail minutes later inside torch, or silently mean something else. Here each
section is merged into its dataclass by OmegaConf (the typed structured-config machinery Hydra
uses, so types are converted and refused exactly as Hydra would) and `__post_init__` checks the
ranges and choices. The result is a plain dataclass the code can take instead of a DictConfig.

Keys a section's dataclass does not declare are left alone (other features add keys to conf/;
they validate their own), so this can grow into registering the dataclasses with Hydra's
ConfigStore once every key of a section is declared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.errors import HarnessError

T = TypeVar("T")


class SettingError(ValueError):
    """A value outside its range, raised from a section's `__post_init__`."""

    def __init__(self, key: str, value: object, expected: str, fix: str = "") -> None:
        self.key, self.value, self.expected, self.fix = key, value, expected, fix
        super().__init__(f"{key}={value!r}: expected {expected}")


def _check(section: str, key: str, value: object, ok: bool, expected: str, fix: str = "") -> None:
    if not ok:
        raise SettingError(f"{section}.{key}", value, expected, fix)


def _positive(section: str, obj: object, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        v = getattr(obj, name)
        ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
        _check(section, name, v, ok, "a number >= 0" if allow_zero else "a number > 0")


def _at_least_one(section: str, obj: object, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        _check(section, name, v, v >= 1, "a whole number >= 1")


def _one_of(section: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(section, name, value, value in choices, f"one of {', '.join(choices)}")


def _names(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


# ---- train --------------------------------------------------------------------------------

BACKENDS = ("auto", "hf", "unsloth")
METHODS = ("lora", "qlora")
QUANT_TYPES = ("nf4", "fp4")


# transformers' own enums are the truth for these two, but importing them pulls in torch (9 s
# of CPU here), too slow for `harness mine`: the common values are accepted without the import.
COMMON_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
COMMON_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "sgd")


def _scheduler_names(value: str) -> tuple[str, ...]:
    if value in COMMON_SCHEDULERS:
        return COMMON_SCHEDULERS
    from transformers.trainer_utils import SchedulerType

    return tuple(s.value for s in SchedulerType)


def _optimizer_names(value: str) -> tuple[str, ...]:
    if value in COMMON_OPTIMIZERS:
        return COMMON_OPTIMIZERS
    from transformers.training_args import OptimizerNames

    return tuple(o.value for o in OptimizerNames)


@dataclass
class LoraSettings:
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: Any = "all-linear"

    def __post_init__(self) -> None:
        s = "train.lora"
        _at_least_one(s, self, "r")
        _positive(s, self, "alpha")
        _check(s, "dropout", self.dropout, 0 <= self.dropout < 1, "a probability in [0, 1)")
        names = _names(self.target_modules)
        _check(s, "target_modules", self.target_modules,
               bool(names) and all(isinstance(n, str) and n for n in names),
               "all-linear, or a non-empty list of module names")


@dataclass
class QLoraSettings:
    quant_type: str = "nf4"
    double_quant: bool = True

    def __post_init__(self) -> None:
        _one_of("train.qlora", "quant_type", self.quant_type, QUANT_TYPES)


@dataclass
class TrainSettings:
    """conf/train/: what `harness train` reads, typed."""

    backend: str = "auto"
    method: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    qlora: QLoraSettings = field(default_factory=QLoraSettings)
    lr: float = 2e-4
    epochs: float = 1
    max_steps: int = -1
    batch_size: int = 4
    eval_batch_size: int | None = None
    grad_accum: int = 1
    max_length: int = 1024
    packing: bool = False
    warmup: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    lr_scheduler: str = "cosine"
    gradient_checkpointing: bool | None = None
    logging_steps: int = 5
    save_steps: int = 50
    save_total_limit: int | None = 2
    report_to: Any = "tensorboard"
    seed: int = 0

    def __post_init__(self) -> None:
        s = "train"
        _one_of(s, "backend", self.backend, BACKENDS)
        _one_of(s, "method", self.method, METHODS)
        _positive(s, self, "lr", "epochs")
        _check(s, "max_steps", self.max_steps, self.max_steps == -1 or self.max_steps >= 1,
               "-1 (train for train.epochs) or a step count >= 1")
        _at_least_one(s, self, "batch_size", "grad_accum", "max_length", "logging_steps",
                      "save_steps")
        _positive(s, self, "warmup", "weight_decay", "max_grad_norm", allow_zero=True)
        _one_of(s, "optim", self.optim, _optimizer_names(self.optim))
        _one_of(s, "lr_scheduler", self.lr_scheduler, _scheduler_names(self.lr_scheduler))
        _check(s, "eval_batch_size", self.eval_batch_size,
               self.eval_batch_size is None or self.eval_batch_size >= 1,
               "null (the training batch size) or a whole number >= 1")
        _check(s, "save_total_limit", self.save_total_limit,
               self.save_total_limit is None or self.save_total_limit >= 1,
               "null (keep every checkpoint) or a count >= 1")
        _check(s, "report_to", self.report_to,
               all(isinstance(n, str) for n in _names(self.report_to)),
               "none, an integration name, or a list of them")
        _check(s, "seed", self.seed, 0 <= self.seed < 2**32, "a seed in [0, 2**32)")


# ---- eval and judge (the numeric basics; each feature checks its own finer rules) ---------

@dataclass
class EvalSettings:
    batch_size: int = 8
    max_new_tokens: int = 256
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int = 1234

    def __post_init__(self) -> None:
        s = "eval"
        _at_least_one(s, self, "batch_size", "max_new_tokens", "n_samples")
        _positive(s, self, "temperature", allow_zero=True)
        _check(s, "top_p", self.top_p, 0 < self.top_p <= 1, "a probability in (0, 1]")


@dataclass
class JudgeSettings:
    max_tokens: int = 8
    max_reasks: int = 2
    max_response_chars: int = 4000
    max_concurrency: int = 4
    timeout_s: float = 120
    max_retries: int = 3
    top_logprobs: int = 5
    price_per_1k_prompt_tokens: float = 0.0
    price_per_1k_completion_tokens: float = 0.0
    budget_usd: float | None = None

    def __post_init__(self) -> None:
        s = "judge"
        _at_least_one(s, self, "max_tokens", "max_response_chars", "max_concurrency")
        _positive(s, self, "timeout_s")
        _positive(s, self, "max_reasks", "max_retries", "top_logprobs", "price_per_1k_prompt_tokens",
                  "price_per_1k_completion_tokens", allow_zero=True)
        _check(s, "budget_usd", self.budget_usd,
               self.budget_usd is None or (math.isfinite(self.budget_usd) and self.budget_usd >= 0),
               "null (no cap) or an amount >= 0")


SECTIONS: dict[str, type] = {"train": TrainSettings, "eval": EvalSettings, "judge": JudgeSettings}


def _known(schema: type, values: dict) -> dict:
    """The part of `values` that `schema` declares (nested dataclasses likewise)."""
    out = {}
    for f in fields(schema):
        if f.name not in values:
            continue
        v = values[f.name]
        sub = f.default_factory if callable(f.default_factory) else None  # type: ignore[misc]
        out[f.name] = _known(sub, v) if sub is not None and is_dataclass(sub) and isinstance(v, dict) else v
    return out


def typed(cfg: DictConfig, section: str, schema: type[T]) -> T:
    """`cfg.<section>` as a checked `schema` instance, or a HarnessError naming the key."""
    node = OmegaConf.select(cfg, section)
    values = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), _known(schema, values))
        return OmegaConf.to_object(merged)  # builds the dataclasses: runs __post_init__
    except SettingError as e:
        raise HarnessError(f"{e}. Fix: set {e.key}=<valid value> on the command line or in "
                           f"conf/{section}/.{(' ' + e.fix) if e.fix else ''}") from None
    except OmegaConfBaseException as e:
        key = f"{section}.{e.full_key}" if getattr(e, "full_key", None) else section
        value = OmegaConf.select(cfg, key) if key != section else None
        msg = str(e).splitlines()[0]
        raise HarnessError(f"{key}={value!r}: {msg}. Fix: give {key} a value of the declared "
                           f"type (conf/{section}/ shows the default).") from None


def check_config(cfg: DictConfig) -> dict[str, Any]:
    """Every known section typed and checked (train, eval, judge, gate); returns the typed
    sections. Called by every stage command before it does any work."""
    out = {name: typed(cfg, name, schema) for name, schema in SECTIONS.items()
           if OmegaConf.select(cfg, name) is not None}
    if OmegaConf.select(cfg, "gate") is not None:
        from harness.gate.rules import validate

        validate(OmegaConf.to_container(cfg.gate, resolve=True))
    return out
