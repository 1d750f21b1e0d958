"""The HTML report: plots drawn from a run's own numbers (anybind.recipes.html_report)."""
