"""Mutation check of the maths modules: every mutant the unit tests let live must be a known equivalent one.

`mutmut run` (configured in pyproject.toml's [tool.mutmut]: dreamfusion/sds, scoring/metrics.py, nerf/render.py and
nerf/cameras.py against tests/unit/{sds,scoring,nerf,trial} with `-m unit`) mutates the code one small change at a
time and runs the tests on each mutant. A surviving mutant is either a missing test or an *equivalent* mutant, one
that changes no observable behaviour (a clamp bound that is never reached, `dim=+1` for `dim=-1` on a 2-D tensor,
a device argument on a CPU-only run). The equivalent ones are listed, each with its reason, in
tests/slow/equivalent_mutants.txt; this test fails on any other survivor and prints the mutation score.

The list is keyed by `module:function: removed line -> added line` from `mutmut show`, not by mutmut's numbered
names (`…__mutmut_17`), which shift whenever a function gains or loses a mutation site.

State: mutmut keeps its copy of the code, its mutants and its verdicts in `mutants/` at the repository root. The
test leaves that folder in place (it is git-ignored, and a later run reuses its cache); it removes nothing it did
not create. mutmut reuses a cached verdict for every function whose source is unchanged, even when the tests have
changed since, so when `mutants/` was already there the test re-runs every surviving mutant by name against the
current tests before judging. Delete `mutants/` for a score computed from scratch.

Cost: ~7 minutes from scratch on 2 idle cores, far longer on a loaded machine (36 minutes for the cached run plus
the re-run of 69 survivors at a load average of ~18); each mutmut call may take 40 minutes. `MUTMUT_MAX_CHILDREN`
(default 2) sets mutmut's parallelism.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent_mutants.txt")
MUTMUT = Path(sys.executable).with_name("mutmut")
TIMEOUT_S = 40 * 60
#: mutmut's verdicts that count as a detected mutant; anything else (survived, no tests, suspicious, skipped,
#: not checked) must be listed as equivalent.
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


def _strip_comment(code: str) -> str:
    """`code` without a trailing `# comment` (a `#` inside a string literal is kept)."""
    quote, escaped = None, False
    for i, ch in enumerate(code):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return code[:i]
    return code


def _split_name(name: str) -> tuple[str, str]:
    """(module, function) of a mutant name: `dreamfusion.sds.schedules.xǁUniformǁ__call____mutmut_10` →
    (`dreamfusion.sds.schedules`, `Uniform.__call__`); `dreamfusion.nerf.render.x_ray_sphere__mutmut_4` →
    (`dreamfusion.nerf.render`, `ray_sphere`)."""
    module, _, mangled = re.sub(r"__mutmut_\d+$", "", name).rpartition(".")
    if mangled.startswith("xǁ"):
        cls, _, method = mangled[len("xǁ") :].partition("ǁ")
        return module, f"{cls}.{method}"
    return module, mangled.removeprefix("x_")


def mutant_key(name: str, diff: str) -> str:
    """The stable key of mutant `name` from its `mutmut show` diff: `module:function: removed -> added`.

    removed / added: the changed lines of the diff, each stripped of indentation and trailing comment, joined by
    a space when the mutation spans several lines.
    """
    module, function = _split_name(name)
    removed: list[str] = []
    added: list[str] = []
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("-"):
            removed.append(_strip_comment(line[1:]).strip())
        elif in_hunk and line.startswith("+"):
            added.append(_strip_comment(line[1:]).strip())
    if not removed and not added:
        raise ValueError(f"no changed lines in the diff of {name}:\n{diff}")
    return f"{module}:{function}: {' '.join(removed)} -> {' '.join(added)}"


def test_mutant_key_is_stable_and_readable():
    diff = """# dreamfusion.nerf.render.x_render__mutmut_31: survived
