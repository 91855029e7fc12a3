import pytest

from tests.models import tiny_families
from tests.tasks import hub_fake


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory) -> str:
    return str(tiny_families.xlmr(tmp_path_factory.mktemp("tiny-xlmr")))


@pytest.fixture
def fake_hub(monkeypatch) -> hub_fake.FakeHub:
    return hub_fake.install(monkeypatch)
