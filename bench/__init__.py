"""Benchmarks of mysocketd against the floor set by OpenSSH: `make bench` (see bench/__main__.py)."""
