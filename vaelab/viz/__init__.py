"""Pictures: pure image grids and figures (grids), plot kinds from a run (plots), HTML reports (report)."""
