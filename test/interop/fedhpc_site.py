"""The Python agent's stand-ins for a site's own parts: the dump folder a test reads, a
deterministic trainer, and the plain rounds' delta encodings (docs/protocol.md, "Delta encodings").
"""

import json
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


class Trainer:
    """A deterministic stand-in for training: Δ from a seeded generator, small values, every
    coordinate i ≡ 3 (mod 7) exactly zero and coordinate 5 beyond any clip of 1 (it is clipped)."""

    def __init__(self, seed, samples_base):
        self.seed = seed
        self.samples_base = samples_base

    def train(self, round_, elements):
        rng = np.random.default_rng([self.seed, round_])
        delta = rng.uniform(-2e-3, 2e-3, elements).astype(np.float32)
        delta[3::7] = 0
        if elements > 5:
            delta[5] = 3.0
        samples = self.samples_base + 37 * round_
        counts = {"samples": samples, "tokens": samples * 8, "steps": 4, "trainLoss": 2.5 / (1 + round_)}
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
