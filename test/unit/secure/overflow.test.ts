/**
 * Guarantee 8: fixed-point overflow is impossible for the configured maximum of sites. A sum of n
 * values of q bits fits Z_2^b when n·(2^q − 1) < 2^b, which n·2^q ≤ 2^b guarantees; the coordinator
 * refuses at load time a config with maxSites·2^quantBits > 2^modulusBits, naming the field and
 * the file, and the unmasking refuses (rather than wraps) a sum over more sites than the budget.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SecAggError } from '../../../aggregation/index.js';
import { ConfigError } from '../../../common/config-file.js';
import { loadCoordinatorConfig } from '../../../coordinator/config.js';
import { InProcessSecAgg, makeIdentities } from '../../helpers/secure-protocol.js';

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-overflow-'));
  file = join(dir, 'coordinator.json');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withSecure(secureAggregation: Record<string, unknown>, run: Record<string, unknown> = {}): Promise<void> {
  await writeFile(
    file,
    JSON.stringify({
      federation: 'fed-1',
      listen: '127.0.0.1:7443',
      tls: { ca: 'ca.pem', cert: 'c.pem', key: 'c.key' },
      stateDir: 'state',
      model: { initial: 'init.safetensors' },
      run: { id: 'run-1', rounds: 1, minSites: 2, maxSiteWeight: 1000, secureAggregation, ...run },
    }),
  );
}

function configError(): ConfigError {
  try {
    loadCoordinatorConfig(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).file).toBe(file);
    return err as ConfigError;
  }
  throw new Error('the config was accepted');
}

describe('the fixed-point budget maxSites·2^quantBits ≤ 2^modulusBits', () => {
  it('accepts the defaults (64 sites × 2^24 ≤ 2^32) and the edge 2^8 sites × 2^24 = 2^32', async () => {
    await withSecure({});
    expect(loadCoordinatorConfig(file).run?.secureAggregation).toMatchObject({ maxSites: 64, quantBits: 24, modulusBits: 32 });
    await withSecure({ maxSites: 256, quantBits: 24 });
    expect(loadCoordinatorConfig(file).run?.secureAggregation.maxSites).toBe(256);
  });

  it('refuses 257 sites with q = 24 in Z_2^32, naming run.secureAggregation.quantBits and the file', async () => {
    await withSecure({ maxSites: 257, quantBits: 24 });
    const e = configError();
    expect(e.message).toContain(file);
    expect(e.issues.join('\n')).toMatch(/run\.secureAggregation\.quantBits: 257 sites × 2\^24 levels exceed the modulus 2\^32/);
  });

  it('refuses the default 64 sites with q = 12 in Z_2^16 and accepts q = 10', async () => {
    await withSecure({ modulusBits: 16, quantBits: 12 });
    expect(configError().issues.join('\n')).toMatch(/run\.secureAggregation\.quantBits: 64 sites × 2\^12 levels exceed the modulus 2\^16/);
    await withSecure({ modulusBits: 16, quantBits: 10 });
    expect(loadCoordinatorConfig(file).run?.secureAggregation.quantBits).toBe(10);
  });

  it('refuses more expected sites than maxSites, naming run.secureAggregation.maxSites', async () => {
    await withSecure({ maxSites: 2 }, { expectedSites: ['a', 'b', 'c'] });
    expect(configError().issues.join('\n')).toMatch(/run\.secureAggregation\.maxSites: 3 sites exceed maxSites 2/);
  });

  it('does not check the budget when secure aggregation is off', async () => {
    await withSecure({ enabled: false, maxSites: 65_536, quantBits: 31 });
    expect(loadCoordinatorConfig(file).run?.secureAggregation.enabled).toBe(false);
  });
});

describe('the unmasking never decodes a sum that may have wrapped', () => {
  it('refuses with OVERFLOW_POSSIBLE a sum over more survivors than n·2^q ≤ 2^b allows', async () => {
    const ids = await makeIdentities(['site-a', 'site-b', 'site-c']);
    // q = 31: two sites fit Z_2^32, three do not (the coordinator's roster is not capped at maxSites).
    const p = new InProcessSecAgg(ids, { threshold: 2, quantBits: 31, seed: 'overflow' });
    try {
      p.keys();
      p.shares();
      p.deliverShares();
      const x = new Float32Array(16).fill(0.9);
      for (const s of p.sites) await p.upload(s, x, 1000);
      p.consistency(p.sites, []);
      p.reveal();
      const err = await p.mean(16).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SecAggError);
      expect((err as SecAggError).code).toBe('OVERFLOW_POSSIBLE');
      expect((err as SecAggError).message).toMatch(/3 sites × 2\^31 levels exceed the modulus 2\^32/);
    } finally {
      await p.cleanup();
    }
  });
});
