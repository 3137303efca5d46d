"""Run-time code interventions on codebook layers, and the codes each layer emitted.

Codebook features make a model's activations a handful of discrete codes per token, so editing
those codes steers the model. These functions edit a prepared session in place: each
``CodebookSnap`` node keeps its intervention state in arrays bound into its kernel's arguments
(``Prepared.packed``: ``iv_ctrl``, ``iv_override``, ``iv_mask``, ``iv_mask_rows``), so a change
takes effect on the next run with no re-preparing or reconversion. Semantics are those of the
reference implementation (taufeeque9/codebook-features):

* **force** ``(group, slot, code)``: slot ``slot`` (negative counts from the end; -1 is the least
  similar of the k) holds ``code`` instead; the output is again the mean over the k slots.
* **block** ``(group, slot)``: the slot contributes a zero vector but still counts in the /k.
* **disable** ``codes``: with ``keep_k=True`` (default) the codes leave the ranking (score -inf
  before top-k, so k real codes are still chosen); with ``keep_k=False`` top-k runs as usual and
  a chosen disabled code becomes a blocked slot.
* ``positions``: restrict all of the above to some tokens (flat indices over the input's leading
  dims, e.g. ``b * T + t``); default every token.
* ``bypass``: the layer passes its input through (the reference's ``disable_codebook``).

Disable applies first, then force/block, as in the reference (hook after the snap). ``group`` may
be ``None`` for every group; a bare int ``slot`` in ``block`` means every group.

``codes(session)`` returns the ids every codebook or key-value layer chose in the last run
((..., G, k) or (..., C, topk), int64; -1 marks a blocked slot), whether or not the graph outputs them.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import InputError

SNAP, KV = "CodebookSnap", "KeyValueLookup"
KEEP, BLOCK = -2, -1


def _layers(session, op):
    return [p for p in session.nodes if p.node.op == op and p.prepared is not None]


def codebook_layers(session) -> list:
    """Names of the session's CodebookSnap nodes, in graph order (an int layer indexes this list)."""
    return [p.node.name for p in _layers(session, SNAP)]


def kv_layers(session) -> list:
    """Names of the session's KeyValueLookup nodes, in graph order."""
    return [p.node.name for p in _layers(session, KV)]


def _find(session, layer, op=SNAP):
    nodes = _layers(session, op)
    if isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
        if not -len(nodes) <= layer < len(nodes):
            raise InputError(f"layer {layer} is out of range: the model has {len(nodes)} {op} layer(s)",
                             file=session.path)
        return nodes[layer]
    for p in nodes:
        if p.node.name == layer:
            return p
    raise InputError(f"no {op} layer named {layer!r}; the model has {[p.node.name for p in nodes]}",
                     file=session.path, op=op)


class _Layer:
    """Validated access to one snap node's state arrays."""

    def __init__(self, pnode, path):
        self.pnode, self.path = pnode, path
        self.state = pnode.prepared.packed
        self.N, self.G, self.k = self.state["iv_override"].shape
        self.K = self.state["iv_mask"].shape[1]

    def fail(self, message):
        return InputError(message, file=self.path, node=self.pnode.node.name, op=SNAP)

    def _int(self, value, what, lo, hi):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not lo <= value < hi:
            raise self.fail(f"{what} {value!r} must be an integer in [{lo}, {hi})")
        return int(value)

    def groups(self, group):
        return slice(None) if group is None else self._int(group, "group", 0, self.G)

    def slot(self, slot):
        return self._int(slot, "slot", -self.k, self.k) % self.k

    def code(self, code):
        return self._int(code, "code", 0, self.K)

    def rows(self, positions):
        if positions is None:
            return slice(None)
        rows = [self._int(p, "position", 0, self.N) for p in positions]
        if not rows:
            raise self.fail("positions is empty; pass None for every token")
        return np.array(sorted(set(rows)), dtype=np.int64)


