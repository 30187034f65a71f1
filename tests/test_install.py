"""The core install needs no PyTorch; importing lstmlab never imports torch."""

import importlib.metadata
import re
import subprocess
import sys


def test_core_requirements_have_no_torch_or_onnx():
    reqs = importlib.metadata.requires("lstmlab")
    core = [r for r in reqs if "extra ==" not in r]
    names = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in core}
    assert "numpy" in names
    assert not names & {"torch", "onnx", "onnxruntime"}, core
    extras = [r for r in reqs if "extra ==" in r]
    assert any(r.startswith("torch") for r in extras)


def test_import_and_train_step_without_torch():
    code = ("import sys, numpy as np, lstmlab; m = lstmlab.numpy.LSTM(2, 3); "
            "y, s, c = m.forward(np.ones((4, 1, 2))); m.backward(c, y); "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
