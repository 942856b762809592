#!/usr/bin/env python3
"""Reference trainer (site-agent/trainers/torch_shard.py) against transformers' LlamaForCausalLM.

Same config, same seeded weights (torch_shard's round-0 init, or --weights FILE read by
torch_shard's safetensors reader), same batch, in one process:

  1. logits: both models in eval mode on a slice of the batch; max |ref - hf| in fp32 (the
     verdict) and, on CUDA, under bf16 autocast as well (informational);
  2. training throughput: the reference's own Shard.train_step (AdamW, grad clip 1.0, bf16
     autocast on CUDA, fp32 on CPU), then the same step on LlamaForCausalLM, one model in memory
     at a time; warm-up steps excluded, torch.cuda.synchronize() around the timed steps.

Prints a human summary, then one JSON line last. Exit status: 0 done, 1 logits differ beyond the
tolerance, 2 usage, 3 transformers missing (the reference half still runs and prints),
4 out of memory or another failure of a phase.

  python3 bench/gpu-trainer.py                          # Salamandra-2B shape on CUDA
  python3 bench/gpu-trainer.py --config site-agent/trainers/configs/tiny.json --device cpu

Standard library + torch (+ transformers for the comparison); runs on PyTorch 1.13 (CPU) too.
"""
import argparse, gc, importlib.util, inspect, json, os, sys, time, traceback

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINER = os.path.join(ROOT, "site-agent", "trainers", "torch_shard.py")
DEFAULT_CONFIG = os.path.join(ROOT, "site-agent", "trainers", "configs", "salamandra-2b.json")
FP32_TOL = 1e-3           # absolute, on logits computed in fp32 (TF32 off) by both models
BF16_TOL_REL = 1 / 32     # bf16 autocast: max diff <= max|logit| / 32 (a few bf16 ulps), informational
EXIT_MISMATCH, EXIT_USAGE, EXIT_NO_TRANSFORMERS, EXIT_FAILED = 1, 2, 3, 4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_trainer():
    spec = importlib.util.spec_from_file_location("torch_shard", TRAINER)
    ts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ts)
    return ts


