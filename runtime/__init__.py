"""mattex.runtime: run exported mattex models, and `mattex run`'s pipeline around them.

`Matter` (`matter`) opens a file on a backend of the registry in `backends/` (ONNX Runtime,
OpenVINO, TensorRT, TensorRT for RTX; one module each behind `backends.base`), with `io_spec`'s
input checks, `sidecar` (an engine's JSON sidecar), `model_cache` (OpenVINO's compiled models)
and `cuda`. Around it: `media` and `images` (frames in and out), `frames` (what is drawn from a
frame's outputs), `pipeline` (`mattex run`'s threads), `align`, `homography` and `align_steps`
(clean plates brought to each frame), `plates` (`mattex plate`). The C++ runtime is `cpp/`.

Never imports torch or onnx (a test guards it), so it embeds in slim deployment processes.
"""

from .io_spec import Profile, check_inputs
from .matter import Matter

__all__ = ["Matter", "Profile", "check_inputs"]