--- dreamfusion/nerf/render.py
+++ dreamfusion/nerf/render.py
@@ -15,7 +15,7 @@
     depth, delta = sample_along(near, far, samples, generator)  # [R, S], [R, 1]
-    points = (origins[:, None] + dirs[:, None] * depth[..., None]).clamp(-1, 1)  # [R, S, 3]
+    points = (origins[:, None] + dirs[:, None] * depth[..., None]).clamp(None, 1)  # [R, S, 3]
     flat = points.reshape(-1, 3)
"""
    assert mutant_key("dreamfusion.nerf.render.x_render__mutmut_31", diff) == (
        "dreamfusion.nerf.render:render: points = (origins[:, None] + dirs[:, None] * depth[..., None]).clamp(-1, 1)"
        " -> points = (origins[:, None] + dirs[:, None] * depth[..., None]).clamp(None, 1)"
    )
    method = "@@ -1,2 +1,2 @@\n-    return x + 1\n+    return x - 1\n"
    key = "dreamfusion.sds.schedules:Uniform.__call__: return x + 1 -> return x - 1"
    assert mutant_key("dreamfusion.sds.schedules.xǁUniformǁ__call____mutmut_10", method) == key
    assert _strip_comment('s = "a # b"  # note') == 's = "a # b"  '
    assert _strip_comment("s = 'it\\'s # here'  # note") == "s = 'it\\'s # here'  "


def _mutmut(*args: str, timeout: float = 600) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [str(MUTMUT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"mutmut {' '.join(args[:2])} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _statuses() -> dict[str, str]:
    """Every mutant's name → mutmut's verdict."""
    found = {}
    for line in _mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def _listed() -> dict[str, str]:
    """equivalent_mutants.txt: key → reason (blank lines and lines starting with `#` are comments)."""
    listed = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, sep, reason = line.partition(" # ")
            assert sep and reason.strip(), f"equivalent_mutants.txt: no ` # reason` on: {line}"
            assert key.strip() not in listed, f"equivalent_mutants.txt: listed twice: {key}"
            listed[key.strip()] = reason.strip()
    return listed


def test_every_surviving_mutant_is_a_known_equivalent():
    max_children = os.environ.get("MUTMUT_MAX_CHILDREN", "2")
    cached = (ROOT / "mutants").exists()
    _mutmut("run", "--max-children", max_children, timeout=TIMEOUT_S)
    statuses = _statuses()
    undetected = sorted(name for name, status in statuses.items() if status not in DETECTED)
    if cached and undetected:  # verdicts cached from older tests: check these survivors again, now
        _mutmut("run", "--max-children", max_children, *undetected, timeout=TIMEOUT_S)
        statuses = _statuses()
        undetected = sorted(name for name, status in statuses.items() if status not in DETECTED)
    assert statuses, "mutmut reported no mutants"

    by_module: dict[str, list[int]] = {}
    for name, status in statuses.items():
        counts = by_module.setdefault(_split_name(name)[0], [0, 0])
        counts[0] += status in DETECTED
        counts[1] += 1
    killed = sum(k for k, _ in by_module.values())
    print(f"\nmutation score: {killed}/{len(statuses)} = {killed / len(statuses):.1%}")
    for module, (k, n) in sorted(by_module.items()):
        print(f"  {module}: {k}/{n}")

    listed = _listed()
    keys = {name: mutant_key(name, _mutmut("show", name)) for name in undetected}
    unexplained = [f"{name} [{statuses[name]}]\n    {key}" for name, key in keys.items() if key not in listed]
    stale = sorted(set(listed) - set(keys.values()))
    if stale:
        print(f"{len(stale)} entries of equivalent_mutants.txt match no survivor (killed now, or the code moved):")
        print("\n".join(f"  {key}" for key in stale))
    assert not unexplained, (
        f"{len(unexplained)} surviving mutants are not in {EQUIVALENT.name}: kill them with a test, or list them "
        "with the reason they are equivalent:\n" + "\n".join(unexplained)
    )
