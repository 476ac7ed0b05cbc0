"""The ``flipnet-rt`` command line."""
