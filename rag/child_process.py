"""A spawned child that answers over a pipe: how kotae's retrieval processes start and stop."""

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

CLOSE_WAIT_S = 5.0
"""How long `stop` waits for the child to end by itself: a terminated one leaves its interprocess semaphores
to multiprocessing's resource tracker, which warns of them."""


def spawn(target: Callable[..., None], args: tuple, name: str) -> tuple[BaseProcess, Connection]:
    """`target(*args, connection)` in a spawned process (never forked: this process may hold CUDA and OpenMP
    threads), and this process's end of the connection."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(*args, theirs), name=name, daemon=True)
    process.start()
    theirs.close()
    return process, ours


def stop(process: BaseProcess, connection: Connection) -> None:
    """Close this end of the connection: the child ends once it sees it closed (within `CLOSE_WAIT_S`, else
    it is terminated; it holds nothing to save)."""
    connection.close()
    process.join(CLOSE_WAIT_S)
    if process.is_alive():
        process.terminate()
        process.join()
