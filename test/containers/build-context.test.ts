/**
 * What `docker build -f deploy/docker/Dockerfile .` sends from a checkout: a copy of this checkout
 * with what an operator leaves in one — a provisioned federation with its CA key, a simulate run,
 * node_modules, dist/, a state dir — is built by Docker's legacy builder (Debian's docker.io, which
 * reads only a root .dockerignore) into an image that copies the whole context, and the image's
 * files are listed. Keys and build output must stay out; everything the Dockerfile's build needs
 * must be in.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../../simulate/images.js';
import { skipWithoutDocker } from './harness.js';

const skip = await skipWithoutDocker();

function run(cmd: string, args: readonly string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { cwd: o.cwd, env: o.env ?? process.env, maxBuffer: 256 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

/** Files of the checkout: tracked, and new ones git does not ignore. */
async function checkoutFiles(): Promise<string[]> {
  const out = await run('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z']);
  return [...new Set(out.split('\0').filter((f) => f !== '' && existsSync(f)))].sort();
}

/** What an operator's checkout holds besides the sources, none of which may enter an image. */
const LEFT_IN_CHECKOUT: Readonly<Record<string, string>> = {
  'eurofed/ca/ca.key': 'CA PRIVATE KEY',
  'eurofed/ca/ca.crt': 'cert',
  'eurofed/coordinator/coordinator.key': 'KEY',
  'eurofed/sites/bsc/site.key': 'KEY',
  'federation/ca/ca.key': 'CA PRIVATE KEY',
  'coordinator/coordinator.key': 'KEY',
  'deploy/docker/site.key': 'KEY',
  'node_modules/left-pad/package.json': '{}',
  'deploy/node_modules/x/index.js': '',
  'dist/cli/main.js': '',
  '.fedhpc-sim/state/journal.jsonl': '',
  'site-agent/trainers/.fedhpc-run/x': '',
  'state/models/abc.safetensors': '',
  'site-agent/trainers/__pycache__/torch_shard.cpython-311.pyc': '',
};

describe.skipIf(skip)('Docker build context of the repository', () => {
  let ctx: string;
  let sent: string[];
  let sources: string[];
  const tag = `fedhpc-context-test:${process.pid}`;

  beforeAll(async () => {
    ctx = await mkdtemp(join(tmpdir(), 'fedhpc-context-'));
    sources = await checkoutFiles();
    for (const f of sources) {
      await mkdir(dirname(join(ctx, f)), { recursive: true });
      await cp(f, join(ctx, f));
    }
    for (const [f, text] of Object.entries(LEFT_IN_CHECKOUT)) {
      await mkdir(dirname(join(ctx, f)), { recursive: true });
      await writeFile(join(ctx, f), text);
    }
    // An image of the context as the daemon received it: FROM scratch, everything copied.
    await writeFile(join(ctx, 'deploy', 'docker', 'context.Dockerfile'), 'FROM scratch\nCOPY . /context/\n');
    await run('docker', ['build', '--quiet', '--tag', tag, '-f', 'deploy/docker/context.Dockerfile', '.'], { cwd: ctx, env: { ...process.env, DOCKER_BUILDKIT: '0' } });
    const id = (await docker(['create', tag, 'none'])).trim();
    try {
      const tar = await run('sh', ['-c', `docker export ${id} | tar -t`]);
      sent = tar
        .split('\n')
        .filter((l) => l.startsWith('context/') && !l.endsWith('/'))
        .map((l) => l.slice('context/'.length))
        .sort();
    } finally {
      await docker(['rm', '--force', id]).catch(() => undefined);
    }
  }, 600_000);

  afterAll(async () => {
    await docker(['rmi', '--force', tag]).catch(() => undefined);
    if (ctx) await rm(ctx, { recursive: true, force: true });
  });

  it('sends no key, node_modules, dist, federation folder, state or simulate run', () => {
    const leaked = sent.filter((f) => /(^|\/)(node_modules|dist|__pycache__|\.fedhpc-[^/]*)\//.test(f) || /\.(key|pem|safetensors|pyc)$/.test(f) || /^(eurofed|federation|state)\//.test(f));
    expect(leaked).toEqual([]);
  });

  it('sends everything the Dockerfile build needs: manifests, tsconfigs, sources, scripts, proto, deploy files', () => {
    const needed = sources.filter((f) => /^(package(-lock)?\.json|tsconfig(\.build)?\.json|(bin|scripts|common|aggregation|coordinator|site-agent|simulate|cli|proto|native|bench|deploy)\/.*)$/.test(f));
    expect(needed).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'tsconfig.build.json', 'scripts/copy-assets.mjs', 'deploy/docker/healthcheck.mjs', 'proto/fedhpc/v1/fedhpc.proto', 'native/prg.c']));
    expect(needed.filter((f) => !sent.includes(f))).toEqual([]);
    // Nothing else: tests, docs and CI stay out too.
    expect(sent.filter((f) => /^(test|docs|\.ci|\.git)\//.test(f))).toEqual([]);
  });

  it('keeps one ignore file for both builders: none beside the Dockerfile, where BuildKit would prefer it', () => {
    expect(existsSync('.dockerignore')).toBe(true);
    expect(existsSync('deploy/docker/Dockerfile.dockerignore')).toBe(false);
  });
});
