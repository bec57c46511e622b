"""Entry points import only what they use: the evaluator's and export's modules do not import timm (it is
imported when a backbone is built, i.e. only for a model with an image prior)."""
from __future__ import annotations

import subprocess
import sys


def test_evaluation_and_export_do_not_import_timm():
    code = ("import sys, visrec.pipeline.evaluation, visrec.pipeline.exporting, visrec.export; "
            "print(sorted(m for m in ('timm', 'wandb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
