import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { INITIAL_OLD_SPACE_MB, NODE_HEAP_OPTIONS, startedWithHeapOptions, warnIfHeapUntuned } from '../../../common/gc-tuning.js';

/** A logger that keeps what was warned. */
function warnings(): { warn(obj: object, msg: string): void; readonly lines: { obj: object; msg: string }[] } {
  const lines: { obj: object; msg: string }[] = [];
  return { lines, warn: (obj, msg) => void lines.push({ obj, msg }) };
}

describe("fedhpc's Node options", () => {
  it('name the old-generation floor, and this Node starts with them (a Node that dropped the option would refuse to start every fedhpc process)', () => {
    expect(NODE_HEAP_OPTIONS).toEqual([`--initial-old-space-size=${INITIAL_OLD_SPACE_MB}`]);
    const r = spawnSync(process.execPath, [...NODE_HEAP_OPTIONS, '-p', 'JSON.stringify(process.execArgv)'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(startedWithHeapOptions(JSON.parse(r.stdout) as string[])).toBe(true);
  });

  it('are told apart from a start without them, and only a start without them is warned about', () => {
    expect(startedWithHeapOptions(['--cpu-prof', ...NODE_HEAP_OPTIONS])).toBe(true);
    expect(startedWithHeapOptions([])).toBe(false);
    // An operator's larger floor, in any spelling V8 takes, is enough; a smaller one, or one a later option lowers, is not.
    expect(startedWithHeapOptions([`--initial-old-space-size=${2 * INITIAL_OLD_SPACE_MB}`])).toBe(true);
    expect(startedWithHeapOptions(['--initial_old_space_size', String(INITIAL_OLD_SPACE_MB)])).toBe(true);
    expect(startedWithHeapOptions(['--initial-old-space-size=64'])).toBe(false);
    expect(startedWithHeapOptions([...NODE_HEAP_OPTIONS, '--initial-old-space-size=64'])).toBe(false);
    expect(startedWithHeapOptions(['--initial-old-space-size'])).toBe(false);

    const tuned = warnings();
    warnIfHeapUntuned(tuned, [...NODE_HEAP_OPTIONS]);
    expect(tuned.lines).toEqual([]);

    const bare = warnings();
    warnIfHeapUntuned(bare, []);
    expect(bare.lines).toHaveLength(1);
    expect(bare.lines[0]!.obj).toEqual({ phase: 'start', nodeOptions: NODE_HEAP_OPTIONS });
    expect(bare.lines[0]!.msg).toContain(NODE_HEAP_OPTIONS[0]);
  });
});
