import os

from hypothesis import HealthCheck, settings

# First calls JIT-compile kernels, so no deadlines. CI derandomizes for reproducible runs.
settings.register_profile("dev", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("arm", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Tests exercise the numba kernels, never a developer's ahead-of-time library in ~/.cache/edgert
# (tests/test_aot.py builds and reads its own library in a temporary cache root).
os.environ.setdefault("EDGERT_AOT", "0")
