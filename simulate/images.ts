/**
 * Container images built from files on this machine only — no registry is needed or contacted.
 *
 * - the fedhpc image: `FROM scratch` holding this Node binary and the shared libraries `ldd` names,
 *   the built package (dist/ and the production dependencies) at /app, `fedhpc` as entrypoint and a
 *   gRPC health check: the same layout as the user's image in deploy/docker/Dockerfile;
 * - the NATS image: `FROM scratch` holding the host's `nats-server` (Debian's) and its libraries.
 *
 * Images are tagged by the SHA-256 of everything they contain, so a re-run reuses them and a change
 * to any file (a rebuilt dist/, another Node) makes a new one. Docker is driven through its CLI:
 * this module runs in the built package, where testcontainers (a dev dependency) is absent.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NODE_HEAP_OPTIONS } from '../common/gc-tuning.js';
import { MALLOC_TUNING } from '../common/malloc.js';

/** A docker command failed, or Docker is not usable here. */
export class DockerError extends Error {
  readonly code = 'DOCKER_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DockerError';
  }
}

/** Runs `docker ARGS`; resolves with stdout, rejects with a DockerError carrying stderr. */
export function docker(args: readonly string[], o: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      'docker',
      [...args],
      { timeout: o.timeoutMs ?? 120_000, signal: o.signal, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, DOCKER_BUILDKIT: '0' } },
      (err, stdout, stderr) => {
        if (err) reject(new DockerError(`docker ${args.slice(0, 2).join(' ')} failed: ${(stderr || err.message).trim()}`, { cause: err }));
        else resolvePromise(stdout);
      },
    );
  });
}

/** Why Docker cannot be used here (no CLI, no engine answering), or undefined when it can. */
export async function dockerUnavailable(): Promise<string | undefined> {
  try {
    const version = await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 });
    return version.trim() === '' ? 'the Docker engine did not report a version' : undefined;
  } catch (err) {
    return `no Docker engine answers (${(err as Error).message.split('\n')[0]})`;
  }
}

/** One image, and whether this call had to build it. */
export interface BuiltImage {
  readonly tag: string;
  readonly built: boolean;
  readonly seconds: number;
}

/** A file to place in the image: host path → absolute path inside the image. */
interface Entry {
  readonly from: string;
  readonly to: string;
}

/** The folder of the fedhpc package this module belongs to (source tree or installed package). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'fedhpc') return dir;
    const up = dirname(dir);
    if (up === dir) throw new DockerError(`no fedhpc package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Shared libraries an ELF file loads, as `ldd` resolves them on this machine (interpreter included). */
