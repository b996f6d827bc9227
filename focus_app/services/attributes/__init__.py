"""Profile attributes and their consolidation (seed 003): the store, the rules, the jobs."""
