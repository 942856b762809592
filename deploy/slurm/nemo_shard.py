#!/usr/bin/env python3
"""fedhpc shard entry for NVIDIA Megatron-Bridge (default) or NeMo 2.0 (`--nemo2`).

One shard of a round, in the round-directory contract of DESIGN.md ("Training runners"):
import the global HF weights (round-dir/global/), train spec.train.max_steps steps from those
weights only (no optimizer state is inherited) -- or, with spec.budget (contract version 2), as many
steps as a token budget takes or a time budget allows -- export HF weights in F32 into out/, append
progress.jsonl, and commit DONE.json last (temp file + rename). The contract's checks and files
(spec.json fields, global/ checks, progress lines, DONE.json, exit codes) are fedhpc_round_dir.py,
beside this file and shared with the reference trainer (site-agent/trainers/torch_shard.py).

  --round-dir DIR --check-spec [--nemo2] [--world-size N]
      Dry mode, standard library only: validate spec.json and global/, print the plan as JSON on
      stdout, exit 0 / 64 / 65. Never imports torch, NeMo or Megatron.
  --round-dir DIR --phase import|train|finalize|all [--nemo2]
      import    (one task)  global/ -> a framework checkpoint in scratch/
      train     (all tasks) N steps; SIGUSR1/SIGTERM -> checkpoint in scratch/, exit 75
      finalize  (one task)  last checkpoint -> HF export -> out/model.safetensors (F32) -> DONE.json
      all       the three in this process (one GPU, no srun): for a single-GPU smoke run
  --session-dir DIR [--check-spec] [--nemo2] [--world-size N] [--sync-wait-s S]
      The persistent trainer of an overlapped run (contract version 3, docs/protocol.md "The
      persistent trainer"; torch_shard.py --session-dir is the reference): ONE job for the whole
      run, every task running this. DIR/spec.json: version 3 (a round's fields less round, attempt
      and global_sha256; budget: the training each sync carries; overlap.alpha; nemo.session_steps,
      default 100000, the iterations the framework is given). The framework trains without an end;
      at each step boundary its callback (Megatron-Bridge on_train_step_end, Lightning
      on_train_batch_end) runs SessionControl: rank 0 reads STOP, the next syncs/<r>.<a>/READY.json
      and the sync's budget, and broadcasts one decision that every rank carries out at that step:
        apply     the first global loaded as the parameters (waited for, at most S s, then exit 75);
                  a later g as θ <- θ + α·(g - θₛ) in place under torch.no_grad(), g brought into
                  each rank's TP/PP shards by the framework's own loader (Megatron-Bridge
                  load_hf_weights; NeMo 2.0: the round mode's import in a child process, then a
                  weights-only checkpoint load), then the optimizer's main parameters reloaded; a g
                  that is the base already applies nothing (the sync counts on from the last)
        snapshot  once the sync's budget is spent: out/model.safetensors through the round mode's
                  export path and writer (Megatron-Bridge export_hf_weights; NeMo 2.0
                  export_ckpt in a child), θₛ kept on the host, the framework's checkpoint into
                  DIR/state/, then state/session.json and DONE.json, last; training goes on
        stop      STOP: exit 0; SIGTERM/SIGUSR1: exit 75 after the step, no new snapshot
      A restart resumes from state/ (the last snapshot's checkpoint, optimizer included) and writes
      that sync's DONE.json again if it was lost. --check-spec: spec, data, model config (when
      known) and state/ checked, the plan printed; standard library only.

Exit codes: 0 done (a session: stopped); 64 bad spec or usage; 65 global weights invalid or
mismatched; 75 interrupted with a resumable checkpoint in scratch/ (a session: in state/); anything
else a crash.

UNVERIFIED: the persistent mode has never run against NeMo or Megatron-Bridge. Its loop
(SessionControl: decisions, the correction, snapshots, state/, restarts, STOP, signals, the NeMo
2.0 child processes) is framework-neutral and tested with a plain-PyTorch stand-in for the
framework (test/unit/trainers/nemo-session.test.ts); MbHands and Nemo2Hands, the framework's side,
are written from the sources cited below and not run. docs/nemo.md, "Overlapped rounds", lists
what to check on a real node.

HONESTY NOTE. This file has never run against NeMo or Megatron-Bridge: fedhpc's CI has no GPU and
no NeMo. Only the dry modes are tested here (test/unit/trainers/nemo-recipe.test.ts), the budget's
plumbing included (the steps a token budget plans, a time budget's cap); how a time budget stops
Megatron's or Lightning's loop (mb_train, nemo2_train) is UNTESTED and marked UNVERIFIED. The contract's
helpers in fedhpc_round_dir.py are also run by the reference trainer's tests and their own
(torch-shard.test.ts, round-dir-contract.test.ts).
Every framework call below is written from the documentation and sources cited next to it; the
comments marked UNVERIFIED are the places most likely to need a fix on a real container.

References (looked up, not run):
  [MB-bridge]  Megatron-Bridge docs/bridge-guide.md and src/megatron/bridge/models/conversion/
               auto_bridge.py: AutoBridge.from_hf_pretrained, to_megatron_provider, import_ckpt,
               export_ckpt(megatron_path, hf_path), save_hf_pretrained, export_hf_weights.
  [MB-recipe]  src/megatron/bridge/recipes/common.py (_pretrain_common): the ConfigContainer shape
               (TrainingConfig, ValidationConfig, GPTDatasetConfig, CheckpointConfig, ...).
  [MB-entry]   docs/training/entry-points.md: pretrain(config, forward_step_func, callbacks=...),
               checkpoint.pretrained_checkpoint = weights only, checkpoint.load = full resume.
  [MB-ckpt]    docs/training/checkpointing.md: save / load / save_interval / load_optim /
               pretrained_checkpoint / ckpt_format="torch_dist".
  [MB-cb]      docs/training/callbacks.md: Callback.on_train_start / on_train_step_end /
               on_train_end, context.state.train_state.step, context.loss_dict.
  [MB-res]     docs/training/resiliency.md + Megatron-LM megatron/training/config.py:
               TrainingConfig.exit_signal_handler / exit_signal (default SIGTERM): save and stop.
  [MB-data]    docs/training/data-preparation.md: GPTDatasetConfig(data_path=<prefix of .bin/.idx>).
  [MCORE-idx]  Megatron-LM megatron/core/datasets/indexed_dataset.py: the .idx layout we write.
  [NEMO2-api]  NeMo nemo/collections/llm/api.py: import_ckpt(model, source, output_path, overwrite),
               pretrain(model, data, trainer, log, resume, optim), export_ckpt(path, target,
               output_path, overwrite).
  For the persistent mode (read in the sources, Megatron-Bridge v0.3.0 to v0.6.0, NeMo 2025-09):
  [MB-bridge]  auto_bridge.py also: from_hf_config(config) (no weights), load_hf_weights(model,
               hf_path) (HF -> each rank's TP/PP shards, copied into the parameters),
               export_hf_weights(model, cpu, show_progress) ("all ranks get full tensors").
  [MB-train]   training/train.py: callbacks on_train_start / on_train_step_start /
               on_train_step_end; train_state.step += 1 after on_train_step_end; the loop runs
               while train_state.step < cfg.train.train_iters; checkpoint_and_decide_exit saves when
               cfg.checkpoint.save_interval divides the step, both read each iteration;
               overlap_param_gather=False all-gathers parameters right after the optimizer step.
               config.py CheckpointConfig.ckpt_step: load that iteration.
  [MCORE-opt]  Megatron-LM megatron/core/optimizer/optimizer.py: reload_model_params() "whenever the
               parameters are changed outside of the optimizer" (main params from model params).
  [NEMO2-strategy] nemo/lightning/pytorch/strategies/megatron_strategy.py: load_checkpoint(path,
               selective_restore=True) and load_model_state_dict(checkpoint) (which reloads the
               optimizers' main params), as selective_restore does for a RestoreConfig;
               save_checkpoint; ckpt_async_save (default True).
"""
import argparse, hashlib, json, math, os, shutil, signal, socket, struct, subprocess, sys, time

