/**
 * The second implementation's Python (test/interop/): Debian's /usr/bin/python3 with Debian's
 * python3-grpcio, python3-grpc-tools, python3-cryptography and python3-numpy. The `python3` first
 * on PATH may be another build without them, so it is always named in full.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Debian's interpreter, the one the Debian packages install into. */
export const PYTHON = '/usr/bin/python3';

/** This folder (the Python files live beside this one). */
export const INTEROP_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)));

/** The repository root. */
export const ROOT = resolve(INTEROP_DIR, '..', '..');

const MODULES = ['grpc', 'grpc_tools', 'cryptography', 'numpy'] as const;

/** Why the Python interop tests cannot run here, or undefined when they can. */
export function pythonInteropUnavailable(): string | undefined {
  const probe = spawnSync(PYTHON, ['-c', `import importlib.util, sys; sys.stdout.write(",".join(m for m in ${JSON.stringify(MODULES)} if importlib.util.find_spec(m) is None))`], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.error) return `${PYTHON} cannot be run (${probe.error.message})`;
  if (probe.status !== 0) return `${PYTHON} failed: ${probe.stderr.trim()}`;
  const missing = probe.stdout.trim();
  return missing === '' ? undefined : `${PYTHON} lacks ${missing} (apt-get install python3-grpcio python3-grpc-tools python3-cryptography python3-numpy)`;
}

/**
 * Generates the Python stubs of proto/fedhpc/v1/fedhpc.proto with Debian's grpc_tools into a new
 * temporary folder and returns it (stubs are never checked in: they come from the .proto at test time).
 */
export function generateStubs(): string {
  const out = mkdtempSync(join(tmpdir(), 'fedhpc-pystubs-'));
  const r = spawnSync(PYTHON, ['-m', 'grpc_tools.protoc', '-I', join(ROOT, 'proto'), `--python_out=${out}`, `--grpc_python_out=${out}`, join(ROOT, 'proto', 'fedhpc', 'v1', 'fedhpc.proto')], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`grpc_tools.protoc could not compile proto/fedhpc/v1/fedhpc.proto: ${r.stderr || r.error?.message || ''}`);
  return out;
}
