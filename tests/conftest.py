import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory):
    """The two-node Ray cluster and the MLflow server that test_cluster and test_faults share: started once,
    every process stopped by its PID at the end, whatever happened."""
    from cluster_helpers import running_stack

    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@pytest.fixture
def stack(shared_stack):
    """The shared stack, with any `df-sweep` driver a test started stopped after it, even if the test failed."""
    yield shared_stack
    shared_stack.stop_drivers()


def pytest_collection_modifyitems(items):
    """The tests on the shared stack run last (in their own order), so that its processes stop with them instead
    of idling through the rest of the suite."""
    items.sort(key=lambda item: "shared_stack" in getattr(item, "fixturenames", ()))
