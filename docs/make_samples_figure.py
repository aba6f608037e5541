"""Render docs/img/synthetic_samples.png: synthetic RGB beside LiDAR depth, like the real figure.

The layout copies the published figure of real samples (docs/DATA.md, Scenes: cubes 0000/0001 and
spheres 0000/0001, depth with the viridis colour map, yellow = 50 = no return), so the two can be
compared. The scenes come from the files ``generate_raw`` writes (DEFAULT_SEED, the default
synthetic set's first scenes), read back as a loader would.

    .venv/bin/python docs/make_samples_figure.py [--out docs/img/synthetic_samples.png]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tune_cilp.core.errors import ArgumentParser, run_cli  # noqa: E402
from tune_cilp.data import DEFAULT_SEED, generate_raw  # noqa: E402

SAMPLES = [("cubes", 0), ("cubes", 1), ("spheres", 0), ("spheres", 1)]


def make_figure(out: Path, seed: int = DEFAULT_SEED) -> Path:
    """Generate a few scenes, draw each RGB image beside its depth map, save a PNG to ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = generate_raw(Path(tmp) / "raw", scenes=4, seed=seed)
        fig, axes = plt.subplots(len(SAMPLES), 2, figsize=(6.4, 12.0))
        for row, (label, index) in zip(axes, SAMPLES, strict=True):
            name = f"{index:04d}"
            rgb = np.asarray(Image.open(raw / label / "rgb" / f"{name}.png"))
            depth = np.load(raw / label / "lidar" / f"{name}.npy")
            panels = ((row[0], "RGB", rgb, None), (row[1], "LiDAR", depth, "viridis"))
            for ax, kind, image, cmap in panels:
                ax.imshow(image, cmap=cmap, interpolation="nearest")
                title = f"{kind} - {label}\nID: {label}_{name}"
                ax.set_title(title, fontsize=10, fontweight="bold")
                ax.axis("off")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
        plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent / "img" / "synthetic_samples.png"
    parser.add_argument("--out", type=Path, default=default, help="PNG to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    args = parser.parse_args(argv)
    print(make_figure(args.out, args.seed))
    return 0


if __name__ == "__main__":
    run_cli(main)
