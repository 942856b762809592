/**
 * bench/gpu-trainer.py runs only on a lent GPU for its figures, so nothing else would notice when the
 * reference trainer changes under it. Its reference half runs on a CPU with the tiny config; without
 * transformers (as here) it says so and exits 3, with transformers 0 or 1 (the logits verdict).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TORCH_PYTHON, torchAvailable } from './require-torch.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe.skipIf(!torchAvailable().ok)('bench/gpu-trainer.py on a CPU', () => {
  it('trains the reference trainer at the tiny shape and reports its throughput as the last JSON line', { timeout: 120_000 }, async () => {
    const args = ['bench/gpu-trainer.py', '--config', 'site-agent/trainers/configs/tiny.json', '--device', 'cpu', '--steps', '2', '--warmup', '1'];
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(TORCH_PYTHON, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.on('error', reject).on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    });
    expect([0, 1, 3], stderr).toContain(code);
    const report = JSON.parse(stdout.trim().split('\n').pop()!) as { refTokensPerS: number; refLosses: number[]; params: number };
    expect(report.params).toBe(123_712);
    expect(report.refTokensPerS).toBeGreaterThan(0);
    expect(report.refLosses).toHaveLength(3);
    expect(report.refLosses.at(-1)!).toBeLessThan(report.refLosses[0]!);
  });
});
