#!/usr/bin/env python3
"""fedhpc reference trainer: a Llama-style decoder in plain PyTorch, run by the site agent.

Modes (exit codes: 0 done (a session: stopped), 64 bad spec or usage, 65 global weights invalid or
mismatched, 75 interrupted with a resumable checkpoint in scratch/ (a session: in state/), anything
else a crash):

  --init --config model.json --out DIR --seed N
      DIR/model.safetensors (F32) + DIR/config.json: seeded round-0 weights, the same bytes on
      every machine, device and PyTorch version for the same seed and config.
  --round-dir DIR
      One shard of a round (DESIGN.md, "Training runners"). Reads DIR/spec.json (contract version 2):
        {version? 2, round, seed, global_sha256, model_config_sha256?, output_dtype? ("F32" | "BF16"),
         keep_optimizer_state? (a directory for DiLoCo's inner AdamW state across rounds),
         budget? {"seconds": S} | {"tokens": T},
         train: {max_steps (beside a budget optional, a cap), lr, batch_size, seq_len, weight_decay? 0,
                 warmup_steps? 0, decay_steps? 0, min_lr_ratio? 0.1, data_order? "shuffled" | "sequential",
                 grad_clip? 1.0, micro_batch_size?, checkpoint_every? 0},
         data: {train_tokens, train_tokens_sha256? (a pin: exit 64 for other bytes), cursor? 0,
                token_budget_scale? 1}}
      (relative paths are relative to DIR).
      A budget decides the steps: with {"tokens": T} the shard stops once its tokens reach T (the
      last step may pass T by less than one batch); with {"seconds": S} it starts no step after S
      seconds of training (time in the queue or between a kill and the resume does not count).
      data.token_budget_scale (0 < f <= 1, a site's own setting, only beside a token budget) is a
      benchmark stand-in for a slower accelerator: on a machine where every site trains at the same
      speed, a site of relative speed f trains the tokens it would reach in the fastest site's
      round, floor(T * f + 0.5) instead of T (bench/convergence-torch.ts --heterogeneous). It only
      ever lowers the tokens, so the coordinator's cap (T plus one batch) holds. Not for real sites:
      a real site's speed decides its tokens under a time budget.
      data_order: "shuffled" reads the file's non-overlapping seq_len windows in a permutation keyed
      by the file's SHA-256, a new one each epoch, and `cursor` counts windows read since the first
      epoch began; "sequential" reads them in file order and `cursor` is a token offset.
      and DIR/global/{model.safetensors,config.json}; appends {"step","steps","loss","tokens","ts"}
      (ts: Unix ms at the end of the step, never decreasing; steps: the planned steps, under a time
      budget an estimate) to DIR/progress.jsonl; writes DIR/out/model.safetensors, then DIR/DONE.json:
        {status, round, steps, tokens, samples, trainLoss, trainStartedMs, trainFinishedMs,
         dataManifestSha256, dataManifest, nextCursor, outSha256, outDtype}
      (trainStartedMs: the start of the first step, trainFinishedMs: the end of the last, Unix ms).
      SIGUSR1/SIGTERM: finish the step, save DIR/scratch/resume.pt, exit 75. A rerun with the same
      round, global_sha256, train and data resumes from it (attempt, run id and seed may differ),
      reaching the same weights as an uninterrupted run on CPU.
  --session-dir DIR [--sync-wait-s S]
      The persistent trainer of an overlapped run (contract version 3, docs/protocol.md "The
      persistent trainer"): one process for the whole run, which never stops for a sync. Reads
      DIR/spec.json {version 3, mode "persistent", run_id, seed, budget (per sync), overlap? {alpha? 1},
      output_dtype?, model_config_sha256?, train, data} (the round mode's train and data fields;
      decay_steps counts the session's steps) and the model config DIR/config.json (else the first
      sync's global/config.json). Before each step it takes up the lowest syncs/<round>.<attempt>/
      READY.json above its last snapshot: the first global is loaded as the parameters, a later g is
      applied as θ <- θ + α·(g - θₛ) (θₛ: the parameters at the last snapshot), one that is the base
      already applies nothing. Once that sync's budget (counted from the end of the last snapshot;
      train.max_steps caps it) is spent it writes syncs/<r>.<a>/out/model.safetensors, then
      DIR/state/ (θₛ, AdamW, step, data cursor, the base, the DONE record), then DONE.json, and
      trains on. It waits for the first global only (S seconds, default 3600, then exit 75). AdamW
      and the data cursor carry across syncs; a sync's data manifest covers its own steps.
      Appends {"step","loss","tokens","ts","stepMs","sync","appliedGlobalRound"} to DIR/progress.jsonl.
      DIR/STOP: exit 0 at the next step boundary. SIGTERM/SIGUSR1: exit 75 after the step, with no
      new snapshot. A restart resumes from state/ at the last snapshot (training since is lost, never
      counted twice) and writes that sync's DONE.json again if the crash lost it.
  --eval --model PATH --config config.json --tokens FILE [--seq-len N] [--max-batches K]
      Prints {"loss": mean nats per token, "samples": tokens scored} on stdout.

Token files are raw little-endian uint32 token ids, no header: uint16 cannot hold Salamandra's
256,000-token vocabulary. Tensor names are Hugging Face LlamaForCausalLM's, so HF checkpoints
(F32, BF16 or F16, one file) load directly and our outputs load in transformers.
Standard library + torch only; runs on Debian's PyTorch 1.13 (CPU) and current PyTorch (CUDA).

The round-directory contract (spec.json's common fields, the checks of global/, progress lines,
DONE.json, atomic writes, exit codes) is deploy/slurm/fedhpc_round_dir.py, shared with the NeMo
recipe. This file finds it beside itself (copy both when you install the trainer alone), else in
../../deploy/slurm/ (the repository and dist/).
"""
import contextlib, hashlib, json, math, mmap, os, signal, sys, time


