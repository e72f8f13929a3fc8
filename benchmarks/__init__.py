"""jaxreg's jit benchmark suite: ``python -m benchmarks [--quick]`` or ``make bench``."""
