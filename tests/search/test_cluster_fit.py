"""A search that joins a cluster (`--address`) whose nodes can never place a trial is refused before any folder
is written, instead of waiting in Tune's queue without a word. The "cluster" is a real one-CPU Ray that the
test starts and the search joins."""

import pytest

from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.search.options import SearchOptions
from xgrid.search.runner import SearchSetupError, run_search


@pytest.fixture
def one_cpu_cluster():
    import ray

    ray.init(num_cpus=1, include_dashboard=False)
    yield
    ray.shutdown()


def test_a_trial_the_cluster_cannot_place_is_refused_before_anything_is_written(registry, tmp_path, one_cpu_cluster):
    space = parse_space({"name": "fit", "base_models": [{"name": "tiny"}], "intermediates": ["none"],
                         "targets": ["mb_udpos"], "seeds": [0], "target_training": {"learning_rate": 0.001},
                         "resources": {"workers_per_trial": 2, "cpus_per_worker": 1}}, registry)
    with pytest.raises(SearchSetupError) as err:
        run_search(build_plan(space, registry), SearchOptions(output_root=tmp_path / "out", address="auto"))
    assert len(str(err.value).splitlines()) == 1 and "the cluster" in str(err.value) and "CPU" in str(err.value)
    assert not (tmp_path / "out").exists()
