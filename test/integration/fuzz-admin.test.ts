/**
 * Structure-aware fuzzing of every AdminService RPC: 2,000 inputs per RPC (valid messages mutated
 * field by field, plus random and truncated bytes) from an admin certificate, against a real
 * coordinator whose sites have joined. Every call ends with a status; none throws or hangs, and the
 * coordinator still answers a clean `Status` afterwards.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { PROTOCOL_VERSION } from '../../proto/index.js';
import { WARN_LEVEL } from '../helpers/logger.js';
import { createTestFederation, startCoordinatorInProcess, type TestFederation } from '../helpers/federation.js';
import { fuzzRpc } from '../helpers/fuzz-run.js';
import { fuzzInputs } from '../helpers/proto-fuzz.js';
import { RawRpcClient, allRpcs, encodeRequest, rpcNamed } from '../helpers/raw-rpc.js';
import { adminCertFiles, siteCertFiles } from '../helpers/raw-site.js';

const CASES = 2_000;
const rpcs = allRpcs().filter((r) => r.service === 'AdminService');

describe('fuzzing AdminService with joined sites', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let admin: RawRpcClient;
  const sites: RawRpcClient[] = [];
  const inputs = new Map<string, Buffer[]>();

  beforeAll(async () => {
    // Drawn before anything listens: a long synchronous draw would stall the in-process server's keepalive.
    const hint = { runId: 'test-run', siteId: 'site-1', site: 'site-1', round: 1 };
    for (const rpc of rpcs) inputs.set(rpc.method, fuzzInputs(rpc.requestType, CASES, 0xad + rpc.method.length, hint));
    fed = await createTestFederation({ sites: 3, run: { rounds: 2, minSites: 3 } });
    const file = fed.files.coordinatorConfig;
    const cfg = JSON.parse(await readFile(file, 'utf8')) as { limits?: Record<string, number> };
    cfg.limits = { ...cfg.limits, requestsPerS: 100_000, burst: 100_000, maxConcurrentCallsPerSite: 10_000 };
    await writeFile(file, JSON.stringify(cfg, null, 2));
    // Fuzzed calls are refused, and some (abort, revoke) change the run: warnings are the point; an
    // error other than the run's or a round's failure is not.
    coordinator = await startCoordinatorInProcess(fed, { expectLogs: [(l) => l.level === WARN_LEVEL, /^run failed$/, /^aggregation failed$/] });
    const join = rpcNamed('SiteService/Join');
    for (const s of fed.sites) {
      const c = new RawRpcClient(fed.address, siteCertFiles(fed, s));
      sites.push(c);
      expect((await c.call(join, [encodeRequest(join, { siteId: s, protocolVersion: PROTOCOL_VERSION })], 5_000)).code).toBe(0);
    }
    admin = new RawRpcClient(fed.address, adminCertFiles(fed));
  });

  afterAll(async () => {
    admin?.close();
    for (const c of sites) c.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it.each(rpcs.map((r) => [r.method, r] as const))(`answers ${CASES} fuzzed %s calls with a status, never a crash or a hang`, async (_name, rpc) => {
    const report = await fuzzRpc(admin, rpc, inputs.get(rpc.method)!, rpc.responseStream ? { inFlight: 64, deadlineMs: 150 } : { inFlight: 16, deadlineMs: 30_000 });
    expect(report.wrong, JSON.stringify(report.codes)).toEqual([]);
    expect(report.calls).toBe(CASES);
  }, 180_000);

  it('still answers a clean Status after the fuzzing', async () => {
    const status = rpcNamed('AdminService/Status');
    const o = await admin.call(status, [encodeRequest(status, {})], 10_000);
    expect(o.code).toBe(0);
  });
});