function sharedLibraries(file: string): Promise<string[]> {
  return new Promise((resolvePromise, reject) => {
    execFile('ldd', [file], (err, stdout) => {
      // ldd exits 1 for a static binary ("not a dynamic executable"): nothing to copy.
      if (err && !/not a dynamic executable/.test(stdout)) return reject(new DockerError(`ldd ${file}: ${err.message}`, { cause: err }));
      const libs = [...stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((m) => m[1]!);
      resolvePromise(libs);
    });
  });
}

/** Production dependency folders of the package at `root`, found by Node's lookup rule. */
function productionPackages(root: string): string[] {
  const found = new Set<string>();
  const visit = (dir: string): void => {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    const names = [...Object.keys(pkg['dependencies'] ?? {}), ...Object.keys(pkg['optionalDependencies'] ?? {})];
    for (const name of names) {
      let at = dir;
      let hit: string | undefined;
      for (;;) {
        const candidate = join(at, 'node_modules', name);
        if (existsSync(join(candidate, 'package.json'))) {
          hit = candidate;
          break;
        }
        const up = dirname(at);
        if (up === at || relative(root, up).startsWith('..')) break;
        at = up;
      }
      // A missing optional dependency is another platform's build (e.g. @node-rs/crc32-darwin-arm64).
      if (hit === undefined || found.has(hit)) continue;
      found.add(hit);
      visit(hit);
    }
  };
  visit(root);
  return [...found].sort();
}

async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesBelow(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Everything that goes into the fedhpc image. */
async function fedhpcEntries(root: string): Promise<Entry[]> {
  const cli = join(root, 'dist', 'cli', 'main.js');
  if (!existsSync(cli)) throw new DockerError(`${cli} is missing: build the package first (npm run build)`);
  const entries: Entry[] = [{ from: process.execPath, to: '/usr/local/bin/node' }];
  const app = (from: string): Entry => ({ from, to: join('/app', relative(root, from)) });
  entries.push(app(join(root, 'package.json')));
  const natives: string[] = [];
  for (const f of await filesBelow(join(root, 'dist'))) {
    if (f.endsWith('.map')) continue;
    entries.push(app(f));
    if (f.endsWith('.node')) natives.push(f);
  }
  const packages = productionPackages(root);
  // A package nested inside another's folder is copied with it.
  const tops = packages.filter((p) => !packages.some((q) => q !== p && p.startsWith(`${q}/`)));
  for (const p of tops) {
    for (const f of await filesBelow(p)) {
      entries.push(app(f));
      if (f.endsWith('.node')) natives.push(f);
    }
  }
  entries.push({ from: join(root, 'deploy', 'docker', 'healthcheck.mjs'), to: '/app/healthcheck.mjs' });
  const libs = new Set<string>();
  for (const elf of [process.execPath, ...natives]) for (const lib of await sharedLibraries(elf)) libs.add(lib);
  for (const lib of libs) entries.push({ from: lib, to: lib });
  return entries;
}

/** SHA-256 over every entry's destination and contents (and the Dockerfile): the image's tag. */
async function contentHash(entries: readonly Entry[], dockerfile: string): Promise<string> {
  const h = createHash('sha256').update(dockerfile);
  for (const e of [...entries].sort((a, b) => a.to.localeCompare(b.to))) {
    h.update(`\0${e.to}\0`);
    for await (const chunk of createReadStream(e.from)) h.update(chunk as Buffer);
  }
  return h.digest('hex').slice(0, 16);
}

async function imageExists(tag: string): Promise<boolean> {
  return docker(['image', 'inspect', '--format', '{{.Id}}', tag], { timeoutMs: 30_000 }).then(
    () => true,
    () => false,
  );
}

/**
 * Removes the other tags of `repository` (older builds), so images do not pile up as `dist/` is
 * rebuilt. An image a container still uses is kept: `docker rmi` refuses it.
 */
async function pruneOlder(repository: string, keep: string): Promise<void> {
  const tags = (await docker(['images', repository, '--format', '{{.Repository}}:{{.Tag}}'])).split('\n').filter((t) => t !== '' && t !== keep);
  for (const tag of tags) await docker(['rmi', tag]).catch(() => undefined);
}

/** Hard-links (or copies, across file systems) every entry into `rootfs`, then builds. */
async function buildFromEntries(tag: string, entries: readonly Entry[], dockerfile: string, etc: Record<string, string>, signal?: AbortSignal): Promise<void> {
  const ctx = await mkdtemp(join(tmpdir(), 'fedhpc-image-'));
  try {
    const rootfs = join(ctx, 'rootfs');
    for (const e of entries) {
      const to = join(rootfs, e.to);
      await mkdir(dirname(to), { recursive: true });
      // link(2) would link a symlink itself (ld-linux is one): link or copy what it points to.
      const from = await realpath(e.from);
      await link(from, to).catch(() => copyFile(from, to));
    }
    for (const [path, text] of Object.entries(etc)) {
      await mkdir(dirname(join(rootfs, path)), { recursive: true });
      await writeFile(join(rootfs, path), text);
    }
    await mkdir(join(rootfs, 'tmp'), { recursive: true });
    await chmod(join(rootfs, 'tmp'), 0o1777);
    await writeFile(join(ctx, 'Dockerfile'), dockerfile);
    await docker(['build', '--quiet', '--tag', tag, ctx], { timeoutMs: 600_000, signal });
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

/** The image's user: uid 1000, as in deploy/docker/Dockerfile (`node` there, `fedhpc` here). */
const ETC = {
  '/etc/passwd': 'root:x:0:0:root:/root:/sbin/nologin\nfedhpc:x:1000:1000:fedhpc:/app:/sbin/nologin\n',
  '/etc/group': 'root:x:0:\nfedhpc:x:1000:\n',
};

const FEDHPC_DOCKERFILE = `FROM scratch
COPY rootfs/ /
ENV NODE_ENV=production
ENV ${Object.entries(MALLOC_TUNING).map(([name, value]) => `${name}=${value}`).join(' ')}
USER 1000:1000
WORKDIR /app
HEALTHCHECK --interval=2s --timeout=5s --start-period=2s --retries=3 CMD ["/usr/local/bin/node", "/app/healthcheck.mjs"]
ENTRYPOINT ${JSON.stringify(['/usr/local/bin/node', ...NODE_HEAP_OPTIONS, '/app/dist/cli/main.js'])}
CMD ["--help"]
`;

/** Builds (or finds) the fedhpc image of the package at `root` (default: this package). */
export async function buildFedhpcImage(o: { root?: string; signal?: AbortSignal } = {}): Promise<BuiltImage> {
  const t0 = Date.now();
  const root = resolve(o.root ?? packageRoot());
  const entries = await fedhpcEntries(root);
  const tag = `fedhpc-local:${await contentHash(entries, FEDHPC_DOCKERFILE + JSON.stringify(ETC))}`;
  if (await imageExists(tag)) return { tag, built: false, seconds: (Date.now() - t0) / 1000 };
  await buildFromEntries(tag, entries, FEDHPC_DOCKERFILE, ETC, o.signal);
  await pruneOlder('fedhpc-local', tag);
  return { tag, built: true, seconds: (Date.now() - t0) / 1000 };
}

const NATS_DOCKERFILE = `FROM scratch
COPY rootfs/ /
EXPOSE 4222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["--jetstream", "--store_dir", "/data"]
`;

/** Where Debian's nats-server is installed. */
export const NATS_SERVER = '/usr/sbin/nats-server';

/** Builds (or finds) an image running this machine's `nats-server` binary. */
export async function buildNatsImage(o: { natsServer?: string; signal?: AbortSignal } = {}): Promise<BuiltImage> {
  const t0 = Date.now();
  const binary = o.natsServer ?? NATS_SERVER;
  if (!existsSync(binary)) throw new DockerError(`${binary} is missing: install Debian's nats-server (apt-get install nats-server)`);
  const entries: Entry[] = [{ from: binary, to: '/usr/local/bin/nats-server' }];
  for (const lib of await sharedLibraries(binary)) entries.push({ from: lib, to: lib });
  const etc = { '/data/.keep': '' };
  const tag = `fedhpc-nats-local:${await contentHash(entries, NATS_DOCKERFILE)}`;
  if (await imageExists(tag)) return { tag, built: false, seconds: (Date.now() - t0) / 1000 };
  await buildFromEntries(tag, entries, NATS_DOCKERFILE, etc, o.signal);
  await pruneOlder('fedhpc-nats-local', tag);
  return { tag, built: true, seconds: (Date.now() - t0) / 1000 };
}
