"""mattex.calibration: the data models are calibrated and measured on.

`photomatte` (PhotoMatte85 as users have it), `composite` (the paper's evaluation composites),
`synthetic` (a synthetic stand-in, and short clips), `footage` (pairs captured as footage is),
`handheld` (handheld clips with a known camera path, for plate alignment), `images` (reading and
fitting images), `settings` and `int8` (int8 calibration: ranges on data, the cache), and
`train_demo` (the demo weights' training recipe). Metrics and evaluation are `mattex.measure`.
"""
