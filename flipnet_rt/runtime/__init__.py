"""The runtime over the backends: the diffusion core (float images at the model's resolution) and
the public :class:`~flipnet_rt.runtime.restorer.Restorer` (images in, images out); stage timing."""
