import pytest

from xgrid.tasks import default_registry


@pytest.fixture(scope="session")
def registry():
    return default_registry()


@pytest.fixture(scope="session")
def store_root(tmp_path_factory):
    """One checkpoint store per test session: the tiny base model is built once and shared."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="session")
def tiny_model(store_root):
    from xgrid.models.tiny import ensure_tiny_model

    return str(ensure_tiny_model(store_root, microbench_seed=0))
