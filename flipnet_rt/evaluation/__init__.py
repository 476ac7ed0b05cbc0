"""Quality measurement: the degradation (Eq. 9), named degradation levels, ``flipnet-rt eval``'s scoring."""
