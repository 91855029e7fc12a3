"""`xgrid prefetch` on a machine that cannot reach the hub: one request finds out, and it stops with its own
one-line summary instead of the hub client retrying every file for half a minute each.

The first test is the real thing: a subprocess, the real hub client and `datasets`, HF_ENDPOINT at a closed
loopback port, an empty cache. The others replace the downloads to show the stop after failures in a row.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from tests.tasks import hub_fake
from xgrid.cli import app, common
from xgrid.data import hub
from xgrid.running import prefetch as prefetching

SPACE = {"name": "offline-prefetch", "base_models": [{"name": "tiny"}], "intermediates": ["none", "chunk"],
         "targets": ["xnli.de"], "seeds": [0], "target_training": {"learning_rate": 1e-5}}
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there, a connection is refused at once


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def test_unreachable_hub_fails_at_once_with_one_line(space_file, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env |= {"HF_ENDPOINT": CLOSED, "HF_HOME": str(tmp_path / "hf"), "COLUMNS": "200"}
    # Timeout only so that a regression fails instead of hanging: the hub client alone retries ~27 s per split.
    result = subprocess.run([sys.executable, "-m", "xgrid.cli", "prefetch", str(space_file)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach the Hugging Face hub at {CLOSED} ("), lines[0]
    assert "nothing was downloaded" in lines[0] and "HF_ENDPOINT" in lines[0]
    assert "Retrying" not in result.stdout + result.stderr and "Traceback" not in result.stdout + result.stderr
    assert not list((tmp_path / "hf").glob("**/*.arrow"))


def test_dry_run_needs_no_hub(space_file, monkeypatch):
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: pytest.fail("a dry run must not contact the hub"))
    result = CliRunner().invoke(app, ["prefetch", str(space_file), "--dry-run"])
    assert result.exit_code == 0, result.output


def test_failures_in_a_row_stop_with_a_summary(space_file, monkeypatch):
    """The hub answers the probe, then every download fails on the connection: stop after a few, not 8 of 328
    after 400 s. (The second probe after a failure is what notices a hub that went away.)"""
    calls = []

    def hub_load(path, name=None, split=None, **kwargs):
        if datasets.config.HF_HUB_OFFLINE:  # nothing cached
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")
        calls.append((path, name, split))
        raise ConnectionError(f"Couldn't reach {path!r} on the Hub (ReadTimeout)")

    monkeypatch.setattr(datasets, "load_dataset", hub_load)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: None)  # reachable, as far as one request can tell
    monkeypatch.setattr(common.console, "_width", 300)
    result = CliRunner().invoke(app, ["prefetch", str(space_file)])
    assert result.exit_code == 1, result.output
    assert len(calls) == prefetching.MAX_FAILURES_IN_A_ROW < 8  # 8 splits in all: it stopped before the end
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"{prefetching.MAX_FAILURES_IN_A_ROW} downloads in a row failed" in lines[0]
    assert "ReadTimeout" in lines[0] and "of 8 dataset splits" in lines[0]


def test_probe_tells_a_refused_connection_from_an_http_answer():
    assert "refused" in hub.probe_hub("facebook/xnli", endpoint=CLOSED, timeout=5).lower()

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the hub's answer for a dataset it does not have: the hub is there all the same
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "Repository not found"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert hub.probe_hub("facebook/xnli", endpoint=f"http://127.0.0.1:{server.server_port}", timeout=5) is None
    finally:
        server.shutdown()
        server.server_close()


def test_copies_are_written_from_the_cache_in_offline_mode(space_file, tmp_path, monkeypatch):
    """HF_DATASETS_OFFLINE refuses a plain prefetch (it downloads), but `--to` may copy what the cache holds."""
    hub_fake.install(monkeypatch)  # every fixture split reads as a cache hit
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "probe_hub", lambda *a, **k: pytest.fail("offline: the hub is never asked"))
    result = CliRunner().invoke(app, ["prefetch", str(space_file), "--to", str(tmp_path / "copies")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == ["chunk", "mnli", "xnli"]
