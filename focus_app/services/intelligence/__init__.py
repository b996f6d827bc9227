"""Weekly intelligence (seed 004): weeks, briefs, generation, the weekly run, retries, cache, health."""

JOB_NAME = "intelligence.weekly"
RETRY_JOB_NAME = "intelligence.retry_failed"
