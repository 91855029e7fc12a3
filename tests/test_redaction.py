"""Secrets in URIs and in the environment are masked wherever xgrid writes text (`xgrid.redaction`)."""

import pytest

from xgrid.redaction import MASK, is_secret_name, redact, redact_mapping, secret_values


@pytest.mark.parametrize("uri, expected", [
    ("postgresql+psycopg2://mlflow:s3cr3t-pass@db:5432/mlflow", f"postgresql+psycopg2://mlflow:{MASK}@db:5432/mlflow"),
    ("http://alice:tok_ABCDEF@127.0.0.1:5000", f"http://alice:{MASK}@127.0.0.1:5000"),
    ("s3://AKIAXXX:wJalrXUtnFEMI@bucket/prefix", f"s3://AKIAXXX:{MASK}@bucket/prefix"),
    ("mysql://root:p%40ss@host/db", f"mysql://root:{MASK}@host/db"),
    ("https://mlflow.example.org/?token=abcdef123&x=1", f"https://mlflow.example.org/?token={MASK}&x=1"),
])
def test_uri_passwords_are_masked_and_the_rest_kept(uri, expected):
    assert redact(uri, environ={}) == expected
    assert redact(f"error: --tracking-uri {uri}: no server", environ={}) == f"error: --tracking-uri {expected}: no server"


@pytest.mark.parametrize("text", [
    "sqlite:////tmp/xgrid_runs/mlflow.db", "http://127.0.0.1:5000", "s3://bucket/prefix", "ray dashboard at "
    "http://127.0.0.1:8265", "HEAD:6379", "mb_xnli-mb_chunk-s0-1a2b3c4d", "user@example.org",
    "postgresql://mlflow@db/mlflow",  # a user without a password: nothing to hide
])
def test_text_without_secrets_is_unchanged(text):
    assert redact(text, environ={}) == text


def test_secret_environment_values_are_masked_wherever_they_appear():
    environ = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG", "MLFLOW_TRACKING_PASSWORD": "hunter22",
               "PGPASSWORD": "pg-secret-9", "HF_TOKEN": "hf_abcdefghij", "HOME": "/root",
               "TOKENIZERS_PARALLELISM": "false", "PWD": "/work/main", "SHORT_TOKEN": "1"}
    text = "key wJalrXUtnFEMI/K7MDENG, pw hunter22 and pg-secret-9, hf_abcdefghij in /root and /work/main"
    assert redact(text, environ) == f"key {MASK}, pw {MASK} and {MASK}, {MASK} in /root and /work/main"
    assert set(secret_values(environ)) == {"wJalrXUtnFEMI/K7MDENG", "hunter22", "pg-secret-9", "hf_abcdefghij"}


@pytest.mark.parametrize("name, secret", [
    ("AWS_SECRET_ACCESS_KEY", True), ("AWS_SESSION_TOKEN", True), ("MLFLOW_TRACKING_TOKEN", True),
    ("DATABASE_PASSWORD", True), ("GITHUB_TOKEN", True), ("OPENAI_API_KEY", True), ("PGPASSWORD", True),
    ("TOKENIZERS_PARALLELISM", False), ("PWD", False), ("PATH", False), ("KEYBOARD", False),
])
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_mappings_redact_string_values_only():
    assert redact_mapping({"uri": "http://u:secret99@h:1", "n": 3}) == {"uri": f"http://u:{MASK}@h:1", "n": 3}


def test_library_log_lines_are_written_redacted(tmp_path, monkeypatch):
    import logging

    from xgrid.search.library_logs import library_logs

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted-env-secret-1234")
    with library_logs() as log:
        log.write_to(tmp_path / "search.log")
        logging.getLogger("mlflow").warning("connecting to postgresql://u:planted-pass@db/x with "
                                            "planted-env-secret-1234")
    text = (tmp_path / "search.log").read_text()
    assert "connecting to postgresql://u:***@db/x with ***" in text
    assert "planted" not in text


def test_the_command_line_prints_no_secret(tmp_path, monkeypatch):
    """A planted S3 key in the environment and a password in the tracking URI: neither is in what `xgrid search`
    prints, on stdout or stderr, whatever it prints (here a refusal that names the URI)."""
    from typer.testing import CliRunner

    from xgrid.cli import app

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted-s3-key-98765")
    store = tmp_path / "store-planted-s3-key-98765"  # a secret can reach a message through any path or value
    result = CliRunner().invoke(app, ["search", "--tracking-uri", "bogus://xgrid:planted-password@127.0.0.1:1",
                                      "--store-root", str(store), "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "bogus://xgrid:***@127.0.0.1:1" in result.stderr and "store-***" in result.output
    assert "planted" not in result.stdout + result.stderr


def test_a_redacting_writer_masks_what_is_printed_into_a_search_file(tmp_path, monkeypatch):
    """tune.log: what Tune and MLflow print while Tune runs (MLflow's "View run ... at <tracking URI>")."""
    import contextlib

    from xgrid.redaction import RedactingWriter

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "planted-token-4242")
    with open(tmp_path / "tune.log", "a") as log, contextlib.redirect_stdout(RedactingWriter(log)):
        print("View run x at: http://xgrid:planted-pass@127.0.0.1:5000/#/experiments/1")
        print("token planted-token-4242", flush=True)
    text = (tmp_path / "tune.log").read_text()
    assert text == "View run x at: http://xgrid:***@127.0.0.1:5000/#/experiments/1\ntoken ***\n"
