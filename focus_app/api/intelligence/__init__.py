"""Weekly briefs and their administration (seed 004)."""
