"""Bases, staleness and folded work (docs/protocol.md, "Bases, staleness and folded work"): the
weight an upload of several parts makes, the one delta it sends, and the site's store of missed
work — deltas it trained but could not upload in their own round, kept on disk with their base and
counts until an upload that folds them is counted.

    discount(k, s) = ⌊k / (1 + s)⌋            a part of count k trained s rounds ago
    F = discount(fresh),  S = Σ S_i,  S_i = discount(part i)
    W = F + min(S, M − F),  λ = min(1, (M − F) / S),  c_i = λ·S_i
    Δ = f32((F·clip(Δ_f) + Σ c_i·clip(Δ_i)) / W)     in float64, parts added in order
"""

import json
import os

import numpy as np

import fedhpc_secagg as sa
from fedhpc_secure import Refused

# The coordinator's codes for folded parts it will not count: drop them, send the fresh delta alone.
FOLD_REFUSALS = ("BASE_UNKNOWN", "STALE_DELTA", "ALREADY_COUNTED")


def discounted(count, staleness):
    """⌊k / (1 + s)⌋, in integers."""
    if not (isinstance(count, int) and isinstance(staleness, int)) or count < 0 or staleness < 0:
        raise sa.ProtocolError("INVALID_ARGUMENT", f"a part's count and staleness must be non-negative integers, got {count!r} and {staleness!r}")
    return count // (1 + staleness)


def part_count(weighting, counts):
    """A part's count in the run's unit: its samples or tokens, 1 under uniform."""
    if weighting == "uniform":
        return 1
    return int(counts["tokens"] if weighting == "tokens" else counts["samples"])


def upload_weight(fresh, folded, max_weight):
    """fresh: (count, staleness); folded: [(count, staleness)]. Returns (W, F, [S_i], λ)."""
    f = discounted(*fresh)
    if not 0 < f <= max_weight:
        raise sa.ProtocolError("WEIGHT_OUT_OF_RANGE", f"the fresh part counts {f}, outside (0, {max_weight}]")
    parts = [discounted(*p) for p in folded]
    s = sum(parts)
    taken = min(s, max_weight - f)
    return f + taken, f, parts, (1.0 if s == 0 else taken / s)


def mix(fresh, parts, f, counts, w, clip):
    """Δ = f32((F·clip(Δ_f) + Σ c_i·clip(Δ_i)) / W) in float64; clip None: no clip (plain rounds)."""
    def clipped(x):
        x = np.asarray(x, dtype=np.float32).astype(np.float64)
        return x if clip is None else np.minimum(clip, np.maximum(-clip, x))

    acc = f * clipped(fresh)
    for c, d in zip(counts, parts):
        acc = acc + c * clipped(d)
    return (acc / w).astype(np.float32)


