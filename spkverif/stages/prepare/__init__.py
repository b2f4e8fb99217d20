"""The `prepare` stage: one module per corpus, each writing Kaldi data directories."""
