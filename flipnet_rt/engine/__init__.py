"""Engine artifacts, torch-free: network I/O specs (:mod:`.spec`), the engine directory's manifest
(:mod:`.manifest`) and opening what ``--model`` names (:mod:`.artifacts`)."""
