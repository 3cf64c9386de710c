"""Thread pools shared by the whole process, one per purpose, made on first use."""

import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def shared_pool(purpose: str, threads: int) -> ThreadPoolExecutor:
    """The pool of `purpose`, made with `threads` threads by its first caller."""
    with _lock:
        pool = _pools.get(purpose)
        if pool is None:
            pool = _pools[purpose] = ThreadPoolExecutor(threads, thread_name_prefix=f"kotae-{purpose}")
        return pool
