"""What the rest is built from, torch-free: the model configuration (``flipnet.json``), the sampling
options, named presets, precision."""
