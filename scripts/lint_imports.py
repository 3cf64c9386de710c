"""Checks the import contracts of pyproject.toml ([tool.importlinter]) with import-linter.

Its graph builder (grimp) finds a package's modules by walking the package's folder, but kotae's subpackages
live in the repository's top-level folders ([tool.setuptools.package-dir]). So this lays kotae out as it is
installed, as links in a temporary folder, and runs `lint-imports` there.
"""

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    pyproject = ROOT / "pyproject.toml"
    package_dirs = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="kotae-imports-") as tree:
        package = Path(tree) / "kotae"
        package.mkdir()
        for entry in (ROOT / package_dirs["kotae"]).iterdir():
            (package / entry.name).symlink_to(entry)
        for name, folder in package_dirs.items():
            if name != "kotae":
                (package / name.removeprefix("kotae.")).symlink_to(ROOT / folder)
        lint_imports = Path(sys.executable).parent / "lint-imports"
        command = [str(lint_imports), "--config", str(pyproject), "--no-cache", *sys.argv[1:]]
        return subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": tree}).returncode


if __name__ == "__main__":
    sys.exit(main())
