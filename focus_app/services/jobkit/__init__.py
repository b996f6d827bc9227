"""What every job family shares, each rule once: runs and units, switches, the fan-out protocol,
Redis keys, pagination, domain errors, the LLM provider."""
