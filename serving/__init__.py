"""mattex.serving: exported files behind NVIDIA's Triton Inference Server. `mattex serve` runs
one (PyTriton: HTTP, gRPC, dynamic batching, metrics), `mattex triton-repo` writes a model
repository any Triton deployment loads, and `client` sends frames to either."""
