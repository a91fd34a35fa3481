"""A prompt is data: the directory `df-sweep run` names after it is a plain slug, never a path."""

from __future__ import annotations

import pytest

from dreamfusion.single import MAX_SLUG, slug


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a red cube", "a-red-cube"),
        ("A Red Cube, front view", "a-red-cube-front-view"),
        ("../../etc/passwd", "etc-passwd"),
        ("/abs/path\\with\\back", "abs-path-with-back"),
        ("~/.ssh/id_rsa", "ssh-id-rsa"),
        ("name\x00with\nnul", "name-with-nul"),
        ("!!!", "run"),
        ("日本語のプロンプト", "run"),
    ],
)
def test_slug(prompt, expected):
    assert slug(prompt) == expected


def test_a_long_prompt_gives_a_short_slug():
    made = slug("a red cube " * 1000)
    assert len(made) <= MAX_SLUG and made.startswith("a-red-cube-a-red-cube") and not made.endswith("-")
