"""The root conftest's scheduling: whole packages to each pytest-xdist worker, the longest packages first;
in a package, the modules that share tests/server's `kotae serve` process first."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


class StubConfig:
    """What xdist's scheduler reads of pytest's config: two workers, packages ordered by test count."""

    option = SimpleNamespace(loadscopereorder=True)

    def getvalue(self, name: str) -> list[str]:
        assert name == "tx"
        return ["2*popen"]


class StubWorker:
    """A worker that records the tests it is sent, by their index in its collection."""

    shutting_down = False

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.sent: list[list[int]] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.append(indexes)

    def shutdown(self) -> None:
        self.shutting_down = True


def test_the_longest_packages_go_first_each_whole_to_one_worker(pytestconfig: pytest.Config) -> None:
    conftest: Any = pytestconfig.pluginmanager.get_plugin(str(CONFTEST))
    scheduler = conftest.pytest_xdist_make_scheduler(StubConfig(), None)
    # More tests in rag and indexer than in the long packages: xdist alone would hand those out first.
    collection = [
        *(f"tests/rag/test_retriever.py::test_{n}" for n in range(5)),
        *(f"tests/indexer/test_build.py::test_{n}" for n in range(4)),
        "tests/adapters/test_training.py::test_sft",
        "tests/server/test_app.py::test_health",
        "tests/server/test_qa.py::test_answer",
        "tests/test_cli.py::test_ask",
    ]
    workers = [StubWorker("gw0"), StubWorker("gw1")]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)

    scheduler.schedule()

    first = [{collection[index].rsplit("/", 1)[0] for index in worker.sent[0]} for worker in workers]
    assert first == [{"tests/server"}, {"tests/adapters"}]
    assert [collection[index] for index in workers[0].sent[0]] == collection[10:12]


def test_the_shared_serve_is_taken_right_after_the_metrics_readers(pytestconfig: pytest.Config) -> None:
    conftest: Any = pytestconfig.pluginmanager.get_plugin(str(CONFTEST))
    names = ["test_abstention_api.py", "test_graceful_shutdown.py", "test_cancellation.py", "test_qa_api.py"]
    items: Any = [SimpleNamespace(path=Path("tests/server", name), _fixtureinfo=None) for name in names]
    conftest.pytest_collection_modifyitems(items)
    assert [item.path.name for item in items] == [
        "test_cancellation.py",
        "test_graceful_shutdown.py",
        "test_abstention_api.py",
        "test_qa_api.py",
    ]
