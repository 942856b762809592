/**
 * Admins configured with several coordinator addresses follow a standby's NOT_LEADER to the
 * leader, as sites do (docs/protocol.md, "Standby coordinators and NOT_LEADER"): a real
 * coordinator leads, a standby responder (coordinator/ha/standby-server.ts) with the coordinator's
 * certificate names it. The built CLI's `admin status --json`, `admin watch --json` and
 * `admin dashboard-token` with an admin config listing [standby, leader] and one listing only
 * [standby] answer as the leader does; the admin client's event stream opened at the standby
 * delivers the leader's events; a standby naming itself ends in LEADER_BOUNCED. A coordinator whose
 * calls end in a reset stream (how grpc-js may see a leader killed mid-call: CANCELLED "Call
 * cancelled", not UNAVAILABLE) is passed over like one that is down, and an event stream it ends is
 * opened again.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminClient, AdminClientError, followEvents, noLeaderAnswered, type AdminEvent, type CoordinatorHandle } from '../../coordinator/index.js';
import { loadProto } from '../../proto/index.js';
import { CLI, createTestFederation, startCoordinatorInProcess, type TestFederation } from '../helpers/federation.js';
import { startTestStandby, type TestStandby } from '../helpers/ha-pair.js';
import { waitFor } from '../helpers/wait.js';

const exec = promisify(execFile);

describe('admins with several coordinator addresses follow a standby to the leader', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let standby: TestStandby;
  let leader: string | undefined;
  /** Admin configs by name: `both` lists [standby, leader], `standby` only [standby]. */
  const configs = new Map<string, string>();

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 1 });
    // No run: the coordinator idles (so `admin watch` ends at once) until the test starts one.
    await fed.patchCoordinatorConfig(({ run: _run, ...cfg }) => cfg);
    coordinator = await startCoordinatorInProcess(fed);
    leader = fed.address;
    standby = await startTestStandby(fed, () => leader);
    const provisioned = fed.files.adminConfigs.get('admin')!;
    const { coordinator: _one, ...base } = JSON.parse(await readFile(provisioned, 'utf8')) as Record<string, unknown>;
    for (const [name, coordinators] of [['both', [standbyAddress(), fed.address]], ['standby', [standbyAddress()]]] as const) {
      // Beside the provisioned config, so its relative TLS paths hold.
      const file = join(provisioned, '..', `admin-${name}.json`);
      await writeFile(file, JSON.stringify({ ...base, coordinators }));
      configs.set(name, file);
    }
  }, 30_000);

  afterAll(async () => {
    await standby?.stop();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  /** The standby as admins dial it: by the name its (the coordinator's) certificate holds. */
  const standbyAddress = (): string => standby.dial;
  const cli = (args: string[], config: string) => exec(process.execPath, [CLI, 'admin', ...args, '--config', config], { timeout: 30_000 });

  it('admin status --json answers with the leader\'s status from [standby, leader] and from [standby] alone', async () => {
    const direct = await fed.admin().status();
    for (const name of ['both', 'standby']) {
      const s = JSON.parse((await cli(['status', '--json'], configs.get(name)!)).stdout) as Record<string, unknown>;
      expect({ federation: s['federation'], runState: s['runState'], sitesKnown: s['sitesKnown'] }, name).toEqual({ federation: direct.federation, runState: 'idle', sitesKnown: direct.sitesKnown });
    }
  }, 30_000);

  it('admin watch --json reads the leader through the standby, and dashboard-token takes the config', async () => {
    const { stdout } = await cli(['watch', '--json'], configs.get('standby')!);
    const first = JSON.parse(stdout.split('\n')[0]!) as { type: string; status: { federation: string; runState: string } };
    expect(first).toMatchObject({ type: 'status', status: { federation: 'testfed', runState: 'idle' } });
    const token = JSON.parse((await cli(['dashboard-token', '--json'], configs.get('both')!)).stdout) as Record<string, unknown>;
    expect(token).toMatchObject({ admin: 'admin', federation: 'testfed' });
  }, 30_000);

  it('the event stream opened at the standby delivers the leader\'s events', async () => {
    const m = fed.member('admins', 'admin');
    const client = new AdminClient({ coordinators: [standbyAddress()], tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') } });
    const stop = new AbortController();
    const events: AdminEvent[] = [];
    try {
      const stream = client.events((e) => events.push(e), stop.signal);
      // The stream is open at the leader once a status call from the same client is answered there.
      await client.status();
      const run = { id: 'standby-run', rounds: 1, minSites: 1, expectedSites: ['site-1'], train: { steps: 2, batchSize: 8, lr: 0.01 }, deadlines: { openS: 60, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 15 }, secureAggregation: { enabled: false } };
      expect(await fed.admin().startRun(JSON.stringify(run), 'test')).toMatchObject({ runState: 'running' });
      await waitFor('run.started on the stream', () => Promise.resolve(events.some((e) => e.kind === 'run.started') ? true : undefined), 10_000, 100);
      stop.abort();
      await stream;
    } finally {
      stop.abort();
      client.close();
    }
  }, 30_000);

  it('a standby that names itself leads to NOT_LEADER from the address followed: LEADER_BOUNCED', async () => {
    const m = fed.member('admins', 'admin');
    const other = await startTestStandby(fed, () => standbyAddress());
    const client = new AdminClient({ coordinators: [other.dial], tls: { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') } });
    // `other` names `standby`, which names the leader: the second hint is not followed.
    leader = other.dial;
    try {
      const err: unknown = await client.status().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AdminClientError);
      expect(err).toMatchObject({ code: 'LEADER_BOUNCED' });
    } finally {
      leader = fed.address;
      client.close();
      await other.stop();
    }
  }, 30_000);

  it('a coordinator whose call ends in a reset stream (a leader killed mid-call, as grpc-js may report it) is passed over, and an event stream it ends is opened again', async () => {
    const resetter = await startResettingServer(fed.member('coordinator'));
    const m = fed.member('admins', 'admin');
    const tls = { ca: join(m, 'ca.crt'), cert: join(m, 'admin.crt'), key: join(m, 'admin.key') };
    const alone = new AdminClient({ coordinators: [resetter.dial], tls });
    const both = new AdminClient({ coordinators: [resetter.dial, fed.address], tls });
    try {
      // Alone: the failure a standby pair's admin waits out, not a final one.
      const err: unknown = await alone.status().then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect(noLeaderAnswered(err)).toBe(true);
      // With the leader listed next: answered there.
      expect(await both.status()).toMatchObject({ federation: 'testfed' });
      // A stream that delivered an event, then was reset: followed again, not failed.
      const events: AdminEvent[] = [];
      const stop = new AbortController();
      let reconnects = 0;
      const onEvent = (e: AdminEvent): void => {
        events.push(e);
        if (events.length === 2) stop.abort();
      };
      await followEvents(alone, onEvent, () => Promise.resolve(void (reconnects += 1)), stop.signal);
      // One event on the first stream, one on the stream opened again after its reset.
      expect(events.map((e) => e.kind)).toEqual(['round.opened', 'round.opened']);
      expect(reconnects).toBe(1);
      expect(resetter.streams()).toBeGreaterThanOrEqual(3);
    } finally {
      alone.close();
      both.close();
      await resetter.stop();
    }
  }, 30_000);
});

/**
 * A TLS HTTP/2 server with the coordinator's certificate that resets every stream with CANCEL, as
 * a connection lost under a call may reach grpc-js; an `Events` stream gets one event first.
 */
async function startResettingServer(dir: string): Promise<{ dial: string; streams: () => number; stop: () => Promise<void> }> {
  const server = http2.createSecureServer({
    ca: readFileSync(join(dir, 'ca.crt')),
    cert: readFileSync(join(dir, 'coordinator.crt')),
    key: readFileSync(join(dir, 'coordinator.key')),
    requestCert: true,
    rejectUnauthorized: true,
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  let streams = 0;
  server.on('stream', (stream, headers) => {
    streams += 1;
    if (headers[':path'] !== '/fedhpc.v1.AdminService/Events') {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    const body = loadProto().fedhpc.v1.AdminService.service.Events.responseSerialize({ kind: 'round.opened', tsMs: String(Date.now()), json: '{"round":1}' });
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    // Trailers held back: closing sends no END_STREAM ahead of the reset.
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.write(frame, () => setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 200));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    dial: `localhost:${port}`,
    streams: () => streams,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}
