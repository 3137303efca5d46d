"""Host-side converters: ONNX and TFLite models in, edgert .ert files out.

This package imports ``edgert`` (for the IR, its shape inference and its file writer); ``edgert``
never imports this package. The .ert file is the only contract between the two.
"""
