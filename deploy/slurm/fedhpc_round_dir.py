"""fedhpc's round-directory contract, the trainer's side: one module for both trainers.

The site agent (site-agent/runners/round-dir.ts) lays out a round directory and reads back what a
trainer leaves in it:

  spec.json                 written by the agent: what to train           read_spec, validate_spec
                            (version 2: an optional budget)                 budget_allows, StepClock
  global/config.json        the HF LlamaForCausalLM config, maybe pinned  load_round_config
  global/model.safetensors  the global weights, pinned by global_sha256   check_global_sha256,
                                                                          check_safetensors_header
  data.train_tokens         raw little-endian uint32 token ids            token_count, pinned_sha256
  scratch/                  the trainer's own (checkpoints)
  progress.jsonl            one line per optimizer step, with its end     append_progress,
                            time `ts` (cut back to the checkpoint on a     truncate_progress,
                            resume)                                        progress_span
  out/model.safetensors     the shard's weights                           safetensors_header
  DONE.json                 written last, atomically: the shard is done   write_done

and the exit code: 0 done, 64 bad spec or usage, 65 global weights invalid or mismatched, 75
interrupted with a resumable checkpoint in scratch/, anything else a crash (TRAINER_EXIT in
round-dir.ts). A refusal is raised as `Refusal` (bad_spec / bad_global) before any compute.

Contract version 3 adds the persistent session (docs/protocol.md, "The persistent trainer"): one
trainer for the whole run, in a session directory (bottom of this file):

  spec.json                     version 3, mode "persistent": a round's fields    validate_session_spec
                                without round, attempt, global_sha256
  syncs/<r>.<a>/READY.json      the agent's, last: {round, attempt, modelRound,   next_ready
                                globalSha256}
  config.json                   the model config (or the first sync's global/)    session_config_path
  syncs/<r>.<a>/global/         the sync's global model                           check_sync_global
  syncs/<r>.<a>/out/, DONE.json the snapshot, DONE.json last                      SyncTally, write_sync_done
  progress.jsonl                {step, loss, tokens, ts, stepMs, sync,            append_sync_progress
                                appliedGlobalRound}
  state/                        the trainer's own: what a restart resumes from
  STOP                          the agent's: exit 0 at the next step boundary     stop_requested

Imported by site-agent/trainers/torch_shard.py (the PyTorch reference trainer, run in CI) and by
deploy/slurm/nemo_shard.py (the NeMo / Megatron-Bridge recipe, run in NVIDIA's container). It lives
beside nemo_shard.py, so a NeMo job needs that one directory only; torch_shard.py looks for it
beside itself, then in ../../deploy/slurm/ (the repository's and dist/'s layout). Standard library
only: nemo_shard.py's dry mode (--check-spec) imports neither torch nor NeMo.
Tested directly by test/unit/trainers/round-dir-contract.test.ts.
"""
import argparse, hashlib, json, math, os, re, struct, sys, time

EXIT_OK, EXIT_BAD_SPEC, EXIT_BAD_GLOBAL, EXIT_INTERRUPTED = 0, 64, 65, 75
CONTRACT_VERSION = 3  # 1: steps only; 2: + budget, ts, the busy span; 3: + the persistent session
ROUND_SPEC_VERSION = 2  # the newest round directory spec.json (version 3 is a session's only)
SESSION_SPEC_VERSION = 3  # a persistent session's spec.json: {"version": 3, "mode": "persistent", ...}
TOKEN_BYTES = 4  # token files: little-endian uint32 ids, no header (uint16 cannot hold 256k vocabularies)
ITEM_BYTES = {"F32": 4, "BF16": 2, "F16": 2}  # the float dtypes a global safetensors file may hold
OUTPUT_DTYPES = ("F32", "BF16")  # spec.output_dtype: what out/model.safetensors must hold
MAX_HEADER = 100_000_000  # bytes of a safetensors JSON header, as the safetensors library limits it


# ---------------------------------------------------------------- refusals and usage errors

