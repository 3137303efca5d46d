"""edgert: an embedded inference runtime for edge boards.

>>> import edgert
>>> sess = edgert.load("model.ert")
>>> outputs = sess.run({"input": x})

``import edgert`` loads only numpy and numba (lazily, when a model is prepared); it never imports
onnx, the converters, or any reference engine.
"""

from .errors import EdgertError
from .runtime.session import Session, TensorSpec, load

__version__ = "0.1.0"
__all__ = ["load", "Session", "TensorSpec", "EdgertError", "__version__"]
