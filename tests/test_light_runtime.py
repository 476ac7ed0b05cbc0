"""The runtime core imports no torch, diffusers, peft or transformers (DESIGN §5)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "diffusers", "peft", "transformers", "cv2", "tensorrt", "ray")
LIGHT_MODULES = (
    "flipnet_rt",
    "flipnet_rt.config.model",
    "flipnet_rt.config.presets",
    "flipnet_rt.imaging.io",
    "flipnet_rt.imaging.geometry",
    "flipnet_rt.imaging.colour",
    "flipnet_rt.jobs.batchio",
    "flipnet_rt.sampling",
    "flipnet_rt.cli.main",
    "flipnet_rt.config.options",
    "flipnet_rt.runtime.restorer",
    "flipnet_rt.backends.onnxruntime",
    "flipnet_rt.engine.manifest",
)


def test_core_modules_import_no_heavy_dependency():
    code = (
        f"import sys\nfor m in {LIGHT_MODULES!r}: __import__(m)\n"
        f"print(','.join(h for h in {HEAVY!r} if h in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported: {done.stdout.strip()}"


def test_cli_help_imports_no_heavy_dependency():
    code = (
        "import sys\nfrom flipnet_rt.cli.main import main\n"
        "try:\n    main(['restore', '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(h for h in {HEAVY!r} if h in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in done.stdout + "\n" and done.stdout.rstrip().endswith("HEAVY="), done.stdout[-200:]
