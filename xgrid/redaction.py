"""Secrets never leave xgrid in clear: a password in a URI (`postgresql://user:PASSWORD@db/mlflow`,
`http://user:TOKEN@mlflow:5000`) and the value of every secret-looking environment variable
(`AWS_SECRET_ACCESS_KEY`, `MLFLOW_TRACKING_PASSWORD`, `PGPASSWORD`, `HF_TOKEN` ...) are replaced by `***` in what
xgrid prints, logs to the search folder and writes to MLflow. One function, `redact`, used at each of those
exits, so a new output cannot forget a rule.

A URI is kept recognisable (scheme, user, host, port, path): only the secret part goes.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

MASK = "***"

# Names of environment variables whose values are secrets: SECRET or PASSWORD anywhere in the name (PGPASSWORD),
# the shorter words only as whole words of the name, so `AWS_SESSION_TOKEN` counts and `TOKENIZERS_PARALLELISM`
# does not.
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|(^|_)(PWD|TOKEN|ACCESS_KEY|API_KEY|PRIVATE_KEY|CREDENTIALS?)(_|$)")
_NOT_SECRET = {"PWD", "OLDPWD"}  # the shell's working directories
_MIN_SECRET = 6  # shorter values ("1", "true") would mask ordinary words and numbers everywhere

# userinfo with a password: scheme://user:password@host  ->  scheme://user:***@host
_URI_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?P<at>@)")
# a secret in a query string: ?password=...&token=...
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|token|secret|access_key|api_key|sig|signature)=)"
                           r"(?P<secret>[^&\s#]+)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper not in _NOT_SECRET and bool(_SECRET_NAME.search(upper))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret-looking variables of `environ` (default: this process's), longest first so that
    a secret containing another is masked whole."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET}
    return sorted(values, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with every URI password, query-string secret and secret environment value replaced by ***."""
    if not text:
        return text
    text = _URI_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", text)
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    return text


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """Tags or params with their string values redacted (keys are xgrid's own names)."""
    return {k: redact(v) if isinstance(v, str) else v for k, v in values.items()}


class RedactingWriter:
    """A text stream whose writes are redacted on their way in: for what xgrid sends to a file of the search
    folder without formatting it itself (Tune's prints and MLflow's "View run at <tracking URI>" lines while
    Tune runs go to tune.log). Each write is redacted whole; everything else is the stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
