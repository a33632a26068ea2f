"""The real photos the benchmark's agreement check and the gallery use (bundled with scikit-image and matplotlib)."""

from __future__ import annotations

import numpy as np


def portraits() -> dict[str, np.ndarray]:
    """scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper, RGB uint8."""
    import matplotlib.cbook
    from skimage import data

    from runtime.images import load_image

    return {"astronaut": data.astronaut(),
            "grace_hopper": load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}


def scenery() -> np.ndarray:
    """A new background for the background-replacement picture: scikit-image's rocket launch."""
    from skimage import data

    return data.rocket()
