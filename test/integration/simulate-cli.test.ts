import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../helpers/federation.js';
import { journalBodies } from '../helpers/faults.js';

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `fedhpc <args>` to its end; never throws on a non-zero exit. */
function runCli(args: string[], timeoutMs = 150_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

type Line = Record<string, unknown> & { type: string };

/** Every stdout line of `--json` output is one JSON record. */
function jsonLines(stdout: string): Line[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

const SITES = ['site-1', 'site-2', 'site-3'];

describe('fedhpc simulate on the command line', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('runs a federation and reports each round and a summary as JSON lines; a second run on the same state continues the run', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-sim-test-'));
    const state = join(dir, 'state');
    const args = (rounds: number) => ['simulate', '--sites', '3', '--rounds', String(rounds), '--json', '--state-dir', state, '--timeout', '120'];

    const first = await runCli(args(2));
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const lines = jsonLines(first.stdout);
    expect(lines.map((l) => l.type)).toEqual(['start', 'round', 'round', 'summary']);
    expect(lines[0]).toMatchObject({ type: 'start', stateDir: state, sites: 3, rounds: 2 });

    const rounds = lines.filter((l) => l.type === 'round');
    expect(rounds.map((r) => r['round'])).toEqual([1, 2]);
    for (const r of rounds) {
      const participants = r['participants'] as string[];
      expect(participants.length).toBeGreaterThanOrEqual(2);
      for (const p of participants) expect(SITES).toContain(p);
      expect(r['evalLoss']).toEqual(expect.any(Number));
      expect(Number.isFinite(r['evalLoss'])).toBe(true);
      const perSite = r['siteEvalLoss'] as Record<string, number>;
      expect(Object.keys(perSite).sort()).toEqual(SITES);
      for (const loss of Object.values(perSite)) expect(loss).toBeGreaterThan(0);
      expect(r['bytesUp']).toBeGreaterThan(0);
      expect(r['bytesDown']).toBeGreaterThan(0);
    }

    const summary = lines[3]!;
    expect(summary).toMatchObject({ type: 'summary', rounds: 2, sites: 3, stateDir: state });
    expect(summary['finalEvalLoss']).toBe(rounds[1]!['evalLoss']);
    expect(summary['finalEvalLoss']).toBeLessThan(summary['initialEvalLoss'] as number);
    expect(summary['bigramEvalLoss']).toBeGreaterThan(0);
    expect(Number.isFinite(summary['bigramEvalLoss'])).toBe(true);
    expect(summary['modelSha256']).toMatch(/^[0-9a-f]{64}$/);

    // Asking for one more round on the same state runs only that round.
    const second = await runCli(args(3));
    expect(second.stderr).toBe('');
    expect(second.code).toBe(0);
    const more = jsonLines(second.stdout);
    expect(more[0]).toMatchObject({ type: 'start', stateDir: state, rounds: 3 });
    const moreRounds = more.filter((l) => l.type === 'round');
    expect(moreRounds.at(-1)).toMatchObject({ round: 3 });
    // Rounds 1 and 2 may be reported again, but only as they were: not trained again.
    for (const r of moreRounds.filter((x) => (x['round'] as number) <= 2)) expect(r).toEqual(rounds[(r['round'] as number) - 1]);
    const summary2 = more.at(-1)!;
    expect(summary2).toMatchObject({ type: 'summary', rounds: 3, sites: 3 });
    expect(summary2['modelSha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(summary2['modelSha256']).not.toBe(summary['modelSha256']);
    expect(summary2['initialEvalLoss']).toBe(summary['initialEvalLoss']);

    // Every process simulate started ran with fedhpc's Node options (none warns that it lacks them).
    const logs = await readdir(join(state, 'logs'));
    expect(logs).toEqual(expect.arrayContaining(['coordinator.log', ...SITES.map((s) => `${s}.log`)]));
    for (const name of logs) expect(await readFile(join(state, 'logs', name), 'utf8')).not.toContain('Node was started without');

    const journal = join(state, 'federation', 'coordinator', 'state', 'journal.jsonl');
    const committed = await journalBodies(journal, 'round-committed');
    expect(committed.map((c) => c['round'])).toEqual([1, 2, 3]);
    expect(await journalBodies(journal, 'run-started')).toHaveLength(1);
    // Round 3 continues from the model the first run ended with.
    expect(committed[1]!['modelSha256']).toBe(summary['modelSha256']);
    expect(committed[2]!['parentSha256']).toBe(summary['modelSha256']);
    expect(committed[2]!['modelSha256']).toBe(summary2['modelSha256']);
  }, 180_000);

  it('refuses an unknown --strategy with exit code 2 and a message naming the option', async () => {
    const r = await runCli(['simulate', '--strategy', 'bogus'], 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--strategy');
    expect(r.stderr).toMatch(/fedavg.*diloco.*fedadam/);
    expect(r.stdout).toBe('');
  });

  it('refuses bad --site-speeds and --budget-s with exit 2 naming the option, and --help lists both', async () => {
    const cases: [string[], RegExp][] = [
      [['--site-speeds', '1,0,2'], /--site-speeds must be positive numbers/],
      [['--site-speeds', '1,2,3', '--sites', '2'], /--site-speeds gives 3 speeds for --sites 2/],
      [['--budget-s', '0'], /--budget-s must be a number of seconds above 0/],
      [['--budget-s=-1.5', '--site-speeds', '1,2'], /--budget-s must be a number of seconds above 0/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runCli(['simulate', ...args], 30_000)));
    runs.forEach((r, i) => {
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(cases[i]![1]);
      expect(r.stdout).toBe('');
    });
    const help = await runCli(['simulate', '--help'], 30_000);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--site-speeds 1,2,3');
    expect(help.stdout).toContain('--budget-s S');
  });

  it('runs stand-in sites of speeds 1:3 under a time budget: the fast site takes three times the steps, and each round line shows tokens, steps and busy fractions', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-sim-speeds-'));
    const r = await runCli(['simulate', '--site-speeds', '1,3', '--budget-s', '0.5', '--rounds', '1', '--min-sites', '2', '--state-dir', dir, '--json'], 90_000);
    expect(r.code, r.stderr).toBe(0);
    const round = jsonLines(r.stdout).find((l) => l.type === 'round')!;
    const work = round['work'] as Record<string, { tokens: number; steps: number; busyFraction?: number; staleness: number }>;
    // 50 ms a step at speed 1: 10 steps in 0.5 s; speed 3: 30. Each 8 x 256 tokens.
    expect(work['site-1']!.steps).toBeGreaterThanOrEqual(8);
    expect(work['site-1']!.steps).toBeLessThanOrEqual(10);
    expect(work['site-2']!.steps / work['site-1']!.steps).toBeGreaterThan(2.5);
    expect(work['site-2']!.steps).toBeLessThanOrEqual(30);
    for (const w of Object.values(work)) {
      expect(w.tokens).toBe(w.steps * 8 * 256);
      expect(w.staleness).toBe(0);
      expect(w.busyFraction).toBeGreaterThan(0);
      expect(w.busyFraction).toBeLessThanOrEqual(1);
    }
  }, 120_000);

  it('refuses a coordinator config with a misspelt field, naming the field and the file, before starting anything', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedhpc-cfg-test-'));
    const file = join(dir, 'coordinator.json');
    await writeFile(
      file,
      JSON.stringify({
        federation: 'testfed',
        listen: '127.0.0.1:0',
        tls: { ca: 'ca.crt', cert: 'coordinator.crt', key: 'coordinator.key' },
        stateDir: 'state',
        model: { initial: 'initial-model.safetensors' },
        run: { id: 'run-1', rounds: 3, rouns: 5, minSites: 1 },
      }),
    );
    const r = await runCli(['coordinator', '--config', file], 30_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('rouns');
    expect(r.stderr).toMatch(/unknown field/);
    expect(r.stderr).toContain(file);
    expect(r.stdout).toBe('');
    await expect(stat(join(dir, 'state'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
