"""The mp4 turntable (frames, size cap) and the re-renders, checked where the answer is exact: the depth and
normals of the true sphere seen head on."""

from __future__ import annotations

import pytest
import torch

from dreamfusion.config.schema import TrialConfig
from dreamfusion.export.video import count_frames, write_mp4
from dreamfusion.export.views import MODES, Scene
from dreamfusion.nerf.field import Background
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.toyworld import world

torch.set_num_threads(1)


def test_mp4_has_every_frame_and_is_enlarged(tmp_path):
    frames = torch.linspace(0, 1, 7)[:, None, None, None].expand(7, 3, 32, 32)
    path = write_mp4(frames, tmp_path / "turn.mp4", fps=12)
    assert count_frames(path) == 7
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (192, 192)  # 32 px enlarged six times, like the GIFs


def test_mp4_over_its_cap_is_encoded_again_smaller(tmp_path):
    noise = torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    free = write_mp4(noise, tmp_path / "free.mp4").stat().st_size
    capped = write_mp4(noise, tmp_path / "capped.mp4", max_bytes=free // 2)
    assert capped.stat().st_size <= free // 2 and count_frames(capped) == 12


def test_odd_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        write_mp4(torch.zeros(2, 3, 33, 33), tmp_path / "odd.mp4", min_side=33)


@pytest.fixture(scope="module")
def sphere() -> Scene:
    """The true sphere (radius 0.55) as a scene: its depth and normals are known. A softer density than the world's
    (β = 0.05): the renderer's forward-difference normals are biased on a surface sharper than their step."""
    cfg = TrialConfig.model_validate({"render": {"samples_per_ray": 256}})
    return Scene(world.ShapeField("sphere", (0.9, 0.2, 0.1), beta=0.05), Background("white"), OccupancyGrid(), cfg)


def test_every_mode_renders_in_range(sphere):
    cams = sphere.ring(2)
    for mode in MODES:
        image = sphere.render(cams, mode, 16)
        assert image.shape == (2, 3, 16, 16) and 0 <= image.min() and image.max() <= 1


def test_depth_and_normals_of_the_sphere_head_on(sphere):
    cam = sphere.ring(1)
    distance = float(cam.position.norm())
    c = 15  # a 32 px image's centre pixel looks along the optical axis, to within half a pixel
    depth = sphere.render(cam, "depth", 32)[0, 0, c : c + 2, c : c + 2].mean()
    # shown as 1 − (d − near)/2 with near = distance − 1; the surface is 0.55 from the centre
    expected = 1 - ((distance - 0.55) - (distance - 1)) / 2
    assert abs(float(depth) - expected) < 0.01
    normal = sphere.render(cam, "normals", 32)[0, :, c : c + 2, c : c + 2].mean(dim=(1, 2)) * 2 - 1
    towards_camera = cam.position[0] / distance
    assert torch.dot(normal / normal.norm(), towards_camera) > torch.cos(torch.deg2rad(torch.tensor(4.0)))
    albedo = sphere.render(cam, "albedo", 32)[0, :, c, c]
    assert torch.allclose(albedo, torch.tensor([0.9, 0.2, 0.1]), atol=0.01)
