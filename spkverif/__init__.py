"""spkverif: a Kaldi-style toolkit for speaker verification with deep speaker embeddings."""

__version__ = "0.1.0"
