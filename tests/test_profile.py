"""The profiler's work measure: multiply-adds x 2 per conv node, independent of stride."""

import numpy as np
import pytest

from edgert.runtime.profile import _node_flops
from edgert.runtime.session import Session
from tests.helpers import single_op_graph


@pytest.mark.parametrize("op,x_shape,w_shape,attrs,macs", [
    ("Conv", (1, 4, 8, 8), (6, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 6 * 4 * 4 * 4 * 9),
    ("Conv", (1, 6, 5, 5), (6, 2, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}, 6 * 5 * 5 * 2 * 9),
    ("ConvTranspose", (1, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2]}, 4 * 5 * 6 * 3 * 9),
])
def test_conv_flops_count_multiply_adds(op, x_shape, w_shape, attrs, macs):
    graph = single_op_graph(op, [("x", np.zeros(x_shape, np.float32)), ("w", np.zeros(w_shape, np.float32))], attrs,
                            consts={"w"})
    sess = Session(graph, threads=1)
    node = [p for p in sess.nodes if p.prepared is not None][-1]
    assert _node_flops(sess, node) == 2 * macs
