"""Batch jobs over files: planning inputs to outputs (``flipnet-rt restore|degrade``)."""
