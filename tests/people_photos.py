"""Real photos of people bundled with scikit-image and matplotlib: several sizes, aspects, colour and grey."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def people_photos() -> dict[str, np.ndarray]:
    """RGB uint8 photos by name: astronaut (512x512), Grace Hopper (512x600), cameraman (512x512, grey),
    the first face of the LFW subset (25x25, grey)."""
    import matplotlib.cbook
    from skimage import data

    from runtime.images import load_image

    lfw = np.load(Path(data.__file__).parent / "lfw_subset.npy")  # 25x25 grey faces in [0, 1]; the first is a face
    grey = {"cameraman": data.camera(), "lfw_face": np.rint(lfw[0] * 255).astype(np.uint8)}
    return {"astronaut": data.astronaut(),
            "grace_hopper": load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
            **{name: np.repeat(g[..., None], 3, axis=-1) for name, g in grey.items()}}
