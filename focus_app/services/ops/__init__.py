"""Operations: metrics, the operator page's views, parked messages, task owners."""
