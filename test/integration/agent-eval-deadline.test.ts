/**
 * The eval-only task after a run's last round carries a deadline (`deadlineMs`, the coordinator's
 * `evalS`): an evaluation that hangs is abandoned there, with a warning, its process ended, and the
 * agent goes on as before. Real gRPC with mTLS against a coordinator stand-in; the command runner
 * with an evaluation script that never finishes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../../proto/index.js';
import { CommandRunner, commandRunnerSchema, loadSiteConfig } from '../../site-agent/index.js';
import { cachedModelPath } from '../../site-agent/download.js';
import { createTestFederation, type TestFederation } from '../helpers/federation.js';
import { serveSiteStandIn, startAgentInProcess, WARN, type AgentUnderTest, type SiteStandIn } from '../helpers/stand-in-coordinator.js';
import { waitFor, waitUntil } from '../helpers/wait.js';

const MODEL = randomBytes(4096);
const SHA = createHash('sha256').update(MODEL).digest('hex');
const JOINED = { federation: 'testfed', siteId: 'site-1', protocolVersion: PROTOCOL_VERSION, heartbeatIntervalMs: 2_000, coordinatorVersion: 'stand-in' };
/**
 * The eval task's deadline, from when it is sent: room for a fresh Node process to start and write
 * its pid on a loaded machine (1.5 s was not always).
 */
const DEADLINE_MS = 5_000;
/** An evaluation that writes its pid and then never answers. */
const HANGING_EVAL = `import { writeFileSync } from 'node:fs';
writeFileSync(process.env.PID_FILE, String(process.pid));
setTimeout(() => undefined, 120_000);
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the eval-only task after the last round', () => {
  let fed: TestFederation;
  let standIn: SiteStandIn | undefined;
  let agent: AgentUnderTest | undefined;
  let pid: number | undefined;

  beforeEach(async () => {
    fed = await createTestFederation({ sites: 1 });
  });
  afterEach(async () => {
    await agent?.stop();
    standIn?.close();
    if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
    await fed.cleanup();
  });

  it('is abandoned at its deadline when the evaluation hangs: a warning, the process ended, nothing reported, the agent still heartbeating', async () => {
    const script = join(fed.dir, 'hanging-eval.mjs');
    const pidFile = join(fed.dir, 'eval.pid');
    await writeFile(script, HANGING_EVAL);
    const runner = new CommandRunner(
      commandRunnerSchema.parse({ kind: 'command', command: [process.execPath, script], evalArgs: ['--eval'], env: { PID_FILE: pidFile }, evalTimeoutS: 120, killGraceS: 1 }),
    );
    // The global model is already held, so the evaluation starts at once.
    const workDir = loadSiteConfig(fed.files.siteConfigs.get('site-1')!).workDir;
    await mkdir(join(workDir, 'models'), { recursive: true });
    await writeFile(cachedModelPath(join(workDir, 'models'), SHA), MODEL);

    let deadlineMs = 0;
    standIn = await serveSiteStandIn(fed, {
      Join: (_call, cb) => cb(null, JOINED),
      Tasks: (call) => {
        deadlineMs = Date.now() + DEADLINE_MS;
        call.write({ eval: { runId: 'run-e', model: { sha256: SHA, sizeBytes: MODEL.length }, modelRound: 3, deadlineMs } });
      },
      ReportEval: (_call, cb) => cb(null, {}),
    });
    agent = startAgentInProcess(fed, 'site-1', standIn.address, { runner });
    await waitUntil('the evaluation to start', () => deadlineMs > 0, 10_000);
    pid = Number(await waitFor(pidFile, async () => (await readFile(pidFile, 'utf8').catch(() => '')) || undefined, DEADLINE_MS + 5_000, 20));

    await waitUntil('a warning that the evaluation was abandoned', () => agent!.logs.some((l) => l.level === WARN && /deadline/.test(l.msg)), deadlineMs - Date.now() + 3_000);
    const warning = agent.logs.find((l) => l.level === WARN && /deadline/.test(l.msg))!;
    const beatsAtWarning = standIn.heartbeats();
    // At the deadline: not before it, and not long after (evalTimeoutS, 120 s, is not what ended it).
    expect(warning.time).toBeGreaterThanOrEqual(deadlineMs - 50);
    expect(warning.time).toBeLessThan(deadlineMs + 2_500);
    expect(warning).toMatchObject({ modelRound: 3 });
    // The runner ended the evaluation's process group (SIGTERM, then SIGKILL after its grace).
    await waitUntil('the evaluation process to end', () => !alive(pid!), 4_000);
    expect(standIn.calls['ReportEval']).toBeUndefined();
    // Still healthy: connected and heartbeating after the abandoned evaluation.
    await waitUntil('a heartbeat after the deadline', () => standIn!.heartbeats() > beatsAtWarning, 5_000);
    expect(agent.outcome()).toBeUndefined();
  }, 30_000);
});

