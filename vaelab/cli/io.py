"""Pictures are written by :func:`vaelab.rundir.write_png` (re-exported here for older imports)."""
from ..rundir import write_png  # noqa: F401
