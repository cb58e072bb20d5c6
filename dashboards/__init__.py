"""wirelab's Grafana dashboards as code.

``python -m dashboards.build`` writes ``dashboards/*.json`` from the modules here; the
committed JSON is what Grafana (and the Helm chart's ConfigMaps) load, and a test fails when
it is older than the code. One module per dashboard, all built from :mod:`dashboards.grafana`
(the panel model) and :mod:`dashboards.influxql` (the query phrases every panel shares).
"""