# The round-directory contract (spec.json, global/, progress.jsonl, DONE.json, exit codes) is shared
# with the reference trainer: fedhpc_round_dir.py, beside this file (mount this directory whole).
_HERE = os.path.dirname(os.path.realpath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from fedhpc_round_dir import (  # noqa: E402
    EXIT_BAD_GLOBAL, EXIT_BAD_SPEC, EXIT_INTERRUPTED, EXIT_OK, ITEM_BYTES, SYNC_NAME, TOKEN_BYTES, Parser, Refusal,
    StepClock, SyncTally, append_progress, append_sync_progress, bad_global, bad_spec, budget_allows,
    check_global_sha256, check_safetensors_header, check_sync_global, load_pinned_config, load_round_config,
    manifest_sha256, need, next_ready, pinned_sha256, planned_or_estimate, progress_span, read_spec,
    safetensors_header, session_config_path, sha256_file, stop_requested, sync_dir, sync_name, tensor_shapes,
    token_count, truncate_progress, validate_session_spec, validate_spec, write_atomic, write_done,
    write_json_atomic, write_sync_done)

PRECISIONS = ("bf16_mixed", "fp32")
# Under a time budget without train.max_steps the frameworks still want an iteration count: one no
# budget reaches, so the budget stops the loop. Their schedules here are warm-up then constant.
UNCAPPED_ITERS = 10 ** 9


def log(message):
    print(f"nemo_shard: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- spec (the reference trainer's fields + nemo)

def validate_nemo_spec(spec, round_dir, session=False):
    """spec.json: the fields every trainer reads (fedhpc_round_dir.validate_spec, or
    validate_session_spec for a persistent session; the micro-batch defaults to 1 here, Megatron's
    unit of work), plus this recipe's data.megatron_prefix and an optional `nemo` block (a session's
    also nemo.session_steps). Relative paths resolve against `round_dir` (a session's directory)."""
    validate = validate_session_spec if session else validate_spec
    s = validate(spec, round_dir, micro_batch_default=1)
    data, nemo = spec.get("data"), spec.get("nemo", {})
    if not isinstance(nemo, dict):
        raise bad_spec("spec.json: nemo must be an object when present")
    opt_str = (str, type(None))
    s.megatron_prefix = need(data, "megatron_prefix", opt_str, where="data")
    s.tp = need(nemo, "tensor_parallel", int, lambda v: v >= 1, 1, where="nemo")
    s.pp = need(nemo, "pipeline_parallel", int, lambda v: v >= 1, 1, where="nemo")
    s.precision = need(nemo, "precision", str, lambda v: v in PRECISIONS, "bf16_mixed", where="nemo")
    s.tokenizer_dir = need(nemo, "tokenizer_dir", opt_str, where="nemo")
    # A session's framework still wants an iteration count, and Megatron sizes its data index by it.
    s.session_steps = need(nemo, "session_steps", int, lambda v: v >= 1, SESSION_STEPS, where="nemo") if session else None
    if (s.train_tokens is None) == (s.megatron_prefix is None):
        raise bad_spec("spec.json: give exactly one of data.train_tokens (uint32 token file) and data.megatron_prefix (.bin/.idx prefix)")
    if s.batch_size % s.micro_batch:
        raise bad_spec(f"spec.json: train.batch_size {s.batch_size} is not a multiple of train.micro_batch_size {s.micro_batch}")
    s.prefix_path = os.path.join(round_dir, s.megatron_prefix) if s.megatron_prefix else None
    s.tokenizer_path = os.path.join(round_dir, s.tokenizer_dir) if s.tokenizer_dir else None
    return s


def read_idx_count(prefix):
    """Token count of a Megatron indexed dataset, from its .idx header and sequence lengths [MCORE-idx]."""
    idx = prefix + ".idx"
    try:
        with open(idx, "rb") as f:
            if f.read(9) != IDX_MAGIC or struct.unpack("<Q", f.read(8))[0] != 1:
                raise ValueError("not a Megatron MMIDIDX v1 index")
            f.read(1)
            seqs = struct.unpack("<Q", f.read(8))[0]
            struct.unpack("<Q", f.read(8))
            lengths = f.read(4 * seqs)
            if len(lengths) != 4 * seqs:
                raise ValueError("index truncated")
            if not os.path.exists(prefix + ".bin"):
                raise ValueError(f"{prefix}.bin is missing")
            return sum(struct.unpack(f"<{seqs}i", lengths)) if seqs else 0
    except (OSError, ValueError, struct.error) as e:
        raise bad_spec(f"data.megatron_prefix {prefix}: {e}")


def open_round(round_dir):
    """Everything checked before any compute: a refusal costs nothing. Standard library only."""
    spec, spec_bytes = read_spec(round_dir)
    s = validate_nemo_spec(spec, round_dir)
    s.spec, s.spec_sha256 = spec, hashlib.sha256(spec_bytes).hexdigest()
    s.round_dir = os.path.abspath(round_dir)
    s.global_dir = os.path.join(s.round_dir, "global")
    s.config = load_round_config(s.round_dir, s)
    open_data(s)
    global_path = check_global_sha256(s.round_dir, s)
    _, layout = check_safetensors_header(global_path, tensor_shapes(s.config))
    s.global_dtypes = {name: dtype for name, (dtype, _, _) in layout.items()}
    return s


def open_data(s):
    """The data (a token file or a Megatron prefix) against the spec and its pin, and the tokenizer
    directory: sets token_count and data_sha256 (64 on a mismatch)."""
    if s.tokens_path:
        s.token_count = token_count(s.tokens_path)
        s.data_sha256 = pinned_sha256(s.tokens_path, s.tokens_sha256)
        if s.cursor + s.seq_len + 1 > s.token_count:
            raise bad_spec(f"spec.json: data.cursor {s.cursor} + seq_len does not fit {s.token_count} tokens")
    else:
        s.token_count = read_idx_count(s.prefix_path)
        s.data_sha256 = hashlib.sha256((sha256_file(s.prefix_path + ".idx") + sha256_file(s.prefix_path + ".bin")).encode()).hexdigest()
        if s.tokens_sha256 and s.data_sha256 != s.tokens_sha256:
            raise bad_spec("data.megatron_prefix: SHA-256 of sha256(idx)+sha256(bin) differs from data.train_tokens_sha256")
    if s.tokenizer_path and not os.path.isdir(s.tokenizer_path):
        raise bad_spec(f"nemo.tokenizer_dir {s.tokenizer_path} is not a directory")


# ---------------------------------------------------------------- scratch layout and data

IDX_MAGIC = b"MMIDIDX\x00\x00"  # [MCORE-idx] _INDEX_HEADER
IDX_DTYPE_INT32 = 4             # [MCORE-idx] DType.int32
IDX_MAX_SEQ = 1 << 30           # sequence lengths are int32: split long token files


def paths(s, nemo2):
    scratch = os.path.join(s.round_dir, "scratch")
    kind = "nemo2" if nemo2 else "mbridge"
    return argparse.Namespace(
        scratch=scratch, hf_in=os.path.join(scratch, "hf_global"), init=os.path.join(scratch, f"{kind}_init"),
        hf_config=os.path.join(s.global_dir, "config.json"), hf_weights=os.path.join(s.global_dir, "model.safetensors"),
        ckpt=os.path.join(scratch, f"{kind}_ckpt"), hf_out=os.path.join(scratch, "hf_export"),
        data_prefix=os.path.join(scratch, "data", "tokens"), trained=os.path.join(scratch, "trained.json"),
        imported=os.path.join(scratch, "imported.json"), spec_mark=os.path.join(scratch, "spec.sha256"),
        out=os.path.join(s.round_dir, "out"), progress=os.path.join(s.round_dir, "progress.jsonl"),
        done=os.path.join(s.round_dir, "DONE.json"), clock=os.path.join(scratch, "clock.json"))


def write_megatron_index(tokens_path, prefix, cursor, count):
    """A Megatron indexed dataset over tokens [cursor, count) of our uint32 file without copying it:
    int32 little-endian has the same bytes for ids < 2^31, so `prefix.bin` is a symlink and only the
    .idx is written (layout from [MCORE-idx] _IndexWriter: magic, version 1, dtype code, sequence
    and document counts, int32 lengths, int64 byte pointers, int64 document indices)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    lengths, pointers, at = [], [], cursor
    while at < count:
        n = min(IDX_MAX_SEQ, count - at)
        lengths.append(n)
        pointers.append(at * TOKEN_BYTES)
        at += n
    docs = list(range(len(lengths) + 1))  # one document per sequence; the reader needs docs[-1] == sequences
    body = (IDX_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", IDX_DTYPE_INT32)
            + struct.pack("<Q", len(lengths)) + struct.pack("<Q", len(docs))
            + struct.pack(f"<{len(lengths)}i", *lengths) + struct.pack(f"<{len(pointers)}q", *pointers)
            + struct.pack(f"<{len(docs)}q", *docs))
    # Every task of a session writes these same bytes at once: temp names of its own, then renames
    # (atomic, the last one wins), never a remove-then-create another task could race.
    unique = f".{os.getpid()}.{socket.gethostname()}.tmp"
    os.symlink(os.path.abspath(tokens_path), prefix + ".bin" + unique)
    os.replace(prefix + ".bin" + unique, prefix + ".bin")
    with open(prefix + ".idx" + unique, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(prefix + ".idx" + unique, prefix + ".idx")


def data_manifest(s):
    m = {"path": s.spec["data"].get("train_tokens") or s.spec["data"].get("megatron_prefix"),
         "format": "uint32le" if s.tokens_path else "megatron-indexed", "sha256": s.data_sha256,
         "tokens": s.token_count, "cursor_start": s.cursor,
         # Megatron's GPTDataset draws shuffled windows (seeded by spec.seed): no sequential cursor_end.
         "sampling": "megatron-gpt-dataset", "seed": s.seed}
    return m, manifest_sha256(m)


def data_parallel(s, world_size):
    """The data-parallel size on `world_size` GPUs (None when not given), refused (64) when the
    global batch does not split into micro-batches over it."""
    dp = world_size // (s.tp * s.pp) if world_size else None
    if world_size and (world_size % (s.tp * s.pp) or s.batch_size % (s.micro_batch * dp)):
        raise bad_spec(f"batch_size {s.batch_size} must be a multiple of micro_batch {s.micro_batch} x data-parallel "
                       f"{world_size}/(tp {s.tp} x pp {s.pp})")
    return dp


def budget_json(s):
    return ({"seconds": s.budget_seconds} if s.budget_seconds is not None else
            {"tokens": s.budget_tokens} if s.budget_tokens is not None else None)


def model_json(c):
    return {k: c[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")}


def plan(s, nemo2, world_size):
    p = paths(s, nemo2)
    dp = data_parallel(s, world_size)
    _, manifest_sha = data_manifest(s)
    steps = s.planned_steps  # None: a time budget without a cap decides
    return {
        "ok": True, "backend": "nemo2" if nemo2 else "megatron-bridge", "round": s.round, "seed": s.seed,
        "spec_version": s.version, "budget": budget_json(s), "max_steps": s.max_steps, "train_iters": train_iters(s),
        "steps": steps, "global_batch_size": s.batch_size, "micro_batch_size": s.micro_batch,
        "seq_len": s.seq_len, "tokens": steps * s.batch_size * s.seq_len if steps else None, "lr": s.lr,
        "warmup_steps": s.warmup_steps, "precision": s.precision, "tensor_parallel": s.tp,
        "pipeline_parallel": s.pp, "data_parallel": dp, "output_dtype": s.output_dtype, "model": model_json(s.config),
        "global_dtypes": sorted(set(s.global_dtypes.values())), "data_tokens": s.token_count,
        "dataManifestSha256": manifest_sha,
        "phases": [f"import: global/ -> {os.path.relpath(p.init, s.round_dir)}",
                   f"train: {steps_text(s)}, checkpoints in {os.path.relpath(p.ckpt, s.round_dir)}",
                   f"finalize: HF export -> out/model.safetensors ({s.output_dtype}) -> DONE.json"]}


def train_iters(s):
    """The iteration count the framework is given: the planned steps, or (a time budget without a
    cap) one the budget stops first."""
    return s.planned_steps if s.planned_steps is not None else UNCAPPED_ITERS


def steps_text(s):
    if s.budget_seconds is not None:
        cap = f", at most {s.max_steps} steps" if s.max_steps is not None else ""
        return f"until {s.budget_seconds} s of training{cap}"
    if s.budget_tokens is not None:
        return f"{s.planned_steps} steps (token budget {s.budget_tokens})"
    return f"{s.max_steps} steps"


class BudgetClock:
    """The shard's StepClock, kept in scratch/clock.json by rank 0 after every step, so a resumed
    job continues the time budget and the busy span where the interrupted one stopped."""

    def __init__(self, s, p):
        self.s, self.path = s, p.clock
        kept = json.load(open(self.path)) if os.path.exists(self.path) else {}
        if kept.get("spec_sha256") != s.spec_sha256:
            kept = {}
        self.clock = StepClock(kept.get("started_ms"), kept.get("elapsed_s", 0.0))
        self.last_ms = kept.get("last_ms")

    def step_starts(self):
        self.clock.step_starts()

    def step_ended(self, step):
        """Records the step's end; returns its timestamp and whether the budget allows another."""
        self.last_ms = self.clock.now_ms()
        if rank() == 0:
            write_json_atomic(self.path, {"spec_sha256": self.s.spec_sha256, "started_ms": self.clock.started_ms,
                                          "elapsed_s": self.clock.elapsed_s(), "last_ms": self.last_ms, "step": step})
        return self.last_ms, budget_allows(self.s, step, self.clock.elapsed_s())

    def steps(self, step):
        return planned_or_estimate(self.s, step, self.clock.elapsed_s())


# ---------------------------------------------------------------- signals and rank helpers

class StopFlag:
    """Slurm's --signal=B:USR1@300 reaches the batch shell, which forwards USR1 (or TERM) here."""

    def __init__(self):
        self.signal, self.relay_usr1_as_term = None, False
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self.handle)

    def handle(self, sig, _frame):
        self.signal = self.signal or signal.Signals(sig).name
        if sig == signal.SIGUSR1 and self.relay_usr1_as_term:
            self.relay()

    def relay(self):
        """Megatron's exit handler listens for SIGTERM only [MB-res]: once it has replaced our
        SIGTERM handler, re-raising USR1 as TERM makes it save a checkpoint and stop. (Not for
        NeMo 2.0: Lightning treats SIGTERM as fatal; there our own callback stops the loop.)"""
        os.kill(os.getpid(), signal.SIGTERM)


def slurm_to_torch_env():
    """srun starts one task per GPU; torch.distributed wants RANK/WORLD_SIZE/LOCAL_RANK."""
    for ours, slurms in (("RANK", "SLURM_PROCID"), ("WORLD_SIZE", "SLURM_NTASKS"), ("LOCAL_RANK", "SLURM_LOCALID")):
        if ours not in os.environ and slurms in os.environ:
            os.environ[ours] = os.environ[slurms]
    os.environ.setdefault("MASTER_PORT", "29500")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")


def rank():
    return int(os.environ.get("RANK", "0"))


def prepare_scratch(s, p):
    """A scratch/ written for another spec.json is stale: drop its checkpoints, keep nothing."""
    import shutil
    os.makedirs(p.scratch, exist_ok=True)
    old = open(p.spec_mark).read().strip() if os.path.exists(p.spec_mark) else None
    if old != s.spec_sha256:
        for d in (p.init, p.ckpt, p.hf_out, p.hf_in):
            shutil.rmtree(d, ignore_errors=True)
        for f in (p.trained, p.imported):
            if os.path.exists(f):
                os.remove(f)
        write_atomic(p.spec_mark, s.spec_sha256.encode())


def hf_input_dir(s, p):
    """p.hf_in: an HF model directory of symlinks to p.hf_config (as config.json), p.hf_weights (as
    model.safetensors) and the site's tokenizer files: the HF loaders want a complete model directory.
    A round's are global/'s; a session's the session's config and a sync's global."""
    os.makedirs(p.hf_in, exist_ok=True)
    sources = [(p.hf_config, "config.json"), (p.hf_weights, "model.safetensors")]
    if s.tokenizer_path:
        sources += [(os.path.join(s.tokenizer_path, n), n) for n in sorted(os.listdir(s.tokenizer_path))
                    if not n.endswith((".safetensors", ".bin", ".pt")) and n != "config.json"]
    for src, name in sources:
        dst = os.path.join(p.hf_in, name)
        if not os.path.lexists(dst):
            os.symlink(os.path.abspath(src), dst)
    return p.hf_in


# ---------------------------------------------------------------- phases: Megatron-Bridge

def mb_bridge(hf_dir=None, config_path=None):
    """A Megatron-Bridge AutoBridge [MB-bridge]: of an HF model directory (a round's: its weights are
    what mb_import converts), or of a config.json alone (a session's: from_hf_config, no weights; each
    sync's global is loaded with load_hf_weights). Our configs may leave `architectures` out, which the
    bridge dispatches on."""
    import torch
    from megatron.bridge import AutoBridge
    if hf_dir is not None:
        return AutoBridge.from_hf_pretrained(hf_dir, torch_dtype=torch.float32)
    from transformers import LlamaConfig
    config = LlamaConfig.from_json_file(config_path)
    config.architectures = config.architectures or ["LlamaForCausalLM"]
    return AutoBridge.from_hf_config(config)


def mb_import(s, p):
    """HF -> Megatron checkpoint: AutoBridge.import_ckpt's own steps [MB-bridge], spelled out so the
    tokenizer comes from nemo.tokenizer_dir (import_ckpt takes it from the HF directory, and global/
    has none). The calls and kwargs are those import_ckpt makes in auto_bridge.py."""
    from megatron.bridge.training.model_load_save import temporary_distributed_context
    bridge = mb_bridge(hf_input_dir(s, p))
    with temporary_distributed_context(backend="gloo"):
        model = bridge.to_megatron_model(wrap_with_ddp=False, use_cpu_initialization=True)
        bridge.save_megatron_model(model, p.init, hf_tokenizer_path=s.tokenizer_path)


def mb_config(s, p, bridge, session=None):
    """A ConfigContainer shaped like recipes/common.py's _pretrain_common [MB-recipe], with the
    round's numbers: train_iters = max_steps, constant LR after linear warmup (the reference
    trainer's inner schedule), weights from `pretrained_checkpoint` only (no optimizer state,
    iteration 0), resume from `load` = `save` = scratch/ [MB-entry][MB-ckpt].
    A session (`session` = {"resume_step": k or None}) differs: nemo.session_steps iterations, no
    pretrained checkpoint (its callback loads the first global), state/ as save and load (at the
    last snapshot's iteration, ckpt_step), no exit signal handler (a signal must leave no new
    checkpoint) and no overlapped parameter all-gather (parameters are whole after each optimizer
    step, so the callback can edit and export them).
    UNVERIFIED: SchedulerConfig / OptimizerConfig field names beyond those in [MB-recipe]."""
    import torch
    from megatron.bridge.training.config import (CheckpointConfig, ConfigContainer, DistributedInitConfig,
                                                 GPTDatasetConfig, LoggerConfig, RNGConfig, SchedulerConfig,
                                                 TokenizerConfig, TrainingConfig, ValidationConfig)
    from megatron.bridge.training.mixed_precision import MixedPrecisionConfig
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    provider = bridge.to_megatron_provider(load_weights=False)
    provider.tensor_model_parallel_size, provider.pipeline_model_parallel_size = s.tp, s.pp
    provider.seq_length = s.seq_len
    bf16 = s.precision == "bf16_mixed"
    # fp32: F32 parameters end to end, so out/ holds real F32 values (see docs/nemo.md, "Precision").
    precision = "bf16_mixed" if bf16 else MixedPrecisionConfig(bf16=False, fp16=False, params_dtype=torch.float32,
                                                               pipeline_dtype=torch.float32, autocast_enabled=False,
                                                               grad_reduce_in_fp32=True)
    tokenizer = (TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=s.tokenizer_path)
                 if s.tokenizer_path else
                 # UNVERIFIED: NullTokenizer adds one EOD id past vocab_size; with pre-tokenized data
                 # and eod_mask_loss=False it only has to stay inside the embedding table.
                 TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=s.config["vocab_size"] - 1))
    if session is None:
        save_every = s.checkpoint_every or (max(1, s.planned_steps // 4) if s.planned_steps else 100)
        iters, checkpoint = train_iters(s), CheckpointConfig(
            pretrained_checkpoint=p.init, save=p.ckpt, load=p.ckpt, save_interval=save_every, ckpt_format="torch_dist",
            fully_parallel_save=True)
    else:  # the callback sets save_interval to 0, and to 1 for the iteration of a snapshot [MB-train]
        step = session["resume_step"]
        iters, checkpoint = s.session_steps, CheckpointConfig(
            save=p.ckpt, load=p.ckpt if step is not None else None, ckpt_step=step, ckpt_format="torch_dist",
            fully_parallel_save=True)
    return ConfigContainer(
        model=provider,
        train=TrainingConfig(train_iters=iters, global_batch_size=s.batch_size, micro_batch_size=s.micro_batch,
                             # a round: SIGTERM saves to checkpoint.save and stops [MB-res]
                             exit_signal_handler=session is None),
        validation=ValidationConfig(eval_interval=None, eval_iters=0),
        optimizer=OptimizerConfig(optimizer="adam", lr=s.lr, min_lr=s.lr, weight_decay=s.weight_decay,
                                  adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8, clip_grad=s.grad_clip,
                                  bf16=bf16, params_dtype=torch.bfloat16 if bf16 else torch.float32,
                                  use_distributed_optimizer=True),
        scheduler=SchedulerConfig(lr_decay_style="constant", lr_warmup_iters=s.warmup_steps, lr_warmup_init=0.0,
                                  start_weight_decay=s.weight_decay, end_weight_decay=s.weight_decay,
                                  weight_decay_incr_style="constant"),
        ddp=DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=True,
                                          overlap_param_gather=session is None, use_distributed_optimizer=True),
        dataset=GPTDatasetConfig(random_seed=s.seed, seq_length=s.seq_len, data_path=s.data_prefix,
                                 split="100,0,0", reset_attention_mask=False, reset_position_ids=False,
                                 eod_mask_loss=False, num_dataset_builder_threads=1, dataloader_type="single",
                                 path_to_cache=os.path.join(p.scratch, "data", "cache")),
        logger=LoggerConfig(log_interval=1),
        tokenizer=tokenizer,
        checkpoint=checkpoint,
        rng=RNGConfig(seed=s.seed),
        dist=DistributedInitConfig(),
        mixed_precision=precision,
    )


def mb_finished_step(context):
    """The number of the step that has just ended, in on_train_step_end: Megatron-Bridge's loop adds 1
    to train_state.step after a step's callbacks (training/train.py, v0.3.0 to v0.6.0), so there
    the counter still holds the steps before this one. (In on_train_start it is the steps done.)"""
    return context.state.train_state.step + 1


def mb_train(s, p, stop):
    from megatron.bridge.training.callbacks import Callback  # [MB-cb]
    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    seen = {"step": 0, "budget_spent": False}
    clock = BudgetClock(s, p)

    class Progress(Callback):
        def on_train_start(self, context):
            seen["step"] = context.state.train_state.step
            if rank() == 0:
                truncate_progress(p.progress, seen["step"])  # resumed from a checkpoint at this step
            if stop.signal:  # arrived during setup, before Megatron's handler: hand it over now
                stop.relay()
            clock.step_starts()  # the first step's start (a resumed job continues the kept clock)

        def on_train_step_end(self, context):
            seen["step"] = step = mb_finished_step(context)
            ts, more = clock.step_ended(step)
            if rank() == 0 and context.loss_dict:
                loss = context.loss_dict.get("lm loss")
                append_progress(p.progress, step, clock.steps(step), float(loss) if loss is not None else None,
                                s.batch_size, s.seq_len, ts=ts)
            if not more and step < train_iters(s) and not seen["budget_spent"]:
                # A time budget is spent before train_iters: stop the way a preemption does. UNVERIFIED:
                # Megatron's exit handler saves a checkpoint and all-gathers the signal, so every rank
                # stops after this same iteration (only rank 0's clock decides; [MB-res]).
                seen["budget_spent"] = True
                if rank() == 0:
                    stop.relay()

    cfg = mb_config(s, p, mb_bridge(hf_input_dir(s, p)))
    try:
        pretrain(cfg, forward_step, callbacks=[Progress()])  # [MB-entry]
    except SystemExit as e:  # Megatron may sys.exit() after its signal-triggered save
        if e.code not in (None, 0):
            raise
    if seen["step"] < train_iters(s) and not seen["budget_spent"]:
        log(f"{stop.signal or 'stopped'} at step {seen['step']}/{steps_text(s)}: checkpoint in {p.ckpt}")
        return EXIT_INTERRUPTED
    if rank() == 0:
        write_json_atomic(p.trained, {"steps": seen["step"], "checkpoint": p.ckpt, "spec_sha256": s.spec_sha256})
    return EXIT_OK


def mb_export(s, p):
    """Megatron checkpoint -> HF directory with AutoBridge.export_ckpt [MB-bridge] (loads the model
    weights of the latest iter_N, not the optimizer's F32 master copy; see docs/nemo.md, "Precision")."""
    mb_bridge(hf_input_dir(s, p)).export_ckpt(megatron_path=p.ckpt, hf_path=p.hf_out)


# ---------------------------------------------------------------- phases: NeMo 2.0

def nemo2_model(s):
    """An llm.LlamaModel with the HF config's shape (Salamandra's included). UNVERIFIED field names
    of llm.LlamaConfig (NeMo 2.0 gpt/model/llama.py)."""
    from nemo.collections import llm
    c = s.config
    cfg = llm.LlamaConfig(num_layers=c["num_hidden_layers"], hidden_size=c["hidden_size"],
                          ffn_hidden_size=c["intermediate_size"], num_attention_heads=c["num_attention_heads"],
                          num_query_groups=c["num_key_value_heads"], seq_length=s.seq_len,
                          rotary_base=float(c.get("rope_theta", 10000.0)),
                          layernorm_epsilon=float(c.get("rms_norm_eps", 1e-6)),
                          share_embeddings_and_output_weights=False)
    return llm.LlamaModel(cfg)


def nemo2_import(s, p):
    from nemo.collections import llm  # [NEMO2-api] import_ckpt
    llm.import_ckpt(model=nemo2_model(s), source=f"hf://{hf_input_dir(s, p)}", output_path=p.init, overwrite=True)


def nemo2_pretrain(s, p, iters, callback, resume):
    """llm.pretrain [NEMO2-api] with the spec's model, data, optimizer and parallelism, `iters`
    steps, one callback and `resume` (an nl.AutoResume); returns the trainer. Checkpoints are saved
    synchronously (ckpt_async_save=False): what trainer.save_checkpoint wrote is complete when it
    returns, for an export that reads it and for a process that exits next."""
    import torch  # noqa: F401 (NeMo expects torch imported first)
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from nemo import lightning as nl
    from nemo.collections import llm
    from nemo.collections.common.tokenizers.huggingface.auto_tokenizer import AutoTokenizer
    from megatron.core.optimizer import OptimizerConfig

    if not s.tokenizer_path:
        raise bad_spec("--nemo2 needs nemo.tokenizer_dir (NeMo's data module and importer load a tokenizer)")
    tokenizer = AutoTokenizer(s.tokenizer_path)
    data = llm.PreTrainingDataModule(paths=[s.data_prefix], seq_length=s.seq_len, micro_batch_size=s.micro_batch,
                                     global_batch_size=s.batch_size, tokenizer=tokenizer, split="100,0,0",
                                     seed=s.seed, num_workers=2)
    bf16 = s.precision == "bf16_mixed"
    trainer = nl.Trainer(
        devices=int(os.environ.get("SLURM_NTASKS_PER_NODE", "1")), num_nodes=int(os.environ.get("SLURM_NNODES", "1")),
        accelerator="gpu", max_steps=iters, limit_val_batches=0, val_check_interval=iters + 1,
        log_every_n_steps=1, enable_checkpointing=False, callbacks=[callback],
        strategy=nl.MegatronStrategy(tensor_model_parallel_size=s.tp, pipeline_model_parallel_size=s.pp,
                                     ckpt_load_optimizer=True, ckpt_async_save=False),
        # auto_requeue=False: Lightning would otherwise requeue on SIGUSR1 itself, and the job must be
        # requeued by Slurm (the sbatch script) or resubmitted by the agent, never both (DESIGN.md).
        plugins=[nl.MegatronMixedPrecision(precision="bf16-mixed" if bf16 else "32"),
                 SLURMEnvironment(auto_requeue=False)])
    optim = nl.MegatronOptimizerModule(
        config=OptimizerConfig(optimizer="adam", lr=s.lr, min_lr=s.lr, weight_decay=s.weight_decay, adam_beta1=0.9,
                               adam_beta2=0.95, adam_eps=1e-8, clip_grad=s.grad_clip, bf16=bf16,
                               use_distributed_optimizer=True),
        lr_scheduler=nl.lr_scheduler.WarmupHoldPolicyScheduler(warmup_steps=s.warmup_steps, hold_steps=iters,
                                                               max_steps=iters) if s.warmup_steps else None)
    llm.pretrain(model=nemo2_model(s), data=data, trainer=trainer, resume=resume, optim=optim,
                 log=nl.NeMoLogger(log_dir=os.path.join(p.scratch, "nemo2_logs")))  # [NEMO2-api] pretrain
    return trainer


def nemo2_train(s, p, stop):
    import lightning.pytorch as pl
    import torch
    from nemo import lightning as nl

    interrupt_mark = os.path.join(p.scratch, "nemo2_interrupt.json")
    seen = {"step": 0, "interrupted": False, "budget_spent": False}
    clock = BudgetClock(s, p)
    iters = train_iters(s)

    class Progress(pl.Callback):
        """Lightning hooks; `outputs` is the reduced loss (a tensor or {"loss": tensor}). UNVERIFIED."""

        def on_train_start(self, trainer, pl_module):
            seen["step"] = trainer.global_step
            if rank() == 0:
                truncate_progress(p.progress, seen["step"])
            clock.step_starts()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["step"] = step = trainer.global_step
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            ts, more = clock.step_ended(step)
            if rank() == 0:
                append_progress(p.progress, step, clock.steps(step), float(loss) if loss is not None else None,
                                s.batch_size, s.seq_len, ts=ts)
            # 1: a signal (checkpoint, exit 75); 2: rank 0's clock says the time budget is spent (finish).
            flag = torch.tensor([1 if stop.signal else 2 if (rank() == 0 and not more) else 0], device=pl_module.device)
            if torch.distributed.is_initialized():
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)  # every rank stops together
            if flag.item() == 2 and step < iters:  # UNVERIFIED: should_stop ends fit() after this batch
                seen["budget_spent"] = True
                trainer.should_stop = True
            elif flag.item() == 1 and step < iters:
                path = os.path.join(p.ckpt, f"interrupt-step{step}")
                trainer.save_checkpoint(path)  # collective; MegatronStrategy writes a distributed checkpoint
                if rank() == 0:
                    write_json_atomic(interrupt_mark, {"path": path, "step": step, "spec_sha256": s.spec_sha256})
                seen["interrupted"] = True
                trainer.should_stop = True

    mark = json.load(open(interrupt_mark)) if os.path.exists(interrupt_mark) else None
    if mark and mark.get("spec_sha256") == s.spec_sha256 and os.path.isdir(mark["path"]):
        resume = nl.AutoResume(resume_from_path=mark["path"])  # full state: weights, AdamW, step
    else:  # weights only from the imported global, no optimizer state [NEMO2-api] AutoResume/RestoreConfig
        resume = nl.AutoResume(restore_config=nl.RestoreConfig(path=p.init, load_optim_state=False),
                               resume_if_exists=False)
    trainer = nemo2_pretrain(s, p, iters, Progress(), resume)
    if seen["interrupted"] or (seen["step"] < iters and not seen["budget_spent"]):
        log(f"{stop.signal or 'stopped'} at step {seen['step']}/{steps_text(s)}: checkpoint in {p.ckpt}")
        return EXIT_INTERRUPTED
    final = os.path.join(p.ckpt, f"final-step{seen['step']}")
    trainer.save_checkpoint(final)
    if rank() == 0:
        write_json_atomic(p.trained, {"steps": seen["step"], "checkpoint": final, "spec_sha256": s.spec_sha256})
    return EXIT_OK


