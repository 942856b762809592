import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSafetensorsWriter, memorySink } from '../../../aggregation/index.js';

// The NeMo / Megatron-Bridge recipe (deploy/slurm/) cannot train here: no GPU, no NeMo. What can
// be checked without them is checked: the entry compiles, the template renders to valid bash and
// forwards Slurm's warning signal, and the dry mode (--check-spec, standard library only) gives
// the round-dir contract's exit codes.
const SLURM_DIR = fileURLToPath(new URL('../../../deploy/slurm/', import.meta.url));
const ENTRY = join(SLURM_DIR, 'nemo_shard.py');
const TEMPLATE = join(SLURM_DIR, 'nemo-shard.sbatch');
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const RUN_TIMEOUT_MS = 20_000;

/** A tiny Llama (HF config.json fields), small enough to write in memory. */
const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  vocab_size: 32,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};

function llamaTensors(c: typeof CONFIG): [string, number[]][] {
  const h = c.hidden_size;
  const kv = c.num_key_value_heads * (h / c.num_attention_heads);
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocab_size, h]]];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    out.push(
      [`${p}self_attn.q_proj.weight`, [h, h]],
      [`${p}self_attn.k_proj.weight`, [kv, h]],
      [`${p}self_attn.v_proj.weight`, [kv, h]],
      [`${p}self_attn.o_proj.weight`, [h, h]],
      [`${p}mlp.gate_proj.weight`, [c.intermediate_size, h]],
      [`${p}mlp.up_proj.weight`, [c.intermediate_size, h]],
      [`${p}mlp.down_proj.weight`, [h, c.intermediate_size]],
      [`${p}input_layernorm.weight`, [h]],
      [`${p}post_attention_layernorm.weight`, [h]],
    );
  }
  out.push(['model.norm.weight', [h]], ['lm_head.weight', [c.vocab_size, h]]);
  return out;
}

async function globalWeights(): Promise<Uint8Array> {
  const tensors = llamaTensors(CONFIG).map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape }));
  const sink = memorySink();
  const writer = await createSafetensorsWriter(sink, tensors);
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    await writer.writeF32(t.name, new Float32Array(n).map((_, i) => Math.sin(i) * 0.02));
  }
  await writer.finish();
  return sink.bytes();
}

const sha256 = (bytes: Uint8Array | string): string => createHash('sha256').update(bytes).digest('hex');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function checkSpec(roundDir: string, ...extra: string[]): Run {
  const r = spawnSync(PYTHON, [ENTRY, '--round-dir', roundDir, '--check-spec', ...extra], {
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Renders every {{placeholder}}: the agent's with plausible values, the site constants with `values`. */
async function renderTemplate(values: Record<string, string>): Promise<string> {
  const text = await readFile(TEMPLATE, 'utf8');
  return text.replace(/\{\{([a-z_]+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for {{${name}}}`);
    return value;
  });
}

const AGENT_VALUES = {
  directives: ['#SBATCH --job-name=fedhpc-r3', '#SBATCH --partition=gpu', '#SBATCH --account=proj', '#SBATCH --time=01:00:00', '#SBATCH --signal=B:USR1@300', '#SBATCH --requeue'].join('\n'),
  setup: 'module load cuda 2>/dev/null || true\nexport HF_HUB_OFFLINE=1',
  round_dir: "'/scratch/fedhpc/round-3'", // the slurm runner renders it shell-quoted
  job_name: 'fedhpc-r3',
  requeue: '1',
};
const SITE_VALUES = {
  nodes: '1',
  gpus_per_node: '4',
  cpus_per_task: '16',
  container_runtime: 'pyxis',
  container_image: 'nvcr.io#nvidia/nemo:25.09',
  container_mounts: '/scratch:/scratch',
  python: 'python',
  entry: '/opt/fedhpc/deploy/slurm/nemo_shard.py',
  nemo_flags: '',
};

describe('NeMo / Megatron-Bridge recipe (deploy/slurm)', () => {
  let work: string;
  let roundDir: string;
  let spec: Record<string, unknown>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fedhpc-nemo-'));
    roundDir = join(work, 'round-3');
    await mkdir(join(roundDir, 'global'), { recursive: true });
    const weights = await globalWeights();
    await writeFile(join(roundDir, 'global', 'model.safetensors'), weights);
    await writeFile(join(roundDir, 'global', 'config.json'), JSON.stringify(CONFIG));
    const tokens = new Uint32Array(4096).map((_, i) => (i * 7) % CONFIG.vocab_size);
    await writeFile(join(roundDir, 'tokens.u32'), new Uint8Array(tokens.buffer));
    spec = {
      round: 3,
      seed: 7,
      global_sha256: sha256(weights),
      output_dtype: 'F32',
      train: { max_steps: 5, lr: 3e-4, batch_size: 8, seq_len: 32, micro_batch_size: 2, warmup_steps: 2 },
      data: { train_tokens: 'tokens.u32', cursor: 0 },
    };
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const writeSpec = (value: unknown): Promise<void> => writeFile(join(roundDir, 'spec.json'), JSON.stringify(value));

  it('compiles with python3 -m py_compile', async () => {
    const cache = join(work, 'pycache');
    const r = spawnSync(PYTHON, ['-m', 'py_compile', ENTRY], {
      encoding: 'utf8',
      timeout: RUN_TIMEOUT_MS,
      env: { ...process.env, PYTHONPYCACHEPREFIX: cache },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('renders the sbatch template to a script that bash -n accepts', async () => {
    const script = await renderTemplate({ ...AGENT_VALUES, ...SITE_VALUES });
    expect(script).not.toMatch(/\{\{/);
    expect(script).toContain('#SBATCH --gpus-per-node=4');
    const path = join(work, 'nemo-shard.rendered.sbatch');
    await writeFile(path, script);
    const r = spawnSync('bash', ['-n', path], { encoding: 'utf8', timeout: RUN_TIMEOUT_MS });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('forwards USR1 to the trainer, exits with its code 75 and requeues the job', async () => {
    // Fake srun / scontrol, and a fake entry that saves a "checkpoint" on USR1 and exits 75.
    const bin = join(work, 'fakebin');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'srun'), '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n');
    await writeFile(join(bin, 'scontrol'), `#!/bin/bash\nif [ "$1" = show ]; then echo node1; else echo "$*" >> "${join(work, 'scontrol.log')}"; fi\n`);
    await chmod(join(bin, 'srun'), 0o755);
    await chmod(join(bin, 'scontrol'), 0o755);
    const fakeEntry = join(work, 'fake_entry.py');
    await writeFile(
      fakeEntry,
      [
        'import signal, sys, time',
        'if sys.argv[sys.argv.index("--phase") + 1] != "train": sys.exit(0)',
        'got = []',
        'signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))',
        'print("ready", flush=True)',
        'for _ in range(400):',
        '    time.sleep(0.025)',
        '    if got:',
        '        time.sleep(0.3)  # the checkpoint save outlasts the interrupted `wait`',
        '        print("saved", flush=True)',
        '        sys.exit(75)',
        'sys.exit(0)',
      ].join('\n'),
    );
    const script = await renderTemplate({
      ...AGENT_VALUES,
      ...SITE_VALUES,
      setup: 'export HF_HUB_OFFLINE=1',
      container_runtime: 'none',
      python: PYTHON,
      entry: fakeEntry,
    });
    const path = join(work, 'nemo-shard.signal.sbatch');
    await writeFile(path, script);
    // A clean environment: a login shell's exported functions (environment modules) must not leak in.
    const env = { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: work, SLURM_JOB_ID: '4242', SLURM_NTASKS: '1' };
    const job = spawn('bash', [path], { env });
    let out = '';
    job.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready') && !out.includes('sent')) {
        out += 'sent\n';
        job.kill('SIGUSR1'); // Slurm's B: signal goes to the batch shell only
      }
    });
    let err = '';
    job.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('batch script did not finish')), RUN_TIMEOUT_MS);
      job.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(out, err).toContain('saved');
    expect(out).toMatch(/^fedhpc-exit job=4242 restart=0 code=75$/m);
    expect(out).toContain('fedhpc-requeue job=4242');
    expect(code).toBe(75);
    expect(await readFile(join(work, 'scontrol.log'), 'utf8')).toBe('requeue 4242\n');
  });

  it('--check-spec accepts a valid round dir and prints the plan without importing NeMo', async () => {
    await writeSpec(spec);
    const r = checkSpec(roundDir, '--world-size', '4');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(plan).toMatchObject({ ok: true, backend: 'megatron-bridge', round: 3, steps: 5, global_batch_size: 8, data_parallel: 4, output_dtype: 'F32' });
    expect(plan.global_dtypes).toEqual(['BF16']);
    const nemo2 = checkSpec(roundDir, '--nemo2');
    expect(nemo2.code).toBe(0);
    expect(JSON.parse(nemo2.stdout)).toMatchObject({ backend: 'nemo2' });
  });

  it('--check-spec plans a budget (contract version 2): a token budget\'s steps, a time budget\'s cap or an iteration count the budget stops first', async () => {
    // The plumbing only: how a time budget ends Megatron's or Lightning's loop cannot run here (no NeMo).
    const train = { ...(spec.train as Record<string, unknown>) };
    delete train.max_steps;
    const plans: Record<string, unknown>[] = [];
    for (const edit of [
      { version: 2, train, budget: { tokens: 1000 } }, // 8 x 32 = 256 tokens a step: 4 steps
      { version: 2, budget: { tokens: 1000 } }, // max_steps 5 does not bind
      { version: 2, train: { ...train, max_steps: 3 }, budget: { tokens: 1000 } },
      { version: 2, train, budget: { seconds: 90 } },
      { version: 2, budget: { seconds: 90 } },
    ]) {
      await writeSpec({ ...spec, ...edit });
      const r = checkSpec(roundDir);
      expect(r.code, r.stderr).toBe(0);
      plans.push(JSON.parse(r.stdout) as Record<string, unknown>);
    }
    const pick = (p: Record<string, unknown>) => [p['steps'], p['tokens'], p['max_steps'], p['train_iters'], p['budget']];
    expect(plans.map(pick)).toEqual([
      [4, 1024, null, 4, { tokens: 1000 }],
      [4, 1024, 5, 4, { tokens: 1000 }],
      [3, 768, 3, 3, { tokens: 1000 }],
      [null, null, null, 1e9, { seconds: 90 }],
      [5, 1280, 5, 5, { seconds: 90 }],
    ]);
    expect(plans[3]!['phases']).toContain('train: until 90 s of training, checkpoints in scratch/mbridge_ckpt');
    expect(plans[0]!['spec_version']).toBe(2);
    await writeSpec({ ...spec, version: 2, budget: { seconds: 90, tokens: 5 } });
    const refused = checkSpec(roundDir);
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain('budget must be');
  });

  it('--check-spec exits 64 for a spec without train.max_steps', async () => {
    const train = { ...(spec.train as Record<string, unknown>) };
    delete train.max_steps;
    await writeSpec({ ...spec, train });
    const r = checkSpec(roundDir);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('train.max_steps');
  });

  it('--check-spec exits 64 when the batch does not split over the GPUs', async () => {
    await writeSpec(spec);
    const r = checkSpec(roundDir, '--world-size', '3');
    expect(r.code).toBe(64);
  });

  it('--check-spec exits 65 when the global weights differ from spec.global_sha256', async () => {
    await writeSpec({ ...spec, global_sha256: sha256('some other global') });
    const r = checkSpec(roundDir);
    expect(r.code).toBe(65);
    expect(r.stderr).toContain('global_sha256');
  });

  it('--check-spec exits 65 when config.json does not match the weights', async () => {
    await writeSpec(spec);
    const config = join(roundDir, 'global', 'config.json');
    await writeFile(config, JSON.stringify({ ...CONFIG, num_hidden_layers: 3 }));
    try {
      const r = checkSpec(roundDir);
      expect(r.code).toBe(65);
      expect(r.stderr).toContain('tensor names differ');
    } finally {
      await writeFile(config, JSON.stringify(CONFIG));
    }
  });
});

