"""`df-sweep ui` bound beyond loopback says so: the MLflow UI has no authentication of its own."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.tracking.server import is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.0.2.2", "my-node.example"])
def test_hosts_other_machines_reach(host):
    assert not is_loopback(host)


def test_ui_on_every_interface_warns_before_anything_starts(tmp_path, monkeypatch):
    """The warning is checked on a store that does not exist yet, so that nothing is ever bound beyond loopback
    here; the warning comes first, before the store is looked at."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert lines[0].startswith("warning: --host 0.0.0.0: the MLflow UI is served to every machine")
    assert "no authentication" in lines[0] and "docs/guide/security.md: Sharing the MLflow UI" in lines[0]
    assert lines[1].endswith("no MLflow store here yet; df-sweep launch or df-sweep run creates it")
    quiet = CliRunner().invoke(app, ["ui", "--host", "127.0.0.1"])
    assert "warning" not in quiet.output and quiet.exit_code == 2
