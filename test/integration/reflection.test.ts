/**
 * Server reflection as a client written from the .proto sees it (grpcurl, Python's
 * grpc_reflection): the contract's file is served under its path in the repository,
 * `fedhpc/v1/fedhpc.proto`, as protoc names it, not under a name made up from the package.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorHandle } from '../../coordinator/index.js';
import { createTestFederation, startCoordinatorInProcess, type TestFederation } from '../helpers/federation.js';

const REFLECTION_PROTO = join(dirname(createRequire(import.meta.url).resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

/** Field 1 (`name`) of a serialized FileDescriptorProto. */
function fileName(descriptor: Buffer): string {
  let at = 0;
  while (at < descriptor.length) {
    const tag = descriptor[at++]!;
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const b = descriptor[at++]!;
      len |= (b & 0x7f) << shift;
      if (b < 0x80) break;
    }
    if (tag === 0x0a) return descriptor.subarray(at, at + len).toString('utf8');
    at += len;
  }
  throw new Error('no name in the descriptor');
}

describe('server reflection', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let client: grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> };

  /** One request on a fresh reflection stream; resolves with its one answer. */
  const ask = (request: object): Promise<ReflectionResponse> =>
    new Promise((resolve, reject) => {
      const call = client.ServerReflectionInfo();
      call.once('data', (res: ReflectionResponse) => {
        resolve(res);
        call.end();
      });
      call.once('error', reject);
      call.write(request);
    });

  beforeAll(async () => {
    fed = await createTestFederation({ sites: 1 });
    coordinator = await startCoordinatorInProcess(fed);
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(REFLECTION_PROTO, { keepCase: false, longs: String, defaults: true })) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const m = fed.member('admins', 'admin');
    const credentials = grpc.credentials.createSsl(readFileSync(join(m, 'ca.crt')), readFileSync(join(m, 'admin.key')), readFileSync(join(m, 'admin.crt')));
    client = new pkg.grpc.reflection.v1.ServerReflection(fed.address, credentials) as unknown as typeof client;
  });
  afterAll(async () => {
    client?.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('lists the fedhpc services', async () => {
    const res = await ask({ listServices: '' });
    expect(res.listServicesResponse?.service.map((s) => s.name)).toEqual(expect.arrayContaining(['fedhpc.v1.SiteService', 'fedhpc.v1.AdminService']));
  });

  it('serves the file of a symbol as fedhpc/v1/fedhpc.proto, and that file by its name', async () => {
    const bySymbol = await ask({ fileContainingSymbol: 'fedhpc.v1.SiteService' });
    expect(bySymbol.errorResponse).toBeUndefined();
    expect(bySymbol.fileDescriptorResponse?.fileDescriptorProto.map(fileName)).toEqual(['fedhpc/v1/fedhpc.proto']);
    const byName = await ask({ fileByFilename: 'fedhpc/v1/fedhpc.proto' });
    expect(byName.errorResponse).toBeUndefined();
    expect(byName.fileDescriptorResponse?.fileDescriptorProto.map(fileName)).toEqual(['fedhpc/v1/fedhpc.proto']);
  });
});