class Refusal(Exception):
    """An input we will not train on; `code` is the process exit status."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def bad_spec(message):
    return Refusal(EXIT_BAD_SPEC, message)


def bad_global(message):
    return Refusal(EXIT_BAD_GLOBAL, message)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors exit 64 (a bad spec), not argparse's 2, which the agent reads as a
    crash; parse_args also refuses a big-endian host (safetensors and token files are little-endian)."""

    def __init__(self, log_name, **kwargs):
        super().__init__(**kwargs)
        self.log_name = log_name

    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.log_name}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_SPEC)

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if sys.byteorder != "little":
            self.error("safetensors and token files are little-endian; this host is not")
        return parsed


# ---------------------------------------------------------------- files

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path, data):
    """The agent must never see a half-written file: temp file, fsync, rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path, obj):
    write_atomic(path, json.dumps(obj, indent=2).encode() + b"\n")


def pinned_sha256(path, pinned, what="data.train_tokens", pin="data.train_tokens_sha256", refuse=bad_spec):
    """SHA-256 of a file, refused when it differs from `pinned` (None pins nothing)."""
    digest = sha256_file(path)
    if pinned and digest != pinned:
        raise refuse(f"{what} {path}: SHA-256 differs from {pin}")
    return digest


def token_count(path, refuse=bad_spec):
    """Number of tokens in a uint32 token file of at least two tokens (one input, one target)."""
    try:
        size = os.path.getsize(path)
        if not os.path.isfile(path):
            raise ValueError("not a regular file")
        if size < 2 * TOKEN_BYTES or size % TOKEN_BYTES:
            raise ValueError(f"{size} bytes: not a uint32 token file of at least 2 tokens")
    except (OSError, ValueError) as e:
        raise refuse(f"token file {path}: {e}")
    return size // TOKEN_BYTES


# ---------------------------------------------------------------- spec.json

def read_spec(round_dir):
    """spec.json's parsed value and its bytes (the bytes for a hash of what was asked)."""
    path = os.path.join(round_dir, "spec.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
        return json.loads(data), data
    except (OSError, ValueError) as e:
        raise bad_spec(f"{path}: {e}")


def need(obj, key, kind, test=lambda v: True, default=None, where="spec"):
    """obj[key] (or `default`) if it is a `kind` (never a bool) that passes `test`; else a bad spec."""
    value = obj.get(key, default) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) or not test(value):
        raise bad_spec(f"spec.json: {where}.{key} is missing or invalid ({value!r})")
    return value


def validate_spec(spec, round_dir, micro_batch_default=None):
    """The fields every trainer reads, checked one by one (a trainer then reads its own with `need`):

      version? 1 (2 when a budget may be present; a newer version is refused),
      round, seed, global_sha256, model_config_sha256?, output_dtype? ("F32" | "BF16"),
      budget? {"seconds": S > 0} | {"tokens": T >= 1},
      train: {max_steps (optional beside a budget: then a cap), lr, batch_size, seq_len,
              weight_decay? 0, warmup_steps? 0, grad_clip? 1.0,
              micro_batch_size? (default: `micro_batch_default`, None = the whole batch),
              checkpoint_every? 0},
      data:  {train_tokens? (resolved against round_dir into tokens_path), train_tokens_sha256?, cursor? 0}

    data.train_tokens is optional here: the NeMo recipe may read a Megatron dataset instead.
    Besides the fields it sets `budget_seconds` and `budget_tokens` (None when not given) and
    `planned_steps`: the steps the shard will take when they are known in advance (max_steps; a
    token budget's ceil(T / (batch_size * seq_len)), capped by max_steps), None under a time
    budget without max_steps."""
    if not isinstance(spec, dict):
        raise bad_spec("spec.json: not a JSON object")
    if spec.get("mode") == "persistent":
        raise bad_spec(f"spec.json: spec.version {spec.get('version')!r} with mode \"persistent\" is a persistent "
                       "session (contract version 3): pass its directory as --session-dir, not --round-dir")
    version = need(spec, "version", int, lambda v: 1 <= v <= ROUND_SPEC_VERSION, 1)
    return shard_fields(spec, round_dir, micro_batch_default, version=version,
                        round=need(spec, "round", int, lambda v: v >= 0),
                        global_sha256=need(spec, "global_sha256", str, lambda v: len(v) == 64))


