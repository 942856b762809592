/**
 * One `SiteService.Upload` call between a grpc-js server and client on loopback, without TLS: for
 * tests of what the upload codecs and grpc-js patches do to messages (proto/upload-codec.ts,
 * proto/receive-pool.ts), where the transport's security is not the subject.
 */
import * as grpc from '@grpc/grpc-js';
import type { loadProto, UploadMessage, UploadMessage__Output, UploadReply, UploadReply__Output } from '../../proto/index.js';

type Package = ReturnType<typeof loadProto>;

/**
 * Serves `Upload` with `handler` from `server`'s package, opens one call from a client of
 * `client`'s package, lets `drive` write to it (and end it), and resolves once the server has
 * ended the call; both ends are closed after.
 */
export async function uploadOverLoopback(
  server: Package,
  client: Package,
  handler: (call: grpc.ServerDuplexStream<UploadMessage__Output, UploadReply>) => void,
  drive: (call: grpc.ClientDuplexStream<UploadMessage, UploadReply__Output>) => Promise<void>,
  options: grpc.ChannelOptions = {},
): Promise<void> {
  const s = new grpc.Server();
  s.addService(server.fedhpc.v1.SiteService.service, { Upload: handler });
  const port = await new Promise<number>((resolve, reject) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const c = new client.fedhpc.v1.SiteService(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
  try {
    const call = c.Upload({ deadline: Date.now() + 30_000 });
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', () => undefined);
      call.on('end', resolve);
      call.on('error', reject);
    });
    await drive(call);
    await done;
  } finally {
    c.close();
    s.forceShutdown();
  }
}
