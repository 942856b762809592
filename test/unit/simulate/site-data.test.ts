/**
 * simulate's `siteData`: extra fields of each job-runner site's `data` (spec.json `data`), such as
 * torch_shard.py's `token_budget_scale` that `convergence-torch --heterogeneous` passes per site.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulateError, simulate, writeFederationFiles } from '../../../simulate/index.js';

describe('simulate siteData', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });

  it('lands in each torch site\'s runner data beside its token file, one object per site in order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-sitedata-'));
    dirs.push(dir);
    // A starting model already there is kept (no python --init needed).
    await mkdir(join(dir, 'torch-init'), { recursive: true });
    await writeFile(join(dir, 'torch-init', 'model.safetensors'), 'stand-in');
    await writeFile(join(dir, 'torch-init', 'config.json'), '{}');
    const files = await writeFederationFiles({
      dir,
      federation: 'sim',
      sites: ['site-1', 'site-2'],
      admins: ['admin'],
      coordinatorAddress: 'localhost:7443',
      listen: '127.0.0.1:7443',
      run: { id: 'run-1', rounds: 1, minSites: 2 },
      trainer: { kind: 'command', python: '/usr/bin/python3', siteData: [{ token_budget_scale: 0.5 }, {}] },
    });
    const data = async (site: string) =>
      (JSON.parse(await readFile(files.siteConfigs.get(site)!, 'utf8')) as { runner: { data: Record<string, unknown> } }).runner.data;
    expect(await data('site-1')).toEqual({ token_budget_scale: 0.5, train_tokens: expect.stringMatching(/site-1\/data\/train\.u32$/) });
    expect(await data('site-2')).toEqual({ train_tokens: expect.stringMatching(/site-2\/data\/train\.u32$/) });
  });

  it.each([
    ['the builtin runner', { runner: 'builtin' as const, siteData: [{}, {}] }],
    ['another count than sites', { runner: 'command' as const, siteData: [{}] }],
  ])('is refused with %s, before anything starts', async (_, o) => {
    const stateDir = join(await mkdtemp(join(tmpdir(), 'fedhpc-sitedata-')), 'state');
    dirs.push(join(stateDir, '..'));
    const run = simulate({ ...o, sites: 2, rounds: 1, strategy: 'fedavg', stateDir, cliPath: 'unused', timeoutS: 5, emit: () => undefined });
    await expect(run).rejects.toBeInstanceOf(SimulateError);
    await expect(run).rejects.toThrow(/siteData needs a job runner \(command or slurm\) and one object per site/);
  });
});
