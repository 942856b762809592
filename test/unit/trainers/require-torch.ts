import { spawnSync } from 'node:child_process';

/** Debian's interpreter: python3-torch installs there, not into the first `python3` on PATH. */
export const TORCH_PYTHON = '/usr/bin/python3';

let cached: { ok: boolean; reason: string } | undefined;

/**
 * Whether {@link TORCH_PYTHON} can import torch. A missing torch skips the tests that need it,
 * with the reason printed once, unless `FEDHPC_REQUIRE` (comma-separated) names `torch`: then it
 * throws, so that a CI that promises torch cannot pass by skipping.
 */
export function torchAvailable(): { ok: boolean; reason: string } {
  if (cached !== undefined) return cached;
  const probe = spawnSync(TORCH_PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
  const ok = probe.status === 0;
  const detail = probe.error?.message ?? probe.stderr.trim().split('\n').pop() ?? `exit ${probe.status}`;
  const reason = ok
    ? `torch ${probe.stdout.trim()} in ${TORCH_PYTHON}`
    : `${TORCH_PYTHON} cannot import torch (${detail}); install it with: apt-get install python3-torch`;
  const required = (process.env.FEDHPC_REQUIRE ?? '').split(',').map((s) => s.trim()).includes('torch');
  if (!ok && required) throw new Error(`FEDHPC_REQUIRE names torch, but ${reason}`);
  if (!ok) process.stdout.write(`skipping PyTorch trainer tests: ${reason}\n`);
  cached = { ok, reason };
  return cached;
}
