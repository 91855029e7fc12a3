"""What `check_tracking_uri` says before Ray starts: a database URI whose SQLAlchemy driver is not installed names
the driver and the package (with the URI's password masked where it is printed), and a server URI that carries
a user and password is asked for its /health with them, as MLflow's client would send them."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from xgrid.tracking import TrackingError
from xgrid.tracking.mlflow_writer import check_sql_driver, check_tracking_uri

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_postgres_form_needs_psycopg_3_and_passes_when_it_is_installed():
    if importlib.util.find_spec("psycopg") is None:
        with pytest.raises(TrackingError, match=r"pip install 'psycopg\[binary\]'"):
            check_sql_driver("postgresql+psycopg://u:pw@127.0.0.1:5432/mlflow")
    else:
        check_sql_driver("postgresql+psycopg://u:pw@127.0.0.1:5432/mlflow")  # nothing is connected to


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is not None, reason="psycopg2 is installed here")
def test_a_driver_that_is_not_installed_names_it_and_its_package():
    with pytest.raises(TrackingError) as err:
        check_tracking_uri("postgresql+psycopg2://mlflow:s3cr3t-pass@db:5432/mlflow")
    assert "'psycopg2'" in str(err.value) and "pip install 'psycopg2-binary'" in str(err.value)


def test_an_unknown_driver_and_a_bad_port_are_one_line():
    with pytest.raises(TrackingError, match="no driver 'nope' for postgresql"):
        check_sql_driver("postgresql+nope://u@h/db")
    with pytest.raises(TrackingError, match="not a database URI"):
        check_sql_driver("postgresql://u@h:notaport/db")


@pytest.mark.skipif(importlib.util.find_spec("psycopg2") is not None, reason="psycopg2 is installed here")
def test_the_cli_refuses_it_before_ray_with_the_password_masked(tmp_path):
    uri = "postgresql+psycopg2://mlflow:s3cr3t-pass@127.0.0.1:1/mlflow"
    result = subprocess.run([sys.executable, "-m", "xgrid.cli", "search", "--tracking-uri", uri, "--output-dir",
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": ""})
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error == ("error: --tracking-uri postgresql+psycopg2://mlflow:***@127.0.0.1:1/mlflow: the database "
                     "driver 'psycopg2' it names is not installed here (No module named 'psycopg2'): "
                     "pip install 'psycopg2-binary'"), error
    assert "Traceback" not in result.stderr and "s3cr3t-pass" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_server_uri_with_a_password_is_asked_with_basic_auth():
    seen = []

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_tracking_uri(f"http://xgrid:t%40ken@127.0.0.1:{server.server_port}")
        check_tracking_uri(f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
    token = base64.b64encode(b"xgrid:t@ken").decode()
    assert seen == [("/health", f"Basic {token}"), ("/health", None)]
