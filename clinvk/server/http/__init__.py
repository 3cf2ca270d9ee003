"""HTTP plumbing every API style shares: request bodies, the error base, streaming, disconnect
detection, security, rate limits, observability, metrics, docs and the meta routes (/health)."""
