"""Operations: health, metrics, job runs and switches, the operator page's data, task state."""
