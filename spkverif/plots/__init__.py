"""Figures, drawn headless (matplotlib's Agg canvas, no display needed)."""
