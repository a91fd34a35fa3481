"""The private Ray that df-sweep still needs, each piece behind one function here, and only here: the embedded Ray
(`embedded.py`) needs two things Ray's public API does not offer. Each function says why no public API serves;
`tests/unit/tune/test_ray_private.py` resolves each name on the installed Ray and checks what it does, so that a Ray
upgrade that moves or removes one fails there, not in a launch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def reload_auth() -> None:
    """Have this process's Ray re-read its auth settings (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN) from
    the environment. Ray reads them once per process and caches them, in its config and in its token loader, and
    neither `ray.init` nor any public call takes a mode or a token: without this, an embedded Ray started after an
    earlier Ray in the same process (a second launch from Python, a notebook, the tests) would present the earlier
    token, and a process left after the launch would keep the launch's."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]  # compiled, no stubs

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def no_cluster_mode() -> Iterator[None]:
    """Ray's "no cluster" mode in this process while the context lasts: a node then takes 127.0.0.1 as its IP, as
    on macOS and Windows. On Linux `ray.init(_node_ip_address="127.0.0.1")` turns that address back into the
    machine's network address, and Ray's only public switch, the RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER variable, is
    read once, when Ray is first imported: by then this process has imported Ray. Restored afterwards, so that a
    later `ray.init(address=...)` of this process reaches a real cluster."""
    from ray._private import ray_constants

    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled
