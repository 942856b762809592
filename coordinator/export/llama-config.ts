/**
 * The model config of an export: a Hugging Face `LlamaConfig` JSON (what `torch_shard.py` and the
 * NeMo recipe train), the tensor names and shapes it implies (`LlamaForCausalLM`'s), and the
 * `config.json` and `generation_config.json` written beside the weights.
 */
import type { SafetensorsTensorInfo } from '../../aggregation/index.js';
import { ExportError } from './errors.js';

/** What fixes a Llama model's tensors. */
export interface LlamaShape {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly tied: boolean;
}

/** The dtypes an export writes and `config.json`'s `torch_dtype` for each. */
export const TORCH_DTYPES = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' } as const;

/** HF LlamaConfig's defaults for the keys a config may leave out, written out so the file says what loads. */
const LLAMA_DEFAULTS: Readonly<Record<string, unknown>> = {
  hidden_act: 'silu',
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  rope_scaling: null,
  initializer_range: 0.02,
  tie_word_embeddings: false,
  attention_bias: false,
  mlp_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

const positiveInt = (raw: Record<string, unknown>, key: string, file: string): number => {
  const v = raw[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw new ExportError('EXPORT_MODEL_MISMATCH', `model config ${file}: ${key} must be a positive integer, got ${JSON.stringify(v)}`, { key });
  }
  return v;
};

/**
 * Reads a Llama config; a config of another architecture (no `LlamaForCausalLM` in `architectures`
 * and `model_type` not `llama`) is refused with EXPORT_MODEL_MISMATCH.
 */
export function parseLlamaConfig(raw: unknown, file: string): { shape: LlamaShape; raw: Record<string, unknown> } {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ExportError('EXPORT_MODEL_MISMATCH', `model config ${file} is not a JSON object`);
  const c = raw as Record<string, unknown>;
  const archs = Array.isArray(c['architectures']) ? (c['architectures'] as unknown[]) : [];
  if (!archs.includes('LlamaForCausalLM') && c['model_type'] !== 'llama') {
    throw new ExportError('EXPORT_MODEL_MISMATCH', `model config ${file} does not describe a Llama model (architectures ${JSON.stringify(c['architectures'])}, model_type ${JSON.stringify(c['model_type'])}): only LlamaForCausalLM is exported`);
  }
  const heads = positiveInt(c, 'num_attention_heads', file);
  const kvHeads = c['num_key_value_heads'] === undefined ? heads : positiveInt(c, 'num_key_value_heads', file);
  const hiddenSize = positiveInt(c, 'hidden_size', file);
  if (hiddenSize % heads !== 0 || heads % kvHeads !== 0) {
    throw new ExportError('EXPORT_MODEL_MISMATCH', `model config ${file}: hidden_size must divide by num_attention_heads, and those by num_key_value_heads`);
  }
  const shape: LlamaShape = {
    vocabSize: positiveInt(c, 'vocab_size', file),
    hiddenSize,
    intermediateSize: positiveInt(c, 'intermediate_size', file),
    layers: positiveInt(c, 'num_hidden_layers', file),
    heads,
    kvHeads,
    tied: c['tie_word_embeddings'] === true,
  };
  return { shape, raw: c };
}

/** LlamaForCausalLM's tensors for `s`, by name, in the order the trainers write them. */
export function llamaTensors(s: LlamaShape): Map<string, readonly number[]> {
  const h = s.hiddenSize;
  const kv = s.kvHeads * (h / s.heads);
  const out = new Map<string, readonly number[]>([['model.embed_tokens.weight', [s.vocabSize, h]]]);
  for (let n = 0; n < s.layers; n++) {
    const p = `model.layers.${n}.`;
    out.set(`${p}self_attn.q_proj.weight`, [h, h]);
    out.set(`${p}self_attn.k_proj.weight`, [kv, h]);
    out.set(`${p}self_attn.v_proj.weight`, [kv, h]);
    out.set(`${p}self_attn.o_proj.weight`, [h, h]);
    out.set(`${p}mlp.gate_proj.weight`, [s.intermediateSize, h]);
    out.set(`${p}mlp.up_proj.weight`, [s.intermediateSize, h]);
    out.set(`${p}mlp.down_proj.weight`, [h, s.intermediateSize]);
    out.set(`${p}input_layernorm.weight`, [h]);
    out.set(`${p}post_attention_layernorm.weight`, [h]);
  }
  out.set('model.norm.weight', [h]);
  if (!s.tied) out.set('lm_head.weight', [s.vocabSize, h]);
  return out;
}

/**
 * Refuses a checkpoint the config does not describe: a tensor missing, one left over, or a shape
 * that differs (the builtin character model, or a Llama of other sizes). Names up to five.
 */
export function checkDescribes(shape: LlamaShape, tensors: readonly Pick<SafetensorsTensorInfo, 'name' | 'shape'>[], file: string): void {
  const expected = llamaTensors(shape);
  if (!tensors.some((t) => expected.has(t.name))) {
    const names = tensors.slice(0, 4).map((t) => t.name).join(', ');
    throw new ExportError('EXPORT_MODEL_MISMATCH', `model config ${file} does not describe the checkpoint: it holds none of LlamaForCausalLM's tensors (it has ${names}${tensors.length > 4 ? ', …' : ''}), so it is another model, e.g. the builtin character model`);
  }
  const issues: string[] = [];
  const seen = new Set<string>();
  for (const t of tensors) {
    seen.add(t.name);
    const want = expected.get(t.name);
    if (want === undefined) issues.push(`the checkpoint has ${t.name}, which the config has no place for`);
    else if (want.join(',') !== t.shape.join(',')) issues.push(`${t.name} is [${t.shape.join(', ')}], the config says [${want.join(', ')}]`);
  }
  for (const name of expected.keys()) if (!seen.has(name)) issues.push(`the config needs ${name}, the checkpoint has none`);
  if (issues.length > 0) {
    const more = issues.length > 5 ? `; … ${issues.length - 5} more` : '';
    throw new ExportError('EXPORT_MODEL_MISMATCH', `model config ${file} does not describe the checkpoint: ${issues.slice(0, 5).join('; ')}${more}`, { issues: issues.length });
  }
}

/**
 * `config.json`: the pinned config's keys as given, HF's Llama defaults written out for the ones it
 * left out, `torch_dtype` set to the weights' dtype. Keys in the order transformers writes them.
 */
export function hfConfigJson(raw: Readonly<Record<string, unknown>>, dtype: keyof typeof TORCH_DTYPES): Record<string, unknown> {
  const heads = raw['num_attention_heads'] as number;
  const derived = { num_key_value_heads: heads, head_dim: (raw['hidden_size'] as number) / heads };
  const config: Record<string, unknown> = { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...LLAMA_DEFAULTS, ...derived, ...raw };
  config['torch_dtype'] = TORCH_DTYPES[dtype];
  return Object.fromEntries(Object.keys(config).sort().map((k) => [k, config[k]]));
}

/** `generation_config.json`: the token ids generation needs, from `config.json`. */
export function generationConfigJson(config: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { _from_model_config: true };
  for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (config[k] !== undefined && config[k] !== null) out[k] = config[k];
  return out;
}
