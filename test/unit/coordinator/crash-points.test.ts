/**
 * The test-only kill points (coordinator/core/crash-points.ts): `FEDHPC_CRASH_AT` is read when the
 * module loads, so each case loads it afresh with its own environment; `process.kill` is spied on,
 * never called for real.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

type CrashPoints = typeof import('../../../coordinator/core/crash-points.js');

async function armedWith(value: string | undefined): Promise<CrashPoints> {
  vi.resetModules();
  if (value === undefined) vi.stubEnv('FEDHPC_CRASH_AT', undefined as unknown as string);
  else vi.stubEnv('FEDHPC_CRASH_AT', value);
  return import('../../../coordinator/core/crash-points.js');
}

describe('FEDHPC_CRASH_AT', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('kills at the armed point in every round, and nowhere else', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    const c = await armedWith('phase.upload');
    c.phaseCrashPoint('training', 1);
    c.crashPoint('commit.before-journal', 1);
    expect(kill).not.toHaveBeenCalled();
    c.phaseCrashPoint('upload', 3);
    expect(kill).toHaveBeenCalledWith(process.pid, 'SIGKILL');
    expect(c.crashPointArmed('phase.upload')).toBe(true);
    expect(c.crashPointArmed('upload.half')).toBe(false);
  });

  it('with @round kills only while that round is open', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    const c = await armedWith('commit.after-journal@2');
    c.crashPoint('commit.after-journal', 1);
    c.crashPoint('commit.after-journal', 3);
    expect(kill).not.toHaveBeenCalled();
    c.crashPoint('commit.after-journal', 2);
    expect(kill).toHaveBeenCalledTimes(1);
  });

  it('does nothing unset or empty', async () => {
    const kill = vi.spyOn(process, 'kill').mockImplementation(() => true);
    for (const value of [undefined, '']) {
      const c = await armedWith(value);
      c.phaseCrashPoint('upload', 1);
      expect(c.crashPointArmed('phase.upload')).toBe(false);
    }
    expect(kill).not.toHaveBeenCalled();
  });

  it.each(['phase.uplaod', 'phase.upload@0', 'phase.upload@x', 'upload.half@', 'PHASE.UPLOAD'])('refuses %s when the coordinator loads, naming the points', async (value) => {
    await expect(armedWith(value)).rejects.toThrow(/FEDHPC_CRASH_AT must be <point> or <point>@<round>.*upload\.half/);
  });
});
