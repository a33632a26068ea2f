from __future__ import annotations

import pytest

from runtime.colors import parse_color
from runtime.errors import ColorError, RegistryError
from runtime.registry import load_registry, registry


@pytest.mark.parametrize(("text", "rgb"), [("#FF8800", (255, 136, 0)), ("ff8800", (255, 136, 0)),
                                           ("#f80", (255, 136, 0)), ("gold", (255, 215, 0)),
                                           (" Hot Pink ", (255, 105, 180))])
def test_colors(text, rgb):
    assert parse_color(text) == rgb


@pytest.mark.parametrize("text", ["#12", "f80", "#gg0000", "", "blurple", "rgb(1,2,3)", "#ff88001"])
def test_bad_colors_say_what_is_accepted(text):
    with pytest.raises(ColorError, match="#RRGGBB"):
        parse_color(text)


def test_registry_has_every_model():
    reg = registry()
    assert set(reg.models) == {"selfie_multiclass_256x256", "selfie_multiclass_twin", "selfie_segmenter",
                               "selfie_segmenter_landscape", "deeplab_v3", "hair_segmentation"}
    main = reg.get(reg.default)
    assert main.classes == ("background", "hair", "body-skin", "face-skin", "clothes", "accessories")
    assert main.output_kind == "logits" and main.url.startswith("https://storage.googleapis.com/")
    assert reg.get("hair_segmentation").input.channels == 4
    assert reg.get("deeplab_v3").input.range == (-1.0, 1.0)
    assert reg.get("selfie_multiclass_twin").synthetic


def test_registry_errors_are_specific(tmp_path):
    bad = tmp_path / "r.toml"
    bad.write_text('default = "m"\n[models.m]\ndescription = "x"\nurl = "u"\n'
                   'input = { height = 1, width = 1, layout = "NHWC", range = [0, 1] }\n'
                   'output = { kind = "logits" }\nclasses = ["a"]\nperson_classes = ["b"]\n')
    with pytest.raises(RegistryError, match="class 'b' is not in its classes"):
        load_registry(bad)
    bad.write_text('default = "m"\n[models.m]\ndescription = "x"\n')
    with pytest.raises(RegistryError, match="lacks field 'input'"):
        load_registry(bad)
