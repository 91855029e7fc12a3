"""cluster/slurm/xgrid.sbatch refuses what it cannot run with, before it starts anything: one line naming the
variable, exit 2. Run with bash outside SLURM, the SLURM variables it reads set by the test and `scontrol`
replaced by a stand-in that expands the node list (`srun`, `squeue` and `scancel` stand-ins fail if called: nothing
may start). The real runs are tests/cluster/test_slurm.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "slurm" / "xgrid.sbatch"


@pytest.fixture
def stand_ins(tmp_path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 1\n'
                                      'echo "$3" | sed "s/n\\[1-2\\]/n1,n2/" | tr , "\\n"\n')
    for name in ("srun", "squeue", "scancel"):
        (bin_dir / name).write_text(f"#!/bin/sh\necho '{name} must not run' >&2\nexit 99\n")
    for name in ("xgrid", "ray"):  # on PATH like in xgrid's environment; never reached
        (bin_dir / name).write_text(f"#!/bin/sh\necho '{name} must not run' >&2\nexit 99\n")
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    return bin_dir


def run(stand_ins: Path, **variables: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "XGRID_"))}
    env |= {"PATH": f"{stand_ins}:{env['PATH']}", **variables}
    return subprocess.run(["bash", str(SCRIPT), "space.yaml"], env=env, capture_output=True, text=True, timeout=60)


ALLOCATION = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NNODES": "2", "SLURMD_NODENAME": "n1"}


def refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [l for l in result.stdout.splitlines() if "error:" in l]
    for fragment in fragments:
        assert fragment in line, line
    assert "must not run" not in result.stderr


def test_outside_slurm_it_says_to_submit_it_with_sbatch(stand_ins):
    refused(run(stand_ins), "SLURM_JOB_ID", "submit this script with sbatch")


def test_a_node_count_that_disagrees_with_the_node_list_is_refused(stand_ins):
    refused(run(stand_ins, **ALLOCATION | {"SLURM_NNODES": "3"}), "SLURM_NNODES=3", "n[1-2]", "2 node(s)")


def test_a_batch_host_outside_the_allocation_is_refused(stand_ins):
    refused(run(stand_ins, **ALLOCATION | {"SLURMD_NODENAME": "n9"}), "runs on n9", "n[1-2]")


@pytest.mark.parametrize("port", ["abc", "80", "70000"])
def test_a_bad_ray_port_is_refused(stand_ins, port):
    refused(run(stand_ins, **ALLOCATION, XGRID_RAY_PORT=port), f"XGRID_RAY_PORT={port}")


def test_a_ray_folder_too_long_for_unix_sockets_is_refused(stand_ins):
    folder = "/tmp/" + "x" * 40
    refused(run(stand_ins, **ALLOCATION, XGRID_RAY_TMPDIR=folder), f"XGRID_RAY_TMPDIR={folder}", "107-byte")


def test_a_missing_command_is_named(stand_ins):
    for name in ("python3", "date"):  # PATH is the stand-ins alone: the machine's own srun stays out of sight
        (stand_ins / name).write_text("#!/bin/sh\necho 00:00:00\n")
        (stand_ins / name).chmod(0o755)
    (stand_ins / "srun").unlink()
    result = subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                            env={"PATH": str(stand_ins), "HOME": os.environ.get("HOME", "/tmp"), **ALLOCATION})
    refused(result, "srun is not on PATH")


def test_the_script_asks_for_sigterm_before_the_time_limit_for_itself_only():
    lines = [l.split()[1] for l in SCRIPT.read_text().splitlines() if l.startswith("#SBATCH ")]
    assert "--signal=B:TERM@600" in lines  # B: the batch shell, which passes it on to the driver
    (time_limit,) = [l for l in lines if l.startswith("--time=")]
    hours = int(time_limit.split("=")[1].split(":")[0])
    assert hours * 3600 > 600
