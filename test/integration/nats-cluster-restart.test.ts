/**
 * The loopback NATS cluster's nodes come back (simulate/nats-cluster.ts `restart()`): two of three
 * killed — no quorum — and restarted on the same ports and store dirs, a replicated stream keeps
 * what it had and accepts appends again. The standby pair's quorum-loss test relies on this.
 */
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { skipUnless } from '../helpers/components.js';
import { natsUnavailable, startNatsCluster, type TestNatsCluster } from '../helpers/nats.js';
import { waitFor } from '../helpers/wait.js';

const skip = skipUnless('nats', natsUnavailable());

describe.skipIf(skip)('a loopback NATS cluster node restarted', () => {
  let cluster: TestNatsCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('keeps an R=3 stream and accepts appends again once two killed nodes restart on the same ports and stores', async () => {
    cluster = await startNatsCluster(3);
    const nc = await connect({ servers: [...cluster.urls], maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'RESTART', subjects: ['restart.x'], storage: StorageType.File, num_replicas: 3 });
      const js = jetstream(nc, { timeout: 2_000 });
      await js.publish('restart.x', 'before');
      const [, n2, n3] = cluster.nodes;
      await Promise.all([n2!.kill(), n3!.kill()]);
      await expect(js.publish('restart.x', 'without quorum')).rejects.toThrow();
      await Promise.all([n2!.restart(), n3!.restart()]);
      expect([n2!.running(), n3!.running()]).toEqual([true, true]);
      await waitFor('an append to be acknowledged again', () => js.publish('restart.x', 'after').then((ack) => ack, () => undefined), 30_000, 250);
      const info = await jsm.streams.info('RESTART');
      expect(info.state.messages).toBeGreaterThanOrEqual(2);
      expect(info.cluster?.replicas?.length).toBe(2);
    } finally {
      await nc.close();
    }
  }, 60_000);
});
