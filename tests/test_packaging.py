"""Packaging: the design card's top-level folders install as `kotae.*` subpackages through links in kotae/
(none may be forgotten), the compose files hold together, and docker builds get every file their
Dockerfile copies but none of the local state that .dockerignore keeps out."""

import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [ROOT / "compose.yaml", *sorted((ROOT / "deploy").glob("compose*.yaml"))]
LOCAL_STATE = [
    ".venv/bin/python",
    "runs/base/metrics.json",
    ".carry/part-00",
    ".gpukit/part-00",
    ".whl/torch.whl",
    ".env",
    ".git/HEAD",
    "rag/__pycache__/engine.cpython-311.pyc",
    "kotae.egg-info/PKG-INFO",
    ".pytest_cache/README.md",
    ".ruff_cache/CACHEDIR.TAG",
    ".import_linter_cache/CACHEDIR.TAG",
]
"""Paths of a working tree that no image needs: environments, run outputs, kit parts, secrets, caches."""


def test_every_package_folder_is_linked_into_kotae_and_listed_in_pyproject():
    for init in ROOT.glob("*/__init__.py"):
        top = init.parent.name
        if top not in {"kotae", "tests", "benchmarks"}:
            # Relative, so that the link holds in every clone and in a docker build that copies both folders.
            link = ROOT / "kotae" / top
            assert link.is_symlink() and os.readlink(link) == f"../{top}", f"kotae/{top}: no link to ../{top}"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {
        ".".join(Path(folder).relative_to(ROOT).parts)
        for folder, _, files in os.walk(ROOT / "kotae", followlinks=True)
        if "__init__.py" in files
    }
    assert found == set(packages)


# -- docker -----------------------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `**` spans folders, `*` and `?` stay within one."""
    pieces = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    return re.compile("".join(pieces.get(part, re.escape(part)) for part in parts))


def dockerignore_rules(text: str) -> list[tuple[re.Pattern[str], bool]]:
    """(pattern, sent) in file order; `!` patterns send again what an earlier one left out."""
    rules = []
    for line in map(str.strip, text.splitlines()):
        if line and not line.startswith("#"):
            rules.append((glob_regex(line.removeprefix("!").strip("/")), line.startswith("!")))
    return rules


def context_rules(context: Path) -> list[tuple[re.Pattern[str], bool]]:
    ignore_file = context / ".dockerignore"
    return dockerignore_rules(ignore_file.read_text() if ignore_file.exists() else "")


def sent_to_docker(path: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """Whether a build sends `path` (relative to its context): the last pattern that matches the path or a
    folder above it decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    sent = True
    for regex, keep in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            sent = keep
    return sent


def copied_sources(dockerfile: Path) -> list[str]:
    """The context paths a Dockerfile's COPY instructions read (copies from other stages are not)."""
    sources = []
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            sources += [word for word in words[1:] if not word.startswith("--")][:-1]
    return sources


def service_build(compose_file: Path, service: dict[str, Any]) -> tuple[Path, Path] | None:
    """(context, Dockerfile) of a compose service's `build:`, if it has one."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (compose_file.parent / build.get("context", ".")).resolve()
    return context, context / build.get("dockerfile", "Dockerfile")


def compose_services(compose_file: Path) -> dict[str, dict[str, Any]]:
    return yaml.safe_load(compose_file.read_text())["services"]


def compose_builds() -> set[tuple[Path, Path]]:
    builds = (service_build(f, service) for f in COMPOSE_FILES for service in compose_services(f).values())
    return {build for build in builds if build is not None}


DOCKER_BUILDS = sorted({*compose_builds(), *((ROOT, dockerfile) for dockerfile in ROOT.glob("Dockerfile*"))})
"""Every build: those of the compose files and `docker build` of this folder with each Dockerfile."""


def tracked_files(folder: Path, source: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", source], cwd=folder, capture_output=True, text=True, check=True
    )
    return listed.stdout.split("\0")[:-1]


@pytest.mark.parametrize(("context", "dockerfile"), DOCKER_BUILDS, ids=lambda path: path.name)
def test_docker_builds_get_every_file_they_copy(context: Path, dockerfile: Path) -> None:
    assert dockerfile.is_file(), f"{dockerfile} is missing"
    rules = context_rules(context)
    sources = copied_sources(dockerfile)
    assert sources, f"{dockerfile.name} copies nothing"
    for source in sources:
        assert (context / source).exists(), f"{dockerfile.name} copies {source}, which is not there"
        files = tracked_files(context, source)
        assert files, f"{dockerfile.name} copies {source}, which holds no file of the repository"
        left_out = [path for path in files if not sent_to_docker(path, rules)]
        assert not left_out, f".dockerignore keeps out what {dockerfile.name} copies: {left_out[:5]}"


def test_dockerignore_keeps_local_state_out_of_builds() -> None:
    rules = context_rules(ROOT)
    assert not [path for path in LOCAL_STATE if sent_to_docker(path, rules)]


def test_dockerignore_patterns_read_as_docker_reads_them() -> None:
    rules = dockerignore_rules("# comment\n**/__pycache__\n/runs/\n!runs/keep\n")
    assert not sent_to_docker("a/b/__pycache__/c.pyc", rules)
    assert not sent_to_docker("__pycache__/c.pyc", rules)
    assert not sent_to_docker("runs/base/metrics.json", rules)
    assert sent_to_docker("runs/keep/notes.md", rules)
    assert sent_to_docker("adapters/runs.py", rules)
    assert sent_to_docker("deploy/runs/x", rules), "a pattern without ** matches at the root only"


# -- compose ----------------------------------------------------------------------------------------


def mounted_source(volume: str | dict[str, Any]) -> str:
    """The host side of a volume: a path for a bind mount, a name for a named volume."""
    return volume["source"] if isinstance(volume, dict) else volume.split(":")[0]


@pytest.mark.parametrize("compose_file", COMPOSE_FILES, ids=lambda path: path.name)
def test_compose_file_mounts_and_builds_what_exists(compose_file: Path) -> None:
    compose = yaml.safe_load(compose_file.read_text())
    named_volumes = set(compose.get("volumes") or {})
    assert compose["services"], f"{compose_file.name} has no service"
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, f"{name}: neither an image nor a build"
        if build := service_build(compose_file, service):
            assert build in DOCKER_BUILDS  # so test_docker_builds_get_every_file_they_copy checks it
            context, dockerfile = build
            assert context.is_dir() and dockerfile.is_file(), f"{name} builds from {dockerfile}, not there"
        for volume in service.get("volumes", []):
            source = mounted_source(volume)
            if source.startswith((".", "/")):
                assert (compose_file.parent / source).exists(), f"{name} mounts {source}, which is not there"
            else:
                assert source in named_volumes, f"{name} mounts volume {source}, which is not declared"