def shard_fields(spec, base_dir, micro_batch_default, **head):
    """The training fields a round's spec and a session's share (validate_spec's list, less version,
    round and global_sha256, which come in `head`), as a namespace; relative paths resolve against
    `base_dir`."""
    train, data = spec.get("train"), spec.get("data")
    num, pos, opt_str = (int, float), (lambda v: v > 0 and math.isfinite(v)), (str, type(None))
    budget_seconds, budget_tokens = read_budget(spec)
    budgeted = budget_seconds is not None or budget_tokens is not None
    s = argparse.Namespace(
        **head, seed=need(spec, "seed", int),
        config_sha256=need(spec, "model_config_sha256", opt_str),
        output_dtype=need(spec, "output_dtype", str, lambda v: v in OUTPUT_DTYPES, "F32"),
        budget_seconds=budget_seconds, budget_tokens=budget_tokens,
        max_steps=need(train, "max_steps", (int, type(None)) if budgeted else int,
                       lambda v: v is None or v >= 1, where="train"),
        lr=need(train, "lr", num, pos, where="train"),
        batch_size=need(train, "batch_size", int, lambda v: v >= 1, where="train"),
        seq_len=need(train, "seq_len", int, lambda v: v >= 1, where="train"),
        weight_decay=need(train, "weight_decay", num, lambda v: v >= 0, 0.0, where="train"),
        warmup_steps=need(train, "warmup_steps", int, lambda v: v >= 0, 0, where="train"),
        grad_clip=need(train, "grad_clip", num, lambda v: v >= 0, 1.0, where="train"),
        micro_batch=need(train, "micro_batch_size", (int, type(None)), lambda v: v is None or v >= 1, where="train"),
        checkpoint_every=need(train, "checkpoint_every", int, lambda v: v >= 0, 0, where="train"),
        train_tokens=need(data, "train_tokens", opt_str, lambda v: v != "", where="data"),
        tokens_sha256=need(data, "train_tokens_sha256", opt_str, lambda v: v is None or len(v) == 64, where="data"),
        cursor=need(data, "cursor", int, lambda v: v >= 0, 0, where="data"))
    s.micro_batch = min(s.micro_batch or micro_batch_default or s.batch_size, s.batch_size)
    s.planned_steps = s.max_steps
    if budget_tokens is not None:
        by_tokens = -(-budget_tokens // (s.batch_size * s.seq_len))  # ceil: the step that reaches T is taken
        s.planned_steps = min(by_tokens, s.max_steps) if s.max_steps is not None else by_tokens
    # os.path.join keeps an absolute path as it is: relative paths are relative to the round directory.
    s.tokens_path = os.path.join(base_dir, s.train_tokens) if s.train_tokens is not None else None
    return s


def read_budget(spec):
    """spec.budget as (seconds, tokens), one of them set, or (None, None) when absent: a JSON object
    with exactly one key, `seconds` (a positive finite number) or `tokens` (a positive integer)."""
    budget = spec.get("budget")
    if budget is None:
        return None, None
    if not isinstance(budget, dict) or len(budget) != 1 or not set(budget) <= {"seconds", "tokens"}:
        raise bad_spec(f"spec.json: budget must be {{\"seconds\": S}} or {{\"tokens\": T}}, got {budget!r}")
    if "seconds" in budget:
        return need(budget, "seconds", (int, float), lambda v: 0 < v < math.inf, where="budget"), None
    return None, need(budget, "tokens", int, lambda v: v >= 1, where="budget")


def budget_allows(s, steps_done, elapsed_s):
    """Whether a shard that has taken `steps_done` steps in `elapsed_s` seconds of training starts
    another. A token budget stops once the tokens reach T (so the last step may overshoot by less
    than one batch), a time budget once S seconds of training have elapsed (the step running then
    finishes), and max_steps caps either. A shard always takes its first step."""
    if s.planned_steps is not None and steps_done >= s.planned_steps:
        return False
    if s.budget_seconds is not None:
        return steps_done == 0 or elapsed_s < s.budget_seconds
    return True


def planned_or_estimate(s, steps_done, elapsed_s):
    """The `steps` of a progress line: the planned steps, or under a time budget without a cap the
    steps the pace so far would reach by the end of the budget (at least the steps taken)."""
    if s.planned_steps is not None:
        return s.planned_steps
    if steps_done == 0 or elapsed_s <= 0:
        return max(1, steps_done)
    return max(steps_done, int(round(s.budget_seconds * steps_done / elapsed_s)))


class StepClock:
    """The wall clock of a shard's training. `now_ms()` is Unix ms taken from the monotonic clock
    (anchored to the wall clock once), so progress timestamps never go backwards when NTP steps the
    system clock. `started_ms` is when the first step began and `elapsed_s()` the seconds of
    training so far; both carry over a resume (pass what the checkpoint kept), so a time budget
    counts training time, not the time a job waited in the queue."""

    def __init__(self, started_ms=None, elapsed_s=0.0):
        self._mono0, self._wall0 = time.monotonic(), time.time() * 1000
        self.started_ms, self._before = started_ms, float(elapsed_s)
        self._run0 = None

    def now_ms(self):
        return int(self._wall0 + (time.monotonic() - self._mono0) * 1000)

    def step_starts(self):
        """Call before each step: the first call starts the clock (and `started_ms`, if not kept)."""
        if self._run0 is None:
            self._run0 = time.monotonic()
            if self.started_ms is None:
                self.started_ms = self.now_ms()

    def elapsed_s(self):
        return self._before + (time.monotonic() - self._run0 if self._run0 is not None else 0.0)


# ---------------------------------------------------------------- global/: config and weights

def load_config(path, refuse=bad_global):
    """An HF LlamaConfig-style JSON file, checked for what fedhpc's Llama can represent (untied,
    bias-free, SiLU, plain RoPE); missing rope_theta, rms_norm_eps and initializer_range get HF's
    Llama defaults. `refuse` is bad_global for a round's global/config.json, bad_spec for a
    config named on the command line."""
    try:
        with open(path, "rb") as f:
            raw = json.load(f)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise refuse(f"model config {path}: {e}")
    c = {"num_key_value_heads": raw.get("num_attention_heads"), "rope_theta": 10000.0,
         "rms_norm_eps": 1e-6, "initializer_range": 0.02, **raw}
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "max_position_embeddings"):
        if not isinstance(c.get(key), int) or isinstance(c[key], bool) or c[key] < 1:
            raise refuse(f"model config {path}: {key} must be a positive integer, got {c.get(key)!r}")
    for key in ("rope_theta", "rms_norm_eps", "initializer_range"):
        if not isinstance(c[key], (int, float)) or isinstance(c[key], bool) or not 0 < c[key] < math.inf:
            raise refuse(f"model config {path}: {key} must be a positive number")
    architectures = c.get("architectures") or ["LlamaForCausalLM"]
    if not isinstance(architectures, list) or "LlamaForCausalLM" not in architectures:
        raise refuse(f"model config {path}: architectures {architectures!r} lacks LlamaForCausalLM")
    heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
    if c["hidden_size"] % heads or heads % kv:
        raise refuse(f"model config {path}: hidden_size % heads and heads % kv_heads must be 0")
    unsupported = {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True}
    for key, value in unsupported.items():
        if c.get(key) == value:
            raise refuse(f"model config {path}: {key}={value} is not supported (untied, bias-free Llama only)")
    if c.get("rope_scaling") or c.get("hidden_act", "silu") != "silu" or \
            c.get("head_dim", c["hidden_size"] // heads) != c["hidden_size"] // heads:
        raise refuse(f"model config {path}: rope_scaling, hidden_act other than silu and a custom head_dim "
                     "are not supported")
    return c


def load_round_config(round_dir, s):
    """global/config.json of a round: its pin (spec.model_config_sha256), its fields (65), and
    train.seq_len against its max_position_embeddings (64)."""
    return load_pinned_config(os.path.join(round_dir, "global", "config.json"), s)


def load_pinned_config(path, s):
    """A model config the spec may pin (model_config_sha256: 65 for other bytes), checked by
    load_config (65) and against train.seq_len (64)."""
    if s.config_sha256 and (not os.path.exists(path) or sha256_file(path) != s.config_sha256):
        raise bad_global(f"{path}: SHA-256 differs from spec.model_config_sha256 (pinned config)")
    c = load_config(path, bad_global)
    if s.seq_len > c["max_position_embeddings"]:
        raise bad_spec(f"spec.json: train.seq_len {s.seq_len} > max_position_embeddings {c['max_position_embeddings']}")
    return c


def check_global_sha256(round_dir, s):
    """Path of global/model.safetensors, refused (65) when missing or not spec.global_sha256."""
    path = os.path.join(round_dir, "global", "model.safetensors")
    if not os.path.exists(path) or sha256_file(path) != s.global_sha256:
        raise bad_global(f"{path}: missing, or its SHA-256 differs from spec.global_sha256")
    return path


def tensor_shapes(c):
    """HF LlamaForCausalLM tensor names and shapes (tuples), in the order the trainers write them."""
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = c["num_key_value_heads"] * (h // c["num_attention_heads"])
    shapes = {"model.embed_tokens.weight": (v, h)}
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                       p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    shapes.update({"model.norm.weight": (h,), "lm_head.weight": (v, h)})
    return shapes


def check_safetensors_header(path, shapes, refuse=bad_global):
    """Reads only the header of a safetensors file and checks it against `shapes`: the same names,
    each shape, a float dtype (F32, BF16, F16), offsets that fit the shape and the file and do not
    overlap. Returns (data_start, {name: (dtype, begin, end)}) in `shapes`' order; a tensor's bytes
    are [data_start + begin, data_start + end) of the file."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, MAX_HEADER):
                raise ValueError("header length past end of file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        header.pop("__metadata__", None)
        if set(header) != set(shapes):
            missing, extra = sorted(set(shapes) - set(header)), sorted(set(header) - set(shapes))
            raise ValueError(f"tensor names differ from the config's: missing {missing[:5]}, unexpected {extra[:5]}")
        layout = {}
        for name, shape in shapes.items():
            info = header[name]
            dtype, (begin, end) = info.get("dtype"), info.get("data_offsets", (0, -1))
            if tuple(info.get("shape", ())) != tuple(shape):
                raise ValueError(f"{name} has shape {info.get('shape')}, the config needs {list(shape)}")
            if dtype not in ITEM_BYTES:
                raise ValueError(f"{name} has dtype {dtype}; F32, BF16 or F16 expected")
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (begin, end)) or \
                    end - begin != math.prod(shape) * ITEM_BYTES[dtype] or begin < 0 or 8 + n + end > size:
                raise ValueError(f"{name} has data_offsets {[begin, end]} that do not fit its shape or the file")
            layout[name] = (dtype, begin, end)
        spans = sorted((begin, end) for _, begin, end in layout.values())
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
            raise ValueError("tensor data overlaps")
        return 8 + n, layout
    except (OSError, ValueError, struct.error, AttributeError, TypeError) as e:
        raise refuse(f"{path}: {e}")


def safetensors_header(tensors, dtype):
    """The bytes before the data of a safetensors file holding `tensors` ((name, shape) pairs, in
    file order) in `dtype`, back to back: the 8-byte header length, then the JSON header (with
    {"format": "pt"} metadata, as PyTorch's writer) padded with spaces to a multiple of 8."""
    header, offset = {}, 0
    for name, shape in tensors:
        nbytes = math.prod(shape) * ITEM_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


# ---------------------------------------------------------------- progress.jsonl and DONE.json

def truncate_progress(path, last_step):
    """Drops lines past a resumed checkpoint (and any torn by a kill), so each step is reported once.
    The agent notices the shorter file and reads it again from the start."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path, "rb") as f:
        for line in f:
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line if line.endswith(b"\n") else line + b"\n")
            except (ValueError, KeyError, TypeError):
                pass
    write_atomic(path, b"".join(kept))


def append_progress(path, step, steps, loss, batch_size, seq_len, ts=None):
    """One progress.jsonl line: {"step", "steps", "loss", "tokens", "ts"}, ts the Unix ms at which the
    step ended (a StepClock's now_ms(); the wall clock when not given). A missing or non-finite loss
    is written as null (valid JSON; the agent skips such a line)."""
    loss = float(loss) if loss is not None and math.isfinite(loss) else None
    ts = int(time.time() * 1000) if ts is None else int(ts)
    with open(path, "a") as f:
        f.write(json.dumps({"step": step, "steps": steps, "loss": loss, "tokens": step * batch_size * seq_len,
                            "ts": ts}) + "\n")


def progress_span(path):
    """(first ts, last ts, losses) of progress.jsonl's step lines: the busy span's ends when no
    StepClock kept a start (the first line's ts is the end of the first step), and the logged losses."""
    first = last = None
    losses = []
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                ts, loss = record.get("ts"), record.get("loss")
                if isinstance(ts, int) and not isinstance(ts, bool):
                    first = ts if first is None else first
                    last = ts
                if isinstance(loss, (int, float)) and not isinstance(loss, bool):
                    losses.append(loss)
    return first, last, losses


def manifest_sha256(manifest):
    """DONE.json's dataManifestSha256: SHA-256 of the manifest as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_done(round_dir, round_number, steps, batch_size, seq_len, train_loss, manifest, out_sha256, out_dtype,
               extra=None, span=None):
    """DONE.json, written atomically and last: its presence (with exit 0) says out/ is complete.
    Returns the record (done_record's)."""
    done = done_record(round_number, steps, batch_size, seq_len, train_loss, manifest, out_sha256, out_dtype,
                       extra, span)
    write_json_atomic(os.path.join(round_dir, "DONE.json"), done)
    return done


def done_record(round_number, steps, batch_size, seq_len, train_loss, manifest, out_sha256, out_dtype,
                extra=None, span=None):
    """A DONE.json's fields. trainLoss is left out when unknown (the agent's schema takes a finite
    number or nothing); `span` = (trainStartedMs, trainFinishedMs): the start of the first step and
    the end of the last, Unix ms (left out when unknown); `extra` adds a trainer's own fields
    (nextCursor, runner, ...)."""
    done = {"status": "done", "round": round_number, "steps": steps, "tokens": steps * batch_size * seq_len,
            "samples": steps * batch_size}
    if train_loss is not None and math.isfinite(train_loss):
        done["trainLoss"] = train_loss
    if span is not None and None not in span:
        done["trainStartedMs"], done["trainFinishedMs"] = int(span[0]), max(int(span[0]), int(span[1]))
    done.update({"dataManifestSha256": manifest_sha256(manifest), "dataManifest": manifest,
                 "outSha256": out_sha256, "outDtype": out_dtype, **(extra or {})})
    return done


# ---------------------------------------------------------------- the persistent session (contract version 3)
#
# docs/protocol.md, "The persistent trainer": one trainer process per site and run, driven through a
# session directory. What a trainer shares with any other is here (the spec, finding the next READY,
# the per-sync tally, progress lines, DONE.json, STOP); the tensors (apply, snapshot, state/) are the
# trainer's own.

SYNC_NAME = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")  # syncs/<round>.<attempt>


def validate_session_spec(spec, session_dir, micro_batch_default=None):
    """A persistent session's spec.json: {"version": 3, "mode": "persistent", run_id, seed, output_dtype?,
    model_config_sha256?, budget (required: the training each sync carries), overlap? {alpha? 1, in (0, 1]},
    train, data} -- a round's fields (validate_spec) without round, attempt and global_sha256, which
    each sync's READY.json names instead; those three are refused here, not ignored. Sets `run_id`
    and `alpha` beside the round's fields (`round` and `global_sha256` are None)."""
    if not isinstance(spec, dict):
        raise bad_spec("spec.json: not a JSON object")
    need(spec, "version", int, lambda v: v == SESSION_SPEC_VERSION)
    need(spec, "mode", str, lambda v: v == "persistent")
    for key in ("round", "attempt", "global_sha256"):
        if key in spec:
            raise bad_spec(f"spec.json: spec.{key} belongs in a sync's READY.json, not in a persistent session's spec")
    overlap = spec.get("overlap", {})
    if not isinstance(overlap, dict):
        raise bad_spec(f"spec.json: spec.overlap must be a JSON object, got {overlap!r}")
    if read_budget(spec) == (None, None):
        raise bad_spec("spec.json: a persistent session needs spec.budget ({\"seconds\": S} or {\"tokens\": T}): "
                       "the training each sync carries")
    return shard_fields(spec, session_dir, micro_batch_default, version=SESSION_SPEC_VERSION, round=None,
                        global_sha256=None, run_id=need(spec, "run_id", str, lambda v: v != ""),
                        alpha=need(overlap, "alpha", (int, float), lambda v: 0 < v <= 1, 1.0, where="overlap"))


def sync_name(sync):
    """A sync's directory name: (round, attempt) -> "<round>.<attempt>"."""
    return f"{sync[0]}.{sync[1]}"


def sync_dir(session_dir, sync):
    return os.path.join(session_dir, "syncs", sync_name(sync))


def stop_requested(session_dir):
    """The agent's STOP: the run is over, exit 0 at the next step boundary."""
    return os.path.exists(os.path.join(session_dir, "STOP"))


def next_ready(session_dir, after):
    """The lowest sync above `after` ((round, attempt) of the last snapshot, None before the first)
    whose READY.json is there, as ((round, attempt), ready), else None. `ready` is READY.json checked
    (64 otherwise): {"round", "attempt"} naming its directory, "modelRound" >= 0, "globalSha256"."""
    try:
        names = os.listdir(os.path.join(session_dir, "syncs"))
    except FileNotFoundError:
        return None
    syncs = sorted((int(m[1]), int(m[2])) for m in map(SYNC_NAME.match, names) if m)
    for sync in (x for x in syncs if after is None or x > tuple(after)):
        path = os.path.join(sync_dir(session_dir, sync), "READY.json")
        try:
            with open(path, "rb") as f:
                ready = json.load(f)
        except FileNotFoundError:
            continue  # laid out, not ready: the agent renames READY.json in last
        except (OSError, ValueError) as e:
            raise bad_spec(f"{path}: {e}")
        ints = ("round", "attempt", "modelRound")
        if not isinstance(ready, dict) or \
                not all(isinstance(ready.get(k), int) and not isinstance(ready[k], bool) and ready[k] >= 0 for k in ints) or \
                not isinstance(ready.get("globalSha256"), str) or not re.fullmatch("[0-9a-f]{64}", ready["globalSha256"]):
            raise bad_spec(f"{path}: not {{\"round\", \"attempt\", \"modelRound\": integers >= 0, "
                           f"\"globalSha256\": 64 hex digits}}: {json.dumps(ready)[:200]}")
        if (ready["round"], ready["attempt"]) != sync:
            raise bad_spec(f"{path}: names round {ready['round']} attempt {ready['attempt']}, not its directory's")
        return sync, ready
    return None


def session_config_path(session_dir, sync):
    """Where a session's model config is: <session>/config.json (the agent's command runner copies the
    site's modelConfig there), else the global/config.json of `sync` (the first sync applied), as in
    a round directory. Load it with load_pinned_config."""
    path = os.path.join(session_dir, "config.json")
    return path if os.path.exists(path) else os.path.join(sync_dir(session_dir, sync), "global", "config.json")


def check_sync_global(session_dir, sync, ready):
    """Path of a sync's global/model.safetensors, refused (65) when missing or not READY's
    globalSha256. Its names and shapes are the reader's to check (check_safetensors_header)."""
    path = os.path.join(sync_dir(session_dir, sync), "global", "model.safetensors")
    if not os.path.exists(path) or sha256_file(path) != ready["globalSha256"]:
        raise bad_global(f"{path}: missing, or its SHA-256 differs from READY.json's globalSha256")
    return path


class SyncTally:
    """What one sync's training adds up to: the steps from the end of the last snapshot (or, after a
    start or a restart, from the first step) to the next snapshot, and whether its global is applied.
    `first_step` is the session step its first step will be; `cursor` and `wraps` the trainer's data
    position then; `started_ms` the end of the last snapshot (None: the first step's start)."""

    def __init__(self, first_step, cursor, wraps, started_ms=None):
        self.first_step, self.cursor_start, self.wraps_start = first_step, cursor, wraps
        self.started_ms, self.finished_ms = started_ms, None
        self.steps, self.loss_sum, self.busy_ms = 0, 0.0, 0
        self.sync = self.ready = self.staleness = None

    def applied(self, sync, ready):
        """The sync's global is applied before the next step: the steps since the last snapshot are
        the sync's applied staleness."""
        self.sync, self.ready, self.staleness = tuple(sync), ready, self.steps

    def continued(self, sync, ready, last):
        """The sync names the base again (a new attempt of its round): nothing is applied, and its
        delta against that base holds the last sync's steps as well (never counted), so it counts
        from the last sync's start, with its applied staleness. `last` is the last sync's tally, or
        its DONE.json record after a restart (None: not known, the sync counts its own steps)."""
        if isinstance(last, dict):
            if "cursorStart" not in last:
                return self.applied(sync, ready)
            prev = SyncTally(last["firstStep"], last["cursorStart"], last["wrapsStart"], last.get("trainStartedMs"))
            prev.steps, prev.busy_ms, prev.staleness = last["steps"], last["busyMs"], last["appliedStaleness"]
            prev.loss_sum = (last.get("trainLoss") or 0.0) * last["steps"]
            last = prev
        if last is None:
            return self.applied(sync, ready)
        self.first_step, self.cursor_start, self.wraps_start = last.first_step, last.cursor_start, last.wraps_start
        self.started_ms = last.started_ms if last.started_ms is not None else self.started_ms
        self.steps, self.loss_sum, self.busy_ms = last.steps + self.steps, last.loss_sum + self.loss_sum, last.busy_ms + self.busy_ms
        self.sync, self.ready, self.staleness = tuple(sync), ready, last.staleness

    def step_done(self, loss, started_ms, finished_ms):
        if self.started_ms is None:
            self.started_ms = started_ms
        self.steps, self.loss_sum = self.steps + 1, self.loss_sum + loss
        self.busy_ms += finished_ms - started_ms
        self.finished_ms = finished_ms

    def due(self, s, now_ms):
        """Whether the snapshot is due: the sync's global is applied and its budget (s.budget_*,
        capped by s.max_steps) is spent, counted from `started_ms`."""
        if self.sync is None:
            return False
        elapsed_s = (now_ms - self.started_ms) / 1000 if self.started_ms is not None else 0.0
        return not budget_allows(s, self.steps, elapsed_s)

    def done(self, s, manifest, out_sha256, base_sha256, extra=None):
        """The sync's DONE.json record (write it with write_sync_done after the trainer's state/): a
        version-2 DONE.json of the sync's own steps, plus attempt, baseSha256 (the global the
        snapshot is measured against), appliedStaleness, busyMs and the session steps it spans."""
        return done_record(
            self.sync[0], self.steps, s.batch_size, s.seq_len, self.loss_sum / self.steps, manifest, out_sha256,
            s.output_dtype, {"attempt": self.sync[1], "baseSha256": base_sha256, "modelRound": self.ready["modelRound"],
                             "appliedStaleness": self.staleness, "busyMs": self.busy_ms, "firstStep": self.first_step,
                             "lastStep": self.first_step + self.steps - 1, "cursorStart": self.cursor_start,
                             "wrapsStart": self.wraps_start, **(extra or {})},
            span=(self.started_ms, self.finished_ms))


def write_sync_done(session_dir, sync, done):
    """syncs/<round>.<attempt>/DONE.json, atomically and last (after out/ and the trainer's state/)."""
    write_json_atomic(os.path.join(sync_dir(session_dir, sync), "DONE.json"), done)


def append_sync_progress(path, step, loss, batch_size, seq_len, ts, step_ms, sync, applied_round):
    """One progress.jsonl line of a session: {"step", "loss", "tokens", "ts", "stepMs", "sync",
    "appliedGlobalRound"}. `step` and `tokens` count from the session's start; `sync` is the
    "<round>.<attempt>" whose global is applied and which the step trains for, or null while the
    trainer trains ahead of the next READY (those steps count toward the next sync); `applied_round`
    is the modelRound of the last global applied. A non-finite loss is written as null."""
    loss = float(loss) if loss is not None and math.isfinite(loss) else None
    with open(path, "a") as f:
        f.write(json.dumps({"step": step, "loss": loss, "tokens": step * batch_size * seq_len, "ts": int(ts),
                            "stepMs": int(step_ms), "sync": sync_name(sync) if sync else None,
                            "appliedGlobalRound": applied_round}) + "\n")