describe('the NeMo template with the slurm runner', () => {
  it('is accepted at agent start once its site constants are filled (it runs its own steps and prints the markers)', async () => {
    const { spawnSync } = await import('node:child_process');
    const { mkdtempSync, readFileSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { SlurmRunner, slurmRunnerSchema } = await import('../../../site-agent/runners/slurm.js');
    const dir = mkdtempSync(join(tmpdir(), 'fedhpc-nemo-'));
    try {
      const filled = readFileSync('deploy/slurm/nemo-shard.sbatch', 'utf8')
        .replaceAll('{{nodes}}', '1').replaceAll('{{gpus_per_node}}', '4').replaceAll('{{cpus_per_task}}', '16')
        .replaceAll('{{container_runtime}}', 'none').replaceAll('{{container_image}}', 'none').replaceAll('{{container_mounts}}', '')
        .replaceAll('{{python}}', 'python3').replaceAll('{{entry}}', '/opt/fedhpc/deploy/slurm/nemo_shard.py').replaceAll('{{nemo_flags}}', '');
      const template = join(dir, 'nemo.sbatch');
      writeFileSync(template, filled);
      // Stand-in Slurm commands on PATH: construction only checks they exist and the script parses.
      for (const cmd of ['sbatch', 'squeue', 'scontrol', 'scancel']) writeFileSync(join(dir, cmd), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      const bash = spawnSync('which', ['bash'], { encoding: 'utf8' }).stdout.trim();
      const env = { ...process.env, PATH: `${dir}:${bash.slice(0, bash.lastIndexOf('/'))}:/usr/bin:/bin` };
      const options = slurmRunnerSchema.parse({ kind: 'slurm', partition: 'gpu', timeLimit: '2:00:00', python: 'python3', trainer: '/opt/fedhpc/deploy/slurm/nemo_shard.py', template });
      expect(() => new SlurmRunner(options, { workDir: dir, env })).not.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
