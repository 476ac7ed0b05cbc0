"""``python -m train ...`` = ``flipnet-train ...`` (also: ``accelerate launch -m train ...``)."""

from .cli import main

raise SystemExit(main())
