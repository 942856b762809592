/** Reads the PEM files of a TLS identity (CA bundle, certificate, key) with clear errors. */
import { readFileSync } from 'node:fs';

export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** Thrown when a certificate or key file is missing or is not PEM. */
export class TlsFileError extends Error {
  readonly code = 'TLS_FILE_INVALID';
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
    this.name = 'TlsFileError';
  }
}

/** Loads the three PEM files; each must exist and contain a PEM block. */
export function readTlsFiles(files: TlsFiles): TlsMaterial {
  const read = (file: string, what: string): Buffer => {
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch (cause) {
      throw new TlsFileError(file, `cannot read ${what}: ${(cause as Error).message}`, { cause });
    }
    if (!data.includes('-----BEGIN ')) throw new TlsFileError(file, `${what} is not a PEM file`);
    return data;
  };
  return { ca: read(files.ca, 'CA certificate'), cert: read(files.cert, 'certificate'), key: read(files.key, 'private key') };
}
