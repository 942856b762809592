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

function entry(...args: string[]): Run {
  const r = spawnSync(PYTHON, [ENTRY, ...args], {
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const checkSpec = (roundDir: string, ...extra: string[]): Run => entry('--round-dir', roundDir, '--check-spec', ...extra);

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

describe('NeMo / Megatron-Bridge recipe: the persistent session\'s dry mode (--session-dir --check-spec)', () => {
  // The session's loop itself runs under a plain-PyTorch stand-in in nemo-session.test.ts; its
  // NeMo and Megatron-Bridge calls cannot run here (no GPU, no NeMo).
  let work: string;
  let sessionDir: string;
  let weights: Uint8Array;
  const SESSION_SPEC = {
    version: 3,
    mode: 'persistent',
    run_id: 'run-9',
    seed: 7,
    budget: { tokens: 1000 }, // 8 x 32 = 256 tokens a step: 4 steps a sync
    overlap: { alpha: 0.5 },
    train: { lr: 3e-4, batch_size: 8, seq_len: 32, micro_batch_size: 2 },
    data: { train_tokens: 'tokens.u32' },
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fedhpc-nemo-session-spec-'));
    sessionDir = join(work, 'persistent', 'run-9');
    await mkdir(sessionDir, { recursive: true });
    await writeFile(join(sessionDir, 'tokens.u32'), new Uint8Array(new Uint32Array(4096).map((_, i) => (i * 7) % CONFIG.vocab_size).buffer));
    weights = await globalWeights();
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const writeSession = (value: unknown): Promise<void> => writeFile(join(sessionDir, 'spec.json'), JSON.stringify(value));
  const sessionCheck = (...extra: string[]): Run => entry('--session-dir', sessionDir, '--check-spec', ...extra);
  const planOf = (r: Run): Record<string, unknown> => {
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  it('plans a version-3 spec without importing NeMo: the budget each sync carries, alpha, the framework\'s iterations, the parallelism', async () => {
    await writeSession(SESSION_SPEC);
    const plan = planOf(sessionCheck('--world-size', '4'));
    expect(plan).toMatchObject({
      ok: true, mode: 'persistent', backend: 'megatron-bridge', run_id: 'run-9', spec_version: 3, budget: { tokens: 1000 },
      alpha: 0.5, max_steps: null, steps_per_sync: 4, tokens_per_sync: 1024, session_steps: 100_000, global_batch_size: 8,
      micro_batch_size: 2, data_parallel: 4, output_dtype: 'F32', data_tokens: 4096, model: null, resume: null,
    });
    expect(plan['loop']).toContain('apply: a later global g as θ + 0.5·(g - θₛ) at the next step boundary');
    expect(planOf(sessionCheck('--nemo2'))).toMatchObject({ backend: 'nemo2', data_parallel: null });
  });

  it('reads a time budget (a cap from train.max_steps), alpha\'s default and nemo.session_steps', async () => {
    const plans = [];
    for (const edit of [
      { budget: { seconds: 90 } },
      { budget: { seconds: 90 }, train: { ...SESSION_SPEC.train, max_steps: 3 } },
      { budget: { tokens: 1000 }, train: { ...SESSION_SPEC.train, max_steps: 3 } }, // the cap binds: 3 < 4
      { overlap: {}, nemo: { session_steps: 500 } },
    ]) {
      await writeSession({ ...SESSION_SPEC, ...edit });
      plans.push(planOf(sessionCheck()));
    }
    const pick = (p: Record<string, unknown>) => [p['budget'], p['max_steps'], p['steps_per_sync'], p['tokens_per_sync'], p['alpha'], p['session_steps']];
    expect(plans.map(pick)).toEqual([
      [{ seconds: 90 }, null, null, null, 0.5, 100_000],
      [{ seconds: 90 }, 3, 3, 768, 0.5, 100_000],
      [{ tokens: 1000 }, 3, 3, 768, 0.5, 100_000],
      [{ tokens: 1000 }, null, 4, 1024, 1, 500],
    ]);
  });

  it('takes the model config from the session, else from the first READY sync\'s global/, and refuses one its pin does not match with 65', async () => {
    await writeSession(SESSION_SPEC);
    const sync = join(sessionDir, 'syncs', '3.0');
    await mkdir(join(sync, 'global'), { recursive: true });
    await writeFile(join(sync, 'global', 'config.json'), JSON.stringify(CONFIG));
    await writeFile(join(sync, 'global', 'model.safetensors'), weights);
    await writeFile(join(sync, 'READY.json'), JSON.stringify({ round: 3, attempt: 0, modelRound: 2, globalSha256: sha256(weights) }));
    try {
      expect(planOf(sessionCheck())['model']).toEqual({ hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 32 });
      await writeFile(join(sessionDir, 'config.json'), JSON.stringify({ ...CONFIG, num_hidden_layers: 3 }));
      expect(planOf(sessionCheck())['model']).toMatchObject({ num_hidden_layers: 3 }); // the session's own wins
      await writeSession({ ...SESSION_SPEC, model_config_sha256: sha256('another config') });
      const pinned = sessionCheck();
      expect(pinned.code).toBe(65);
      expect(pinned.stderr).toContain('model_config_sha256');
    } finally {
      await rm(join(sessionDir, 'syncs'), { recursive: true, force: true });
      await rm(join(sessionDir, 'config.json'), { force: true });
    }
  });

  it('plans a resume from state/ of this run and refuses another run\'s state/ with 64', async () => {
    await writeSession(SESSION_SPEC);
    await mkdir(join(sessionDir, 'state'), { recursive: true });
    await writeFile(join(sessionDir, 'state', 'config.json'), JSON.stringify(CONFIG));
    const state = { run_id: 'run-9', sync: [4, 1], step: 12, checkpoint: '/x', done: {}, base_sha256: sha256(weights), base_model_round: 3 };
    try {
      await writeFile(join(sessionDir, 'state', 'session.json'), JSON.stringify(state));
      expect(planOf(sessionCheck())).toMatchObject({ resume: { step: 12, sync: '4.1' }, model: { num_hidden_layers: 2 } });
      await writeFile(join(sessionDir, 'state', 'session.json'), JSON.stringify({ ...state, run_id: 'run-8' }));
      const other = sessionCheck();
      expect(other.code).toBe(64);
      expect(other.stderr).toContain("state of run 'run-8', but spec.json names 'run-9'");
    } finally {
      await rm(join(sessionDir, 'state'), { recursive: true, force: true });
    }
  });

  it('exits 64 for a spec it cannot honour, for a round\'s options, and when the batch does not split over the GPUs', async () => {
    const noBudget: Record<string, unknown> = { ...SESSION_SPEC };
    delete noBudget['budget'];
    const cases: [unknown, RegExp][] = [
      [noBudget, /a persistent session needs spec\.budget/],
      [{ ...SESSION_SPEC, version: 2 }, /spec\.version/],
      [{ ...SESSION_SPEC, round: 3 }, /spec\.round belongs in a sync's READY\.json/],
      [{ ...SESSION_SPEC, overlap: { alpha: 1.5 } }, /overlap\.alpha/],
      [{ ...SESSION_SPEC, nemo: { session_steps: 0 } }, /nemo\.session_steps/],
      [{ ...SESSION_SPEC, train: { ...SESSION_SPEC.train, batch_size: 7 } }, /not a multiple of train\.micro_batch_size/],
    ];
    for (const [value, message] of cases) {
      await writeSession(value);
      const r = sessionCheck();
      expect(r.code, JSON.stringify(value)).toBe(64);
      expect(r.stderr).toMatch(message);
    }
    await writeSession(SESSION_SPEC);
    expect(sessionCheck('--world-size', '3').code).toBe(64);
    const phase = entry('--session-dir', sessionDir, '--phase', 'train');
    expect(phase.code).toBe(64);
    expect(phase.stderr).toContain("--phase is a round's");
    const both = entry('--session-dir', sessionDir, '--round-dir', sessionDir, '--check-spec');
    expect(both.code).toBe(64);
    expect(both.stderr).toContain('not allowed with argument');
    // A round directory never takes a session's spec: the refusal names the right option.
    const asRound = checkSpec(sessionDir);
    expect(asRound.code).toBe(64);
    expect(asRound.stderr).toContain('pass its directory as --session-dir, not --round-dir');
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
