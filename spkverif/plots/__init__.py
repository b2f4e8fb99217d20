"""Pictures a person would rather look at than numbers: matplotlib, headless (Agg)."""

import matplotlib

matplotlib.use("Agg")
