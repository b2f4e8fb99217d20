"""The base layer: what every other layer uses, importing nothing else of spkverif.

errors (the user's error type), registry (registries by name, options' valid values),
ranges (the numeric ranges of options), progress (bars and problem summaries) and
workers (the process pool every stage uses).
"""
