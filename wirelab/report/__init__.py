"""Reports of a run: summary.json, junit.xml, report.html, and live progress."""
