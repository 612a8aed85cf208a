"""aeprobe.plots: no global matplotlib state changed, atomic PNGs, and a colour scale that shows
signed data (attribution maps) without clipping."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import aeprobe.plots.common as common
from aeprobe.plots import image_grid, image_scale, savefig, subplots

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, env_extra: dict, tmp_path: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_and_plotting_leave_an_interactive_backend_alone(tmp_path):
    """A notebook or desktop session has an interactive backend (stood in for here by a module
    backend, since CI has no display): importing aeprobe.plots and drawing must not switch it
    to Agg, and no figure is left registered with pyplot."""
    (tmp_path / "fakegui.py").write_text(textwrap.dedent('''
        from matplotlib.backend_bases import FigureManagerBase, _Backend
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        class FigureCanvasFake(FigureCanvasAgg):
            manager_class = FigureManagerBase

        @_Backend.export
        class _BackendFake(_Backend):
            FigureCanvas = FigureCanvasFake
            FigureManager = FigureManagerBase

            @staticmethod
            def mainloop():
                pass
    '''))
    out = _run('''
        import matplotlib
        import matplotlib.pyplot as plt
        import numpy as np
        import aeprobe.plots as P
        P.image_grid(np.random.rand(4, 6, 6), "g.png")
        print(matplotlib.get_backend(), len(plt.get_fignums()))
    ''', {"MPLBACKEND": "module://fakegui"}, tmp_path)
    assert out == "module://fakegui 0"
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_headless_plotting_needs_no_pyplot(tmp_path):
    """No display, no MPLBACKEND: figures are standalone, so pyplot is never even imported."""
    out = _run('''
        import sys
        import numpy as np
        import aeprobe.plots as P
        P.image_grid(np.random.randn(4, 6, 6), "signed.png")
        P.line_plot({"a": ([0, 1], [1, 0])}, "line.png")
        print("matplotlib.pyplot" in sys.modules)
    ''', {}, tmp_path)
    assert out == "False"
    assert (tmp_path / "signed.png").stat().st_size > 0 and (tmp_path / "line.png").stat().st_size > 0


def _drawn(monkeypatch, **kwargs):
    """Call image_grid and return its figure (captured at savefig)."""
    figs = []
    monkeypatch.setattr(common, "savefig", lambda fig, path, **kw: figs.append(fig) or Path(path))
    image_grid(**kwargs)
    (fig,) = figs
    return fig


def _attribution_map() -> np.ndarray:
    """Integrated gradients of a small random conv AE's first code unit: a real signed map."""
    from aeprobe.attribution import attribute_code

    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    dec = nn.Sequential(nn.Linear(3, 256), nn.Unflatten(1, (1, 16, 16)))

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = enc, dec

        def encode(self, x):
            return self.encoder(x)

        def forward(self, x):
            return self.decoder(self.encoder(x))

    x = torch.rand(6, 1, 16, 16)
    att = attribute_code(AE(), x, unit=0, n_steps=16)
    return att.attributions[:, 0].detach().numpy()


def test_a_signed_attribution_map_is_drawn_without_clipping(monkeypatch, tmp_path):
    amap = _attribution_map()
    assert amap.min() < 0 < amap.max()  # signed, as attribution maps are
    clipped_before = np.mean((amap < 0) | (amap > 1))  # what the old fixed 0..1 grey scale clipped
    assert clipped_before > 0.05
    fig = _drawn(monkeypatch, images=amap, path=tmp_path / "ig.png")
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == len(amap)
    m = float(np.abs(amap).max())
    for im in images:
        assert im.norm.vmin == pytest.approx(-m) and im.norm.vmax == pytest.approx(m)  # centred at 0
        assert im.get_cmap().name == "RdBu_r"
        data = np.asarray(im.get_array())
        assert np.all((im.norm(data) >= 0) & (im.norm(data) <= 1))  # no pixel clipped
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    lo, hi = colorbars[0].get_ylim()
    assert lo == pytest.approx(-m) and hi == pytest.approx(m)  # the bar shows the range


def test_images_in_unit_range_keep_the_grey_scale(monkeypatch, tmp_path):
    x = np.random.default_rng(0).random((3, 5, 5))
    fig = _drawn(monkeypatch, images=x, path=tmp_path / "x.png")
    ims = [im for ax in fig.axes for im in ax.get_images()]
    assert {(im.norm.vmin, im.norm.vmax, im.get_cmap().name) for im in ims} == {(0.0, 1.0, "gray")}
    assert not any(ax.get_label() == "<colorbar>" for ax in fig.axes)


@pytest.mark.parametrize("data, kind, vmin, vmax", [
    (np.array([[0.0, 0.5]]), "unit", 0.0, 1.0),
    (np.array([[-2.0, 0.5]]), "signed", -2.0, 2.0),
    (np.array([[0.0, 3.0]]), "positive", 0.0, 3.0),
    (np.array([[np.nan, -0.5, np.inf]]), "signed", -0.5, 0.5),
])
def test_image_scale_follows_the_data(data, kind, vmin, vmax):
    s = image_scale(data)
    assert (s["kind"], s["vmin"], s["vmax"]) == (kind, vmin, vmax)
    assert s["colorbar"] == (kind != "unit")
    fixed = image_scale(data, vmin=-1, vmax=1, cmap="magma")
    assert (fixed["kind"], fixed["vmin"], fixed["vmax"], fixed["cmap"]) == ("fixed", -1.0, 1.0, "magma")
    with pytest.raises(ValueError, match="vmax must be > vmin"):
        image_scale(data, vmin=1, vmax=1)


def test_savefig_is_atomic(tmp_path, monkeypatch):
    """A write that dies half-way (disk full, kill) leaves the previous PNG intact and no temp file."""
    import PIL.Image

    path = tmp_path / "fig.png"
    fig, ax = subplots()
    ax.plot([0, 1], [0, 1])
    savefig(fig, path)
    before = path.read_bytes()
    real_save = PIL.Image.Image.save

    def dies_half_way(self, fp, *args, **kwargs):
        if isinstance(fp, (str, os.PathLike)):
            with open(fp, "wb") as fh:
                fh.write(b"\x89PNG half")
        else:
            fp.write(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(PIL.Image.Image, "save", dies_half_way)
    fig2, ax2 = subplots()
    ax2.plot([0, 1], [1, 0])
    with pytest.raises(OSError, match="No space"):
        savefig(fig2, path)
    monkeypatch.setattr(PIL.Image.Image, "save", real_save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
