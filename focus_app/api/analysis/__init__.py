"""Chat, profile interpretations and analysis jobs (seed 002)."""
