"""The Ray dashboard URL a search prints works as the printed hint says: with Ray 2.60's token authentication on,
the page answers 401 without the token and 200 with what `ray get-auth-token` prints."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from xgrid.search.options import SearchOptions
from xgrid.search.runner import dashboard_login_hint, ray_session

pytestmark = pytest.mark.integration


def status_of(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_printed_dashboard_url_opens_with_the_token_the_hint_names():
    with ray_session(SearchOptions(ray_init={"num_cpus": 1})) as dashboard:
        assert dashboard and dashboard.startswith("http://127.0.0.1:")
        hint = dashboard_login_hint()
        if hint is None:  # token authentication switched off (RAY_AUTH_MODE=disabled): the URL opens as it is
            assert status_of(f"{dashboard}/api/version") == 200
            return
        assert "ray get-auth-token" in hint
        ray_cli = Path(sys.executable).parent / "ray"  # the `ray` command installed beside this Python
        token = subprocess.run([str(ray_cli), "get-auth-token"], capture_output=True, text=True, timeout=120,
                               check=True).stdout.strip()
        assert status_of(f"{dashboard}/api/version") == 401
        assert status_of(f"{dashboard}/api/version", token) == 200