def nemo2_export(s, p, checkpoint=None):
    """A NeMo checkpoint (a round's trained one by default) -> an HF directory in p.hf_out."""
    from nemo.collections import llm  # [NEMO2-api] export_ckpt
    checkpoint = checkpoint or json.load(open(p.trained))["checkpoint"]
    llm.export_ckpt(path=checkpoint, target="hf", output_path=p.hf_out, overwrite=True)


# ---------------------------------------------------------------- finalize (both backends)

class OutWriter:
    """out/model.safetensors of a shard or a snapshot, in torch_shard.py's tensor order and
    spec.output_dtype, names and shapes checked against the model config. The tensors may come in
    any order (an HF directory's files, Megatron-Bridge's streamed export): the header is known from
    the config, so each is written at its own offset; the file is renamed into place only once
    every tensor is in it. Names outside the config are skipped (HF exports may carry buffers)."""

    def __init__(self, s, path):
        import torch
        self.shapes, self.dtype, self.path, self.skipped = tensor_shapes(s.config), s.output_dtype, path, []
        self.torch_dtype = {"F32": torch.float32, "BF16": torch.bfloat16}[s.output_dtype]
        head = safetensors_header(self.shapes.items(), self.dtype)
        self.offsets, at = {}, len(head)
        for name, shape in self.shapes.items():
            self.offsets[name] = at
            at += ITEM_BYTES[self.dtype] * math.prod(shape)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.file, self.missing = open(path + ".tmp", "wb"), set(self.shapes)
        self.file.write(head)
        self.file.truncate(at)

    def put(self, name, tensor):
        import torch
        if name not in self.shapes:
            self.skipped.append(name)
            return
        if tuple(tensor.shape) != self.shapes[name]:
            raise RuntimeError(f"exported {name} has shape {list(tensor.shape)}, config.json needs {list(self.shapes[name])}")
        # Through a torch view into a bytearray: no numpy needed; bf16 travels as its int16 bit patterns.
        view = torch.int16 if self.dtype == "BF16" else torch.float32
        src = tensor.detach().to("cpu", self.torch_dtype).contiguous().reshape(-1).view(view)
        raw = bytearray(src.numel() * ITEM_BYTES[self.dtype])
        torch.frombuffer(raw, dtype=view).copy_(src)
        self.file.seek(self.offsets[name])
        self.file.write(raw)
        self.missing.discard(name)

    def finish(self):
        """Renames the complete file into place; returns its SHA-256."""
        if self.missing:
            self.file.close()
            raise RuntimeError(f"export lacks {sorted(self.missing)[:5]} (of {len(self.missing)} tensors)")
        if self.skipped:
            log(f"export: skipped {len(self.skipped)} tensors the config does not name, e.g. {self.skipped[:3]}")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        digest = sha256_file(self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)
        return digest


