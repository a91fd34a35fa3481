"""The private Ray df-sweep still needs (`dreamfusion/tune/ray_private.py`), checked on the installed Ray: each name
resolves and does what the embedded Ray relies on. A Ray upgrade that moves, removes or changes one fails here. So
do the other names of Ray's that df-sweep relies on outside that module: the environment variable of Ray's "no
cluster" switch, and the loggers whose tracebacks a launch folds into one line. (`ray.init`'s `_temp_dir`, which
Ray's logging guide gives to move its temp files, is checked where a real embedded Ray starts: test_reaper.py.)"""

from __future__ import annotations

import importlib.util

import pytest

from dreamfusion.tune import ray_private
from dreamfusion.tune.embedded import AUTH_ENV, NO_CLUSTER_ENV
from dreamfusion.tune.launch import TUNE_LOGGERS


@pytest.fixture
def auth_env(monkeypatch, tmp_path):
    """Ray's auth settings of this process, restored (and re-read by Ray) after the test."""
    for key in AUTH_ENV:
        monkeypatch.delenv(key, raising=False)
    yield tmp_path
    monkeypatch.undo()
    ray_private.reload_auth()


def _token_file(folder, name: str, token: str):
    path = folder / name
    path.write_text(token)
    return str(path)


def test_reload_auth_makes_ray_read_a_new_token_and_mode(auth_env, monkeypatch):
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", _token_file(auth_env, "first", "a" * 64))
    ray_private.reload_auth()
    assert loader.get_raw_token() == "a" * 64
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", _token_file(auth_env, "second", "b" * 64))
    assert loader.get_raw_token() == "a" * 64  # Ray caches it: what reload_auth is for
    ray_private.reload_auth()
    assert loader.get_raw_token() == "b" * 64
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray_private.reload_auth()
    assert not loader.has_token()


def test_no_cluster_mode_gives_the_node_the_loopback_address_and_is_undone():
    from ray._private import ray_constants, services

    before = ray_constants.ENABLE_RAY_CLUSTER
    assert isinstance(before, bool)
    with ray_private.no_cluster_mode():
        assert services.get_node_ip_address() == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER is before


def test_the_no_cluster_variable_is_the_one_ray_reads():
    from ray._private import ray_constants

    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == NO_CLUSTER_ENV


@pytest.mark.parametrize("logger", TUNE_LOGGERS)
def test_the_loggers_a_launch_quiets_are_ray_modules(logger):
    assert importlib.util.find_spec(logger) is not None
