#!/usr/bin/env node
// Container health check (Docker HEALTHCHECK, compose `healthcheck`). It inspects the container's
// main process (PID 1): for `fedhpc coordinator --config FILE` it makes a grpc.health.v1 Check over
// mTLS with the coordinator's own certificate (which carries clientAuth), so "healthy" means the
// gRPC server accepts TLS and answers SERVING; for a site agent, which serves nothing, it checks
// that the agent process is still the one running. Exit 0 healthy, 1 unhealthy.
import { readFileSync, readlinkSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';

const fail = (why) => {
  process.stderr.write(`unhealthy: ${why}\n`);
  process.exit(1);
};

const argv = readFileSync('/proc/1/cmdline', 'utf8').split('\0').filter(Boolean);
if (!argv.includes('coordinator')) {
  if (!argv.includes('site')) fail(`PID 1 is not a fedhpc coordinator or site: ${argv.join(' ')}`);
  process.exit(0);
}
const at = argv.indexOf('--config');
if (at < 0 || !argv[at + 1]) fail('the coordinator was started without --config');
const cwd = readlinkSync('/proc/1/cwd');
const file = isAbsolute(argv[at + 1]) ? argv[at + 1] : resolve(cwd, argv[at + 1]);
const config = JSON.parse(readFileSync(file, 'utf8'));
const rel = (p) => (isAbsolute(p) ? p : resolve(dirname(file), p));
const port = config.listen.slice(config.listen.lastIndexOf(':') + 1);
// The chain is checked against the federation CA; the name is not, since this dials 127.0.0.1.
const credentials = grpc.credentials.createSsl(
  readFileSync(rel(config.tls.ca)),
  readFileSync(rel(config.tls.key)),
  readFileSync(rel(config.tls.cert)),
  { checkServerIdentity: () => undefined },
);
const Client = grpc.makeGenericClientConstructor({}, 'Health');
// A DNS name as TLS server name: grpc-js would send 127.0.0.1, and Node warns (DEP0123) at every check.
const client = new Client(`127.0.0.1:${port}`, credentials, { 'grpc.ssl_target_name_override': 'localhost' });
// HealthCheckRequest{} is the empty message; HealthCheckResponse{status: SERVING} is 08 01.
client.makeUnaryRequest(
  '/grpc.health.v1.Health/Check',
  () => Buffer.alloc(0),
  (b) => b,
  {},
  new grpc.Metadata(),
  { deadline: Date.now() + 4000 },
  (err, res) => {
    client.close();
    if (err) fail(`health check: ${err.message}`);
    if (!(res.length >= 2 && res[0] === 0x08 && res[1] === 1)) fail(`health check answered status ${res[1] ?? 'UNKNOWN'}`);
    process.exit(0);
  },
);
