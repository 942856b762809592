/**
 * A standby coordinator's responder (coordinator/ha/standby-server.ts) and sites that follow it to
 * the leader, over real gRPC and mTLS: a real coordinator leads, a standby on another port with
 * the coordinator's own certificate names it in every answer. Every RPC of the proto answers
 * NOT_LEADER to a caller of the right role (enumerated, so one added to the proto is covered),
 * callers of the wrong role or without a certificate are refused as the leader refuses them, and
 * health says NOT_SERVING for the fedhpc services. A site configured with [standby, leader] and
 * one configured with [standby] only both reach the leader, and their round commits.
 *
 * And a standby whose configured run differs from the run the replicated journal started (a pair
 * on one nats-server): it is refused as it starts standing by (RUN_CONFIG_MISMATCH, exit 1, the
 * code in its pino log), writes nothing, and the leader goes on.
 */
import * as grpc from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { journalStreamName, journalSubject, readJournalChain, type CoordinatorHandle } from '../../coordinator/index.js';
import { createRunner, loadSiteConfig } from '../../site-agent/index.js';
import { skipUnless } from '../helpers/components.js';
import { createTestFederation, freePort, startCli, startCoordinatorInProcess, waitFor, waitForCommitted, type Proc, type TestFederation } from '../helpers/federation.js';
import { startTestStandby, type TestStandby } from '../helpers/ha-pair.js';
import { natsUnavailable, startNatsServer, type TestNatsServer } from '../helpers/nats.js';
import { expectLogs } from '../helpers/logger.js';
import { RawRpcClient, allRpcs, type RawOutcome } from '../helpers/raw-rpc.js';
import { adminCertFiles, siteCertFiles, type CertFiles } from '../helpers/raw-site.js';
import { startAgentInProcess, type AgentUnderTest, type LogLine } from '../helpers/stand-in-coordinator.js';

const DEADLINE_MS = 2_000;

/** Calls every RPC of `service` with an empty request as `files`. */
async function callAll(address: string, files: CertFiles | { ca: string }, service: string): Promise<Map<string, RawOutcome>> {
  const client = new RawRpcClient(address, files);
  try {
    const out = new Map<string, RawOutcome>();
    for (const rpc of allRpcs().filter((r) => r.service === service)) out.set(rpc.method, await client.call(rpc, [Buffer.alloc(0)], DEADLINE_MS));
    return out;
  } finally {
    client.close();
  }
}

/** `grpc.health.v1.Health/Check` of `service` as `files`: the serving status number (1 SERVING, 2 NOT_SERVING). */
function healthOf(address: string, files: CertFiles, service: string): Promise<number> {
  const client = new grpc.Client(address, grpc.credentials.createSsl(readFileSync(files.ca), readFileSync(files.key), readFileSync(files.cert)));
  // HealthCheckRequest { service = 1 } in, HealthCheckResponse { status = 1 } out, by hand.
  const name = Buffer.from(service, 'utf8');
  const request = Buffer.concat([Buffer.from([0x0a, name.length]), name]);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest('/grpc.health.v1.Health/Check', (b: Buffer) => b, (b: Buffer) => b, request, { deadline: Date.now() + DEADLINE_MS }, (err, res) => {
      client.close();
      if (err || !res) return reject(err ?? new Error('no health answer'));
      resolve(res.length === 0 ? 0 : res[1]!);
    });
  });
}

