"""`python -m xgrid.cli` is `xgrid`."""

from xgrid.cli import app

app()