def hf_to_out(s, p):
    """Exported HF directory (one file or shards, any float dtype) -> p.out/model.safetensors
    (OutWriter); returns its SHA-256."""
    from safetensors import safe_open
    shapes = tensor_shapes(s.config)
    files = sorted(os.path.join(p.hf_out, n) for n in os.listdir(p.hf_out) if n.endswith(".safetensors"))
    where = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                where[name] = path
    if set(shapes) - set(where):
        raise RuntimeError(f"HF export in {p.hf_out} lacks {sorted(set(shapes) - set(where))[:5]}")
    writer = OutWriter(s, os.path.join(p.out, "model.safetensors"))
    for name in shapes:
        with safe_open(where[name], framework="pt") as f:
            writer.put(name, f.get_tensor(name))
    return writer.finish()


def finalize(s, p, nemo2):
    if not os.path.exists(p.trained):
        log(f"{p.trained} is missing: training has not finished")
        return EXIT_INTERRUPTED
    trained = json.load(open(p.trained))
    (nemo2_export if nemo2 else mb_export)(s, p)
    out_sha = hf_to_out(s, p)
    first_ts, last_ts, losses = progress_span(p.progress)
    kept = json.load(open(p.clock)) if os.path.exists(p.clock) else {}
    # The busy span: the kept clock's first-step start, else the first line's ts (that step's end).
    started = kept.get("started_ms") if kept.get("spec_sha256") == s.spec_sha256 else None
    manifest, _ = data_manifest(s)
    # Last: its presence means out/ is complete. trainLoss: the mean of progress.jsonl's losses.
    write_done(s.round_dir, s.round, trained["steps"], s.batch_size, s.seq_len,
               sum(losses) / len(losses) if losses else None, manifest, out_sha, s.output_dtype,
               {"runner": "nemo2" if nemo2 else "megatron-bridge", "precision": s.precision},
               span=(started if started is not None else first_ts, last_ts))
    return EXIT_OK


