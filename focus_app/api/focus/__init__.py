"""Focus sessions and study tasks (seeds 000, 001)."""
