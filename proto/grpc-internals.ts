/**
 * grpc-js internals, for the two patches that touch them (proto/upload-codec.ts's frame
 * pass-through, proto/receive-pool.ts's decoder): each was written against grpc-js 1.14's source,
 * so a module is handed out only from a grpc-js of that series, and a patch finding anything else
 * leaves grpc-js as it is.
 */
import { createRequire } from 'node:module';

/** grpc-js versions whose compression-filter.js and stream-decoder.js were read for the patches. */
const CHECKED_GRPC_JS_VERSIONS = /^1\.14\.\d+$/;

/**
 * grpc-js's module `build/src/<file>` (e.g. `stream-decoder.js`), or undefined where the installed
 * grpc-js is not a version the patches were read for, or the module cannot be loaded.
 */
export function grpcInternal<T>(file: string): Partial<T> | undefined {
  try {
    const require = createRequire(import.meta.url);
    const version = String((require('@grpc/grpc-js/package.json') as { version?: unknown }).version);
    if (!CHECKED_GRPC_JS_VERSIONS.test(version)) return undefined;
    return require(`@grpc/grpc-js/build/src/${file}`) as Partial<T>;
  } catch {
    return undefined;
  }
}
