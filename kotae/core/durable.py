"""Files and folders that are whole or absent, and on disk once written: for state a killed process resumes
from, and for outputs (indexes, adapters, models, caches) that readers must never see half-written; and
the sha256 of a file, read in blocks. (`atomic_text` is whole or absent but not flushed: for reports and
examples that a crash may lose but never leave half-written; its gzip output is the same bytes for the same
text.)

A folder is written into a staging folder beside its target (`.<name>.new-<random>`), flushed to disk, and
then renamed into place: `staged_directory` replaces the target, `build_once` keeps a complete target that
another writer installed first. Writers that must take turns hold `locked(target)` around it.
"""

import contextlib
import ctypes
import errno
import fcntl
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

STAGING_PREFIX = ".{name}.new-"
"""Name of a staging folder beside its target, before mkdtemp's random suffix."""
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def write_durably(path: Path, data: bytes) -> None:
    """Writes `data` beside `path`, flushes it, renames it into place and flushes the directory entry."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync(path.parent)


@contextlib.contextmanager
def atomic_text(target: Path) -> Iterator[IO[str]]:
    """A UTF-8 text stream (gzip-compressed when `target` ends in .gz) that replaces `target` on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with contextlib.ExitStack() as stack:
            stream: IO[bytes] = stack.enter_context(staging.open("wb"))
            if target.suffix == ".gz":
                # No file name and no time in the gzip header: the same text gives the same bytes, so a
                # rebuilt file's sha256 matches the one recorded for it (an adapter's examples, say).
                stream = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=stream, mtime=0))
            yield stack.enter_context(io.TextIOWrapper(stream, encoding="utf-8"))
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def sync(path: Path) -> None:
    """Flushes a file or a directory (its entries) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# Folders ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yields an empty directory beside `target`; when the block succeeds its contents replace `target`
    (created if absent), else it is removed."""
    staging = _new_staging(target)
    try:
        yield staging
        publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_once(target: Path, complete: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """`target`, built by `build(staging)` unless `complete(target)` says it already is. The staging
    folder is made readable by all, flushed, and renamed into place (an incomplete `target`, left half-done
    by hand, is removed first); when another writer installed a complete one first, theirs is kept."""
    if complete(target):
        return target
    staging = _new_staging(target)
    try:
        build(staging)
        for path in [staging, *staging.rglob("*")]:  # some writers create owner-only files
            path.chmod(0o755 if path.is_dir() else 0o644)
        _sync_tree(staging)
        if target.exists() and not complete(target):
            shutil.rmtree(target)
        try:
            os.replace(staging, target)
        except OSError:
            if not complete(target):  # lost a race to another writer: theirs is as good
                raise
        sync(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Writers of one target take turns: an exclusive lock on a file beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(target), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def abandoned_stagings(target: Path) -> list[Path]:
    """Staging directories of writes to `target` that were killed before they could clean up (none while
    another writer holds the target's lock: its staging is alive)."""
    prefix = STAGING_PREFIX.format(name=target.name)
    if not target.parent.is_dir():
        return []
    with open(_lock_path(target), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


def publish(staging: Path, target: Path) -> None:
    """Flushes `staging` to disk, then swaps it in as `target`."""
    _sync_tree(staging)
    _swap_into_place(staging, target)


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _new_staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=STAGING_PREFIX.format(name=target.name)))
    staging.chmod(0o755)  # mkdtemp makes it private; an output is as readable as any other
    return staging


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # it now holds the previous target
    else:
        # No atomic exchange here: move the old one aside first; the gap lasts two renames.
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.rename(target, aside / target.name)
        os.rename(staging, target)
        shutil.rmtree(aside)
    sync(target.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): both names always exist, so no reader ever sees no target."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # old kernel or a filesystem without it
        return False
    raise OSError(code, os.strerror(code), str(second))


def _sync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), reverse=True):
        sync(path)
    sync(directory)
