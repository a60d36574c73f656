"""validate(): a correct object built with build_sdata passes; each kind of breakage is named."""

from __future__ import annotations

import numpy as np
import pytest
from _io_data import tiny_section

import genedml as gd
from genedml.io import ValidationError, build_sdata, validate


@pytest.fixture
def sdata():
    return build_sdata([tiny_section("T1"), tiny_section("T2", seed=1)])


def test_valid(sdata):
    validate(sdata)
    assert gd.io.sections(sdata) == ["T1", "T2"]
    assert gd.io.pixel_size(sdata, "T1") == 2.0
    assert gd.io.image_shape(sdata, "T1") == (64, 80)


def test_no_image(sdata):
    del sdata.images["T2_hne"]
    with pytest.raises(ValidationError, match=r"section 'T2': no image element 'T2_hne'"):
        validate(sdata)


def test_no_pixel_size_transformation(sdata):
    from spatialdata.transformations import Identity, set_transformation

    set_transformation(sdata.shapes["T1_spots"], {"T1": Identity()}, set_all=True)
    with pytest.raises(ValidationError, match=r"no transformation to the coordinate system 'T1_um'"):
        validate(sdata)


def test_negative_counts(sdata):
    t = gd.io.get_table(sdata)
    t.X.data[0] = -3
    with pytest.raises(ValidationError, match=r"table.X holds negative values"):
        validate(sdata)


def test_non_integer_counts(sdata):
    t = gd.io.get_table(sdata)
    t.layers["counts"] = t.layers["counts"].astype(np.float32) * 0.5
    with pytest.raises(ValidationError, match=r"table.layers\['counts'\] holds non-integer"):
        validate(sdata)
    validate(sdata, require_counts=False)


def test_spot_outside_image():
    xy = np.column_stack([10.0 + 10 * np.arange(6), np.full(6, 20.0)])
    xy[2] = [500.0, 20.0]
    sdata = build_sdata([tiny_section("T1", xy=xy)])
    with pytest.raises(ValidationError, match=r"section 'T1': 1 spot centre\(s\) lie outside the 80×64 px image"):
        validate(sdata)


def test_bad_instance_ids(sdata):
    t = gd.io.get_table(sdata)
    t.obs["spot_id"] = t.obs["spot_id"] + 100
    with pytest.raises(ValidationError, match=r"obs\['spot_id'\] holds ids missing from 'T1_spots'"):
        validate(sdata)


def test_missing_obs_column_and_table(sdata):
    t = gd.io.get_table(sdata)
    del t.obs["patient"]
    with pytest.raises(ValidationError, match=r"table.obs lacks required column\(s\) \['patient'\]"):
        validate(sdata)
    with pytest.raises(ValidationError, match=r"`table_key`='other' is not in `sdata.tables`"):
        validate(sdata, table_key="other")


def test_image_not_rgb_uint8():
    from spatialdata.models import Image2DModel

    from genedml._data_model import section_transforms

    img = Image2DModel.parse(np.zeros((3, 64, 80), dtype=np.float32), transformations=section_transforms("T1", 2.0))
    sdata = build_sdata([tiny_section("T1", image=img)])
    with pytest.raises(ValidationError, match=r"image must be RGB uint8"):
        validate(sdata)


def test_lists_every_problem(sdata):
    del sdata.images["T1_hne"]
    gd.io.get_table(sdata).X.data[0] = -1
    with pytest.raises(ValidationError) as e:
        validate(sdata)
    assert "no image element 'T1_hne'" in str(e.value) and "negative" in str(e.value)


def test_custom_table_key(sdata):
    sdata.tables["spots"] = sdata.tables.pop("table")
    validate(sdata, table_key="spots")


def test_parsed_image_without_um_transformation_gets_one():
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity, get_transformation

    img = Image2DModel.parse(np.zeros((3, 64, 80), dtype=np.uint8), transformations={"T1": Identity()})
    sdata = build_sdata([tiny_section("T1", image=img)])
    tfs = get_transformation(sdata.images["T1_hne"], get_all=True)
    assert set(tfs) == {"T1", "T1_um"}
    assert tfs["T1_um"].to_affine_matrix(input_axes=("x",), output_axes=("x",))[0, 0] == 2.0
