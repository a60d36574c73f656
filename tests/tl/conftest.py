import pytest
from _tl_helpers import FIT_KW


@pytest.fixture(scope="session")
def _trained(tmp_path_factory):
    """One tiny synthetic dataset and a model fitted on it, built once per run (copies handed out)."""
    import genedml as gd

    gd.settings.cachedir = tmp_path_factory.mktemp("fit-cache")
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    model = gd.tl.fit(sdata, **FIT_KW)
    return sdata, model


@pytest.fixture
def trained(_trained):
    from spatialdata import deepcopy

    sdata, model = _trained
    return deepcopy(sdata), model
