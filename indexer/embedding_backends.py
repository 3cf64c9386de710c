"""Runtimes that run a sentence-transformers embedder on batches of token ids: PyTorch (CPU or CUDA, fp32,
bf16 or fp16) and OpenVINO (CPU: fp32, bf16, or int8 quantized by NNCF).

OpenVINO runs a model converted from the PyTorch one. The conversion (and the int8 quantization) is made once
per weights and kept beside the embedder's folder, in a hidden folder named by the weights' hash, the
backend and the precision, written into a temporary folder and renamed into place like the model store's
pulls.
"""

import errno
import importlib.util
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from kotae.core.durable import build_once
from kotae.core.errors import KotaeError
from kotae.indexer.batching import Batch, Block

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "openvino"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
PRECISIONS: tuple[str, ...] = get_args(Precision)
_PRECISIONS_OF = {"torch": ("fp32", "bf16", "fp16"), "openvino": ("fp32", "bf16", "int8")}

CACHE_MARKER = "kotae-backend.json"
_RECIPE = 1
"""Bumped when the converted model's graph changes, so that older conversions are not reused."""
_OV_XML = "model.xml"
_INPUTS = ("input_ids", "attention_mask")


class BackendUnavailable(KotaeError):
    """A backend that this machine cannot run (its package is missing, or the device does not suit it)."""


@dataclass(frozen=True)
class BatchShape:
    """How batches are formed for a runner."""

    token_budget: int
    """Rows × padded length per batch."""
    max_rows: int
    multiple: int
    """Padded lengths are rounded up to this."""
    block_texts: int
    """Texts tokenized and sorted together (one block is tokenized while the one before runs)."""


# GPU: batches large enough to fill an H200 with a 384-wide model; lengths to multiples of 8 for the tensor
# cores. CPU: a few thousand tokens keep a batch's activations in the caches; lengths to multiples of 16 give
# OpenVINO few shapes to compile kernels for.
CUDA_BATCHES = BatchShape(token_budget=65_536, max_rows=4096, multiple=8, block_texts=8192)
CPU_BATCHES = BatchShape(token_budget=4096, max_rows=256, multiple=16, block_texts=4096)


@dataclass(frozen=True)
class Choice:
    """A resolved backend: what runs, in which precision, where."""

    backend: str
    precision: str
    device: str
    compiled: bool = False
    """torch only: the encoder runs through `torch.compile`."""

    @property
    def label(self) -> str:
        """E.g. "openvino-bf16", "torch-fp16" or "torch-fp16-compiled"."""
        return f"{self.backend}-{self.precision}" + ("-compiled" if self.compiled else "")