describe('a standby coordinator answering NOT_LEADER, and sites following it to the leader', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let standby: TestStandby;
  let leader: string | undefined;
  const agents: AgentUnderTest[] = [];

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 2, run: { rounds: 1, minSites: 2 } });
    coordinator = await startCoordinatorInProcess(fed);
    leader = fed.address;
    standby = await startTestStandby(fed, () => leader);
  }, 30_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await standby?.stop();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  /** The standby as sites dial it: by the name its (the coordinator's) certificate holds. */
  const standbyAddress = (): string => standby.dial;

  it('answers every site and admin RPC NOT_LEADER naming the leader, and refuses callers as the leader does', async () => {
    for (const [service, files] of [['SiteService', siteCertFiles(fed, 'site-1')], ['AdminService', adminCertFiles(fed)]] as const) {
      const outcomes = await callAll(standbyAddress(), files, service);
      expect(outcomes.size).toBeGreaterThan(5);
      for (const [method, o] of outcomes) {
        expect({ code: grpc.status[o.code], fedhpcCode: o.fedhpcCode, leader: o.leader }, `${service}/${method}`).toEqual({ code: 'UNAVAILABLE', fedhpcCode: 'NOT_LEADER', leader: fed.address });
      }
    }
    // The wrong role is refused before the leader is named; no certificate gets no gRPC answer at all.
    for (const o of (await callAll(standbyAddress(), adminCertFiles(fed), 'SiteService')).values()) {
      expect({ code: grpc.status[o.code], fedhpcCode: o.fedhpcCode, leader: o.leader }).toEqual({ code: 'PERMISSION_DENIED', fedhpcCode: 'PERMISSION_DENIED', leader: undefined });
    }
    // The standby reports the refused handshake as the leader's listener does.
    expectLogs((l) => l.msg === 'caller refused' && l['reason'] === 'tls_handshake');
    for (const o of (await callAll(standbyAddress(), { ca: siteCertFiles(fed, 'site-1').ca }, 'AdminService')).values()) {
      expect({ code: grpc.status[o.code], fedhpcCode: o.fedhpcCode }).toEqual({ code: 'UNAVAILABLE', fedhpcCode: undefined });
    }
    // No leader known yet: NOT_LEADER without a name.
    leader = undefined;
    try {
      const join = (await callAll(standbyAddress(), siteCertFiles(fed, 'site-1'), 'SiteService')).get('Join')!;
      expect({ fedhpcCode: join.fedhpcCode, leader: join.leader }).toEqual({ fedhpcCode: 'NOT_LEADER', leader: undefined });
    } finally {
      leader = fed.address;
    }
    expect(await healthOf(standbyAddress(), siteCertFiles(fed, 'site-1'), 'fedhpc.v1.SiteService')).toBe(2);
    expect(await healthOf(standbyAddress(), siteCertFiles(fed, 'site-1'), 'fedhpc.v1.AdminService')).toBe(2);
    expect(await healthOf(standbyAddress(), siteCertFiles(fed, 'site-1'), '')).toBe(1);
  }, 20_000);

  it('a site configured [standby, leader] and one configured [standby] only join the leader, and their round commits', async () => {
    for (const [site, coordinators] of [['site-1', [standbyAddress(), fed.address]], ['site-2', [standbyAddress()]]] as const) {
      agents.push(
        startAgentInProcess(fed, site, fed.address, {
          runner: createRunner(loadSiteConfig(fed.files.siteConfigs.get(site)!)),
          reconnect: { initialMs: 100, maxMs: 500 },
          configure: (c) => ({ ...c, coordinator: undefined, coordinators: [...coordinators] }),
        }),
      );
    }
    await waitForCommitted(fed.admin(), 1, 30_000);
    for (const a of agents) {
      const site = a.config.site;
      const followed = a.logs.filter((l: LogLine) => l['phase'] === 'join' && l['why'] === 'leader-named');
      expect(followed.length, `${site} followed the standby's hint`).toBeGreaterThanOrEqual(1);
      expect(followed[0]).toMatchObject({ coordinator: fed.address, from: standbyAddress(), code: 'NOT_LEADER', waitsBackoff: false });
      expect(a.logs.find((l) => l.msg === 'joined federation')).toMatchObject({ coordinator: fed.address });
    }
  }, 40_000);
});

describe.skipIf(skipUnless('nats', natsUnavailable()))('a standby whose configured run differs from the journal\'s', () => {
  let nats: TestNatsServer | undefined;
  let fed: TestFederation | undefined;
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    await fed?.cleanup();
    await nats?.cleanup();
  });

  it('exits 1 as it starts standing by, RUN_CONFIG_MISMATCH naming the field in its log, and writes nothing while the leader goes on', async () => {
    nats = await startNatsServer();
    fed = await createTestFederation({ sites: 1, run: { rounds: 2 } });
    const base = JSON.parse(await readFile(fed.files.coordinatorConfig, 'utf8')) as { run: object };
    const portB = await freePort();
    // A pair on one NATS node (replicas 1), with a short lease as the pair tests use.
    const config = (name: string, port: number, run: object) => ({
      ...base,
      listen: `127.0.0.1:${port}`,
      nats: { url: nats!.url },
      ha: { name, advertise: `localhost:${port}`, lease: { ttlMs: 4000, renewMs: 500, marginMs: 1500 }, replicas: 1 },
      run,
    });
    const files = [fed.files.coordinatorConfig, join(fed.dir, 'coordinator', 'coordinator-b.json')] as const;
    await writeFile(files[0], JSON.stringify(config('coord-a', fed.port, base.run)));
    await writeFile(files[1], JSON.stringify(config('coord-b', portB, { ...base.run, strategy: { name: 'diloco', lr: 0.5 } })));

    procs.push(await startCli('coord-a', ['coordinator', '--config', files[0]], fed.dir));
    const admin = fed.admin();
    await waitFor('coordinator a to lead its run', () => admin.status().then((s) => (s.runId ? s : undefined), () => undefined), 30_000, 100);
    const b = await startCli('coord-b', ['coordinator', '--config', files[1]], fed.dir);
    procs.push(b);
    expect(await b.exited).toBe(1);

    const lines = (await b.logText()).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; phase?: string });
    // Refused while standing by, not at a takeover.
    expect(lines.some((l) => l.phase === 'standby')).toBe(true);
    expect(lines.some((l) => l.phase === 'leader')).toBe(false);
    const fatal = lines.find((l) => l.level === 60);
    expect(fatal).toMatchObject({ code: 'RUN_CONFIG_MISMATCH', context: { runId: 'test-run', fields: 'run.strategy.lr' } });
    expect(fatal?.msg).toContain('run.strategy.lr: journal 0.7, config 0.5');
    expect(await admin.status()).toMatchObject({ runId: 'test-run' });
    const nc = await connect({ servers: nats.url });
    try {
      const chain = await readJournalChain(nc, { stream: journalStreamName('testfed'), subject: journalSubject('testfed'), replicas: 1 });
      expect(chain.records.filter((r) => r.body.type === 'leader').map((r) => r.body['holder'])).toEqual(['coord-a']);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
