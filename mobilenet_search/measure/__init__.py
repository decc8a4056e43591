"""How a candidate gets its numbers: data, proxy training, latency, zero-cost proxies."""
