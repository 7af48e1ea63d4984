"""mattex.calibration: PhotoMatte85 data, paper-protocol composites, a synthetic stand-in,
matting metrics, evaluation and the demo-weights training recipe."""
