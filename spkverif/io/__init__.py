"""Kaldi-compatible input and output: data directories, trials, archives, audio."""
