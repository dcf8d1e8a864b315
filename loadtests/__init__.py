"""Load tests (locust scenarios) and the benchmark harness (`python -m loadtests.bench`)."""