# ---------------------------------------------------------------- the persistent session (contract version 3)
#
# docs/protocol.md, "The persistent trainer". The reference is torch_shard.py's train_session; the
# contract's pieces are fedhpc_round_dir.py's. SessionControl is framework-neutral and runs in CI
# with a plain-PyTorch stand-in for the framework (test/unit/trainers/nemo-session.test.ts); the
# Hands of Megatron-Bridge and NeMo 2.0 below have never run (no GPU, no NeMo): UNVERIFIED.

SESSION_STEPS = 100_000  # nemo.session_steps by default: a bound no run should reach
READY_POLL_S = 0.5       # how often a session with no model yet looks for its first READY.json
FIRST_WAIT_S = 3600      # how long the other tasks wait for rank 0's conversion of the first global (NeMo 2.0)
# A step boundary's decision, broadcast by rank 0 as [flags, round, attempt, exit code]:
STOP_FLAG, SIGNAL_FLAG, APPLY, FIRST, SNAPSHOT, FAIL = 1, 2, 4, 8, 16, 32
NOTHING = [0, 0, 0, 0]


def session_paths(s, nemo2):
    """A session's layout: state/ is the recipe's own (a round's scratch/), progress.jsonl beside it."""
    state = os.path.join(s.round_dir, "state")
    kind = "nemo2" if nemo2 else "mbridge"
    return argparse.Namespace(
        scratch=state, session=os.path.join(state, "session.json"), config=os.path.join(state, "config.json"),
        ckpt=os.path.join(state, f"{kind}_ckpt"), hf_global=os.path.join(state, "hf_global"),
        imports=os.path.join(state, "imports"), exports=os.path.join(state, "exports"),
        data_prefix=os.path.join(state, "data", "tokens"), progress=os.path.join(s.round_dir, "progress.jsonl"),
        init=None)


def open_session(session_dir, config_from_state=False):
    """A session's checks before any compute, standard library only: spec.json version 3 with the
    recipe's fields (64), the data and its pin (64), state/session.json of an earlier start (64 when
    it is another run's) and the model config once it is known (65): state/config.json on a resume
    (or in a child, `config_from_state`), else <session>/config.json or the first READY sync's
    global/config.json (session_config_path); s.config is None until then."""
    spec, spec_bytes = read_spec(session_dir)
    s = validate_nemo_spec(spec, session_dir, session=True)
    s.spec, s.spec_sha256 = spec, hashlib.sha256(spec_bytes).hexdigest()
    s.round_dir = os.path.abspath(session_dir)  # relative paths, paths() and hf_input_dir start here, as a round's
    open_data(s)
    s.state = read_session_state(s)
    s.config_path = None
    if s.state is not None or config_from_state:
        s.config_path = os.path.join(s.round_dir, "state", "config.json")
    else:
        found = next_ready(s.round_dir, None)
        if found or os.path.exists(os.path.join(s.round_dir, "config.json")):
            s.config_path = session_config_path(s.round_dir, found[0] if found else None)
    s.config = load_pinned_config(s.config_path, s) if s.config_path else None
    if s.state is not None:
        check_same_config(s, os.path.join(s.round_dir, "config.json"))
    return s


