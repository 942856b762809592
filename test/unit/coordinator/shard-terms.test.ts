/**
 * An aggregator shard follows the leader and its terms (issue 22, coordinator/shards/shard.ts): it
 * finds the leader through a standby's NOT_LEADER, follows the highest term it has seen, is refused
 * by a coordinator of an older term (which has been superseded) and refuses an instruction of an
 * older term itself, attaching again when a leader of a newer term appears. Real gRPC over mTLS on
 * loopback; coordinators in-process, their leadership terms given as a standby pair's leader would
 * (the lease itself is tested with NATS in the HA tests).
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freeLoopbackPort } from '../../../common/net.js';
import { loadCoordinatorConfig, startCoordinator, type CoordinatorHandle } from '../../../coordinator/index.js';
import type { HaView } from '../../../coordinator/ha/view.js';
import { startStandbyServer, type StandbyServer } from '../../../coordinator/ha/standby-server.js';
import { loadShardConfig } from '../../../coordinator/shards/config.js';
import { runShard, termAllows, type ShardState } from '../../../coordinator/shards/shard.js';
import { loadProto, type ShardReport__Output } from '../../../proto/index.js';
import { writeFederationFiles, type FederationFiles } from '../../../simulate/federation-files.js';
import { testLogger } from '../../helpers/logger.js';
import { waitFor } from '../../helpers/wait.js';

let dir: string;
let files: FederationFiles;
let port: number;
let standbyPort: number;
const stops: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-shard-terms-'));
  port = await freeLoopbackPort();
  standbyPort = await freeLoopbackPort();
  files = await writeFederationFiles({
    dir,
    federation: 'termfed',
    sites: ['bsc'],
    admins: ['alice'],
    coordinatorAddress: `localhost:${port}`,
    listen: `127.0.0.1:${port}`,
    aggregators: [{ name: 's1', address: `localhost:${await freeLoopbackPort()}`, listen: '' }],
    run: { id: 'run-1', rounds: 1, minSites: 1, expectedSites: ['bsc'], train: { steps: 1, batchSize: 2, lr: 0.01 } },
  });
});
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  await rm(dir, { recursive: true, force: true });
});

/** A standby pair's leader of `term`, as coordinator/ha/run.ts hands its view to the coordinator. */
function leaderOf(term: number): HaView {
  const nats = { connectedServer: '', journalLeader: '', peersCurrent: 0, peersTotal: 0, checkedMsAgo: 0, error: '' };
  return { snapshot: () => ({ role: 'leader', name: 'a', term, address: `localhost:${port}`, leaseAgeMs: 0, leaseTtlMs: 4000, standbys: [], nats }) };
}

async function startLeader(term: number): Promise<CoordinatorHandle> {
  const handle = await startCoordinator({
    config: loadCoordinatorConfig(files.coordinatorConfig),
    // A shard stopped while it dials again (every 50-200 ms once refused) resets its handshake half-way.
    logger: testLogger({ expect: [/shard not ready/, (l) => l.msg === 'caller refused' && l['reason'] === 'tls_handshake'] }).logger,
    ha: leaderOf(term),
    onFatal: (err) => {
      throw err;
    },
  });
  return handle;
}

/** Runs the shard of `files` dialling `coordinators`; its states as they change; `stop` ends it. */
function startShard(coordinators: string[], o: { keepTerm?: boolean } = {}): { states: ShardState[]; lines: () => string; stop: () => Promise<void> } {
  const { stateDir, ...loaded } = loadShardConfig(files.aggregatorConfigs.get('s1')!);
  const config = { ...loaded, ...(o.keepTerm ? { stateDir } : {}), coordinators, reconnect: { initialMs: 50, maxMs: 200 } };
  const log = testLogger({ expect: [/coordinator unavailable/, /refused an instruction of an older leadership term/] });
  const states: ShardState[] = [];
  const ac = new AbortController();
  const done = runShard({ config, logger: log.logger, signal: ac.signal, onState: (s) => states.push(s) });
  const stop = async (): Promise<void> => {
    ac.abort();
    await done;
  };
  stops.push(stop);
  return { states, lines: () => JSON.stringify(log.lines), stop };
}