def resolve(backend: str, precision: str, device: str | None, compiled: bool = False) -> Choice:
    """`auto` made concrete. Backend: torch on CUDA, OpenVINO on a CPU (torch where OpenVINO is not
    installed). Precision: fp16 for torch on CUDA, fp32 for torch on a CPU; for OpenVINO, int8 where the
    CPU has int8 dot products (VNNI or AMX) and NNCF is installed to quantize, else bf16 where the CPU
    computes in bf16 natively (AVX-512 BF16 or AMX), else fp32.
    `compiled` applies to torch (OpenVINO compiles its graph anyway)."""
    if backend not in BACKENDS:
        raise KotaeError(f"embedder backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise KotaeError(f"embedder precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    device = device or ("cpu" if backend == "openvino" else _default_device())
    cuda = device.startswith("cuda")
    if backend == "auto":
        backend = "torch" if cuda or not openvino_installed() else "openvino"
    if backend == "openvino":
        if device != "cpu":
            raise BackendUnavailable(f"embedder backend openvino runs on the CPU, not on {device!r}")
        if not openvino_installed():
            raise BackendUnavailable(
                "embedder backend openvino needs the openvino package (pip install openvino)"
            )
    if precision == "auto":
        if backend == "torch":
            precision = "fp16" if cuda else "fp32"
        elif cpu_has_int8_dot_products() and importlib.util.find_spec("nncf") is not None:
            precision = "int8"
        else:
            precision = "bf16" if cpu_has_native_bf16() else "fp32"
    if precision not in _PRECISIONS_OF[backend]:
        raise KotaeError(
            f"embedder precision {precision!r} is not offered by backend {backend!r} "
            f"(it runs {', '.join(_PRECISIONS_OF[backend])})"
        )
    if precision == "int8" and importlib.util.find_spec("nncf") is None:
        raise BackendUnavailable(
            "int8 embedding is quantized by NNCF, which is not installed (pip install nncf)"
        )
    return Choice(backend, precision, device, compiled and backend == "torch")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def cpu_has_int8_dot_products() -> bool:
    """Whether the CPU multiplies int8 natively (AVX-512 VNNI, AVX-VNNI or AMX), where an int8 model beats
    a bf16 one (Linux: read from /proc/cpuinfo; elsewhere assumed not)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def cpu_has_native_bf16() -> bool:
    """Whether OpenVINO computes bf16 natively on this CPU (it reports the capability only then)."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


# PyTorch --------------------------------------------------------------------------------------------------

_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TorchRunner:
    """The sentence-transformers modules themselves, on batches formed by the embedder. On CUDA, batches
    travel through page-locked memory and results come back asynchronously: the host waits once a block."""

    def __init__(self, model: "SentenceTransformer", choice: Choice) -> None:
        import torch

        self.model = model.to(choice.device, dtype=getattr(torch, _TORCH_DTYPES[choice.precision])).eval()
        if choice.compiled:
            # The transformer alone: pooling is a few cheap kernels, and sentence-transformers' own
            # forward inspects signatures, which would break the graph. Dynamic shapes: batches vary in
            # rows and padded length, and one graph serves them all.
            encoder = model[0].auto_model
            encoder.forward = torch.compile(encoder.forward, dynamic=True)
        self.device = torch.device(choice.device)
        self.cuda = self.device.type == "cuda"
        self.dimension: int = model.get_embedding_dimension()
        self.batch_shape = CUDA_BATCHES if self.cuda else CPU_BATCHES

    def prepare(self, batch: Batch) -> tuple[int, "torch.Tensor", "torch.Tensor"]:
        """Runs in the tokenizing thread."""
        import torch

        ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
        if self.cuda:
            ids, mask = ids.pin_memory(), mask.pin_memory()
        return len(batch.rows), ids, mask

    def run_block(self, block: Block, features: dict[str, Any]) -> np.ndarray:
        """The block's embeddings (L2-normalized float32), in the order of its batches. `features` go to
        the modules with every batch (e.g. the prompt's length, for a pooling that leaves it out)."""
        import torch

        with torch.inference_mode():
            out = torch.empty((len(block.rows), self.dimension), dtype=torch.float32, pin_memory=self.cuda)
            done = 0
            for rows, ids, mask in block.batches:
                inputs = {
                    **features,
                    "input_ids": ids.to(self.device, non_blocking=True),
                    "attention_mask": mask.to(self.device, non_blocking=True),
                }
                vectors = self.model(inputs)["sentence_embedding"]
                vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
                out[done : done + rows].copy_(vectors, non_blocking=True)
                done += rows
            if self.cuda:
                torch.cuda.current_stream(self.device).synchronize()
        return out.numpy()


# OpenVINO -------------------------------------------------------------------------------------------------


class OpenVinoRunner:
    """A converted model compiled for the CPU, one batch at a time with all cores (OpenVINO's latency
    mode: one stream, every core on it)."""

    def __init__(self, model_dir: Path, choice: Choice, dimension: int) -> None:
        import openvino as ov

        core = ov.Core()
        # int8 layers stay int8; what NNCF left in floating point runs in bf16 where the CPU has it.
        bf16 = choice.precision == "bf16" or (choice.precision == "int8" and cpu_has_native_bf16())
        hint = "bf16" if bf16 else "f32"
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(core.read_model(model_dir / _OV_XML), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.dimension = dimension
        self.batch_shape = CPU_BATCHES

    @staticmethod
    def prepare(batch: Batch) -> Batch:
        return batch

    def run_block(self, block: Block, features: dict[str, Any]) -> np.ndarray:
        """As `TorchRunner.run_block`; the graph takes token ids and mask only."""
        out = np.empty((len(block.rows), self.dimension), np.float32)
        done = 0
        for batch in block.batches:
            inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
            result = self.request.infer(inputs)
            out[done : done + len(batch.rows)] = result[0]
            done += len(batch.rows)
        return out


def openvino_model(
    model: "SentenceTransformer",
    weights_hash: str,
    precision: str,
    cache_root: Path,
    name: str,
    calibration: Callable[[], Sequence[tuple[np.ndarray, np.ndarray]]],
) -> Path:
    """The folder of the OpenVINO model for these weights, converted (and for int8 quantized) on first use.
    fp32 and bf16 share one conversion (bf16 is a compile-time choice); `calibration` gives int8 its
    (input_ids, attention_mask) samples."""
    artifact = "int8" if precision == "int8" else "fp32"
    folder_name = f".{name}.openvino-{artifact}-r{_RECIPE}-{weights_hash[:16]}"

    def build(work: Path) -> dict:
        ov_model = convert_to_openvino(model)
        if artifact == "int8":
            ov_model = quantize_int8(ov_model, calibration())
        import openvino as ov

        # Weights stay float32 (no fp16 compression): the fp32 model is exact, and bf16 rounds from fp32.
        ov.save_model(ov_model, work / _OV_XML, compress_to_fp16=False)
        return {"backend": "openvino", "artifact": artifact, "weights_hash": weights_hash, "recipe": _RECIPE}

    return cached_folder(cache_root, folder_name, build)


def convert_to_openvino(model: "SentenceTransformer") -> Any:
    """The whole embedder (encoder, pooling, normalization) as one OpenVINO graph taking input_ids and
    attention_mask of any batch size and length, returning normalized embeddings."""
    import openvino as ov
    import torch

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "modality": "text"}
            return torch.nn.functional.normalize(self.model(features)["sentence_embedding"], dim=-1)

    model = model.to("cpu", dtype=torch.float32).eval()
    example = {name: torch.ones((2, 16), dtype=torch.int64) for name in _INPUTS}
    inputs = [(name, [-1, -1], ov.Type.i64) for name in _INPUTS]
    with torch.inference_mode(), warnings.catch_warnings():
        # Tracing warns at every shape test it freezes; those tests hold for any batch (a mask as long
        # as the ids, a bidirectional encoder), which the tests check on batches of other shapes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return ov.convert_model(Exported().eval(), example_input=example, input=inputs)


def quantize_int8(ov_model: Any, samples: Sequence[tuple[np.ndarray, np.ndarray]]) -> Any:
    """Post-training int8 quantization of the matrix products (NNCF, transformer preset: SmoothQuant on,
    attention's softmax and layer norms left in floating point)."""
    import nncf

    items = [{"input_ids": ids, "attention_mask": mask} for ids, mask in samples]
    return nncf.quantize(
        ov_model,
        nncf.Dataset(items),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(items),
    )


def demo_calibration_texts() -> tuple[list[str], list[str]]:
    """Real Japanese passages and questions shipped with kotae (the demo corpus), for int8 calibration."""
    from kotae import demo

    def rows(name: str) -> list[dict]:
        lines = resources.files(demo).joinpath(name).read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    passages, questions = rows("corpus.jsonl"), rows("questions.jsonl")
    return [f"{p['title']}\n{p['text']}" for p in passages], [q["question"] for q in questions]


# The cache ------------------------------------------------------------------------------------------------


def cached_folder(cache_root: Path, name: str, build: Callable[[Path], dict]) -> Path:
    """`cache_root/name`, built by `build(work)` into a staging folder beside it and renamed into place
    once whole (its marker written last; `kotae.core.durable.build_once`), so that a crash or a concurrent
    build never leaves a half-built folder that looks usable. `build` returns what the marker records."""
    target = cache_root / name

    def complete(folder: Path) -> bool:
        return (folder / CACHE_MARKER).is_file()

    def build_into(work: Path) -> None:
        log.info("building %s (once for these weights)", target)
        marker = build(work) | {"built_at": datetime.now(UTC).isoformat(), **_versions()}
        (work / CACHE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")

    if complete(target):
        return target
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        if not os.access(cache_root, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as error:
        raise BackendUnavailable(f"cannot keep the converted embedder in {cache_root} ({error})") from error
    return build_once(target, complete, build_into)


def _versions() -> dict:
    found = {}
    for package in ("openvino", "nncf", "torch", "transformers", "sentence-transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
