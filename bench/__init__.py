"""Benchmarks that print figures and ratios; `python -m bench` (or bench/run.sh) runs the side-by-side set."""
