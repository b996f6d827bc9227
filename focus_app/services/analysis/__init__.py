"""Analysis jobs (seed 002): jobs, triggers, the run, recovery, analysers."""
