"""The base layer: what every other layer uses, importing nothing else of spkverif.

errors (the user's error type), registry (registries by name, options' valid values),
ranges (the numeric ranges of options), progress (bars and problem summaries),
workers (the process pool every stage uses) and memory (glibc's malloc told to keep freed
memory for the next step).
"""
