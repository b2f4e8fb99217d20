"""Pictures a person would rather look at than numbers: matplotlib, headless (Agg)."""

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from spkverif.io.atomic import atomic_write

matplotlib.use("Agg")


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write `figure` as a PNG, atomically, and release it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi)
    plt.close(figure)
    return path
