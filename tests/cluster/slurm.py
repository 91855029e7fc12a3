"""A real SLURM cluster on this machine for the tests: Debian's `slurm-wlm` (slurmctld, one slurmd per node: the
Debian build runs several on one host) and its own munged, each with a private key, socket, config, state and
log folder under one temp folder, on ports of its own, so nothing is shared with a SLURM the machine may run.
Every process is started here in the foreground and stopped by its PID; so are the processes of jobs that
outlive the test (found by the test's temp folder in their command line), never by name."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "scancel")


def missing() -> str | None:
    """Why a local SLURM cannot run here (None when it can)."""
    absent = [name for name in DAEMONS if shutil.which(name) is None
              and not Path("/usr/sbin", name).exists()]
    if absent:
        return f"SLURM is not installed ({', '.join(absent)} missing: apt-get install slurm-wlm)"
    if os.geteuid() != 0:
        return "slurmd runs jobs as their user only when started as root"
    return None


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class LocalSlurm:
    """`nodes` SLURM nodes n1..nN on this host, `cpus` CPUs each, one partition. `env` is what a client command
    (sbatch, scontrol ...) needs to talk to this cluster and to nothing else."""

    def __init__(self, nodes: int = 2, cpus: int = 1):
        # munged refuses a socket whose folders are not searchable by all: not pytest's 0700 temp folders.
        self.root = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
        self.root.chmod(0o755)
        self.nodes = [f"n{i + 1}" for i in range(nodes)]
        self.processes: list[subprocess.Popen] = []
        for sub in ("munge", "run", "state", "log", "spool"):
            (self.root / sub).mkdir()
        (self.root / "munge").chmod(0o700)
        (self.root / "run").chmod(0o755)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.socket = self.root / "run" / "munge.socket"
        ctld_port, *node_ports = free_ports(1 + nodes)
        host, user = socket.gethostname(), getpass.getuser()
        lines = [
            "ClusterName=xgridtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.socket}",
            f"SlurmUser={user}", f"SlurmdUser={user}",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}/%n",
            f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'run'}/slurmd-%n.pid",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log'}/slurmd-%n.log",
            # no cgroups in a container: processes are tracked by their parents
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
            "SchedulerType=sched/builtin", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "MinJobAge=3600",  # a finished job stays in `scontrol show job` (no accounting database here)
            "KillWait=10",
            *[f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} RealMemory=1000 "
              "State=UNKNOWN" for name, port in zip(self.nodes, node_ports)],
            f"PartitionName=test Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf = self.root / "slurm.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for name in list(self.env):  # a SLURM job running these tests must not leak its own job into ours
            if name.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and name != "SLURM_CONF":
                del self.env[name]
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _daemon(self, *argv: str) -> subprocess.Popen:
        log = open(self.root / "log" / f"{Path(argv[0]).name}-{len(self.processes)}.out", "w")
        process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def _start(self) -> None:
        munge = self.root / "munge"
        self._daemon(_binary("munged"), "--foreground", f"--socket={self.socket}", f"--key-file={munge / 'munge.key'}",
                     f"--log-file={munge / 'munged.log'}", f"--pid-file={self.root / 'run' / 'munged.pid'}",
                     f"--seed-file={munge / 'seed'}")
        self._wait(lambda: self.socket.exists(), "munged's socket")
        self._daemon(_binary("slurmctld"), "-D", "-i")
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0, "slurmctld")
        for node in self.nodes:
            self._daemon(_binary("slurmd"), "-D", "-N", node)
        self._wait(lambda: self.idle_nodes() == len(self.nodes), "every node idle")

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited {process.returncode} while waiting for {what}: "
                                       f"{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"local SLURM: no {what} within {timeout} s: {self.logs()}")
            time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((self.root / "log").glob("*")) if p.is_file())

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check, timeout=timeout)

    def idle_nodes(self) -> int:
        result = self.run("sinfo", "--noheader", "--format=%T %D", check=False)
        return sum(int(count) for state, count in (l.split() for l in result.stdout.splitlines() if l.strip())
                   if state == "idle")

    def sbatch(self, *argv: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> int:
        result = subprocess.run(["sbatch", "--parsable", *argv], env={**env, "SLURM_CONF": str(self.conf)}, cwd=cwd,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        return int(result.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, ...)."""
        out = self.run("scontrol", "show", "job", "--oneliner", str(job_id)).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: int, timeout: float = 900) -> dict[str, str]:
        """The job's record once it ended. A job still running at the timeout is cancelled and reported."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info.get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
                return info
            if time.monotonic() > deadline:
                self.run("scancel", str(job_id), check=False)
                raise AssertionError(f"job {job_id} still {info.get('JobState')} after {timeout} s")
            time.sleep(1)

    def stop(self) -> None:
        """Every job cancelled, then the daemons stopped by PID, then whatever a job left behind."""
        if any(p.poll() is None for p in self.processes):
            self.run("scancel", "--full", "--user", getpass.getuser(), check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "--noheader", check=False).stdout.strip():
                time.sleep(1)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def kill_leftovers(self, marker: str) -> list[int]:
        """SIGKILL every process whose command line holds `marker` (a folder of this test's own); their PIDs."""
        killed = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
                except OSError:
                    pass
        return killed
