import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { issueCertificate } from '../../../coordinator/pki/index.js';
import { unknownUsage } from '../../../common/usage.js';
import { loadProto, type RoundReceipt__Output, type SiteServiceClient } from '../../../proto/index.js';
import { CoordinatorLink } from '../../../site-agent/link.js';
import { ReceiptSigner } from '../../../site-agent/receipt.js';
import { testLogger } from '../../helpers/logger.js';
import { caFor, NOW } from '../pki/fixtures.js';

const proto = loadProto();
const closers: (() => void)[] = [];
afterEach(() => closers.splice(0).forEach((close) => close()));

/**
 * A SiteService on loopback that keeps the receipts it is sent; the first `cancelFirst` calls end
 * CANCELLED with no verdict, as grpc-js may report a connection that dropped under the call.
 */
async function receiptServer(cancelFirst = 0): Promise<{ address: string; received: RoundReceipt__Output[] }> {
  const received: RoundReceipt__Output[] = [];
  const server = new grpc.Server();
  let calls = 0;
  server.addService(proto.fedhpc.v1.SiteService.service, {
    SubmitReceipt: (call: grpc.ServerUnaryCall<RoundReceipt__Output, unknown>, reply: grpc.sendUnaryData<unknown>) => {
      if (calls++ < cancelFirst) return reply({ code: grpc.status.CANCELLED, details: 'Call cancelled' });
      received.push(call.request);
      reply(null, {});
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  closers.push(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, received };
}

function dial(address: string): SiteServiceClient {
  const client = new proto.fedhpc.v1.SiteService(address, grpc.credentials.createInsecure());
  closers.push(() => client.close());
  return client;
}

describe('receipts of committed rounds', () => {
  it('keeps a receipt whose connection closed under it, and delivers it when the round is announced again', async () => {
    const ca = await caFor('receipts');
    const site = await issueCertificate({ ca, role: 'site', id: 'bsc', federation: 'receipts', validityDays: 1, now: NOW });
    const { logger, lines } = testLogger();
    const server = await receiptServer();
    // The agent hands the signer its current link's open client (site-agent/agent.ts).
    let link = new CoordinatorLink(dial(server.address), server.address);
    link.close();
    const signer = new ReceiptSigner({
      site: 'bsc',
      certificatePem: site.certPem,
      keyPem: site.keyPem!,
      logger,
      client: () => link.openClient,
      measure: () => Promise.resolve(unknownUsage('not measured in this test')),
    });
    const model = 'ab'.repeat(32);
    signer.contributed({ runId: 'run-1', round: 3, parentSha256: 'cd'.repeat(32), dataManifestSha256: 'ef'.repeat(32) });

    // The agent stopped or redialled before the round's usage was measured: a call on the closed
    // channel would throw "Channel has been shut down" at once, an unhandled rejection in the
    // receipt's promise chain. The closed link offers no client, so the receipt is kept.
    signer.committed('run-1', 3, model);
    await signer.settled();
    expect(server.received).toHaveLength(0);

    link = new CoordinatorLink(dial(server.address), server.address);
    signer.committed('run-1', 3, model);
    await signer.settled();
    expect(server.received).toHaveLength(1);
    expect(server.received[0]).toMatchObject({ runId: 'run-1', round: '3', modelSha256: model });
    expect(lines.some((l) => l.msg === 'receipt of committed round signed and submitted')).toBe(true);
  });

  it('keeps a receipt whose call ended CANCELLED without a verdict (a connection dropped under it), and delivers it when the round is announced again', async () => {
    const ca = await caFor('receipts');
    const site = await issueCertificate({ ca, role: 'site', id: 'bsc', federation: 'receipts', validityDays: 1, now: NOW });
    const { logger, lines } = testLogger();
    const server = await receiptServer(1);
    const link = new CoordinatorLink(dial(server.address), server.address);
    const signer = new ReceiptSigner({ site: 'bsc', certificatePem: site.certPem, keyPem: site.keyPem!, logger, client: () => link.openClient, measure: () => Promise.resolve(unknownUsage('not measured in this test')) });
    const model = 'ab'.repeat(32);
    signer.contributed({ runId: 'run-1', round: 3, parentSha256: 'cd'.repeat(32), dataManifestSha256: 'ef'.repeat(32) });
    signer.committed('run-1', 3, model);
    await signer.settled();
    expect(server.received).toHaveLength(0);
    expect(lines.some((l) => l.msg === 'receipt not delivered yet')).toBe(true);
    expect(lines.some((l) => l.msg === 'receipt refused by the coordinator')).toBe(false);

    signer.committed('run-1', 3, model);
    await signer.settled();
    expect(server.received).toHaveLength(1);
    expect(server.received[0]).toMatchObject({ runId: 'run-1', round: '3', modelSha256: model });
  });
});
