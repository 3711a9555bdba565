"""Test-only support: analytic models (expansive), install and /interrupt checks, and the
test-only node packs a test server loads (oracle_nodes, server_nodes).  What tests share with
scripts/ and bench/ (host, server, workflows, tiny models) is in the ``tools`` package."""
