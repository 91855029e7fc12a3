"""xgrid: intermediate-task transfer grids for zero-shot cross-lingual NLP."""

__version__ = "0.1.0"
