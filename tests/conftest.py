import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The two-node Ray cluster and the MLflow server that test_cluster and test_faults share: started once,
    every process stopped by its PID at the end, whatever happened."""
    from cluster_helpers import running_stack

    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started
