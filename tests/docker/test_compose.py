"""docker/: the compose stack and the images agree with each other, with the CLI and with the pinned stack.

Fast and daemon-free: the files are parsed, the commands are checked against the real option lists of
`xgrid`, `mlflow server` and `ray start`, and `docker compose config` runs only where the compose plugin exists.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
README = DOCKER / "README.md"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]

REQUIRED_SERVICES = {"ray-head", "ray-worker", "mlflow", "postgres", "minio", "minio-init"}
REQUIRED_VOLUMES = {"postgres-data", "minio-data"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)|ACCESS_KEY", re.I)
# ${NAME}, ${NAME:-default}, ${NAME:?message}; `$${NAME}` is escaped for the container's shell, not compose.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
REQUIRED_SUBSTITUTION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$")


# --- helpers -----------------------------------------------------------------------------------------------
def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}: not NAME=value: {line!r}"
        values[name.strip()] = value.strip()
    return values


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def argv(value) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def published(service: dict) -> list[tuple[str | None, str, str]]:
    """(host ip, host port, container port) of every published port, short or long syntax."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip"), str(port.get("published", "")), str(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append((None, parts[0], parts[1]))
        else:
            out.append((None, "", parts[0]))
    return out


def long_flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def help_flags(*cmd: str) -> set[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", out.stdout))


def shell_lines(text: str) -> list[str]:
    """Shell commands of the fenced code blocks of a markdown text, continuation lines joined."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]
    return commands


def xgrid_invocations(args: list[str]) -> list[list[str]]:
    """Every `xgrid SUBCOMMAND ...` inside an argument list (after docker compose exec, ray job submit --, ...)."""
    return [args[i + 1:] for i, a in enumerate(args) if Path(a).name == "xgrid" and i + 1 < len(args)]


# --- structure ---------------------------------------------------------------------------------------------
def test_compose_parses_with_required_services(services):
    assert REQUIRED_SERVICES <= set(services), REQUIRED_SERVICES - set(services)
    gpu = load(COMPOSE_GPU)["services"]
    assert set(gpu) <= set(services), "the GPU override names a service the base file lacks"


def test_every_published_port_is_on_loopback(services):
    for path in (COMPOSE, COMPOSE_GPU):
        for name, service in load(path)["services"].items():
            for host_ip, host_port, target in published(service):
                assert host_ip == "127.0.0.1", f"{path.name}:{name} publishes {target} on {host_ip or 'all interfaces'}"


def test_named_volumes_declared_and_used(compose, services):
    declared = set(compose.get("volumes") or {})
    assert REQUIRED_VOLUMES <= declared
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name} mounts undeclared named volume {source}"
                used.add(source)
    assert declared <= used, f"declared but unused volumes: {declared - used}"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(str(v).endswith(":/data") for v in services["minio"]["volumes"])


def test_builds_point_at_files_that_exist():
    for path in (COMPOSE, COMPOSE_GPU):
        for name, service in load(path)["services"].items():
            build = service.get("build")
            if build is None:
                continue
            context = (path.parent / (build if isinstance(build, str) else build.get("context", "."))).resolve()
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{path.name}:{name}: no {dockerfile}"


def test_dependencies_and_healthchecks(services):
    assert services["postgres"]["healthcheck"]["test"][-1].startswith("pg_isready")
    mlflow_deps = services["mlflow"]["depends_on"]
    assert mlflow_deps["postgres"]["condition"] == "service_healthy"
    assert mlflow_deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    for node in ("ray-head", "ray-worker"):
        assert services[node].get("shm_size"), f"{node} needs shm_size for Ray's object store"


def test_minio_init_creates_the_buckets(services):
    script = "\n".join(argv(services["minio-init"].get("entrypoint")) + argv(services["minio-init"].get("command")))
    for bucket in ("mlflow-artifacts", "xgrid-store"):
        assert re.search(rf"mc mb\b.*local/{bucket}\b", script), bucket


def test_ray_nodes_reach_mlflow_and_minio(services):
    for node in ("ray-head", "ray-worker"):
        env = environment(services[node])
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env["XGRID_STORE_ROOT"].startswith("s3://xgrid-store/")
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
    command = argv(services["mlflow"]["command"])
    assert command[command.index("--artifacts-destination") + 1] == "s3://mlflow-artifacts/"
    # SQLAlchemy 2.1 maps a plain postgresql:// to psycopg 3; the URI names that driver, the one the image has.
    assert command[command.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")


# --- credentials -------------------------------------------------------------------------------------------
def all_strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from all_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_strings(value)
    elif node is not None:
        yield str(node)


def test_no_literal_secrets_in_compose():
    for path in (COMPOSE, COMPOSE_GPU):
        for name, service in load(path)["services"].items():
            for key, value in environment(service).items():
                if SECRET_NAME.search(key) or re.search(r"_USER$", key):
                    assert REQUIRED_SUBSTITUTION.match(value), f"{path.name}:{name}: {key} must be ${{VAR:?...}}"
            # user:password in any URI (e.g. the backend store) must come from required substitutions too.
            for text in all_strings(service):
                for user, password in re.findall(r"://([^/@\s]*):([^/@\s]*)@", text):
                    for part in (user, password):
                        assert REQUIRED_SUBSTITUTION.match(part), f"{path.name}:{name}: credential in {text!r}"


def compose_variables() -> set[str]:
    return set(VARIABLE.findall(COMPOSE.read_text())) | set(VARIABLE.findall(COMPOSE_GPU.read_text()))


def test_env_example_defines_every_variable_compose_reads():
    defined = env_file(ENV_EXAMPLE)
    used = compose_variables()
    assert used - set(defined) == set(), f"missing from .env.example: {sorted(used - set(defined))}"
    assert set(defined) - used == set(), f".env.example defines unused: {sorted(set(defined) - used)}"


def test_env_example_holds_placeholders_only():
    for name, value in env_file(ENV_EXAMPLE).items():
        if SECRET_NAME.search(name) or name == "MINIO_ROOT_USER":
            assert value.startswith("change-me"), f"{name} must be a change-me placeholder, not {value!r}"
        # Nothing that looks like a generated secret: long runs of hex/base64 or AWS-style key ids.
        assert not re.search(r"[A-Za-z0-9+/]{32,}|AKIA[0-9A-Z]{16}", value), f"{name} looks like a real secret"


def test_env_is_ignored():
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


# --- commands agree with the CLIs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def xgrid_commands():
    import typer.main

    import xgrid.cli

    group = typer.main.get_command(xgrid.cli.app)
    return {name: {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}
            for name, cmd in group.commands.items()}


def check_xgrid(args: list[str], xgrid_commands: dict, where: str) -> int:
    found = 0
    for invocation in xgrid_invocations(args):
        if invocation[0].startswith("-"):
            continue  # `xgrid --help`
        assert invocation[0] in xgrid_commands, f"{where}: no xgrid command {invocation[0]!r}"
        unknown = set(long_flags(invocation[1:])) - xgrid_commands[invocation[0]] - {"--help"}
        assert not unknown, f"{where}: xgrid {invocation[0]} has no {sorted(unknown)}"
        found += 1
    return found


def test_xgrid_invocations_use_real_options(services, xgrid_commands):
    for name, service in services.items():
        for field in ("entrypoint", "command"):
            check_xgrid(argv(service.get(field)), xgrid_commands, f"compose {name}.{field}")
    found = 0
    for line in shell_lines(README.read_text()):
        found += check_xgrid(shlex.split(line), xgrid_commands, f"docker/README.md: {line!r}")
    assert found >= 2, "docker/README.md should show xgrid search run in the head and as a Ray job"
    # Ray Client addresses are refused by the CLI (Tune would run its loop on the head, out of the driver's
    # sight); the README must say so rather than show one.
    assert "ray://127.0.0.1:10001" in README.read_text() and "is refused by `xgrid search`" in README.read_text()


def test_compose_header_command_is_real(xgrid_commands):
    # The header of compose.yaml carries the command that runs a search (torchtune style): real flags too.
    header = "\n".join(l[1:] for l in COMPOSE.read_text().splitlines() if l.startswith("#"))
    lines = re.sub(r"\\\n\s*", " ", header).splitlines()
    commands = [shlex.split(l.partition(" # ")[0]) for l in lines if l.strip().startswith("docker compose")]
    assert sum(check_xgrid(c, xgrid_commands, "compose.yaml header") for c in commands) == 1
    assert any("--address" in c and c[c.index("--address") + 1] == "auto" for c in commands)


def test_documented_ports_are_published(services):
    # The project README's ray:// examples must reach the compose head too; its http:// ports may be local tools
    # (optuna-dashboard, a local MLflow UI), so only docker/README.md's are held to the compose file.
    texts = [README.read_text()] + [p.read_text() for p in (ROOT / "README.md",) if p.is_file()]
    client_ports = {int(p) for t in texts for p in re.findall(r"ray://127\.0\.0\.1:(\d+)", t)}
    http_ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", README.read_text())}
    assert 10001 in client_ports and 5000 in http_ports

    def host_ports(service):
        return {int(h): int(t) for ip, h, t in published(services[service]) if h}

    head, mlflow, minio = host_ports("ray-head"), host_ports("mlflow"), host_ports("minio")
    assert client_ports <= set(head), f"README tells users ray:// ports {client_ports}, ray-head publishes {head}"
    assert http_ports <= set(head) | set(mlflow) | set(minio), http_ports
    # ...and each published container port is where the service listens.
    head_cmd = dict(a.split("=", 1) for a in argv(services["ray-head"]["command"]) if "=" in a)
    assert head[10001] == int(head_cmd["--ray-client-server-port"])
    assert head[8265] == int(head_cmd["--dashboard-port"])
    assert head_cmd["--dashboard-host"] == "0.0.0.0"
    mlflow_cmd = argv(services["mlflow"]["command"])
    assert mlflow[5000] == int(mlflow_cmd[mlflow_cmd.index("--port") + 1])
    assert mlflow_cmd[mlflow_cmd.index("--host") + 1] == "0.0.0.0"
    assert int(environment(services["ray-head"])["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1]) == mlflow[5000]


def test_mlflow_server_flags_exist(services):
    command = argv(services["mlflow"]["command"])
    assert command[:2] == ["mlflow", "server"]
    known = help_flags(sys.executable, "-m", "mlflow", "server", "--help")
    used = set(long_flags(command[2:]))
    assert {"--backend-store-uri", "--host", "--port"} <= used
    assert used <= known, f"not options of the installed mlflow server: {sorted(used - known)}"


def test_ray_start_flags_exist(services):
    known = help_flags(sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--help")
    for name in ("ray-head", "ray-worker"):
        command = argv(services[name]["command"])
        assert command[:2] == ["ray", "start"], name
        used = set(long_flags(command[2:]))
        assert used <= known, f"{name}: not options of the installed ray start: {sorted(used - known)}"
        assert "--block" in used, f"{name} must keep ray start in the foreground"
    assert "--head" in argv(services["ray-head"]["command"])
    assert "--address=ray-head:6379" in argv(services["ray-worker"]["command"])


# --- Dockerfiles -------------------------------------------------------------------------------------------
def dockerfile_args(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_torch_and_installs_xgrid_as_non_root(path):
    text = path.read_text()
    args = dockerfile_args(text)
    # torch: an exact version, the same one this project is tested with.
    install = re.search(r'pip install "?torch==(\$\{TORCH_VERSION\}|[\w.+]+)"?', text)
    assert install, "torch must be installed with an exact == pin"
    version = args["TORCH_VERSION"] if install.group(1) == "${TORCH_VERSION}" else install.group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert version == importlib.metadata.version("torch").split("+")[0]
    # xgrid from the build context, with its dependencies from pyproject.toml.
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M)
    sources = [s for line in copies for s in line.split()[:-1]]
    assert {"pyproject.toml", "xgrid"} <= set(sources)
    for source in sources:
        assert source.endswith("*") or (ROOT / source).exists(), f"COPY {source}: not in the build context"
    assert re.search(r"^RUN pip install .*\s\.\s*(\\|&&|$)", text, re.M), "xgrid must be pip-installed from ."
    assert "['project']['dependencies']" in text
    assert re.search(r"^RUN xgrid --help", text, re.M), "build smoke check"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"} and not users[-1].startswith("0:")


def test_cpu_and_gpu_images_agree():
    cpu, gpu = (p.read_text() for p in DOCKERFILES)
    assert re.search(r"^FROM python:3\.11-slim", cpu, re.M)
    gpu_args = dockerfile_args(gpu)
    assert re.search(r"^FROM nvidia/cuda:\$\{CUDA_VERSION\}-[\w-]*runtime-ubuntu22\.04", gpu, re.M)
    major, minor = gpu_args["CUDA_VERSION"].split(".")[:2]
    assert gpu_args["TORCH_CUDA"] == f"cu{major}{minor}", "the CUDA wheel must match the base image's CUDA"
    assert "python3.11" in gpu
    assert dockerfile_args(cpu)["TORCH_VERSION"] == gpu_args["TORCH_VERSION"]


def test_dockerignore_keeps_the_context_small():
    for path in DOCKERFILES:
        ignore = (path.parent / f"{path.name}.dockerignore").read_text().split()
        assert ignore[ignore.index("*")] == "*" and "!xgrid" in ignore and "!pyproject.toml" in ignore


def test_mlflow_image_matches_client():
    text = (DOCKER / "Dockerfile.mlflow").read_text()
    server = dockerfile_args(text)["MLFLOW_VERSION"]
    client = importlib.metadata.version("mlflow")
    assert server.split(".")[:2] == client.split(".")[:2], (server, client)
    # The driver the compose URI names (postgresql+psycopg://): psycopg 3, not psycopg2, which that URI never
    # loads (and which a plain postgresql:// no longer loads under SQLAlchemy 2.1).
    installs = " ".join(re.findall(r"pip install ([^\n\\]+)", text))
    assert '"psycopg[binary]' in installs and "psycopg2" not in installs, installs
    assert "boto3" in installs
    assert re.findall(r"^USER\s+(\S+)", text, re.M)[-1] not in {"root", "0"}


# --- docker compose config (only where the compose plugin is installed) ------------------------------------
def compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not compose_available(), reason="docker compose plugin not installed")
@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_GPU]], ids=["cpu", "gpu"])
def test_docker_compose_config_validates(files):
    cmd = ["docker", "compose"]
    for f in files:
        cmd += ["-f", str(f)]
    out = subprocess.run(cmd + ["--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


# --- interpolation and the one-shot script, as compose would run them -------------------------------------
def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op") or "", match.group("arg") or ""
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        return value or ""

    return re.sub(r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}", one, text)


@pytest.fixture(scope="module")
def resolved() -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_file(ENV_EXAMPLE)))


def test_interpolates_with_env_example_and_fails_without(resolved):
    assert int(resolved["services"]["ray-worker"]["deploy"]["replicas"]) >= 1
    assert re.fullmatch(r"\d+[kmg]?b?", str(resolved["services"]["ray-head"]["shm_size"]), re.I)
    uri = argv(resolved["services"]["mlflow"]["command"])
    backend = uri[uri.index("--backend-store-uri") + 1]
    assert re.fullmatch(r"postgresql\+psycopg://[^:@/]+:[^:@/]+@postgres:5432/\w+", backend)
    # xgrid's own check of that URI (what `--tracking-uri postgresql+psycopg://...` runs) finds the driver here
    from xgrid.tracking.mlflow_writer import check_sql_driver

    check_sql_driver(backend)
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(COMPOSE.read_text(), {k: v for k, v in env_file(ENV_EXAMPLE).items() if k != "POSTGRES_PASSWORD"})


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh")
def test_minio_init_script_runs_against_a_stub_mc(resolved, tmp_path):
    """The one-shot script, run by sh with a stub `mc` that logs its arguments: right calls, valid policy."""
    import json

    service = resolved["services"]["minio-init"]
    entrypoint, script = argv(service["entrypoint"]), argv(service["command"])[0]
    policy = tmp_path / "policy.json"
    script = script.replace("/tmp/xgrid-policy.json", str(policy))
    log = tmp_path / "mc.log"
    (tmp_path / "mc").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (tmp_path / "mc").chmod(0o755)
    env = environment(service) | {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run([*entrypoint, script], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    values = env_file(ENV_EXAMPLE)
    assert calls[0] == f"alias set local http://minio:9000 {values['MINIO_ROOT_USER']} {values['MINIO_ROOT_PASSWORD']}"
    assert "mb --ignore-existing local/mlflow-artifacts" in calls and "mb --ignore-existing local/xgrid-store" in calls
    assert f"admin user add local {values['S3_ACCESS_KEY_ID']} {values['S3_SECRET_ACCESS_KEY']}" in calls
    assert calls[-1] == f"admin policy attach local xgrid-readwrite --user {values['S3_ACCESS_KEY_ID']}"
    statements = json.loads(policy.read_text())["Statement"]
    resources = {r for s in statements for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{b}{suffix}" for b in ("mlflow-artifacts", "xgrid-store") for suffix in ("", "/*")}


def test_shell_healthchecks_parse(resolved):
    for name, service in resolved["services"].items():
        test = (service.get("healthcheck") or {}).get("test")
        if test and test[0] == "CMD-SHELL":
            assert subprocess.run(["sh", "-n", "-c", test[1]], timeout=30).returncode == 0, name


def test_the_loopback_stack_test_runs_the_mlflow_command_compose_runs(services):
    """tests/tracking/test_production_stack.py stands for this stack without Docker: its `mlflow server` has the
    same flags, the same backend URI form and the same artifact bucket (only host, port and workers differ)."""
    from tests.stack_fixtures import ARTIFACT_BUCKET, STORE_BUCKET, Postgres, mlflow_server_command

    compose = argv(services["mlflow"]["command"])
    local = mlflow_server_command(Postgres("127.0.0.1", 5432, "u", "p", "mlflow").uri(), f"s3://{ARTIFACT_BUCKET}/",
                                  5000)
    local = local[local.index("server") - 1:]
    assert set(long_flags(compose)) - {"--allowed-hosts"} == set(long_flags(local)) - {"--workers"}
    for flag in ("--backend-store-uri", "--artifacts-destination"):
        ours, theirs = local[local.index(flag) + 1], compose[compose.index(flag) + 1]
        assert ours.split("://")[0] == theirs.split("://")[0], (flag, ours, theirs)
    assert compose[compose.index("--artifacts-destination") + 1] == f"s3://{ARTIFACT_BUCKET}/"
    assert environment(services["ray-head"])["XGRID_STORE_ROOT"].startswith(f"s3://{STORE_BUCKET}/")