def _round_dir_module_dir():
    """Where fedhpc_round_dir.py is: beside this file (an installed copy), else ../../deploy/slurm/."""
    here = os.path.dirname(os.path.realpath(__file__))
    candidates = [here, os.path.join(os.path.dirname(os.path.dirname(here)), "deploy", "slurm")]
    for d in candidates:
        if os.path.isfile(os.path.join(d, "fedhpc_round_dir.py")):
            return d
    raise ImportError(f"fedhpc_round_dir.py (deploy/slurm/ in the repository) is in none of {candidates}: "
                      "copy it beside torch_shard.py")


_MODULE_DIR = _round_dir_module_dir()
if _MODULE_DIR not in sys.path:
    sys.path.insert(0, _MODULE_DIR)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# bench/ reaches some of these as torch_shard.<name> (EXIT_BAD_SPEC, Refusal, sha256_file, load_config, ...).
from fedhpc_round_dir import (  # noqa: E402
    EXIT_BAD_SPEC, EXIT_INTERRUPTED, ITEM_BYTES, TOKEN_BYTES, Parser, Refusal, StepClock, SyncTally, append_progress,
    append_sync_progress, bad_global, bad_spec, budget_allows, check_global_sha256, check_safetensors_header,
    check_sync_global, load_config, load_pinned_config, load_round_config, need, next_ready, pinned_sha256,
    planned_or_estimate, read_spec, safetensors_header, session_config_path, sha256_file, stop_requested, sync_dir,
    sync_name, tensor_shapes, token_count, truncate_progress, validate_session_spec, validate_spec, write_atomic,
    write_done, write_json_atomic, write_sync_done)

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
# torch.frombuffer has no bfloat16 path in 1.13: half-width floats travel as int16 bit patterns.
RAW_VIEW = {"F32": torch.float32, "BF16": torch.int16, "F16": torch.int16}


def save_torch_atomic(obj, path):
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------- config and tensor layout

def hf_config(c):
    """What transformers needs to load our files as LlamaForCausalLM."""
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "vocab_size", "max_position_embeddings", "rope_theta",
            "rms_norm_eps", "initializer_range")
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            **{k: c[k] for k in keys}, "head_dim": c["hidden_size"] // c["num_attention_heads"],
            "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
            "tie_word_embeddings": False, "torch_dtype": "float32"}


# ---------------------------------------------------------------- safetensors

def read_safetensors(path, shapes, refuse):
    """Loads every tensor as F32 on the CPU, after checking names, shapes and offsets against `shapes`."""
    data_start, layout = check_safetensors_header(path, shapes, refuse)
    try:
        out = {}
        with open(path, "rb") as f:
            for name, shape in shapes.items():
                dtype, begin, end = layout[name]
                f.seek(data_start + begin)
                raw = torch.frombuffer(bytearray(f.read(end - begin)), dtype=RAW_VIEW[dtype])
                out[name] = raw.view(DTYPES[dtype]).to(torch.float32).reshape(shape)
        return out
    except (OSError, ValueError) as e:
        raise refuse(f"{path}: {e}")


