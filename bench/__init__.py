"""Benchmarks of SPEC section 12, run on purpose with `python -m bench` (never by the tests).

Every figure is measured side by side in one run on this machine, because absolute numbers on a
shared 2-core box are noise; the ratios between targets measured minutes apart are what we compare.
Each server and each load generator is its own process, bound to loopback, and every load loop
stops by itself after a fixed time and a fixed number of requests.
"""