def read_session_state(s):
    """state/session.json, the last committed snapshot (sync, base, step, checkpoint, DONE record),
    checked to be this run's; None on a fresh start."""
    path = os.path.join(s.round_dir, "state", "session.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            st = json.load(f)
        missing = [k for k in ("run_id", "sync", "step", "checkpoint", "done", "base_sha256", "base_model_round")
                   if k not in st]
        if missing:
            raise ValueError(f"lacks {missing}")
        st["sync"] = tuple(st["sync"])
    except (OSError, ValueError, TypeError) as e:
        raise bad_spec(f"{path}: {e}")
    if st["run_id"] != s.run_id:
        raise bad_spec(f"{path}: state of run {st.get('run_id')!r}, but spec.json names {s.run_id!r}")
    return st


def check_same_config(s, path):
    """A model config laid out beside the session's (a sync's global/config.json, <session>/config.json
    after a restart) must be the session's own (65)."""
    if os.path.exists(path) and sha256_file(path) != sha256_file(s.config_path):
        raise bad_global(f"{path}: differs from the model config the session trains ({s.config_path})")


def check_sync(s, sync, ready):
    """A sync's global before it is applied (65): READY's SHA-256, the model's names, shapes and
    float dtypes, and the session's config."""
    path = check_sync_global(s.round_dir, sync, ready)
    check_safetensors_header(path, tensor_shapes(s.config))
    check_same_config(s, os.path.join(sync_dir(s.round_dir, sync), "global", "config.json"))


def wait_first_ready(s, stop, wait_s):
    """A fresh start has nothing to train before a global: the lowest READY.json, polled for at most
    wait_s seconds. Returns (sync, ready), else the exit code: 0 on STOP, 75 on a signal or none."""
    deadline = time.monotonic() + wait_s
    while True:
        if stop_requested(s.round_dir):
            log("STOP before the first global: exit 0")
            return EXIT_OK
        if stop.signal:
            log(f"{stop.signal} before the first global: exit 75")
            return EXIT_INTERRUPTED
        found = next_ready(s.round_dir, None)
        if found:
            return found
        if time.monotonic() > deadline:
            log(f"no READY.json in {s.round_dir}/syncs/ after {wait_s} s: exit 75")
            return EXIT_INTERRUPTED
        time.sleep(READY_POLL_S)


def session_manifest(s, tally):
    """A sync's data manifest: the data (Megatron samples it shuffled, so no cursor range) and the
    session steps the sync trained."""
    manifest, _ = data_manifest(s)
    return {**manifest, "session_steps": [tally.first_step, tally.first_step + tally.steps - 1]}


def refusal_or_crash(code, what):
    """A child's exit code as the error to raise: its refusal (64, 65) stays a refusal."""
    if code in (EXIT_BAD_SPEC, EXIT_BAD_GLOBAL):
        return Refusal(code, f"{what} refused it (exit {code}); its log says why")
    return RuntimeError(f"{what} exited {code}")


class Hands:
    """What SessionControl asks of the framework that trains: this rank's parameter shards, the
    framework's own loader and exporter, its checkpoint and its loop. The defaults are plain
    PyTorch: torch.distributed collectives when it is initialized (one process otherwise), and
    parameters copied to the host. MbHands and Nemo2Hands fill in the rest."""
    runner = None
    first_loaded = False  # the framework loaded the first sync's global itself, before training

    def named_params(self):
        """(name, tensor) of this rank's parameters (its tensor/pipeline shards), in a stable order."""
        raise NotImplementedError

    def host_copy(self):
        import torch
        with torch.no_grad():
            return {name: t.detach().to("cpu", copy=True) for name, t in self.named_params()}

    def device(self):
        import torch
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def agree_max(self, values):
        """Every rank's `values` reduced by MAX: a signal one rank saw, the loss only the last pipeline stage has."""
        import torch
        if not torch.distributed.is_initialized():
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return t.tolist()

    def broadcast(self, decision):
        """Rank 0's decision, on every rank."""
        import torch
        if not torch.distributed.is_initialized():
            return list(decision)
        t = torch.tensor(decision, dtype=torch.int64, device=self.device())
        torch.distributed.broadcast(t, src=0)
        return t.tolist()

    def prepare_global(self, sync):
        """Rank 0: makes the sync's global loadable by load_global; returns a child process still
        doing it (polled at each step boundary while training goes on), or None when it is ready."""
        return None

    def global_scratch(self, sync):
        """What prepare_global made for the sync, removed once every rank has loaded it."""
        return []

    def load_global(self, sync):
        """Every rank: the sync's global g into this rank's parameters, in place (the framework
        scatters it over tensor and pipeline ranks)."""
        raise NotImplementedError

    def reload_main(self):
        """Every rank: the optimizer's main (F32) parameters from the model parameters just edited."""

    def snapshot(self, step, sync, out_path):
        """Every rank: the snapshot after `step`. Writes out_path (rank 0; None elsewhere) or has a
        child write it, and has the framework checkpoint its whole state into state/. Returns
        (checkpoint, out SHA-256 or None, child or None)."""
        raise NotImplementedError

    def snapshot_done(self, commit, wait):
        """Rank 0: out/'s SHA-256 once the snapshot's checkpoint and out/ are complete, else None
        (`wait`: block until they are)."""
        raise NotImplementedError

    def drop_checkpoints(self, keep):
        """Rank 0: state/'s checkpoints other than `keep`, the committed one."""

    def end_loop(self):
        """Every rank: the framework's loop ends after this step."""
        raise NotImplementedError


class SessionControl:
    """The persistent trainer's loop (torch_shard.py's train_session) around a framework that runs
    the steps and calls start, step_starts and step_ended from its callback. Rank 0 (`lead`) reads
    and writes the session's files and decides at each step boundary, as torch_shard.py does before
    each step: STOP, a signal, the next READY.json, the sync's budget. The decision is broadcast and
    every rank carries it out at the same boundary: stop, apply a global, or take a snapshot. Rank 0
    keeps the sync's SyncTally, the base and a snapshot waiting for its commit; every rank keeps
    θₛ, its own parameter shards at the last snapshot, on the host."""

    def __init__(self, s, p, stop, hands, lead, first=None):
        self.s, self.p, self.stop, self.hands, self.lead, self.first = s, p, stop, hands, lead, first
        self.clock, st = StepClock(), s.state
        self.last_sync = tuple(st["sync"]) if st else None
        self.base, self.base_round = (st["base_sha256"], st["base_model_round"]) if st else (None, None)
        self.last_tally = st["done"] if st else None  # a sync on the same base counts on from it (SyncTally.continued)
        self.snap = self.tally = self.importing = self.committing = self.outcome = self.failure = None
        self.started_ms, self.stale = None, []

    # ------------------------------------------------ the framework's calls, on every rank

    def start(self, step):
        """At the framework's train start, after `step` steps (a resume: the snapshot's, whose
        checkpoint it loaded, so θₛ is the parameters now). A fresh start takes up the first sync."""
        self.tally = SyncTally(step + 1, self.s.cursor, 0)
        if self.lead:
            truncate_progress(self.p.progress, step)
        if self.s.state is not None:
            if self.lead:
                self.rewrite_lost_done()
                log(f"session {self.s.run_id}: resumed from state/ at step {step} (sync {sync_name(self.last_sync)} done)")
            self.snap = self.hands.host_copy()
            return
        decision = self.lead_decides(self.first_decision) if self.lead else NOTHING
        self.act(step, self.hands.broadcast(decision))

    def step_starts(self):
        self.started_ms = self.clock.now_ms()

    def step_ended(self, step, loss):
        """After optimizer step `step` (counted from the session's start) with its loss where this
        rank has one; False once the loop is to end (STOP, a signal)."""
        finished = self.clock.now_ms()
        known = loss is not None and math.isfinite(loss)
        signal_seen, loss = self.hands.agree_max([1.0 if self.stop.signal else 0.0, loss if known else -math.inf])
        loss = loss if math.isfinite(loss) else None
        decision = NOTHING
        if self.lead:
            started = self.started_ms if self.started_ms is not None else finished
            self.tally.step_done(loss if loss is not None else math.nan, started, finished)  # NaN: no trainLoss
            append_sync_progress(self.p.progress, step, loss, self.s.batch_size, self.s.seq_len, finished,
                                 finished - started, self.tally.sync, self.base_round)
            decision = self.lead_decides(lambda: self.decide(signal_seen > 0))
        return self.act(step, self.hands.broadcast(decision))

    def finish(self):
        """After the framework's loop: commits a snapshot taken at its last step, returns the exit code."""
        if self.lead and self.committing is not None and self.outcome is None:
            self.commit(wait=True)
        if self.outcome is None:  # the loop ran out of iterations
            raise bad_spec(f"the session trained nemo.session_steps ({self.s.session_steps}) steps, all the "
                           "framework was given: raise nemo.session_steps")
        return self.outcome

    # ------------------------------------------------ rank 0: the decision

    def lead_decides(self, decide):
        """Rank 0's decision; when deciding raised, FAIL with its exit code, so the other ranks stop
        too instead of waiting in the next collective (act raises the error itself here)."""
        try:
            return decide()
        except Exception as e:  # noqa: BLE001 - raised again by act, after the broadcast
            self.failure = e
            return [FAIL, 0, 0, e.code if isinstance(e, Refusal) else 1]

    def first_decision(self):
        sync, ready = self.first
        if not self.hands.first_loaded:
            check_sync(self.s, sync, ready)
            assert self.hands.prepare_global(sync) is None, "a first global is converted before training"
        self.take(sync, ready, True, "loaded as the parameters")
        return NOTHING if self.hands.first_loaded else [APPLY | FIRST, sync[0], sync[1], 0]

    def decide(self, signal_seen):
        for path in self.stale:  # every rank has loaded these since: the broadcast above came after
            shutil.rmtree(path, ignore_errors=True)
        self.stale = []
        if self.committing is not None:
            self.commit()
        if stop_requested(self.s.round_dir):
            return [STOP_FLAG, 0, 0, 0]
        if signal_seen:
            return [SIGNAL_FLAG, 0, 0, 0]
        flags, sync = 0, (0, 0)
        if self.tally.sync is None:
            found = self.next_global()
            if found is not None:
                sync, ready, load = found
                self.take(sync, ready, load, f"applied as θ + {self.s.alpha}·(g - θₛ)" if load else
                          "is the base already: nothing applied, counted from the last sync's start")
                flags = APPLY if load else 0
        # A second snapshot waits for the first one's commit: the sync trains on meanwhile.
        if self.tally.sync is not None and self.committing is None and self.tally.due(self.s, self.clock.now_ms()):
            flags, sync = flags | SNAPSHOT, self.tally.sync
        return [flags, sync[0], sync[1], 0]

    def next_global(self):
        """The next sync to take up, as (sync, ready, load), load False for a global that is the
        base already; None while there is none or while prepare_global's child converts it."""
        if self.importing is not None:
            sync, ready, child = self.importing
            code = child.poll()
            if code is None:
                return None
            self.importing = None
            if code != 0:
                raise refusal_or_crash(code, f"the conversion of sync {sync_name(sync)}'s global")
            return sync, ready, True
        found = next_ready(self.s.round_dir, self.last_sync)
        if found is None:
            return None
        sync, ready = found
        if ready["globalSha256"] == self.base:
            return sync, ready, False
        check_sync(self.s, sync, ready)
        child = self.hands.prepare_global(sync)
        if child is not None:
            self.importing = (sync, ready, child)
            return None
        return sync, ready, True

    def take(self, sync, ready, load, how):
        """The sync's global counts as applied before the next step (rank 0's books); one that is
        the base already (a new attempt of its round) continues the last sync's tally, as the
        reference trainer's does."""
        if load:
            self.tally.applied(sync, ready)
        else:
            self.tally.continued(sync, ready, self.last_tally)
        self.base, self.base_round = ready["globalSha256"], ready["modelRound"]
        log(f"sync {sync_name(sync)}: global of round {ready['modelRound']} ({self.base[:12]}) {how} "
            f"after step {self.tally.first_step + self.tally.steps - 1}")

    def commit(self, wait=False):
        """The snapshot waiting for its checkpoint (or its export) is committed once they are
        complete: state/session.json, which names the checkpoint a restart resumes from, then
        DONE.json, last. out/ is complete before either."""
        c = self.committing
        try:
            out_sha = self.hands.snapshot_done(c, wait)
        except Exception:
            if not self.stop.signal:
                raise
            # The job's signal reached the export child too: the snapshot is lost, state/ stays the last one's.
            log(f"sync {sync_name(c.sync)}: its snapshot's export ended with {self.stop.signal}: not committed")
            self.committing = None
            return
        if out_sha is None:
            return
        done = c.tally.done(self.s, session_manifest(self.s, c.tally), out_sha, c.base,
                            {"runner": self.hands.runner, "precision": self.s.precision})
        write_json_atomic(self.p.session, {"run_id": self.s.run_id, "sync": list(c.sync), "base_sha256": c.base,
                                           "base_model_round": c.base_round, "step": c.step,
                                           "checkpoint": c.checkpoint, "done": done})
        try:
            write_sync_done(self.s.round_dir, c.sync, done)
        except FileNotFoundError:
            log(f"sync {sync_name(c.sync)} was removed before its DONE.json was written")
        self.hands.drop_checkpoints(c.checkpoint)
        self.committing = None
        log(f"sync {sync_name(c.sync)}: snapshot at step {c.step}: {done['steps']} steps, applied staleness "
            f"{done['appliedStaleness']}, busy {done['busyMs']} ms")

    def rewrite_lost_done(self):
        """A restart: state/ was written before the last snapshot's DONE.json, which a crash may have
        lost. The agent removes the syncs it is done with, maybe right now: a sync gone needs none."""
        d = sync_dir(self.s.round_dir, self.last_sync)
        if os.path.isdir(d) and not os.path.exists(os.path.join(d, "DONE.json")):
            try:
                write_sync_done(self.s.round_dir, self.last_sync, self.s.state["done"])
                log(f"wrote the lost DONE.json of sync {sync_name(self.last_sync)} again from state/")
            except FileNotFoundError:
                log(f"sync {sync_name(self.last_sync)} was removed while its DONE.json was written again")

    def end_children(self):
        """STOP or a signal: a conversion or an export still running is of no use any more."""
        for child in (self.importing[2] if self.importing else None, self.committing.child if self.committing else None):
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()

    # ------------------------------------------------ every rank: the decision carried out

    def act(self, step, decision):
        flags, r, a, code = (int(x) for x in decision)
        sync = (r, a)
        if flags & FAIL:
            if self.failure is not None:
                raise self.failure
            if code in (EXIT_BAD_SPEC, EXIT_BAD_GLOBAL):
                raise Refusal(code, f"rank 0 refused at step {step}: its log says why")
            raise RuntimeError(f"rank 0 failed at step {step}: its log says why")
        if flags & (STOP_FLAG | SIGNAL_FLAG):
            self.outcome = EXIT_OK if flags & STOP_FLAG else EXIT_INTERRUPTED
            if self.lead:
                self.end_children()
                log(f"STOP: exit 0 after step {step}" if flags & STOP_FLAG else
                    f"{self.stop.signal or 'a signal'}: exit 75 after step {step}; state/ keeps the snapshot of sync "
                    f"{sync_name(self.last_sync) if self.last_sync else '(none yet)'}")
            self.hands.end_loop()
            return False
        if flags & APPLY:
            self.apply(sync, first=bool(flags & FIRST))
            if self.lead:
                self.stale += self.hands.global_scratch(sync)
        if flags & SNAPSHOT:
            self.snapshot(step, sync)
        return True

    def apply(self, sync, first):
        """The sync's global at this step boundary: the first loaded as θ, a later one applied as
        θ <- θ + α·(g - θₛ), in F32 tensor by tensor from a host copy of θ taken before the framework
        loaded g into the parameters (each rank its own shards); then the optimizer's main
        parameters follow. AdamW's moments are kept, as the reference trainer keeps them."""
        import torch
        params = self.hands.named_params()
        theta = None if first else self.hands.host_copy()
        if not first and (self.snap is None or set(self.snap) != set(theta)):
            raise RuntimeError("θₛ does not cover this rank's parameters: no snapshot since the first sync?")
        self.hands.load_global(sync)
        if not first:
            with torch.no_grad():
                for name, t in params:
                    g = t.detach().to(torch.float32)
                    snap = self.snap[name].to(t.device, torch.float32)
                    t.copy_(theta[name].to(t.device, torch.float32) + self.s.alpha * (g - snap))
        self.hands.reload_main()

    def snapshot(self, step, sync):
        """The sync's snapshot: out/model.safetensors and the framework's checkpoint in state/
        (Hands.snapshot), θₛ its host copy; rank 0 commits it once both are complete."""
        out = os.path.join(sync_dir(self.s.round_dir, sync), "out", "model.safetensors") if self.lead else None
        checkpoint, out_sha, child = self.hands.snapshot(step, sync, out)
        self.snap = self.hands.host_copy()
        if self.lead:
            self.committing = argparse.Namespace(sync=sync, tally=self.tally, step=step, checkpoint=checkpoint,
                                                 out_sha=out_sha, child=child, base=self.base, base_round=self.base_round)
            self.last_sync, self.last_tally = sync, self.tally
            self.tally = SyncTally(step + 1, self.s.cursor, 0, started_ms=self.clock.now_ms())


# ---------------------------------------------------------------- the session: Megatron-Bridge

class MbHands(Hands):
    """Megatron-Bridge's hands, from its callback's CallbackContext [MB-cb] (model chunks, optimizer,
    state), set by mb_session's callback before each call. UNVERIFIED: the calls are from [MB-bridge],
    [MB-train] and [MCORE-opt], none has run."""
    runner = "megatron-bridge"

    def __init__(self, s, p, bridge):
        self.s, self.p, self.bridge, self.context = s, p, bridge, None

    def named_params(self):
        return [(f"{i}.{name}", t) for i, chunk in enumerate(self.context.model) for name, t in chunk.named_parameters()]

    def hf_dir(self, sync):
        return os.path.join(self.p.hf_global, sync_name(sync))

    def prepare_global(self, sync):
        # The bridge's loader reads an HF model directory: the session's config.json and the sync's global.
        hf_input_dir(self.s, argparse.Namespace(hf_in=self.hf_dir(sync), hf_config=self.p.config, hf_weights=os.path.join(
            sync_dir(self.s.round_dir, sync), "global", "model.safetensors")))
        return None

    def global_scratch(self, sync):
        return [self.hf_dir(sync)]

    def load_global(self, sync):
        # HF tensors -> each rank's TP/PP shards, copied into the parameters in place [MB-bridge], the
        # conversion the round mode's import does (to_megatron_model loads through it).
        self.bridge.load_hf_weights(self.context.model, self.hf_dir(sync))

    def reload_main(self):
        # The distributed optimizer's F32 main shards from the (bf16) model parameters [MCORE-opt].
        self.context.optimizer.reload_model_params()

    def snapshot(self, step, sync, out_path):
        writer = OutWriter(self.s, out_path) if out_path else None
        # Collective: every rank takes part in the TP/PP gathers and gets whole HF tensors [MB-bridge];
        # the round mode's export (export_ckpt) writes through the same stream.
        for name, tensor in self.bridge.export_hf_weights(self.context.model, cpu=True, show_progress=False):
            if writer is not None:
                writer.put(name, tensor)
        # Megatron's own save, at the end of this iteration, into state/ [MB-train]: the callback sets
        # save_interval back to 0 when the next step starts.
        self.context.state.cfg.checkpoint.save_interval = 1
        return self.iter_dir(step), writer.finish() if writer else None, None

    def iter_dir(self, step):
        return os.path.join(self.p.ckpt, f"iter_{step:07d}")  # Megatron's checkpoint name [MB-ckpt]

    def snapshot_done(self, commit, wait):
        # The save ran before this step boundary's callback (or before the loop ended).
        if not os.path.isdir(commit.checkpoint):
            raise RuntimeError(f"Megatron did not save the snapshot's checkpoint {commit.checkpoint} (save_interval = 1)")
        return commit.out_sha

    def drop_checkpoints(self, keep):
        for name in os.listdir(self.p.ckpt):
            if name.startswith("iter_") and os.path.join(self.p.ckpt, name) != keep:
                shutil.rmtree(os.path.join(self.p.ckpt, name), ignore_errors=True)

    def end_loop(self):
        # The loop runs while train_state.step < train_iters and counts this step after the callbacks
        # [MB-train]; no exit signal handler, so no checkpoint: state/ stays the last snapshot's.
        self.context.state.cfg.train.train_iters = self.context.state.train_state.step + 1


def mb_session(s, p, stop, first):
    """--session-dir with Megatron-Bridge: pretrain() [MB-entry] for nemo.session_steps iterations,
    from state/'s checkpoint on a resume (else the callback loads the first global into the model
    Megatron initialised), with a callback that drives SessionControl."""
    from megatron.bridge.training.callbacks import Callback  # [MB-cb]
    from megatron.bridge.training.gpt_step import forward_step
    from megatron.bridge.training.pretrain import pretrain

    bridge = mb_bridge(config_path=s.config_path)
    hands = MbHands(s, p, bridge)
    control = SessionControl(s, p, stop, hands, rank() == 0, first)

    class Session(Callback):
        def on_train_start(self, context):
            hands.context = context
            context.state.cfg.checkpoint.save_interval = 0  # no save but a snapshot's
            control.start(context.state.train_state.step)

        def on_train_step_start(self, context):
            hands.context = context
            context.state.cfg.checkpoint.save_interval = 0
            control.step_starts()

        def on_train_step_end(self, context):
            hands.context = context
            loss = (context.loss_dict or {}).get("lm loss")  # the last pipeline stage's only
            control.step_ended(mb_finished_step(context), float(loss) if loss is not None else None)

    cfg = mb_config(s, p, bridge, session={"resume_step": s.state["step"] if s.state else None})
    try:
        pretrain(cfg, forward_step, callbacks=[Session()])  # [MB-entry]
    except SystemExit as e:  # Megatron may sys.exit(0) when its loop ends
        if e.code not in (None, 0):
            raise
    return control.finish()


# ---------------------------------------------------------------- the session: NeMo 2.0

def import_dir(p, sync):
    return os.path.join(p.imports, sync_name(sync))


def export_result(p, sync):
    return os.path.join(p.exports, f"{sync_name(sync)}.json")


class Nemo2Hands(Hands):
    """NeMo 2.0's hands, from its Lightning callback (trainer, pl_module). NeMo converts HF weights
    only from and to checkpoints (import_ckpt, export_ckpt [NEMO2-api]), so on rank 0 a child
    process runs the round mode's import (a sync's global) or export (a snapshot) with a world of
    one while the ranks train on; a converted global is loaded as RestoreConfig's weights-only
    restore loads one [NEMO2-strategy]. UNVERIFIED: none of it has run."""
    runner = "nemo2"

    def __init__(self, s, p, first_loaded):
        self.s, self.p, self.first_loaded = s, p, first_loaded
        self.trainer = self.module = None

    def named_params(self):
        return list(self.module.named_parameters())

    def prepare_global(self, sync):
        return spawn_session_child(self.s, "import", sync)

    def global_scratch(self, sync):
        return [import_dir(self.p, sync), os.path.join(self.p.hf_global, sync_name(sync))]

    def load_global(self, sync):
        # The sharded load of the imported checkpoint's weights into each rank's shards, as
        # MegatronStrategy.selective_restore does for a RestoreConfig; load_model_state_dict then
        # refreshes the optimizer's main parameters from them [NEMO2-strategy].
        strategy = self.trainer.strategy
        checkpoint = strategy.load_checkpoint(import_dir(self.p, sync), selective_restore=True)
        strategy.load_model_state_dict(checkpoint, strict=True)

    def reload_main(self):
        for optimizer in self.trainer.strategy.optimizers:  # McoreDistributedOptimizer [MCORE-opt]
            optimizer.reload_model_params()

    def snapshot(self, step, sync, out_path):
        path = os.path.join(self.p.ckpt, f"snapshot-step{step}")
        self.trainer.save_checkpoint(path)  # collective, and complete on return (nemo2_pretrain saves synchronously)
        child = spawn_session_child(self.s, "finalize", sync, path) if out_path else None
        return path, None, child

    def snapshot_done(self, commit, wait):
        code = commit.child.wait() if wait else commit.child.poll()
        if code is None:
            return None
        if code != 0:
            raise refusal_or_crash(code, f"the export of sync {sync_name(commit.sync)}'s snapshot")
        with open(export_result(self.p, commit.sync)) as f:
            return json.load(f)["outSha256"]

    def drop_checkpoints(self, keep):
        for name in os.listdir(self.p.ckpt):
            if name.startswith("snapshot-step") and os.path.join(self.p.ckpt, name) != keep:
                shutil.rmtree(os.path.join(self.p.ckpt, name), ignore_errors=True)

    def end_loop(self):
        self.trainer.should_stop = True  # Lightning ends fit() after this batch, as the round mode's budget stop


def spawn_session_child(s, phase, sync, checkpoint=None):
    """A child of rank 0 running session_child: the round mode's import or finalize on one sync, in
    a world of one away from the job's torch.distributed and Slurm task variables, as the round
    mode runs them as one-task job steps."""
    dist = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in dist}
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    argv = [sys.executable, os.path.realpath(__file__), "--session-dir", s.round_dir, "--nemo2", "--phase", phase,
            "--sync", sync_name(sync)] + (["--checkpoint", checkpoint] if checkpoint else [])
    return subprocess.Popen(argv, env=env)


