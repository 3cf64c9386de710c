"""`kotae quantize`: a 4-bit (or 8-bit) weight-only checkpoint that vLLM serves with LoRA on top.

llm-compressor does the work, in its own process: it pins a compressed-tensors release that vLLM's
does not accept (and an older transformers), so the two never share an import path. scripts/bootstrap.sh
installs it with those pins into `.venv/quant-site`, which only the worker puts first on its PYTHONPATH
(on the GPU kit the same folder is `/tmp/site_q`: `--site /tmp/site_q`). This process validates
everything and builds the calibration set — Wikipedia passages plus training prompts, as the seed
calibrated — then runs `quantize_worker.py`, a standalone script that needs only llm-compressor,
transformers and datasets.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, model_validator
from rich.console import Console

from kotae.adapters.atomic import atomic_dir, check_target
from kotae.adapters.config import Method
from kotae.adapters.cpt import passage_text
from kotae.adapters.rows import read_rows
from kotae.core.errors import InputError, KotaeError
from kotae.models.quantized import RECORD_FILE, QuantizeRecord
from kotae.models.store import model_hash

SCHEMES = {"gptq": ("W4A16", "W4A16_ASYM", "W8A16"), "awq": ("W4A16", "W4A16_ASYM")}
"""Weight-only schemes: activations stay 16-bit, so LoRA (computed in 16 bits) applies on top unchanged."""
GROUP_SIZES = (32, 64, 128)
"""Weights sharing one scale, as vLLM's 4-bit GPU kernels (Marlin) take them; the schemes' own is 128."""
DEFAULT_SITE = Path(sys.prefix) / "quant-site"
"""Where scripts/bootstrap.sh installs requirements/quant.lock."""
WORKER = Path(__file__).with_name("quantize_worker.py")
FIND_LLMCOMPRESSOR = "import importlib.util, sys; sys.exit(importlib.util.find_spec('llmcompressor') is None)"


class CalibrationRow(BaseModel):
    """A passage `{title, text}` (Wikipedia) or a built SFT example `{prompt, completion}`."""

    title: str = ""
    text: str | None = None
    prompt: str | None = None
    completion: str = ""

    @model_validator(mode="after")
    def _has_text(self) -> "CalibrationRow":
        if not (self.text or self.prompt):
            raise ValueError("needs `text` (a passage) or `prompt` (a training example)")
        return self

    def sample(self) -> str:
        if self.prompt:
            return self.prompt + self.completion
        return passage_text(self.title, self.text or "")


class QuantizeJob(BaseModel):
    """What the worker gets (as JSON): everything already checked."""

    model: str
    method: Method
    scheme: str
    samples: list[str]
    max_seq_length: int
    group_size: int | None
    """None keeps the scheme's own."""
    out: str


def calibration_samples(files: list[Path], count: int, seed: int) -> list[str]:
    """`count` texts drawn evenly from the files (passages and prompts both matter: the served prompts are
    passages inside the template), seeded."""
    rng = random.Random(seed)
    per_file = -(-count // len(files))
    samples: list[str] = []
    for path in files:
        texts = [row.sample() for _, row in read_rows(path, CalibrationRow)]
        if not texts:
            raise InputError(path, None, "no calibration rows")
        samples += rng.sample(texts, min(per_file, len(texts)))
    rng.shuffle(samples)
    return samples[:count]


class Worker(BaseModel):
    """The interpreter that runs llm-compressor and the folder it puts first on its import path."""

    python: str
    site: Path | None

    @classmethod
    def resolve(cls, python: str | None, site: Path | None) -> "Worker":
        """kotae's own interpreter gets the bootstrapped site by default; another interpreter is taken
        as it is (it may have llm-compressor installed the ordinary way)."""
        if python:
            return cls(python=python, site=site)
        return cls(python=sys.executable, site=site or (DEFAULT_SITE if DEFAULT_SITE.is_dir() else None))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.site:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.site), env.get("PYTHONPATH")) if p)
        return env

    def check(self) -> None:
        """Fail with a clear message unless llm-compressor is there (found, not imported: importing it
        takes the worker's own start-up time again)."""
        try:
            probe = subprocess.run(
                [self.python, "-c", FIND_LLMCOMPRESSOR],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except OSError as error:
            raise KotaeError(f"cannot run the quantization interpreter {self.python!r}: {error}") from None
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["no module llmcompressor"])[-1]
            where = f"{self.python} with {self.site} first on PYTHONPATH" if self.site else self.python
            raise KotaeError(
                f"llm-compressor is not importable by {where} ({last}). "
                f"`make bootstrap` installs it (requirements/quant.lock) into {DEFAULT_SITE.name} of kotae's "
                f"environment; elsewhere give its folder with --site or KOTAE_QUANT_SITE, or an interpreter "
                f"that has it with --python or KOTAE_QUANT_PYTHON."
            )


def quantize_model(
    model: Path,
    method: Method,
    scheme: str,
    calib: list[Path],
    out: Path,
    console: Console,
    python: str | None = None,
    site: Path | None = None,
    samples: int = 512,
    max_seq_length: int = 2048,
    seed: int = 42,
    overwrite: bool = False,
    group_size: int | None = None,
) -> Path:
    if not (model / "config.json").is_file():
        raise InputError(model / "config.json", None, "missing: not a Hugging Face model folder")
    if scheme not in SCHEMES[method]:
        raise KotaeError(f"{method} supports the schemes {', '.join(SCHEMES[method])}, not {scheme!r}")
    if group_size is not None and group_size not in GROUP_SIZES:
        raise KotaeError(f"the group size is one of {', '.join(map(str, GROUP_SIZES))}, not {group_size}")
    if not calib:
        raise KotaeError("give at least one --calib file (passages and/or training examples)")
    check_target(out, overwrite)
    texts = calibration_samples(calib, samples, seed)
    worker = Worker.resolve(python, site)
    worker.check()
    with atomic_dir(out, overwrite) as staging:
        job = QuantizeJob(
            model=str(model.resolve()),
            method=method,
            scheme=scheme,
            samples=texts,
            max_seq_length=max_seq_length,
            group_size=group_size,
            out=str(staging),
        )
        job_file = staging.parent / f".{out.name}.job.json"
        job_file.write_text(job.model_dump_json(), encoding="utf-8")
        try:
            groups = f", groups of {group_size}" if group_size else ""
            console.print(f"quantizing {model.name} ({method} {scheme}{groups}, {len(texts)} samples)…")
            done = subprocess.run([worker.python, str(WORKER), str(job_file)], env=worker.env(), check=False)
        finally:
            job_file.unlink(missing_ok=True)
        if done.returncode != 0:
            raise KotaeError(f"quantization failed (exit {done.returncode}); see the output above")
        record = QuantizeRecord(
            model=str(model.resolve()),
            model_hash=model_hash(model),
            method=method,
            scheme=scheme,
            group_size=group_size,
            samples=len(texts),
        )
        (staging / RECORD_FILE).write_text(record.model_dump_json() + "\n", encoding="utf-8")
    console.print(f"[green]quantized[/] {out}")
    return out