def import_transformers():
    """(module, None) or (None, message): imported only when the comparison is asked for."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from a config: nothing to fetch, and lent GPUs are offline
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401
        return transformers, None
    except ImportError as e:
        return None, (f"transformers is not installed for {sys.executable} ({e}). The comparison "
                      "needs it (pip install transformers, or a GPU image that has it); the reference "
                      "half runs anyway, then this exits 3. --reference-only skips the comparison.")


def is_oom(e):
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (oom and isinstance(e, oom)) or "out of memory" in str(e).lower()


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device):
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if device.type == "cuda" else None


class FixedBatch:
    """Stands in for torch_shard.TokenFile: every step gets the same [batch, seq+1] CPU batch
    (moved to the device by train_step, as real windows are)."""

    def __init__(self, batch):
        self.batch = batch
        self.count = 1 << 62  # the cursor never wraps
        self.sha256 = "0" * 64  # a shuffle key, unused: every step gets the same batch

    def windows(self, starts, length, vocab, refuse):
        assert len(starts) == self.batch.shape[0] and length == self.batch.shape[1]
        return self.batch


# ---------------------------------------------------------------- transformers side

def hf_model(transformers, c, weights, device, attn):
    """LlamaForCausalLM(LlamaConfig(...)) with `weights` (HF names, F32) loaded, on `device`."""
    LlamaConfig, LlamaForCausalLM = transformers.LlamaConfig, transformers.LlamaForCausalLM
    kw = {k: c[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps",
                            "initializer_range")}
    kw.update(hidden_act="silu", head_dim=c["hidden_size"] // c["num_attention_heads"], attention_bias=False,
              mlp_bias=False, attention_dropout=0.0, tie_word_embeddings=False, use_cache=False,
              attn_implementation=attn)
    theta = float(c["rope_theta"])
    fields = set(inspect.signature(LlamaConfig.__init__).parameters) | set(getattr(LlamaConfig, "__annotations__", {}))
    if "rope_parameters" in fields:  # transformers >= 5: rope settings live in one dict
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    else:
        kw.update(rope_theta=theta, rope_scaling=None)
    cfg = LlamaConfig(**kw)
    # Built on the device (torch >= 2.0 device context): HF's own init of 2.25 B weights is slow on a CPU.
    ctx = torch.device(device) if device.type == "cuda" and hasattr(torch.device, "__enter__") else None
    if ctx is not None:
        with ctx:
            model = LlamaForCausalLM(cfg)
    else:
        model = LlamaForCausalLM(cfg)
    model = model.to(device=device, dtype=torch.float32)
    got = getattr(model.config, "_attn_implementation", None)
    if got is not None and got != attn and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
        got = model.config._attn_implementation
    own = {n for n, _ in model.named_parameters()}
    if own != set(weights):
        raise RuntimeError(f"LlamaForCausalLM parameter names differ from torch_shard's: missing "
                           f"{sorted(set(weights) - own)[:5]}, extra {sorted(own - set(weights))[:5]}")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if set(missing) & own or unexpected:
        raise RuntimeError(f"load_state_dict: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    # The rotary frequencies must be the reference's (a config HF read differently shows up here first).
    d = c["hidden_size"] // c["num_attention_heads"]
    want = 1.0 / theta ** (torch.arange(0, d, 2, device=device).float() / d)
    inv = getattr(getattr(model.model, "rotary_emb", None), "inv_freq", None)
    if inv is not None and not torch.allclose(inv.float(), want, rtol=1e-5, atol=0):
        raise RuntimeError("LlamaForCausalLM's rotary inv_freq differs from the reference's (rope_theta not applied?)")
    return model, got


def hf_logits(model, ids):
    return model(input_ids=ids, use_cache=False).logits


def hf_train_step(model, opt, batch_cpu, micro, device, autocast, grad_clip):
    """torch_shard.Shard.train_step, line for line, on LlamaForCausalLM (no schedule: warmup 0)."""
    batch = batch_cpu.to(device)
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for part in batch.split(micro):
        with autocast(device):
            logits = hf_logits(model, part[:, :-1])
        part_loss = F.cross_entropy(logits.float().flatten(0, 1), part[:, 1:].flatten()) * (len(part) / len(batch))
        part_loss.backward()
        loss += part_loss.item()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss


# ---------------------------------------------------------------- phases

def timed(step, warmup, steps, device):
    """Runs warmup + steps training steps; returns (seconds for the timed ones, losses of all)."""
    losses = [step() for _ in range(warmup)]
    sync(device)
    t0 = time.perf_counter()
    losses += [step() for _ in range(steps)]
    sync(device)
    return time.perf_counter() - t0, losses


def compare_logits(ts, transformers, c, weights, ids, device, attn, out):
    """Both models in memory (2 x F32 weights: 18 GB at Salamandra-2B), eval mode, no grad."""
    ref_w = ts.to_device(weights, device, trainable=False)
    model, out["hfAttnImplementation"] = hf_model(transformers, c, weights, device, attn)
    model.eval()
    prev = torch.get_float32_matmul_precision() if hasattr(torch, "get_float32_matmul_precision") else None
    if prev is not None:
        torch.set_float32_matmul_precision("highest")  # no TF32: the fp32 comparison is fp32
    try:
        with torch.no_grad():
            ref = ts.forward(ref_w, c, ids).float()
            hf = hf_logits(model, ids).float()
            out["maxAbsLogitDiff"] = (ref - hf).abs().max().item()
            out["maxAbsLogit"] = ref.abs().max().item()
            out["logitDtype"] = "fp32"
            out["logitTolerance"] = FP32_TOL
            del ref, hf
            if device.type == "cuda":  # what training computes: bf16 autocast over F32 weights
                with ts.autocast(device):
                    ref = ts.forward(ref_w, c, ids).float()
                    hf = hf_logits(model, ids).float()
                out["maxAbsLogitDiffBf16"] = (ref - hf).abs().max().item()
                out["logitToleranceBf16"] = BF16_TOL_REL * ref.abs().max().item()
                del ref, hf
    finally:
        if prev is not None:
            torch.set_float32_matmul_precision(prev)
    out["logitsMatch"] = out["maxAbsLogitDiff"] <= FP32_TOL
    del ref_w, model
    free_memory(device)


def train_reference(ts, c, weights, batch, args, device, out):
    s = argparse.Namespace(lr=args.lr, weight_decay=0.0, batch_size=args.batch, seq_len=args.seq_len,
                           micro_batch=args.micro_batch, warmup_steps=0, grad_clip=1.0, cursor=0,
                           round=1, max_steps=args.steps, planned_steps=args.steps, decay_steps=0, min_lr_ratio=1.0,
                           data_order="sequential")
    reset_peak(device)
    # Shard trains the tensors to_device gives it: on a CPU those are `weights` themselves, which the
    # transformers half must still receive untouched.
    shard = ts.Shard(c, s, weights if device.type == "cuda" else {n: t.clone() for n, t in weights.items()}, device)
    data = FixedBatch(batch)
    secs, losses = timed(lambda: shard.train_step(data), args.warmup, args.steps, device)
    out["refSeconds"], out["refLosses"], out["refPeakGiB"] = secs, losses, peak_gib(device)
    out["refTokensPerS"] = args.steps * args.batch * args.seq_len / secs
    del shard, data
    free_memory(device)


def train_hf(ts, transformers, c, weights, batch, args, device, out):
    reset_peak(device)
    model, out["hfAttnImplementation"] = hf_model(transformers, c, weights, device, args.attn)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    step = lambda: hf_train_step(model, opt, batch, args.micro_batch, device, ts.autocast, 1.0)  # noqa: E731
    secs, losses = timed(step, args.warmup, args.steps, device)
    out["hfSeconds"], out["hfLosses"], out["hfPeakGiB"] = secs, losses, peak_gib(device)
    out["hfTokensPerS"] = args.steps * args.batch * args.seq_len / secs
    del model, opt, step
    free_memory(device)


# ---------------------------------------------------------------- main

def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=DEFAULT_CONFIG, help="HF LlamaConfig-style JSON (default salamandra-2b.json)")
    p.add_argument("--weights", help="safetensors file with HF names (default: torch_shard's seeded round-0 init)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=4, help="sequences per optimizer step (default 4)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default 2048, 8,192 per step, or the "
                                               "config's max_position_embeddings if smaller)")
    p.add_argument("--micro-batch", type=int, default=1,
                   help="sequences per forward/backward (gradient accumulation, as torch_shard's "
                        "micro_batch_size; default 1 keeps Salamandra-2B under ~60 GB)")
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps first (default 3)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0, help="weights seed; the batch uses seed + 1")
    p.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa", help="transformers' attention (default sdpa)")
    p.add_argument("--compare-batch", type=int, default=1, help="sequences for the logits comparison (default 1)")
    p.add_argument("--compare-seq-len", type=int, help="tokens for the logits comparison (default 512 or --seq-len)")
    p.add_argument("--reference-only", action="store_true", help="skip transformers: reference throughput only")
    args = p.parse_args(argv)
    if min(args.batch, args.seq_len or 1, args.micro_batch, args.steps, args.compare_batch,
           args.compare_seq_len or 1) < 1 or args.warmup < 0:
        p.error("--batch, --seq-len, --micro-batch, --steps, --compare-* must be >= 1; --warmup >= 0")
    args.micro_batch = min(args.micro_batch, args.batch)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device (use --device cpu)")
    return args


def summary(out):
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)
    lines = [f"gpu-trainer: {out['config']}, batch {out['batch']} x {out['seqLen']} tokens "
             f"(micro-batch {out['microBatch']}), {out['steps']} timed steps after {out['warmup']} warm-up, "
             f"{out['device']} ({out['gpu'] or 'no GPU'}), torch {out['torch']}, transformers {out['transformers']}"]
    lines.append(f"  reference (torch_shard)  {num(out.get('refTokensPerS'), ',.0f')} tokens/s, "
                 f"peak {num(out.get('refPeakGiB'), '.1f')} GiB")
    if out["transformers"]:
        lines.append(f"  transformers ({out.get('hfAttnImplementation') or out['attn']}) "
                     f"{num(out.get('hfTokensPerS'), ',.0f')} tokens/s, peak {num(out.get('hfPeakGiB'), '.1f')} GiB")
    if out.get("ratio") is not None:
        lines.append(f"  ratio reference / transformers = {out['ratio']:.3f} (target >= 0.9: "
                     f"{'met' if out['ratio'] >= 0.9 else 'NOT met'})")
    if out.get("maxAbsLogitDiff") is not None:
        lines.append(f"  logits, fp32, {out['compareBatch']} x {out['compareSeqLen']} tokens: max |ref - hf| = "
                     f"{out['maxAbsLogitDiff']:.3g} (max |logit| {out['maxAbsLogit']:.3g}, tolerance {FP32_TOL:g}: "
                     f"{'match' if out['logitsMatch'] else 'DIFFER'})")
    if out.get("maxAbsLogitDiffBf16") is not None:
        lines.append(f"  logits, bf16 autocast: max |ref - hf| = {out['maxAbsLogitDiffBf16']:.3g} "
                     f"(informational; max|logit|/32 = {out['logitToleranceBf16']:.3g})")
    if out.get("refLosses") and out.get("hfLosses"):
        lines.append(f"  loss, first / last step: reference {out['refLosses'][0]:.5f} / {out['refLosses'][-1]:.5f}, "
                     f"transformers {out['hfLosses'][0]:.5f} / {out['hfLosses'][-1]:.5f}")
    if out.get("error"):
        lines.append(f"  ERROR: {out['error']}")
    return "\n".join(lines)


def main(argv=None):
    args = parse(argv)
    device = torch.device(args.device)
    ts = load_trainer()
    try:
        c = ts.load_config(args.config, ts.bad_spec)
    except ts.Refusal as e:
        log(f"gpu-trainer: {e}")
        return EXIT_USAGE
    if args.seq_len is None:
        args.seq_len = min(2048, c["max_position_embeddings"])
    if args.compare_seq_len is None:
        args.compare_seq_len = min(512, args.seq_len)
    if max(args.seq_len, args.compare_seq_len) > c["max_position_embeddings"]:
        log(f"gpu-trainer: --seq-len/--compare-seq-len exceed max_position_embeddings {c['max_position_embeddings']}")
        return EXIT_USAGE

    transformers, missing = (None, None) if args.reference_only else import_transformers()
    if missing:
        log(f"gpu-trainer: {missing}")
    out = {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "torch": torch.__version__, "transformers": getattr(transformers, "__version__", None),
           "refTokensPerS": None, "hfTokensPerS": None, "ratio": None, "maxAbsLogitDiff": None,
           "config": os.path.relpath(os.path.abspath(args.config), ROOT), "batch": args.batch, "seqLen": args.seq_len,
           "microBatch": args.micro_batch, "steps": args.steps, "warmup": args.warmup, "device": args.device,
           "precision": "bf16 autocast, F32 master weights" if device.type == "cuda" else "fp32",
           "attn": args.attn, "compareBatch": min(args.compare_batch, args.batch),
           "compareSeqLen": min(args.compare_seq_len, args.seq_len), "seed": args.seed}

    t = time.perf_counter()
    if args.weights:
        try:
            weights = ts.read_safetensors(args.weights, ts.tensor_shapes(c), ts.bad_global)
        except ts.Refusal as e:
            log(f"gpu-trainer: {e}")
            return EXIT_USAGE
    else:
        weights = ts.init_weights(c, args.seed, device)
    out["weights"] = args.weights or f"torch_shard.init_weights(seed={args.seed})"
    out["params"] = sum(w.numel() for w in weights.values())
    log(f"gpu-trainer: {out['params']:,} parameters ready in {time.perf_counter() - t:.1f} s")
    gen = torch.Generator().manual_seed(args.seed + 1)
    batch = torch.randint(0, c["vocab_size"], (args.batch, args.seq_len + 1), generator=gen)

    phases = []
    if transformers is not None:
        ids = batch[:out["compareBatch"], :out["compareSeqLen"]].to(device)
        phases.append(("logits comparison", lambda: compare_logits(ts, transformers, c, weights, ids, device,
                                                                   args.attn, out)))
    phases.append(("reference training", lambda: train_reference(ts, c, weights, batch, args, device, out)))
    if transformers is not None:
        phases.append(("transformers training", lambda: train_hf(ts, transformers, c, weights, batch, args,
                                                                 device, out)))
    code = 0
    for name, run in phases:
        t = time.perf_counter()
        log(f"gpu-trainer: {name} ...")
        try:
            run()
        except Exception as e:  # report, keep the JSON line, stop: later phases would hit the same wall
            traceback.print_exc()
            hint = (" (out of memory: try a smaller --micro-batch or --seq-len, or --compare-seq-len)"
                    if is_oom(e) else "")
            out["error"] = f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{hint}"
            code = EXIT_FAILED
            free_memory(device)
            break
        log(f"gpu-trainer: {name} done in {time.perf_counter() - t:.1f} s")

    if out["refTokensPerS"] and out["hfTokensPerS"]:
        out["ratio"] = out["refTokensPerS"] / out["hfTokensPerS"]
    if not code and out.get("logitsMatch") is False:
        code = EXIT_MISMATCH
    if not code and missing:
        code = EXIT_NO_TRANSFORMERS
    print(summary(out), flush=True)
    if missing:
        print(f"  transformers missing: comparison skipped (exit {EXIT_NO_TRANSFORMERS})", flush=True)
    print(json.dumps(out), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
