"""The statistics of the syntactic - semantic question, below both the search and `xgrid compare`: the
task-level contrast and its intervals (`contrast`), synthetic grids with a known truth (`simulate`), and the
sequential decisions of a budgeted search (`sequential`). Pure numpy / pandas / scipy: no Ray, no tracking."""
