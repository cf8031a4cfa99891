"""A local careCycle-compatible lead-upload API for demos, tests and benchmarks."""
