"""Copy-on-write index directories: write a new one beside the target, then swap it in atomically.

A build or update that fails, or is killed (even SIGKILL), leaves the served index as it was: the new
directory only replaces it once complete and flushed to disk."""

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kotae.core.durable import sync

STAGING_PREFIX = ".{name}.new-"
"""Name of an update's staging directory beside its target, before mkdtemp's random suffix."""
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yields an empty directory beside `target`; when the block succeeds its contents replace `target`
    (created if absent), else it is removed. Writers of one target take turns (an exclusive file lock)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target):
        staging = Path(
            tempfile.mkdtemp(dir=target.parent, prefix=f"{STAGING_PREFIX.format(name=target.name)}")
        )
        staging.chmod(0o755)  # mkdtemp makes it private; an index is as readable as any other output
        try:
            yield staging
            publish(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def abandoned_stagings(target: Path) -> list[Path]:
    """Staging directories of updates to `target` that were killed before they could clean up (none while
    another writer holds the target's lock: its staging is alive)."""
    prefix = STAGING_PREFIX.format(name=target.name)
    lock_path = target.parent / f".{target.name}.lock"
    if not target.parent.is_dir():
        return []
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Writers of one target take turns: an exclusive lock on a file beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def publish(staging: Path, target: Path) -> None:
    """Flushes `staging` to disk, then swaps it in as `target` (call it holding `locked(target)`)."""
    _sync_tree(staging)
    _swap_into_place(staging, target)


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # it now holds the previous index
    else:
        # No atomic exchange here: move the old one aside first; the gap lasts two renames.
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.rename(target, aside / target.name)
        os.rename(staging, target)
        shutil.rmtree(aside)
    sync(target.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): both names always exist, so no reader ever sees no index."""
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
