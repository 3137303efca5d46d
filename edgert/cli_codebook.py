"""Command-line pieces for codebook and key-value layers: ``run --codebook/--emit-codes`` and ``kv-update``.

``--codebook`` takes ``LAYER:ACTION`` where LAYER is a CodebookSnap node name or its index among
the model's codebook layers (``edgert inspect`` lists them) and ACTION is one of

* ``force=12,40``   codes forced into slots 0, 1, ... (slot i holds the i-th code; output re-averaged)
* ``block=0,3``     slots that contribute a zero vector (still counted in the /k)
* ``disable=7,9``   codes removed from the ranking (k real codes are still chosen)
* ``group=1``       restrict this layer's force/block/disable to one group (default: every group)
* ``positions=0,5`` restrict them to some tokens (flat row indices; default: every token)
* ``keep-k=no``     a disabled code chosen into a slot blocks that slot instead of leaving the ranking
* ``bypass``        the layer passes its input through

Several ``--codebook`` options for one layer add up; the semantics are ``edgert.interventions``'.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

_ACTIONS = ("force", "block", "disable", "group", "positions", "keep-k", "bypass")


def _ints(text, what, option):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise InputError(f"bad --codebook {option!r}: {what} takes comma-separated integers, e.g. {what}=12,40")
    return values


def parse_codebook_options(options) -> dict:
    """{layer: {action: value}} from repeated ``--codebook LAYER:ACTION`` strings."""
    plans: dict = {}
    for option in options:
        layer, sep, action = option.rpartition(":")
        if not sep or not layer:
            raise InputError(f"bad --codebook {option!r}; write LAYER:force=12,40 (or block=, disable=, group=, "
                             "positions=, keep-k=no, bypass)")
        key, eq, value = action.partition("=")
        key = key.strip().lower().replace("_", "-")
        if key not in _ACTIONS or (key == "bypass") == bool(eq):
            raise InputError(f"bad --codebook {option!r}: the action must be one of "
                             "force=, block=, disable=, group=, positions=, keep-k=, bypass")
        layer = int(layer) if layer.lstrip("-").isdigit() else layer
        plan = plans.setdefault(layer, {"force": [], "block": [], "disable": [], "group": None,
                                        "positions": None, "keep_k": True, "bypass": False})
        if key == "bypass":
            plan["bypass"] = True
        elif key == "keep-k":
            if value.lower() not in ("yes", "no", "true", "false", "1", "0"):
                raise InputError(f"bad --codebook {option!r}: keep-k takes yes or no")
            plan["keep_k"] = value.lower() in ("yes", "true", "1")
        elif key == "group":
            plan["group"] = _ints(value, key, option)[0]
        elif key == "positions":
            plan["positions"] = (plan["positions"] or []) + _ints(value, key, option)
        else:
            plan[key] += _ints(value, key, option)
    return plans


def apply_codebook_options(session, options) -> list:
    """Set the interventions the options describe; returns one human-readable line per layer."""
    lines = []
    for layer, plan in parse_codebook_options(options).items():
        group = plan["group"]
        force = [(group, slot, code) for slot, code in enumerate(plan["force"])]
        block = [(group, slot) for slot in plan["block"]]
        disable = [(group, code) for code in plan["disable"]]
        session.set_codebook_intervention(layer, force=force, block=block, disable=disable, keep_k=plan["keep_k"],
                                          positions=plan["positions"], bypass=plan["bypass"])
        done = [f"{k} {plan[k]}" for k in ("force", "block", "disable") if plan[k]] + (["bypass"] if plan["bypass"] else [])
        lines.append(f"codebook {layer}: " + ", ".join(done or ["no change"]))
    return lines


def describe_codes(codes: dict, limit: int = 16) -> list:
    """Lines summarising the code ids each layer chose: all ids for small layers, else the most frequent."""
    lines = []
    for name, ids in codes.items():
        rows = ids.reshape(-1, ids.shape[-1]) if ids.ndim else ids.reshape(1, 1)
        fired = ids[ids >= 0]
        uniq, counts = np.unique(fired, return_counts=True)
        lines.append(f"codes {name}: shape {list(ids.shape)}, {len(uniq)} distinct")
        if rows.shape[0] <= limit:
            for i, row in enumerate(rows):
                lines.append(f"  row {i}: {' '.join(map(str, row.tolist()))}")
        else:
            top = np.argsort(-counts, kind="stable")[:10]
            lines.append("  most frequent: " + ", ".join(f"{uniq[t]} x{counts[t]}" for t in top))
    return lines


def read_kv_updates(path):
    """(indices, values) from an .npz holding ``indices`` ([n] flat or [n, 2] (head, key)) and ``values`` [n, dv]."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"indices", "values"} - set(data.files)
            if missing:
                raise InputError(f"{path} lacks array(s) {sorted(missing)}; it has {sorted(data.files)}",
                                 hint="save it with np.savez(path, indices=..., values=...)")
            return np.array(data["indices"]), np.array(data["values"])
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read updates from {path}: {exc}") from None
