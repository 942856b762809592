/**
 * Structure-aware fuzzing of every SiteService RPC while a real federation trains: 2,000 inputs per
 * RPC (valid messages mutated field by field, plus random and truncated bytes) from a joined site
 * that is not part of the run. The coordinator must answer every call with a status, never throw,
 * and commit exactly the rounds the real sites produce.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJournal, verifyChain, type CoordinatorHandle } from '../../coordinator/index.js';
import { PROTOCOL_VERSION } from '../../proto/index.js';
import { WARN_LEVEL } from '../helpers/logger.js';
import { createTestFederation, startCoordinatorInProcess, startSiteProcess, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';
import { journalBodies, journalPath } from '../helpers/faults.js';
import { fuzzRpc } from '../helpers/fuzz-run.js';
import { fuzzInputs } from '../helpers/proto-fuzz.js';
import { RawRpcClient, allRpcs, encodeRequest, rpcNamed } from '../helpers/raw-rpc.js';
import { siteCertFiles } from '../helpers/raw-site.js';

const CASES = 2_000;
const REAL_SITES = ['site-1', 'site-2', 'site-3'];
const FUZZER = 'site-4';
const rpcs = allRpcs().filter((r) => r.service === 'SiteService');

describe('fuzzing SiteService while a federation trains', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let client: RawRpcClient;
  const procs: Proc[] = [];
  const inputs = new Map<string, Buffer[]>();

  beforeAll(async () => {
    // Drawn before anything listens: a long synchronous draw would stall the in-process server's keepalive.
    const hint = { runId: 'test-run', siteId: FUZZER, protocolVersion: PROTOCOL_VERSION, round: 1, attempt: 1 };
    for (const rpc of rpcs) inputs.set(rpc.method, fuzzInputs(rpc.requestType, CASES, 0x5eed + rpc.method.length, hint));
    fed = await createTestFederation({ sites: 4, run: { rounds: 3, minSites: 3, expectedSites: REAL_SITES, train: { steps: 5, batchSize: 16, lr: 0.01 } } });
    // The fuzzer sends thousands of calls a second: lift the per-caller limits (tested elsewhere).
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, limits: { ...(cfg['limits'] as object), requestsPerS: 100_000, burst: 100_000, maxConcurrentCallsPerSite: 10_000 } }));
    // Fuzzed calls are refused, and some (abort, revoke) change the run: warnings are the point; an
    // error other than the run's or a round's failure is not.
    coordinator = await startCoordinatorInProcess(fed, { expectLogs: [(l) => l.level === WARN_LEVEL, /^run failed$/, /^aggregation failed$/] });
    for (const s of REAL_SITES) procs.push(await startSiteProcess(fed, s));
    client = new RawRpcClient(fed.address, siteCertFiles(fed, FUZZER));
    const join = rpcNamed('SiteService/Join');
    const joined = await client.call(join, [encodeRequest(join, { siteId: FUZZER, protocolVersion: PROTOCOL_VERSION, agentVersion: 'fuzz' })], 5_000);
    expect(joined.code).toBe(0);
  });

  afterAll(async () => {
    client?.close();
    for (const p of procs.splice(0).reverse()) await p.stop();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('covers every SiteService RPC of the proto', () => {
    expect(rpcs.map((r) => r.method)).toEqual(expect.arrayContaining(['Join', 'Heartbeat', 'Tasks', 'Download', 'Upload', 'ReportEval']));
  });

  it.each(rpcs.map((r) => [r.method, r] as const))(`answers ${CASES} fuzzed %s calls with a status, never a crash or a hang`, async (_name, rpc) => {
    // Unary calls get a generous deadline: on two shared cores a slow answer is not a hang.
    const report = await fuzzRpc(client, rpc, inputs.get(rpc.method)!, rpc.responseStream || rpc.requestStream ? { inFlight: 64, deadlineMs: 300 } : { inFlight: 16, deadlineMs: 30_000 });
    expect(report.wrong, JSON.stringify(report.codes)).toEqual([]);
    expect(report.calls).toBe(CASES);
  }, 180_000);

  it('commits every round with exactly the real sites, and the journal verifies', async () => {
    const admin = fed.admin();
    await waitForCommitted(admin, 3, 120_000);
    const committed = await journalBodies(journalPath(fed), 'round-committed');
    expect(committed.map((c) => c['round'])).toEqual([1, 2, 3]);
    for (const c of committed) {
      const sites = (c['participants'] as { site: string }[]).map((p) => p.site).sort();
      expect(sites).toEqual(REAL_SITES);
    }
    const records = await readJournal(journalPath(fed), { repairTornTail: false });
    expect(verifyChain(records).ok).toBe(true);
  }, 130_000);
});
