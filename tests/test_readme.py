"""README's CLI quick start, run exactly as written (in a directory holding the photos it names), so README
and the CLI cannot disagree silently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

from runtime.settings import PROJECT_ROOT

from .conftest import need_model
from .markdown_commands import marked_block

README = PROJECT_ROOT / "README.md"


def test_readme_cli_quick_start_runs_as_written(tmp_path, astronaut):
    from skimage import data

    for name in ("selfie_segmenter", "hair_segmentation"):
        need_model(name)
    Image.fromarray(astronaut).save(tmp_path / "photo.jpg")
    Image.fromarray(data.coffee()).save(tmp_path / "beach.jpg")
    bin_dir = Path(sys.executable).parent  # where `pip install -e .` put selfie-tvm
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TVM_NUM_THREADS": "2",
           "SELFIE_TVM_MODELS_DIR": str(need_model("selfie_segmenter").parent),
           "SELFIE_TVM_CACHE_DIR": str(tmp_path / "cache")}
    commands = marked_block(README, "runnable")
    assert [c[:2] for c in commands] == [["selfie-tvm", "--help"], ["selfie-tvm", "models"],
                                         ["selfie-tvm", "segment"], ["selfie-tvm", "hair"],
                                         ["selfie-tvm", "background"]]
    outputs = []
    for command in commands:
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    assert "examples:" in outputs[0] and "selfie-tvm segment photo.jpg" in outputs[0]
    assert "selfie_segmenter" in outputs[1]
    # What README says each command writes.
    masks = sorted(p.name for p in (tmp_path / "out").glob("photo.mask.*.png"))
    assert masks == ["photo.mask.background.png", "photo.mask.person.png"]
    assert (tmp_path / "out" / "photo.overlay.png").is_file()
    assert (tmp_path / "photo.hair.png").is_file() and (tmp_path / "photo.background.png").is_file()
    assert all("inference" in out for out in outputs[2:])