def session_child(args):
    """--session-dir DIR --nemo2 --phase import|finalize --sync R.A [--checkpoint PATH]: the session's
    own steps (spawn_session_child), never the agent's. import: the sync's global -> a NeMo checkpoint
    in state/imports/R.A (nemo2_import). finalize: a snapshot's checkpoint -> HF (nemo2_export) ->
    syncs/R.A/out/model.safetensors (hf_to_out), its SHA-256 in state/exports/R.A.json."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):  # the job's signal, or the parent's terminate(), ends a child
        signal.signal(sig, signal.SIG_DFL)
    s = open_session(args.session_dir, config_from_state=True)
    p = session_paths(s, nemo2=True)
    m = SYNC_NAME.match(args.sync)
    if not m or args.phase not in ("import", "finalize") or (args.phase == "finalize") != bool(args.checkpoint):
        raise bad_spec("--sync R.A with --phase import, or with --phase finalize --checkpoint PATH")
    sync = (int(m[1]), int(m[2]))
    where = sync_dir(s.round_dir, sync)
    if args.phase == "import":
        nemo2_import(s, argparse.Namespace(hf_in=os.path.join(p.hf_global, args.sync), hf_config=p.config,
                                           hf_weights=os.path.join(where, "global", "model.safetensors"),
                                           init=import_dir(p, sync)))
        return EXIT_OK
    q = argparse.Namespace(hf_out=os.path.join(p.exports, args.sync), out=os.path.join(where, "out"))
    shutil.rmtree(q.hf_out, ignore_errors=True)
    nemo2_export(s, q, args.checkpoint)
    write_json_atomic(export_result(p, sync), {"outSha256": hf_to_out(s, q), "checkpoint": args.checkpoint})
    shutil.rmtree(q.hf_out, ignore_errors=True)
    return EXIT_OK


def nemo2_first_global(s, p, first, stop):
    """NeMo 2.0, a fresh start: rank 0 converts the first sync's global before training and names it
    in state/first-<job>.json; the job's other tasks wait for that file (no torch.distributed yet).
    Returns ((sync, ready), the converted checkpoint), which the framework loads at its start, or
    None when a signal ended the wait or the conversion."""
    job = f"{os.environ.get('SLURM_JOB_ID', 'local')}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    mark = os.path.join(p.scratch, f"first-{job}.json")
    if rank() == 0:
        sync, ready = first
        check_sync(s, sync, ready)
        code = spawn_session_child(s, "import", sync).wait()
        if code != 0 and stop.signal:
            return None
        if code != 0:
            raise refusal_or_crash(code, f"the conversion of sync {sync_name(sync)}'s global")
        write_json_atomic(mark, {"sync": list(sync), "ready": ready})
    else:
        deadline = time.monotonic() + FIRST_WAIT_S
        while not os.path.exists(mark):
            if stop.signal:
                return None
            if time.monotonic() > deadline:
                raise RuntimeError(f"rank 0 wrote no {mark} in {FIRST_WAIT_S} s")
            time.sleep(READY_POLL_S)
    with open(mark) as f:
        m = json.load(f)
    sync = tuple(m["sync"])
    return (sync, m["ready"]), import_dir(p, sync)


def nemo2_session(s, p, stop, first):
    """--session-dir with NeMo 2.0: llm.pretrain for nemo.session_steps steps, from state/'s
    checkpoint on a resume (full state: weights, AdamW, step), else from the first global converted
    before training (weights only), with a Lightning callback that drives SessionControl."""
    import lightning.pytorch as pl
    from nemo import lightning as nl

    if s.state is not None:
        resume, hands = nl.AutoResume(resume_from_path=s.state["checkpoint"]), Nemo2Hands(s, p, first_loaded=False)
    else:
        converted = nemo2_first_global(s, p, first, stop)
        if converted is None:
            log(f"{stop.signal} while the first global was converted: exit 75")
            return EXIT_INTERRUPTED
        first, path = converted
        resume = nl.AutoResume(restore_config=nl.RestoreConfig(path=path, load_optim_state=False), resume_if_exists=False)
        hands = Nemo2Hands(s, p, first_loaded=True)
    control = SessionControl(s, p, stop, hands, rank() == 0, first)

    class Session(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            hands.trainer, hands.module = trainer, pl_module
            control.start(trainer.global_step)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            control.step_starts()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # UNVERIFIED, as the round mode's
            control.step_ended(trainer.global_step, float(loss) if loss is not None else None)

    try:
        nemo2_pretrain(s, p, s.session_steps, Session(), resume)
    except Refusal:
        raise
    except Exception:
        if not stop.signal:
            raise
        # Lightning ends fit() with an exception on SIGTERM; state/ is the last snapshot's all the same.
        log(f"{stop.signal}: exit 75; state/ keeps the last snapshot")
        return EXIT_INTERRUPTED
    return control.finish()


# ---------------------------------------------------------------- the session: entry

def session_plan(s, nemo2, world_size):
    """--session-dir --check-spec: what the session will do, as JSON."""
    dp = data_parallel(s, world_size)
    per_sync, st = s.planned_steps, s.state
    _, manifest_sha = data_manifest(s)
    return {
        "ok": True, "mode": "persistent", "backend": "nemo2" if nemo2 else "megatron-bridge", "run_id": s.run_id,
        "seed": s.seed, "spec_version": s.version, "budget": budget_json(s), "alpha": s.alpha, "max_steps": s.max_steps,
        "steps_per_sync": per_sync, "tokens_per_sync": per_sync * s.batch_size * s.seq_len if per_sync else None,
        "session_steps": s.session_steps, "global_batch_size": s.batch_size, "micro_batch_size": s.micro_batch,
        "seq_len": s.seq_len, "lr": s.lr, "warmup_steps": s.warmup_steps, "precision": s.precision,
        "tensor_parallel": s.tp, "pipeline_parallel": s.pp, "data_parallel": dp, "output_dtype": s.output_dtype,
        "model": model_json(s.config) if s.config else None, "data_tokens": s.token_count,
        "dataManifestSha256": manifest_sha,
        "resume": {"step": st["step"], "sync": sync_name(st["sync"])} if st else None,
        "loop": [f"resume: state/ at step {st['step']}, sync {sync_name(st['sync'])} done" if st else
                 "wait: the first syncs/<round>.<attempt>/READY.json, loaded as the parameters",
                 f"apply: a later global g as θ + {s.alpha}·(g - θₛ) at the next step boundary",
                 f"snapshot: each sync after {steps_text(s)} from the last snapshot: "
                 f"out/model.safetensors ({s.output_dtype}), state/, DONE.json",
                 "stop: STOP -> exit 0; SIGTERM/SIGUSR1 -> exit 75, state/ kept at the last snapshot"]}


def run_session(s, nemo2, stop, wait_s, train=None):
    """--session-dir: the persistent trainer. Every task of the job runs this; before the framework
    starts, each waits for the first READY.json on its own (a fresh start) and writes the same
    Megatron index; rank 0 keeps the session's config in state/. `train(s, p, stop, first)` is the
    framework's loop: mb_session or nemo2_session (the tests give a plain-PyTorch stand-in)."""
    p = session_paths(s, nemo2)
    os.makedirs(p.scratch, exist_ok=True)
    s.data_prefix = s.prefix_path or p.data_prefix
    if s.tokens_path:
        write_megatron_index(s.tokens_path, p.data_prefix, s.cursor, s.token_count)
    first = None
    if s.state is None:
        first = wait_first_ready(s, stop, wait_s)
        if not isinstance(first, tuple):
            return first
        s.config_path = session_config_path(s.round_dir, first[0])
        s.config = load_pinned_config(s.config_path, s)
        if rank() == 0:
            with open(s.config_path, "rb") as f:
                write_atomic(p.config, f.read())
    return (train or (nemo2_session if nemo2 else mb_session))(s, p, stop, first)


