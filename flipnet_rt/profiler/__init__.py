"""``flipnet-rt bench``: latency, throughput and memory by stage, with a naive baseline in the same run."""