def write_safetensors(path, tensors, dtype="F32"):
    """Writes `tensors` (name order kept) atomically; returns the file's SHA-256."""
    head = safetensors_header(((name, tuple(t.shape)) for name, t in tensors.items()), dtype)
    digest, tmp = hashlib.sha256(), f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        digest.update(head)
        for t in tensors.values():
            # Copy into a bytearray through a torch view: no numpy needed (optional in PyTorch 2.x).
            data = bytearray(t.numel() * ITEM_BYTES[dtype])
            src = t.detach().to("cpu", DTYPES[dtype]).reshape(-1).view(RAW_VIEW[dtype])
            torch.frombuffer(data, dtype=RAW_VIEW[dtype]).copy_(src)
            f.write(data)
            digest.update(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return digest.hexdigest()


# ---------------------------------------------------------------- model

# Functional over a dict of HF-named tensors: the file's names are the model's, with no mapping.

def rms_norm(x, weight, eps):
    # Normalised in F32 as HF Llama does, so bf16 autocast keeps its numerics.
    y = x.float()
    return weight * (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def rope(x, cos, sin):
    # HF's rotate_half layout (HF's converted q/k weights assume it): halves of a head pair up.
    a, b = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((-b, a), dim=-1) * sin.to(x.dtype)


def attention(w, p, x, c, cos, sin):
    b, s, _ = x.shape
    heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
    d = c["hidden_size"] // heads
    q = F.linear(x, w[p + "q_proj.weight"]).view(b, s, heads, d).transpose(1, 2)
    k = F.linear(x, w[p + "k_proj.weight"]).view(b, s, kv_heads, d).transpose(1, 2)
    v = F.linear(x, w[p + "v_proj.weight"]).view(b, s, kv_heads, d).transpose(1, 2)
    q, k = rope(q, cos, sin), rope(k, cos, sin)
    # Grouped-query attention: KV head j serves query heads j*rep .. (j+1)*rep-1 (HF's repeat_kv).
    k, v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
    if hasattr(F, "scaled_dot_product_attention"):  # PyTorch >= 2.0: fused, far less memory
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        future = torch.ones(s, s, dtype=torch.bool, device=x.device).triu(1)
        y = scores.masked_fill(future, float("-inf")).softmax(-1, dtype=torch.float32).to(q.dtype) @ v
    return F.linear(y.transpose(1, 2).reshape(b, s, -1), w[p + "o_proj.weight"])


def forward(w, c, ids):
    """LlamaForCausalLM's logits for token ids [batch, seq], with weights `w` under HF names."""
    eps, d = c["rms_norm_eps"], c["hidden_size"] // c["num_attention_heads"]
    inv_freq = 1.0 / float(c["rope_theta"]) ** (torch.arange(0, d, 2, device=ids.device).float() / d)
    angles = torch.outer(torch.arange(ids.shape[1], device=ids.device).float(), inv_freq).repeat(1, 2)
    cos, sin = angles.cos(), angles.sin()
    x = F.embedding(ids, w["model.embed_tokens.weight"])
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = x + attention(w, p + "self_attn.", rms_norm(x, w[p + "input_layernorm.weight"], eps), c, cos, sin)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = F.linear(h, w[p + "mlp.gate_proj.weight"]), F.linear(h, w[p + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(gate) * up, w[p + "mlp.down_proj.weight"])  # SwiGLU
    return F.linear(rms_norm(x, w["model.norm.weight"], eps), w["lm_head.weight"])


def to_device(weights, device, trainable):
    return {n: t.to(device).requires_grad_(trainable) for n, t in weights.items()}


def pick_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device):
    """bf16 compute with F32 master weights on GPUs; plain F32 on CPU, where results are exact."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def hash32(x, k1, k2):
    """lowbias32 (C. Wellons) with a key mixed in before and between its rounds, on int64 tensors
    holding uint32 values. Products are split in 16-bit halves so nothing overflows int64: the
    integers are the same on any device, thread count or PyTorch version."""
    def mul(x, m):
        return (x * (m & 0xFFFF) + (((x * (m >> 16)) & 0xFFFF) << 16)) & 0xFFFFFFFF
    x = x ^ k1
    x = mul(x ^ (x >> 16), 0x7FEB352D) ^ k2
    x = mul(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def init_weights(c, seed, device):
    """Uniform weights with std initializer_range (HF draws normal ones of that std) from a
    counter-based hash: torch's RNG streams differ across versions and devices, and every site
    must be able to reproduce round 0 byte for byte."""
    half_width = c["initializer_range"] * math.sqrt(3.0)
    weights = {}
    for index, (name, shape) in enumerate(tensor_shapes(c).items()):
        if name.endswith("norm.weight"):
            weights[name] = torch.ones(shape)
            continue
        k1, k2 = (int(hash32(torch.tensor([v & 0xFFFFFFFF]), 0x9E3779B9, 0x85EBCA6B))
                  for v in (seed, seed * 1000003 + index + 1))
        # Small chunks keep a CPU's temporaries in cache (10x faster); a GPU wants few launches.
        count, chunk = math.prod(shape), 1 << (24 if device.type == "cuda" else 16)
        flat = torch.empty(count)
        for start in range(0, count, chunk):
            bits = hash32(torch.arange(start, min(start + chunk, count), device=device), k1, k2) >> 8
            # 24 bits, centred: exact in F32, then one IEEE multiply, so the bytes are reproducible.
            flat[start:start + chunk] = ((bits.float() * 2 - (2 ** 24 - 1)) * (half_width / 2 ** 24)).cpu()
        weights[name] = flat.reshape(shape)
    return weights


# ---------------------------------------------------------------- data

class TokenFile:
    """A token file mapped copy-on-write (a writable buffer, so torch.frombuffer does not warn)."""

    def __init__(self, path, refuse):
        self.count = token_count(path, refuse)
        try:
            with open(path, "rb") as f:
                self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError) as e:
            raise refuse(f"token file {path}: {e}")
        self.path, self.size = path, self.count * TOKEN_BYTES
        self.tokens = torch.frombuffer(self.map, dtype=torch.int32)  # ids < 2^31, checked on use

    def windows(self, starts, length, vocab, refuse):
        batch = torch.stack([self.tokens[s:s + length] for s in starts]).long()
        if batch.min() < 0 or batch.max() >= vocab:
            raise refuse(f"token file {self.path}: token ids must lie in [0, {vocab})")
        return batch


M64 = (1 << 64) - 1


def mix64(x):
    """splitmix64's finaliser: a bijection of 64-bit integers that scatters every input bit."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def permuted(i, n, key, epoch):
    """Element `i` of a permutation of range(n) keyed by (key, epoch): a four-round Feistel network
    on the smallest even-width power of two >= n, walking the cycle until it lands below n. No table,
    so any number of windows costs O(1) memory, and the order is the same on every machine and
    PyTorch version."""
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    keys = [mix64((key + mix64(epoch * 4 + r + 1)) & M64) for r in range(4)]
    x = i
    while True:
        left, right = x >> half, x & mask
        for k in keys:
            left, right = right, left ^ (mix64(right ^ k) & mask)
        x = (left << half) | right
        if x < n:
            return x


def take_windows(order, cursor, count, seq_len, batch, key):
    """Starts of the next `batch` windows of seq_len + 1 tokens of a `count`-token file read from
    `cursor` in `order`; returns them, the cursor after them, and how often the file wrapped."""
    starts, wraps = [], 0
    if order == "sequential":  # windows in file order, wrapping to the start at the end
        for _ in range(batch):
            if cursor + seq_len + 1 > count:
                cursor, wraps = 0, wraps + 1
            starts.append(cursor)
            cursor += seq_len
        return starts, cursor, wraps
    n = (count - 1) // seq_len  # windows whose last target token is in the file
    for _ in range(batch):
        epoch, i = divmod(cursor, n)
        starts.append(permuted(i, n, key, epoch) * seq_len)
        cursor += 1
    return starts, cursor, cursor // n - (cursor - batch) // n


def order_key(sha256_hex):
    """The shuffle key of a token file: its content, so a site and a baseline reading the same file agree."""
    return int(sha256_hex[:16], 16)


# ---------------------------------------------------------------- one round's shard

def lr_at(lr, step, warmup_steps, run_step, decay_steps, min_ratio):
    """Learning rate of one step: linear warm-up over the first `warmup_steps` of a shard, then,
    when `decay_steps` > 0, cosine decay from lr to min_ratio·lr over the run's first decay_steps
    steps (counted across rounds by `run_step`), constant after; constant lr without decay."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if not decay_steps:
        return lr * warm
    t = min(run_step, decay_steps) / decay_steps
    return lr * warm * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t)))


def torch_spec(spec, base_dir, session=False):
    """spec.json: the fields every trainer reads (fedhpc_round_dir.validate_spec, or
    validate_session_spec for a persistent session; the micro-batch defaults to the whole batch),
    data.train_tokens required, and this trainer's own fields."""
    s = validate_session_spec(spec, base_dir) if session else validate_spec(spec, base_dir)
    train, data = spec.get("train"), spec.get("data")
    need(data, "train_tokens", str, where="data")
    s.keep_state = need(spec, "keep_optimizer_state", (str, type(None)))
    if session and s.keep_state:
        # A session keeps AdamW in its own state/ and in memory: the round mode's directory has no use.
        print("torch_shard: keep_optimizer_state unused in a persistent session (state/ keeps AdamW)", file=sys.stderr)
        s.keep_state = None
    s.decay_steps = need(train, "decay_steps", int, lambda v: v >= 0, 0, where="train")
    s.min_lr_ratio = need(train, "min_lr_ratio", (int, float), lambda v: 0 <= v <= 1, 0.1, where="train")
    s.data_order = need(train, "data_order", str, lambda v: v in ("shuffled", "sequential"), "shuffled", where="train")
    scale = need(data, "token_budget_scale", (int, float), lambda v: 0 < v <= 1, 1, where="data")
    if scale != 1:
        if s.budget_tokens is None:
            raise bad_spec("spec.json: data.token_budget_scale scales a token budget: the spec has no budget {\"tokens\": T}")
        # The stand-in for a slower accelerator (the module's docstring): fewer tokens, the same rule for steps.
        s.budget_tokens = max(1, math.floor(s.budget_tokens * scale + 0.5))
        by_tokens = -(-s.budget_tokens // (s.batch_size * s.seq_len))
        s.planned_steps = min(by_tokens, s.max_steps) if s.max_steps is not None else by_tokens
    if s.decay_steps and s.planned_steps is None and not session:
        # The cosine decay counts the run's steps as rounds x steps per round: a time budget has no such count.
        raise bad_spec("spec.json: train.decay_steps needs a step count per round: give train.max_steps beside a time budget")
    return s


class StopFlag:
    """Slurm sends SIGUSR1 (--signal) or SIGTERM before a kill: note it and stop between steps."""

    def __init__(self):
        self.signal = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self.handle)

    def handle(self, sig, _frame):
        self.signal = signal.Signals(sig).name


def open_round(round_dir):
    """Reads and checks everything a shard needs before it trains: a refusal costs no compute."""
    spec, _ = read_spec(round_dir)
    s = torch_spec(spec, round_dir)
    c = load_round_config(round_dir, s)
    data = open_data(s)
    global_path = check_global_sha256(round_dir, s)
    weights = read_safetensors(global_path, tensor_shapes(c), bad_global)
    # A checkpoint belongs to what the shard computes, not to the attempt or run id around it.
    work = {k: spec.get(k) for k in ("round", "global_sha256", "train", "data", "budget")}
    work_key = hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()
    return spec, work_key, s, c, data, weights


def open_data(s):
    """The token file, checked against the spec (seq_len, cursor, the pin) and hashed: the hash is
    the data manifest's and the shuffle's key."""
    data = TokenFile(s.tokens_path, bad_spec)
    if data.count < s.seq_len + 1 or (s.data_order == "sequential" and s.cursor >= data.count):
        raise bad_spec(f"spec.json: data.cursor {s.cursor} or seq_len {s.seq_len} does not fit {data.count} tokens")
    data.sha256 = pinned_sha256(s.tokens_path, s.tokens_sha256)
    return data


class Shard:
    """The training state of one shard. Its files hold tensors, ints and strings only, because
    PyTorch 1.13's weights_only loader cannot read floats (and loading pickles unchecked is unsafe)."""

    def __init__(self, c, s, weights, device):
        self.c, self.s, self.device = c, s, device
        self.w = to_device(weights, device, trainable=True)
        self.opt = torch.optim.AdamW(self.w.values(), lr=s.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=s.weight_decay)
        self.shapes = {n: list(t.shape) for n, t in self.w.items()}
        self.step, self.cursor, self.wraps, self.loss_sum = 0, s.cursor, 0, 0.0
        # Inner steps of the run before this shard's first: rounds of planned_steps each (DiLoCo's H),
        # 1-based rounds (None only under a time budget without max_steps, where torch_spec refuses a
        # decay); a persistent session counts its own steps from the run's start.
        self.run_step_base = max(0, s.round - 1) * (s.planned_steps or 0) if s.round is not None else 0
        # The training clock a resume continues: first step's start, seconds trained, last step's end.
        self.started_ms, self.elapsed_s, self.last_ms = None, 0.0, None

    def load_adamw(self, state):
        # Hyperparameters come from this spec; only moments and step counts travel in files (loaded
        # on the CPU: load_state_dict moves moments to the weights' device, keeps steps where AdamW wants them).
        self.opt.load_state_dict({"state": state, "param_groups": self.opt.state_dict()["param_groups"]})

    def save(self, path, work_key, clock):
        clock_state = {"started_ms": clock.started_ms, "last_ms": self.last_ms,
                       "elapsed_s": torch.tensor(clock.elapsed_s(), dtype=torch.float64)}
        save_torch_atomic({"work_key": work_key, "step": self.step, "cursor": self.cursor, "wraps": self.wraps,
                           "loss_sum": torch.tensor(self.loss_sum, dtype=torch.float64), "clock": clock_state,
                           "weights": {n: t.detach() for n, t in self.w.items()},
                           "adamw": self.opt.state_dict()["state"]}, path)

    def resume(self, path, work_key):
        """Restores a checkpoint of this same work (round, global, train, data); False leaves the state fresh."""
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if ck.get("work_key") != work_key:
            return False
        with torch.no_grad():
            for n, t in self.w.items():
                t.copy_(ck["weights"][n])
        self.load_adamw(ck["adamw"])
        self.step, self.cursor, self.wraps, self.loss_sum = ck["step"], ck["cursor"], ck["wraps"], ck["loss_sum"].item()
        clock = ck.get("clock") or {}
        self.started_ms, self.last_ms = clock.get("started_ms"), clock.get("last_ms")
        self.elapsed_s = clock["elapsed_s"].item() if "elapsed_s" in clock else 0.0
        return True

    def load_kept(self, path):
        kept = torch.load(path, map_location="cpu", weights_only=True)
        if kept.get("shapes") != self.shapes:
            raise bad_spec(f"{path}: kept optimizer state belongs to another model shape")
        self.load_adamw(kept["adamw"])

    def save_kept(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_torch_atomic({"shapes": self.shapes, "adamw": self.opt.state_dict()["state"]}, path)

    def train_step(self, data):
        s = self.s
        starts, self.cursor, wrapped = take_windows(s.data_order, self.cursor, data.count, s.seq_len, s.batch_size, order_key(data.sha256))
        self.wraps += wrapped
        batch = data.windows(starts, s.seq_len + 1, self.c["vocab_size"], bad_spec).to(self.device)
        run_step = self.run_step_base + self.step
        for group in self.opt.param_groups:
            group["lr"] = lr_at(s.lr, self.step, s.warmup_steps, run_step, s.decay_steps, s.min_lr_ratio)
        self.opt.zero_grad(set_to_none=True)
        loss = 0.0
        for part in batch.split(s.micro_batch):  # gradient accumulation bounds activation memory
            with autocast(self.device):
                logits = forward(self.w, self.c, part[:, :-1])
            part_loss = F.cross_entropy(logits.float().flatten(0, 1), part[:, 1:].flatten()) * (len(part) / len(batch))
            part_loss.backward()
            loss += part_loss.item()
        if not math.isfinite(loss):
            raise RuntimeError(f"loss is {loss} at step {self.step + 1}")
        if s.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.w.values(), s.grad_clip)
        self.opt.step()
        self.step, self.loss_sum = self.step + 1, self.loss_sum + loss
        return loss


def train_round(round_dir, stop):
    spec, work_key, s, c, data, weights = open_round(round_dir)
    device = pick_device()
    torch.manual_seed(s.seed)  # training draws no random numbers today; seeded for any that would
    shard = Shard(c, s, weights, device)
    del weights
    scratch, out_dir = os.path.join(round_dir, "scratch"), os.path.join(round_dir, "out")
    resume_path, progress_path = os.path.join(scratch, "resume.pt"), os.path.join(round_dir, "progress.jsonl")
    kept_path = os.path.join(round_dir, s.keep_state, "adamw.pt") if s.keep_state else None
    resumed = os.path.exists(resume_path) and shard.resume(resume_path, work_key)
    if os.path.exists(resume_path) and not resumed:
        print(f"torch_shard: ignoring {resume_path}: written for other round, global, train or data", file=sys.stderr)
    if not resumed and kept_path and os.path.exists(kept_path):  # DiLoCo: inner AdamW state outlives a round
        shard.load_kept(kept_path)
    truncate_progress(progress_path, shard.step)
    os.makedirs(scratch, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    last = s.planned_steps if s.planned_steps is not None else f"(budget {s.budget_seconds} s)"
    print(f"torch_shard: round {s.round} steps {shard.step + 1}..{last} on {device}", file=sys.stderr, flush=True)
    clock = StepClock(shard.started_ms, shard.elapsed_s)
    while budget_allows(s, shard.step, clock.elapsed_s()):
        if stop.signal:  # checked between steps only; a signal after the last step lets the shard finish
            shard.save(resume_path, work_key, clock)
            print(f"torch_shard: {stop.signal}: checkpoint at step {shard.step} in {resume_path}", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED)
        clock.step_starts()
        loss = shard.train_step(data)
        shard.last_ms = clock.now_ms()
        steps = planned_or_estimate(s, shard.step, clock.elapsed_s())
        append_progress(progress_path, shard.step, steps, loss, s.batch_size, s.seq_len, ts=shard.last_ms)
        if s.checkpoint_every and shard.step % s.checkpoint_every == 0 and budget_allows(s, shard.step, clock.elapsed_s()):
            shard.save(resume_path, work_key, clock)
    out_sha = write_safetensors(os.path.join(out_dir, "model.safetensors"), shard.w, s.output_dtype)
    write_shard_done(round_dir, spec, s, data, shard, out_sha, (clock.started_ms, shard.last_ms))
    if kept_path:  # after DONE.json: a crash before it must leave the previous round's state for the retry
        shard.save_kept(kept_path)
    if os.path.exists(resume_path):
        os.remove(resume_path)


def write_shard_done(round_dir, spec, s, data, shard, out_sha, span):
    """DONE.json, written last: its presence (with exit 0) is what says the shard finished. `span`:
    the start of the first step and the end of the last, Unix ms (the busy span)."""
    manifest = data_manifest(spec, s, data, s.cursor, shard.cursor, shard.wraps)
    write_done(round_dir, s.round, shard.step, s.batch_size, s.seq_len, shard.loss_sum / shard.step, manifest,
               out_sha, s.output_dtype, {"nextCursor": shard.cursor}, span=span)


def data_manifest(spec, s, data, cursor_start, cursor_end, wraps):
    """What a shard's (or a sync's) steps read: the file, its order, and the cursor range."""
    return {"path": spec["data"]["train_tokens"], "bytes": data.size, "sha256": data.sha256, "format": "uint32le",
            "order": s.data_order, "cursor_start": cursor_start, "cursor_end": cursor_end, "wraps": wraps}


# ---------------------------------------------------------------- a persistent session (contract version 3)

SESSION_STATE = "session.pt"  # in state/, beside config.json
READY_POLL_S = 0.1  # how often a trainer with no model yet looks for the first READY.json


def log(message):
    print(f"torch_shard: {message}", file=sys.stderr, flush=True)


class Session:
    """One persistent trainer (docs/protocol.md, "The persistent trainer"): a Shard (θ, AdamW, the
    step and the data cursor, all kept across syncs), θₛ (the parameters at the last snapshot, F32 on
    the CPU), the base (the last global applied) and the last snapshot's sync. state/ holds what a
    restart resumes from, tensors, ints and strings only (Shard's rule)."""

    def __init__(self, session_dir, spec, s, data, device):
        self.dir, self.spec, self.s, self.data, self.device = session_dir, spec, s, data, device
        self.state_path = os.path.join(session_dir, "state", SESSION_STATE)
        self.shard = self.c = self.config_bytes = self.snap = None
        self.base = self.base_round = self.last_sync = self.last_done = None

    def use_config(self, path, c):
        """The model config `c`, read from `path`, whose bytes go into state/ for a restart."""
        self.c = c
        with open(path, "rb") as f:
            self.config_bytes = f.read()

    def check_config(self, path):
        """A config the agent lays out after the session's first sync must be the session's."""
        if os.path.exists(path) and sha256_file(path) != hashlib.sha256(self.config_bytes).hexdigest():
            raise bad_global(f"{path}: differs from the model config the session trains (state/config.json)")

    def restore(self):
        """Resumes from state/: θ = θₛ of the last snapshot, whose sync is done (its DONE.json written
        again if the crash lost it). False when there is no state/ (a fresh start)."""
        if not os.path.exists(self.state_path):
            return False
        ck = torch.load(self.state_path, map_location="cpu", weights_only=True)
        if ck["run_id"] != self.s.run_id:
            raise bad_spec(f"{self.state_path}: state of run {ck['run_id']!r}, but spec.json names {self.s.run_id!r}")
        config = os.path.join(os.path.dirname(self.state_path), "config.json")
        self.use_config(config, load_config(config, bad_spec))
        self.check_config(os.path.join(self.dir, "config.json"))
        self.snap = {n: t.detach().clone() for n, t in ck["weights"].items()}
        self.shard = Shard(self.c, self.s, ck["weights"], self.device)
        self.shard.load_adamw(ck["adamw"])
        self.shard.step, self.shard.cursor, self.shard.wraps = ck["step"], ck["cursor"], ck["wraps"]
        self.base, self.base_round, self.last_sync = ck["base_sha256"], ck["base_model_round"], tuple(ck["sync"])
        self.last_done = json.loads(ck["done"])
        # out/ was renamed into place before state/ was written: only DONE.json can be missing. The
        # agent removes the syncs of rounds it is done with, maybe right now: a sync gone needs none.
        done_dir = sync_dir(self.dir, self.last_sync)
        if os.path.isdir(done_dir) and not os.path.exists(os.path.join(done_dir, "DONE.json")):
            try:
                write_sync_done(self.dir, self.last_sync, json.loads(ck["done"]))
                log(f"wrote the lost DONE.json of sync {sync_name(self.last_sync)} again from state/")
            except FileNotFoundError:
                log(f"sync {sync_name(self.last_sync)} was removed while its DONE.json was written again")
        return True

    def apply(self, sync, ready):
        """Applies a sync's global g at a step boundary: the first sync loads g as θ (and the model
        config beside it); a g that is the base applies nothing; any other θ <- θ + α·(g - θₛ).
        Refuses (65) a g that is not READY's hash or not the model's names and shapes. Returns
        whether anything was applied."""
        sdir = sync_dir(self.dir, sync)
        path = check_sync_global(self.dir, sync, ready)
        applies = True
        if self.shard is None:
            config = session_config_path(self.dir, sync)  # pinned by model_config_sha256, as a round's
            self.use_config(config, load_pinned_config(config, self.s))
            self.shard = Shard(self.c, self.s, read_safetensors(path, tensor_shapes(self.c), bad_global), self.device)
            how = "loaded as the parameters"
        elif ready["globalSha256"] == self.base:
            how = "is the base already: nothing applied, counted from the last sync's start"
            applies = False
        else:
            self.check_config(os.path.join(sdir, "global", "config.json"))
            assert self.snap is not None, "a trainer with a model past its first sync has a snapshot"
            g = read_safetensors(path, tensor_shapes(self.c), bad_global)
            with torch.no_grad():
                for n, t in self.shard.w.items():
                    t.add_((g[n] - self.snap[n]).to(t.device), alpha=self.s.alpha)
            how = f"applied as θ + {self.s.alpha}·(g - θₛ)"
        self.base, self.base_round = ready["globalSha256"], ready["modelRound"]
        log(f"sync {sync_name(sync)}: global of round {ready['modelRound']} ({self.base[:12]}) {how} "
            f"after step {self.shard.step}")
        return applies

    def snapshot(self, tally):
        """The sync's snapshot, in the contract's order: out/model.safetensors, then state/, then DONE.json."""
        out_dir = os.path.join(sync_dir(self.dir, tally.sync), "out")
        os.makedirs(out_dir, exist_ok=True)
        out_sha = write_safetensors(os.path.join(out_dir, "model.safetensors"), self.shard.w, self.s.output_dtype)
        self.snap = {n: t.detach().to("cpu", copy=True) for n, t in self.shard.w.items()}
        manifest = data_manifest(self.spec, self.s, self.data, tally.cursor_start, self.shard.cursor,
                                 self.shard.wraps - tally.wraps_start)
        done = tally.done(self.s, manifest, out_sha, self.base, {"nextCursor": self.shard.cursor})
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        config = os.path.join(os.path.dirname(self.state_path), "config.json")
        if not os.path.exists(config):
            write_atomic(config, self.config_bytes)
        save_torch_atomic({"run_id": self.s.run_id, "sync": list(tally.sync), "base_sha256": self.base,
                           "base_model_round": self.base_round, "step": self.shard.step, "cursor": self.shard.cursor,
                           "wraps": self.shard.wraps, "weights": self.snap, "adamw": self.shard.opt.state_dict()["state"],
                           "done": json.dumps(done)}, self.state_path)
        write_sync_done(self.dir, tally.sync, done)
        self.last_sync = tally.sync
        return done


def train_session(session_dir, stop, sync_wait_s):
    """--session-dir: trains until STOP (exit 0), a signal (exit 75, state/ keeps the last snapshot)
    or a refusal; before each step it takes up the next READY.json and takes a due snapshot. It
    waits only for the first global (at most sync_wait_s seconds, then exit 75), never for a later one."""
    spec, _ = read_spec(session_dir)
    s = torch_spec(spec, session_dir, session=True)
    session = Session(session_dir, spec, s, open_data(s), pick_device())
    torch.manual_seed(s.seed)  # training draws no random numbers today; seeded for any that would
    progress_path = os.path.join(session_dir, "progress.jsonl")
    if session.restore():
        log(f"session {s.run_id}: resumed from state/ at step {session.shard.step} "
            f"(sync {sync_name(session.last_sync)} done) on {session.device}")
    truncate_progress(progress_path, session.shard.step if session.shard else 0)
    clock = StepClock()
    wait_until = clock.now_ms() + sync_wait_s * 1000
    shard = session.shard
    tally = SyncTally(shard.step + 1 if shard else 1, shard.cursor if shard else s.cursor, shard.wraps if shard else 0)
    # The last sync's tally (its DONE.json after a restart): a sync on the same base counts from it.
    last_tally = session.last_done
    while True:
        if stop_requested(session_dir):
            log(f"STOP: exit 0 after step {session.shard.step if session.shard else 0}")
            return
        if stop.signal:
            log(f"{stop.signal}: exit 75 after step {session.shard.step if session.shard else 0}; state/ keeps "
                f"the snapshot of sync {sync_name(session.last_sync) if session.last_sync else '(none yet)'}")
            raise SystemExit(EXIT_INTERRUPTED)
        if tally.sync is None:
            found = next_ready(session_dir, session.last_sync)
            if found and session.apply(*found):
                tally.applied(*found)
            elif found:
                tally.continued(*found, last_tally)
            elif session.shard is None:  # nothing to train before the first global
                if clock.now_ms() > wait_until:
                    log(f"no READY.json in {session_dir}/syncs/ after {sync_wait_s} s: exit 75")
                    raise SystemExit(EXIT_INTERRUPTED)
                time.sleep(READY_POLL_S)
                continue
        shard = session.shard
        if tally.due(s, clock.now_ms()):
            done = session.snapshot(tally)
            log(f"sync {sync_name(tally.sync)}: snapshot at step {shard.step}: {done['steps']} steps, applied "
                f"staleness {done['appliedStaleness']}, busy {done['busyMs']} ms")
            last_tally = tally
            tally = SyncTally(shard.step + 1, shard.cursor, shard.wraps, started_ms=clock.now_ms())
            continue
        started = clock.now_ms()
        loss = shard.train_step(session.data)
        finished = clock.now_ms()
        tally.step_done(loss, started, finished)
        append_sync_progress(progress_path, shard.step, loss, s.batch_size, s.seq_len, finished, finished - started,
                             tally.sync, session.base_round)


# ---------------------------------------------------------------- init and eval

def init(args):
    c = load_config(args.config, bad_spec)
    device = pick_device()
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "model.safetensors"), init_weights(c, args.seed, device))
    write_json_atomic(os.path.join(args.out, "config.json"), hf_config(c))


@torch.no_grad()
def evaluate(args):
    c = load_config(args.config, bad_spec)
    device = pick_device()
    seq = args.seq_len or min(c["max_position_embeddings"], 1024)
    if not 1 <= seq <= c["max_position_embeddings"] or args.batch_size < 1 or (args.max_batches or 1) < 1:
        raise bad_spec(f"--seq-len must lie in [1, {c['max_position_embeddings']}]; --batch-size, --max-batches >= 1")
    w = to_device(read_safetensors(args.model, tensor_shapes(c), bad_global), device, trainable=False)
    data = TokenFile(args.tokens, bad_spec)
    n = data.count
    seq = min(seq, n - 1)
    starts = list(range(0, n - seq, seq))  # non-overlapping windows; a short tail is not scored
    if args.max_batches is not None:
        starts = starts[:args.max_batches * args.batch_size]
    total, count = 0.0, 0
    for i in range(0, len(starts), args.batch_size):
        batch = data.windows(starts[i:i + args.batch_size], seq + 1, c["vocab_size"], bad_spec).to(device)
        with autocast(device):
            logits = forward(w, c, batch[:, :-1])
        total += F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
        count += batch[:, 1:].numel()
    print(json.dumps({"loss": total / count if count else None, "samples": count}), flush=True)


def main(argv=None):
    stop = StopFlag()  # before weights and data load, so an early signal still ends in a checkpoint
    p = Parser("torch_shard", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--init", action="store_true")
    mode.add_argument("--round-dir")
    mode.add_argument("--session-dir")
    mode.add_argument("--eval", action="store_true")
    p.add_argument("--config")
    p.add_argument("--out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model")
    p.add_argument("--tokens")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int)
    p.add_argument("--sync-wait-s", type=float, default=3600.0)
    args = p.parse_args(argv)  # usage errors and a big-endian host exit 64
    needed = ["config", "out"] if args.init else ["model", "config", "tokens"] if args.eval else []
    missing = [f"--{k}" for k in needed if getattr(args, k) is None]
    if missing:
        p.error(f"missing {', '.join(missing)}")
    try:
        if args.init:
            init(args)
        elif args.eval:
            evaluate(args)
        elif args.session_dir:
            train_session(args.session_dir, stop, args.sync_wait_s)
        else:
            train_round(args.round_dir, stop)
    except Refusal as e:
        print(f"torch_shard: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