describe('an aggregator shard and leadership terms', () => {
  it('follows a standby’s NOT_LEADER to the leader and its term; a coordinator of an older term refuses it; a newer leader gets it back', async () => {
    const standby: StandbyServer = await startStandbyServer({
      config: { ...loadCoordinatorConfig(files.coordinatorConfig), listen: `127.0.0.1:${standbyPort}` },
      leader: () => `localhost:${port}`,
      logger: testLogger().logger,
    });
    stops.push(() => standby.stop());
    let leader = await startLeader(5);
    const events: unknown[] = [];
    leader.bus.subscribe((e) => {
      if (e.kind === 'shard.state') events.push(e.body);
    });
    const shard = startShard([`localhost:${standbyPort}`]);
    await waitFor('attached at term 5', async () => (shard.states.some((s) => s.term === 5n && s.coordinator === `localhost:${port}`) ? true : undefined), 20_000, 50);
    expect(shard.lines()).toContain('a standby named the leader');
    // The leader announces the shard's states: attached, then ready (it reads the run's model in the shared state dir).
    await waitFor('shard ready', async () => (events.length >= 2 ? true : undefined), 20_000, 50);
    expect(events).toEqual([
      { shard: 's1', index: 0, state: 'attached', problem: '' },
      { shard: 's1', index: 0, state: 'ready', problem: '' },
    ]);

    // The leader of term 5 goes; a coordinator of term 3 (superseded) takes its address: it refuses the shard.
    await leader.stop();
    leader = await startLeader(3);
    await waitFor('refused by the older term', async () => (shard.lines().includes('above this coordinator') ? true : undefined), 20_000, 50);
    expect(shard.states.at(-1)?.term).toBe(5n);
    await leader.stop();

    // A leader of a newer term: the shard attaches and follows it.
    leader = await startLeader(7);
    stops.push(() => leader.stop());
    await waitFor('attached at term 7', async () => (shard.states.some((s) => s.term === 7n) ? true : undefined), 20_000, 50);
  }, 60_000);

  it('refuses an instruction of an older term from a server that does not check the hello, and sends it nothing', async () => {
    let leader = await startLeader(5);
    const shard = startShard([`localhost:${port}`]);
    await waitFor('attached at term 5', async () => (shard.states.some((s) => s.term === 5n && s.assignment !== undefined) ? true : undefined), 20_000, 50);
    await leader.stop();
    // A server with the coordinator's certificate that ignores the shard's term and instructs at term 2.
    const reports: ShardReport__Output[] = [];
    const server = new grpc.Server();
    const readTls = async (name: string): Promise<Buffer> => readFile(join(dir, 'coordinator', name));
    server.addService(loadProto().fedhpc.v1.AggregatorService.service, {
      Attach: (call: grpc.ServerDuplexStream<ShardReport__Output, unknown>) => {
        call.on('data', (r: ShardReport__Output) => {
          reports.push(r);
          if (r.kind === 'hello') call.write({ term: '2', assignment: { runId: '', shardIndex: 0, shardCount: 1 } });
        });
        call.on('error', () => undefined);
      },
    });
    const credentials = grpc.ServerCredentials.createSsl(await readTls('ca.crt'), [{ cert_chain: await readTls('coordinator.crt'), private_key: await readTls('coordinator.key') }], true);
    await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, credentials, (err) => (err ? reject(err) : resolve())));
    stops.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
    await waitFor('older term refused', async () => (shard.lines().includes('refused an instruction of an older leadership term') ? true : undefined), 20_000, 50);
    expect(reports.filter((r) => r.kind === 'hello').every((r) => r.hello?.term === '5')).toBe(true);
    expect(reports.some((r) => r.kind === 'readiness')).toBe(false);
    expect(shard.states.at(-1)?.term).toBe(5n);
    server.forceShutdown();
    leader = await startLeader(5);
    stops.push(() => leader.stop());
    await waitFor('attached again at term 5', async () => (shard.states.filter((s) => s.term === 5n && s.coordinator !== undefined).length > 1 ? true : undefined), 20_000, 50);
  }, 60_000);

  it('a shard with a state dir keeps the highest term it followed: restarted, it still refuses a leader of an older term; a corrupt term file stops it', async () => {
    let leader = await startLeader(7);
    const first = startShard([`localhost:${port}`], { keepTerm: true });
    await waitFor('attached at term 7', async () => (first.states.some((s) => s.term === 7n && s.assignment !== undefined) ? true : undefined), 20_000, 50);
    const stateDir = loadShardConfig(files.aggregatorConfigs.get('s1')!).stateDir!;
    expect(await readFile(join(stateDir, 'term'), 'utf8')).toBe('7\n');
    await first.stop();
    await leader.stop();

    // Restarted while a deposed leader of term 5 holds the address: the shard hellos with term 7 and is refused.
    leader = await startLeader(5);
    const again = startShard([`localhost:${port}`], { keepTerm: true });
    await waitFor('refused by the older term', async () => (again.lines().includes('above this coordinator') ? true : undefined), 20_000, 50);
    expect(again.lines()).toContain('following the leadership term kept before the restart');
    expect(again.states.every((s) => s.coordinator === undefined && s.term === 7n)).toBe(true);
    await again.stop();
    await leader.stop();

    // A term file that holds no term: the shard refuses to start, naming it.
    await writeFile(join(stateDir, 'term'), 'seven\n');
    await expect(runShard({ config: loadShardConfig(files.aggregatorConfigs.get('s1')!), logger: testLogger().logger, signal: AbortSignal.timeout(5_000) })).rejects.toMatchObject({
      code: 'STATE_CORRUPT',
      message: expect.stringMatching(/term holds no leadership term \("seven\\n"\)/),
    });
  }, 60_000);

  it('termAllows: the same or a newer term, never an older one', () => {
    expect(termAllows(5n, 5n)).toBe(true);
    expect(termAllows(5n, 6n)).toBe(true);
    expect(termAllows(5n, 4n)).toBe(false);
    expect(termAllows(0n, 0n)).toBe(true);
  });
});
