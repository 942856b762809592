"""The Python agent's stand-ins for a site's own parts: the dump folder a test reads, a
deterministic trainer, and the plain rounds' delta encodings (docs/protocol.md, "Delta encodings").
"""

import json
import math
import os
import sys
import threading
import time

import numpy as np

import fedhpc_formats as fmt
from fedhpc_secure import Refused


class Dump:
    """The dump folder: events, each round's delta and counts, for the test to read."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.lock = threading.Lock()

    def event(self, kind, **fields):
        line = json.dumps({"ts": int(time.time() * 1000), "event": kind, **fields}, sort_keys=True)
        with self.lock:
            with open(os.path.join(self.folder, "events.jsonl"), "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        print(line, file=sys.stderr, flush=True)

    def round(self, round_, delta, counts):
        np.asarray(delta, dtype="<f4").tofile(os.path.join(self.folder, f"round-{round_}.f32"))
        with open(os.path.join(self.folder, f"round-{round_}.json"), "w", encoding="utf-8") as fh:
            json.dump({"round": round_, "elements": len(delta), **counts}, fh)


MAX_SAFE_INTEGER = 2**53 - 1


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SAFE_INTEGER


def train_config(text):
    """The task's `train_config_json`: a JSON object (SPEC_INVALID otherwise)."""
    try:
        train = json.loads(text or "{}")
    except ValueError as e:
        raise Refused("SPEC_INVALID", f"train_config_json is not JSON: {e}") from e
    if not isinstance(train, dict):
        raise Refused("SPEC_INVALID", "train_config_json is not a JSON object")
    return train


def parse_budget(train):
    """The trainer contract's `budget`: absent (None), {"seconds": S} with S > 0, or {"tokens": T}
    with T a positive integer; anything else fails the round at the site (SPEC_INVALID)."""
    b = train.get("budget")
    if b is None:
        return None
    if isinstance(b, dict) and list(b) == ["seconds"]:
        s = b["seconds"]
        if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0:
            return ("seconds", float(s))
    if isinstance(b, dict) and list(b) == ["tokens"] and _positive_int(b["tokens"]):
        return ("tokens", b["tokens"])
    raise Refused("SPEC_INVALID", f"train.budget {json.dumps(b)} is neither {{\"seconds\": S > 0}} nor {{\"tokens\": T, a positive integer}}")


def _setting(train, name, default=1):
    v = train.get(name, default)
    if not _positive_int(v):
        raise Refused("SPEC_INVALID", f"train.{name} {json.dumps(v)} is not a positive integer")
    return v


class Trainer:
    """A deterministic stand-in for training: each step adds a seeded increment to Δ (small values,
    every coordinate i ≡ 3 (mod 7) exactly zero and coordinate 5 beyond any clip of 1, so it is
    clipped) and takes `step_s` seconds. Without a budget it takes 4 steps and declares
    `samples_base + 37·round` samples (8 tokens each); with `train.budget` it follows the trainer
    contract (docs/protocol.md, "The trainer contract"): a token budget T takes
    ⌈T / (batch_size · seq_len)⌉ steps (at least T tokens, less than T plus one batch), a time
    budget S starts no step once S seconds have passed since the first step began; `max_steps`
    caps either; samples = steps · batch_size, tokens = samples · seq_len. The busy span is the
    start of the first step and the end of the last, Unix ms from a monotonic clock, and the busy
    time (the header's busy_ms, protocol version 5) the sum of the steps' durations."""

    def __init__(self, seed, samples_base, step_s=0.005):
        self.seed = seed
        self.samples_base = samples_base
        self.step_s = step_s

    def train(self, round_, elements, train=None):
        train = train or {}
        budget = parse_budget(train)
        if budget is None:
            batch, seq_len, planned, cap = None, None, 4, 4
        else:
            batch, seq_len = _setting(train, "batch_size"), _setting(train, "seq_len")
            cap = _setting(train, "max_steps") if "max_steps" in train else None
            planned = -(-budget[1] // (batch * seq_len)) if budget[0] == "tokens" else None
            if cap is not None:
                planned = cap if planned is None else min(planned, cap)
        rng = np.random.default_rng([self.seed, round_])
        delta = np.zeros(elements, dtype=np.float32)
        wall0, mono0 = time.time(), time.monotonic()
        now_ms = lambda: int((wall0 + time.monotonic() - mono0) * 1000)  # noqa: E731
        first = time.monotonic()
        started_ms, steps, progress, busy_s = now_ms(), 0, [], 0.0
        while True:
            if planned is not None and steps >= planned:
                break
            if budget is not None and budget[0] == "seconds" and steps > 0 and time.monotonic() - first >= budget[1]:
                break
            step_start = time.monotonic()
            time.sleep(self.step_s)
            delta += rng.uniform(-5e-4, 5e-4, elements).astype(np.float32)
            steps += 1
            busy_s += time.monotonic() - step_start
            progress.append(now_ms())
        delta[3::7] = 0
        if elements > 5:
            delta[5] = 3.0
        if budget is None:
            samples = self.samples_base + 37 * round_
            tokens = samples * 8
        else:
            samples = steps * batch
            tokens = samples * seq_len
        counts = {"samples": samples, "tokens": tokens, "steps": steps, "trainLoss": 2.5 / (1 + round_), "trainStartedMs": started_ms, "trainFinishedMs": progress[-1], "busyMs": int(busy_s * 1000), "stepTs": progress}
        return delta, counts

    def evaluate(self, model_round):
        return 3.0 / (1 + model_round), 50


def encode_plain(delta, encoding, element_counts):
    """Delta encodings of a plain round, tensor by tensor."""
    if encoding == "f32":
        return np.asarray(delta, dtype="<f4").tobytes()
    out, at = bytearray(), 0
    for n in element_counts:
        part = np.asarray(delta[at:at + n], dtype=np.float32)
        at += n
        if encoding == "bf16":
            bits = part.view(np.uint32).astype(np.uint64)
            nan = ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
            out += np.where(nan, (bits >> 16) | 0x0040, rounded).astype("<u2").tobytes()
        elif encoding == "int8":
            out += fmt.encode_int8(part)
        else:
            raise Refused("ENCODING_UNKNOWN", f"encoding {encoding!r} is not one this agent speaks")
    return bytes(out)
