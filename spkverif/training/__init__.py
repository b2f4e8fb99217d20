"""Training: speaker-balanced chunk batches, optimisers, checkpoints, the trainer loop."""
