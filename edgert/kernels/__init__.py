"""Numba kernels. Plain top-level functions taking arrays and scalars and writing into ``out``.

Naming: ``<dtype>_<family>[_<variant>]``, e.g. ``f32_conv2d_1x1_gemm`` or ``f32_dwconv2d_3x3``.
Only ``_jit.py`` imports numba's decorators, so the compile flags live in one place.
"""
