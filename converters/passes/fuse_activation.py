"""Fuse a standalone activation into the layer or arithmetic op producing its input.

Conv / ConvTranspose / FullyConnected / Add / Sub / Mul / Div with no activation yet, whose output
is read only by a Relu, Clip, Sigmoid, HardSwish, HardSigmoid, LeakyRelu or Tanh (and is not a graph
output), takes that activation in its ``activation``/``act_a``/``act_b`` attributes.
"""

from __future__ import annotations

from edgert.ops import get_op

from .rewrite import is_private, take_over_output, uses

PRODUCERS = ("Conv", "ConvTranspose", "FullyConnected", "Add", "Sub", "Mul", "Div",
             "Conv3D", "ConvTranspose3D", "GroupNorm")
# IR activation op -> (fused activation name, attribute giving act_a, attribute giving act_b)
ACTIVATIONS = {"Relu": ("relu", None, None), "Clip": ("clip", "min", "max"), "Sigmoid": ("sigmoid", None, None),
               "HardSwish": ("hardswish", None, None), "HardSigmoid": ("hardsigmoid", "alpha", "beta"),
               "LeakyRelu": ("leakyrelu", "alpha", None), "Tanh": ("tanh", None, None)}


def fuse_activation(graph) -> int:
    fused = 0
    for node in list(graph.nodes):
        if node.op not in ACTIVATIONS:
            continue
        x = node.inputs[0]
        producer = next((n for n in graph.nodes if x in n.outputs), None)
        if (producer is None or producer.op not in PRODUCERS or producer.attrs.get("activation", "none") != "none"
                or graph.tensors[x].dtype != "f32" or not is_private(graph, x, uses(graph))):
            continue
        name, a_key, b_key = ACTIVATIONS[node.op]
        attrs = get_op(node.op).resolve_attrs(node)
        act_a = float(attrs[a_key]) if a_key else 0.0
        act_b = float(attrs[b_key]) if b_key else 0.0
        producer.attrs.update(activation=name, act_a=act_a, act_b=act_b)
        take_over_output(graph, producer, producer.outputs.index(x), node)
        fused += 1
    return fused