def set_codebook_intervention(session, layer, force=(), block=(), disable=(), keep_k=True, positions=None,
                              bypass=False) -> None:
    """Replace the intervention on one codebook layer (see the module docstring for the semantics).

    Parameters
    ----------
    session : Session
    layer : str or int
        A CodebookSnap node name, or an index into ``codebook_layers(session)`` (also for ``codes``,
        which takes KeyValueLookup names too).
    force : iterable of (group, slot, code)
    block : iterable of (group, slot) or slot
    disable : iterable of code or (group, code)
    keep_k : bool
        Disabled codes leave the ranking (True) or block the slot they were chosen into (False).
    positions : iterable of int, optional
        Token rows (flat over the input's leading dims) the intervention applies to.
    bypass : bool
        Make the layer the identity.
    """
    lay = _Layer(_find(session, layer), session.path)
    rows = lay.rows(positions)
    override = np.full((lay.N, lay.G, lay.k), KEEP, np.int64)
    mask = np.zeros((lay.G, lay.K), np.uint8)
    for item in disable:
        group, code = (None, item) if isinstance(item, numbers.Integral) else item
        mask[lay.groups(group), lay.code(code)] = 1
    for item in block:
        group, slot = (None, item) if isinstance(item, numbers.Integral) else item
        override[rows, lay.groups(group), lay.slot(slot)] = BLOCK
    for group, slot, code in force:
        override[rows, lay.groups(group), lay.slot(slot)] = lay.code(code)
    mask_rows = np.zeros(lay.N, np.uint8)
    mask_rows[rows] = 1
    ctrl = np.array([int((override != KEEP).any()), int(mask.any()), int(bool(keep_k)), int(bool(bypass))], np.int64)
    with session._lock:  # never change what a running kernel reads halfway through
        st = lay.state
        st["iv_override"][...] = override
        st["iv_mask"][...] = mask
        st["iv_mask_rows"][...] = mask_rows
        st["iv_ctrl"][...] = ctrl


def clear_interventions(session, layer=None) -> None:
    """Remove the interventions of one codebook layer, or of every layer when ``layer`` is None."""
    names = codebook_layers(session) if layer is None else [layer]
    for name in names:
        set_codebook_intervention(session, name)


def interventions(session) -> dict:
    """{layer: summary} of the active interventions (for logs and ``inspect``)."""
    out = {}
    for p in _layers(session, SNAP):
        st = p.prepared.packed
        ctrl = st["iv_ctrl"]
        if not (ctrl[0] or ctrl[1] or ctrl[3]):
            continue
        ov = st["iv_override"]
        out[p.node.name] = {"forced_slots": int((ov >= 0).sum()), "blocked_slots": int((ov == BLOCK).sum()),
                            "disabled_codes": int(st["iv_mask"].sum()), "keep_k": bool(ctrl[2]),
                            "bypass": bool(ctrl[3])}
    return out


def codes(session, layer=None):
    """Ids chosen in the session's last run: an array for ``layer``, or {name: array} for all layers.

    Shapes are the layer input's leading dims + (G, k) for codebook layers, + (C, topk) for
    key-value layers; -1 marks a blocked slot (and every slot of a bypassed layer or before any run).
    """
    with session._lock:
        return codes_unlocked(session, layer)


def codes_unlocked(session, layer=None):
    """``codes`` for a caller that already holds the session's run lock (e.g. inside ``Session.run``)."""
    def shaped(p):
        lead = tuple(session.graph.tensors[p.node.inputs[0]].shape[:-1])
        return p.prepared.packed["codes"].reshape(lead + p.prepared.packed["codes"].shape[1:]).copy()

    if isinstance(layer, str) and layer in kv_layers(session):
        return shaped(_find(session, layer, KV))
    if layer is not None:
        return shaped(_find(session, layer, SNAP))
    return {p.node.name: shaped(p) for p in _layers(session, SNAP) + _layers(session, KV)}


def run_with_codes(session, feeds, output_names=None):
    """Run and return (outputs, codes) of that same run.

    Two threads running one session could interleave between the run and the read; use one
    session per thread here (``Session.run(..., with_codes=True)``, once the runtime has it,
    reads the codes inside the run's lock).
    """
    outputs = session.run(feeds, output_names)
    return outputs, codes(session)