def session_main(args, stop):
    if args.sync is not None:
        return session_child(args)
    if args.phase is not None:
        raise bad_spec("--phase is a round's (--round-dir): a session runs its own steps")
    s = open_session(args.session_dir)
    if args.check_spec:
        print(json.dumps(session_plan(s, args.nemo2, args.world_size), indent=2))
        return EXIT_OK
    slurm_to_torch_env()
    session_plan(s, args.nemo2, int(os.environ.get("WORLD_SIZE", "1")))  # the batch against the GPUs (64)
    return run_session(s, args.nemo2, stop, args.sync_wait_s)


# ---------------------------------------------------------------- main

def run_phase(phase, s, nemo2, stop):
    p = paths(s, nemo2)
    s.data_prefix = s.prefix_path or p.data_prefix
    if phase in ("import", "all"):
        prepare_scratch(s, p)
        if s.tokens_path:
            write_megatron_index(s.tokens_path, p.data_prefix, s.cursor, s.token_count)
        if not os.path.exists(p.imported):
            (nemo2_import if nemo2 else mb_import)(s, p)
            write_json_atomic(p.imported, {"path": p.init, "spec_sha256": s.spec_sha256})
        if stop.signal:
            return EXIT_INTERRUPTED
    if phase in ("train", "all"):
        if not os.path.exists(p.imported):
            raise bad_spec(f"{p.imported} is missing: run --phase import first")
        if os.path.exists(p.trained):
            log("training already finished for this spec.json")
        else:
            code = (nemo2_train if nemo2 else mb_train)(s, p, stop)
            if code != EXIT_OK:
                return code
    if phase in ("finalize", "all") and rank() == 0:
        return finalize(s, p, nemo2)
    return EXIT_OK


def main(argv=None):
    stop = StopFlag()  # first, so an early signal still ends in exit 75, not a kill
    ap = Parser("nemo_shard", description=__doc__.split("\n")[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--round-dir", help="one shard of a round")
    where.add_argument("--session-dir", help="the persistent trainer of an overlapped run (contract version 3)")
    ap.add_argument("--check-spec", action="store_true", help="validate and print the plan; no NeMo import")
    ap.add_argument("--phase", choices=("import", "train", "finalize", "all"), help="a round's phase (default all)")
    ap.add_argument("--nemo2", action="store_true", help="NeMo 2.0 (nemo.collections.llm) instead of Megatron-Bridge")
    ap.add_argument("--world-size", type=int, help="with --check-spec: check batch sizes against this many GPUs")
    ap.add_argument("--sync-wait-s", type=float, default=3600.0, help="--session-dir: how long to wait for the first READY.json")
    ap.add_argument("--sync", help=argparse.SUPPRESS)  # a session's own child steps (spawn_session_child)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)  # usage errors and a big-endian host exit 64
    try:
        if args.session_dir is not None:
            return session_main(args, stop)  # no Megatron exit handler in a session: USR1 stays ours
        if args.sync is not None:
            raise bad_spec("--sync belongs to --session-dir")
        stop.relay_usr1_as_term = not args.nemo2
        phase = args.phase or "all"
        s = open_round(args.round_dir)
        if args.check_spec:
            print(json.dumps(plan(s, args.nemo2, args.world_size), indent=2))
            return EXIT_OK
        slurm_to_torch_env()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if phase == "all" and world > 1:
            raise bad_spec("--phase all runs in one process; with several tasks run import, train, finalize as steps")
        plan(s, args.nemo2, world)
        return run_phase(phase, s, args.nemo2, stop)
    except Refusal as e:
        log(str(e))
        return e.code


if __name__ == "__main__":
    sys.exit(main())
