"""Classical fills (harmonic / Laplace, mean): baselines and the fallback of inference."""
