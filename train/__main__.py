"""``python -m flipnet_rt.train ...`` = ``flipnet-train ...`` (also: ``accelerate launch -m flipnet_rt.train ...``)."""

from .cli import main

raise SystemExit(main())
