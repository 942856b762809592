/**
 * Decode-and-accumulate kernels (WebAssembly SIMD, plain-JS reference as fallback), the plain
 * wire encodings (`f32`, `bf16`, `int8` blocks) and the element → byte mapping of spools.
 */
export {
  type EncodedRange,
  INT8_BLOCK,
  INT8_BLOCK_BYTES,
  SpoolLayout,
  type SpoolSegment,
  WIRE_ENCODINGS,
  type WireEncoding,
  decodeInt8Blocks,
  encodeInt8Blocks,
  encodedBytes,
  encodedRange,
  int8Bytes,
} from './encoding.js';
export {
  accBf16Ref,
  accF32Ref,
  accInt8Ref,
  addModU16Ref,
  addModU32Ref,
  findNonFiniteRef,
  subModU16Ref,
  subModU32Ref,
} from './reference.js';
export {
  KERNEL_MAX_PAGES,
  type KernelExports,
  type Kernels,
  WASM_PAGE_BYTES,
  compileKernelModule,
  createKernelMemory,
  createKernels,
  instantiateKernels,
  kernelWasmBytes,
  referenceKernels,
  wasmKernelsSupported,
} from './wasm.js';