class KeptWork:
    """Missed work on disk: `<base>.f32` (Δ = local − base, f32 LE) and `<base>.json` per base, one
    piece of work per base (newer work from a base replaces older). State `kept`, or `pending`
    while an accepted upload folded it and its round is not yet known to have counted it; a pending
    part stays foldable (the coordinator refuses work it counted: ALREADY_COUNTED)."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def _path(self, base, ext):
        return os.path.join(self.folder, f"{base}.{ext}")

    def parts(self):
        out = []
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".json"):
                with open(os.path.join(self.folder, name), encoding="utf-8") as fh:
                    out.append(json.load(fh))
        return out

    def delta(self, part):
        return np.fromfile(self._path(part["base"], "f32"), dtype="<f4")

    def keep(self, record, delta):
        """The delta first, then its record, each through a temporary name: a record names a whole delta."""
        base = record["base"]
        for ext, write in (("f32", lambda p: np.asarray(delta, dtype="<f4").tofile(p)), ("json", lambda p: _write_json(p, {**record, "state": "kept"}))):
            tmp = self._path(base, ext) + ".tmp"
            write(tmp)
            os.replace(tmp, self._path(base, ext))

    def set_state(self, part, state, folded_in=None):
        _write_json(self._path(part["base"], "json"), {**{k: v for k, v in part.items() if k != "foldedIn"}, "state": state, **({"foldedIn": folded_in} if folded_in else {})})

    def drop(self, part):
        for ext in ("json", "f32"):
            try:
                os.remove(self._path(part["base"], ext))
            except FileNotFoundError:
                pass


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh, sort_keys=True)
    os.replace(tmp, path)


def plan_fold(run_id, global_sha256, model_round, max_staleness, parts, weighting):
    """Which kept parts an upload of this task folds: (chosen [(part, staleness)], dropped [(part, why)]).
    Dropped for good: another run's, trained from this task's model or a newer one (superseded),
    more than max_staleness rounds old, or counting nothing after the discount. The rest, freshest
    first, at most max_staleness of them."""
    chosen, dropped = [], []
    for p in parts:
        s = model_round - p["baseRound"]
        if p["runId"] != run_id:
            dropped.append((p, f"trained for run {p['runId']}"))
        elif p["base"] == global_sha256 or s <= 0:
            dropped.append((p, "superseded: this task trains from the same model or a newer one"))
        elif s > max_staleness:
            dropped.append((p, f"{s} rounds old, more than max_staleness {max_staleness}"))
        elif discounted(part_count(weighting, p), s) == 0:
            dropped.append((p, f"counts nothing at staleness {s}"))
        else:
            chosen.append((p, s))
    chosen.sort(key=lambda x: x[1])
    return chosen[:max_staleness], dropped


class Fold:
    """The agent's kept work and what each upload folds of it. `events(kind, **fields)` records
    what happened; `refold`: rounds in which to fold once more the parts a committed round already
    counted (test behaviour: the coordinator must refuse them, ALREADY_COUNTED)."""

    def __init__(self, folder, events, refold=()):
        self.kept = KeptWork(folder)
        self.events = events
        self.refold = set(refold)
        self.counted = []  # [(record, delta)] of counted parts, kept in memory only while a refold is due

    def keep_missed(self, record, delta, why):
        """Work that cannot count in its own round: kept with its base and counts, to fold later."""
        self.kept.keep(record, delta)
        self.events("kept", round=record["round"], base=record["base"], base_round=record["baseRound"], tokens=record["tokens"], samples=record["samples"], why=why)

    def plan(self, run_id, round_, global_sha256, model_round, max_staleness, weighting, max_weight, clip, fresh, fresh_counts):
        """The upload this task makes of the fresh delta and the kept parts it may fold, or None
        (nothing to fold). Parts that can never be sent are dropped first."""
        parts = [(p, None) for p in self.kept.parts()]
        if round_ in self.refold and self.counted:
            self.refold.discard(round_)
            parts += [({**rec, "refold": True}, d) for rec, d in self.counted]
            self.events("refolding", round=round_, bases=[rec["base"] for rec, _ in self.counted])
        by_base = {id(p): d for p, d in parts}
        chosen, dropped = plan_fold(run_id, global_sha256, model_round, max_staleness, [p for p, _ in parts], weighting)
        for p, why in dropped:
            if not p.get("refold"):
                self.kept.drop(p)
            self.events("kept-dropped", round=round_, base=p["base"], why=why)
        if not chosen:
            return None
        try:
            w, f, s, scale = upload_weight((part_count(weighting, fresh_counts), 0), [(part_count(weighting, p), st) for p, st in chosen], max_weight)
        except sa.ProtocolError as e:
            raise Refused(e.code, str(e)) from e
        if w == f:
            self.events("fold-no-room", round=round_, fresh=f, max_weight=max_weight)
            return None
        counts = [si * scale for si in s]
        deltas = [by_base[id(p)] if by_base[id(p)] is not None else self.kept.delta(p) for p, _ in chosen]
        plan = {
            "parts": [p for p, _ in chosen],
            "staleness": [st for _, st in chosen],
            "weight": w,
            "fresh": f,
            "discounted": s,
            "scale": scale,
            "counts": counts,
            "delta": mix(fresh, deltas, f, counts, w, clip),
        }
        self.events("folding", round=round_, weight=w, fresh=f, scale=scale, parts=[{"base": p["base"], "staleness": st, "discounted": si, "count": c} for (p, st), si, c in zip(chosen, s, counts)])
        return plan

    def uploaded(self, plan, run_id, round_):
        """An accepted upload folded the plan's parts: pending until its round is known to count them."""
        for p in plan["parts"]:
            if not p.get("refold"):
                self.kept.set_state(p, "pending", {"runId": run_id, "round": round_})

    def refused(self, plan, code):
        """The coordinator refused the folded parts: dropped for good."""
        for p in plan["parts"]:
            if not p.get("refold"):
                self.kept.drop(p)
            self.events("kept-dropped", base=p["base"], why=f"the coordinator refused the folded parts ({code})")

    def settled(self, run_id, round_, counted):
        """Round `round_` committed; `counted`: with this site (its receipt was taken), so the parts it
        folded are done; otherwise they go back to kept."""
        for p in self.kept.parts():
            if p["state"] == "pending" and p.get("foldedIn") == {"runId": run_id, "round": round_}:
                if counted:
                    if self.refold:
                        self.counted.append(({k: v for k, v in p.items() if k not in ("state", "foldedIn")}, self.kept.delta(p)))
                    self.kept.drop(p)
                    self.events("kept-counted", round=round_, base=p["base"])
                else:
                    self.kept.set_state(p, "kept")
                    self.events("kept-again", round=round_, base=p["base"])
