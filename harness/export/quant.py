"""Which GGML type each tensor gets in an export, and the conversion itself (gguf's numpy
quantizers, the same block formats llama.cpp reads).

The rules are llama.cpp's converter's: 1-D tensors (norms, biases) stay F32; 2-D tensors take
the file's type; a row length the type's block size does not divide falls back to F16 (the
block formats cannot hold it), and every fallback is recorded so the manifest says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

# export name -> (GGML tensor type, llama.cpp file type), as `llama-quantize` names them
TYPES = {"f16": ("F16", "MOSTLY_F16"), "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
         "q4_0": ("Q4_0", "MOSTLY_Q4_0"), "f32": ("F32", "ALL_F32")}


def check_types(names: list[str]) -> list[str]:
    """The configured export types, known and without repeats; f16 first (the reference)."""
    unknown = [n for n in names if n not in TYPES]
    if unknown or not names:
        raise HarnessError(f"export.types={names}: unknown {unknown or 'empty list'}; choose from "
                           f"{sorted(TYPES)}. Fix: e.g. 'export.types=[f16,q8_0,q4_0]'.")
    ordered = list(dict.fromkeys(names))
    return sorted(ordered, key=lambda n: n != "f16")


@dataclass(frozen=True)
class Plan:
    """One tensor's type in the file and why."""

    qtype: object            # gguf.GGMLQuantizationType
    fallback: str | None     # why it is not the file's type, or None


def plan(shape: tuple[int, ...], file_type: str) -> Plan:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(shape) < 2:
        return Plan(GGMLQuantizationType.F32, None)
    qtype = GGMLQuantizationType[TYPES[file_type][0]]
    block = GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        return Plan(GGMLQuantizationType.F16,
                    f"row length {shape[-1]} is not a multiple of {qtype.name}'s block of {block}")
    return Plan(qtype, None)


def convert(data: np.ndarray, qtype) -> np.ndarray:
    """`data` (float32) in `qtype`'s on-disk layout (uint8 blocks for quantized types)."""
    from gguf import GGMLQuantizationType, quants

    if qtype == GGMLQuantizationType.F32:
        return data.astype(np.float32)
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return quants.quantize(data.astype(np.float32), qtype)


def nbytes(shape: tuple[int, ...], qtype) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * size


def file_type(name: str) -> int:
    from gguf import LlamaFileType

    return int(LlamaFileType[TYPES[name][1]])
