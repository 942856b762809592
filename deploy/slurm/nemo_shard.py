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

Exit codes: 0 done; 64 bad spec or usage; 65 global weights invalid or mismatched; 75 interrupted
with a resumable checkpoint in scratch/ (resubmit); anything else a crash.

NOT BUILT: the persistent mode of overlapped rounds (contract version 3, --session-dir). This
recipe trains round directories only; docs/nemo.md, "Overlapped rounds (persistent mode)", has an
UNVERIFIED design, and site-agent/trainers/torch_shard.py --session-dir is the working trainer.
The session's contract helpers are already in fedhpc_round_dir.py.

HONESTY NOTE. This file has never run against NeMo or Megatron-Bridge: fedhpc's CI has no GPU and
no NeMo. Only the dry mode is tested here (test/unit/trainers/nemo-recipe.test.ts), the budget's
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
"""
import argparse, hashlib, json, math, os, signal, socket, struct, subprocess, sys, time

# The round-directory contract (spec.json, global/, progress.jsonl, DONE.json, exit codes) is shared
# with the reference trainer: fedhpc_round_dir.py, beside this file (mount this directory whole).
_HERE = os.path.dirname(os.path.realpath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from fedhpc_round_dir import (  # noqa: E402
    EXIT_INTERRUPTED, EXIT_OK, ITEM_BYTES, TOKEN_BYTES, Parser, Refusal, StepClock, append_progress, bad_spec,
    budget_allows, check_global_sha256, check_safetensors_header, load_round_config, manifest_sha256, need,
    pinned_sha256, planned_or_estimate, progress_span, read_spec, safetensors_header, sha256_file, tensor_shapes,
    token_count, truncate_progress, validate_spec, write_atomic, write_done, write_json_atomic)

PRECISIONS = ("bf16_mixed", "fp32")
# Under a time budget without train.max_steps the frameworks still want an iteration count: one no
# budget reaches, so the budget stops the loop. Their schedules here are warm-up then constant.
UNCAPPED_ITERS = 10 ** 9


def log(message):
    print(f"nemo_shard: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- spec (the reference trainer's fields + nemo)

def validate_nemo_spec(spec, round_dir):
    """spec.json: the fields every trainer reads (fedhpc_round_dir.validate_spec; the micro-batch
    defaults to 1 here, Megatron's unit of work), plus this recipe's data.megatron_prefix and an
    optional `nemo` block."""
    s = validate_spec(spec, round_dir, micro_batch_default=1)
    data, nemo = spec.get("data"), spec.get("nemo", {})
    if not isinstance(nemo, dict):
        raise bad_spec("spec.json: nemo must be an object when present")
    opt_str = (str, type(None))
    s.megatron_prefix = need(data, "megatron_prefix", opt_str, where="data")
    s.tp = need(nemo, "tensor_parallel", int, lambda v: v >= 1, 1, where="nemo")
    s.pp = need(nemo, "pipeline_parallel", int, lambda v: v >= 1, 1, where="nemo")
    s.precision = need(nemo, "precision", str, lambda v: v in PRECISIONS, "bf16_mixed", where="nemo")
    s.tokenizer_dir = need(nemo, "tokenizer_dir", opt_str, where="nemo")
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


def plan(s, nemo2, world_size):
    p = paths(s, nemo2)
    dp = world_size // (s.tp * s.pp) if world_size else None
    if world_size and (world_size % (s.tp * s.pp) or s.batch_size % (s.micro_batch * dp)):
        raise bad_spec(f"batch_size {s.batch_size} must be a multiple of micro_batch {s.micro_batch} x data-parallel "
                       f"{world_size}/(tp {s.tp} x pp {s.pp})")
    _, manifest_sha = data_manifest(s)
    steps = s.planned_steps  # None: a time budget without a cap decides
    budget = ({"seconds": s.budget_seconds} if s.budget_seconds is not None else
              {"tokens": s.budget_tokens} if s.budget_tokens is not None else None)
    return {
        "ok": True, "backend": "nemo2" if nemo2 else "megatron-bridge", "round": s.round, "seed": s.seed,
        "spec_version": s.version, "budget": budget, "max_steps": s.max_steps, "train_iters": train_iters(s),
        "steps": steps, "global_batch_size": s.batch_size, "micro_batch_size": s.micro_batch,
        "seq_len": s.seq_len, "tokens": steps * s.batch_size * s.seq_len if steps else None, "lr": s.lr,
        "warmup_steps": s.warmup_steps, "precision": s.precision, "tensor_parallel": s.tp,
        "pipeline_parallel": s.pp, "data_parallel": dp, "output_dtype": s.output_dtype,
        "model": {k: s.config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                             "num_key_value_heads", "vocab_size")},
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
    ap.add_argument("--round-dir", required=True)
    ap.add_argument("--check-spec", action="store_true", help="validate and print the plan; no NeMo import")
    ap.add_argument("--phase", choices=("import", "train", "finalize", "all"), default="all")
    ap.add_argument("--nemo2", action="store_true", help="NeMo 2.0 (nemo.collections.llm) instead of Megatron-Bridge")
    ap.add_argument("--world-size", type=int, help="with --check-spec: check batch sizes against this many GPUs")
    args = ap.parse_args(argv)  # usage errors and a big-endian host exit 64
    try:
        stop.relay_usr1_as_term = not args.nemo2
        s = open_round(args.round_dir)
        if args.check_spec:
            print(json.dumps(plan(s, args.nemo2, args.world_size), indent=2))
            return EXIT_OK
        slurm_to_torch_env()
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if args.phase == "all" and world > 1:
            raise bad_spec("--phase all runs in one process; with several tasks run import, train, finalize as steps")
        plan(s, args.nemo2, world)
        return run_phase(args.phase, s, args.nemo2, stop)
    except Refusal as e:
        log(str(e))
        return e.code


if __name__ == "__main__":
    sys.exit(main())
