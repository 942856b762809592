import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { createOptimizer } from '../../../aggregation/index.js';
import { bf16ToF32, f32ToBf16, narrowingOverflow } from '../../../aggregation/safetensors/dtype.js';
import { nativeKernels, nativeUnavailable, useNativeKernels } from '../../../aggregation/native.js';
import { loadNativeModule } from '../../../common/native.js';
import { skipUnless } from '../../helpers/components.js';

// The server step's kernels (native/step.c) stand in for JS loops that checkpoints were written
// with: each must give the same bits. Each case runs the JS (native kernels uninstalled) and the
// native kernel on the same input.
const native = nativeKernels();
const moduleMissing = skipUnless('native', nativeUnavailable());
const lacksAvx512 = !moduleMissing && native?.momentumStep === undefined;
if (lacksAvx512) process.stdout.write('skipping the native server-step tests: this CPU lacks AVX-512\n');

/** `run` with the JS paths (no native kernels), then with the native ones. */
function bothWays<T>(run: () => T): { js: T; native: T } {
  useNativeKernels({ why: 'test: the JS path' });
  const js = run();
  useNativeKernels(loadNativeModule());
  return { js, native: run() };
}

/**
 * Any 32-bit patterns as f32: NaNs with any payload, infinities, subnormals, zeros of either sign;
 * half of them with the 16 bits bf16 drops at or next to a tie, where rounding to even decides.
 */
const word = fc.integer({ min: 0, max: 0xffffffff });
const nearTie = fc.tuple(word, fc.constantFrom(0x7fff, 0x8000, 0x8001, 0)).map(([w, low]) => ((w & 0xffff0000) | low) >>> 0);
const anyBits = (maxLength: number) => fc.array(fc.oneof(word, nearTie), { maxLength, size: 'max' }).map((a) => new Float32Array(Uint32Array.from(a).buffer));
/** Finite f32 values from tiny to huge, the zeros and subnormals included. */
const finite = (length: number) => fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: length, maxLength: length }).map((a) => Float32Array.from(a));

describe.skipIf(moduleMissing || lacksAvx512)('native server step (native/step.c)', () => {
  afterEach(() => useNativeKernels(loadNativeModule()));

  it('narrows f32 to bf16 and widens it back as the JS does, for any bit pattern and any length (sixteen-value steps and the tail)', () => {
    fc.assert(
      fc.property(anyBits(70), fc.integer({ min: 0, max: 3 }), (values, lead) => {
        // An offset into a larger buffer, as slices of a tensor are.
        const src = new Float32Array(values.length + lead);
        src.set(values, lead);
        const view = src.subarray(lead);
        const narrowed = bothWays(() => f32ToBf16(view));
        expect(Buffer.from(narrowed.native.buffer).equals(Buffer.from(narrowed.js.buffer))).toBe(true);
        const widened = bothWays(() => bf16ToF32(narrowed.js));
        expect(Buffer.from(widened.native.buffer).equals(Buffer.from(widened.js.buffer))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('finds the first value a bf16 or f16 checkpoint would turn into an infinity, where the JS finds it', () => {
    fc.assert(
      fc.property(finite(40), fc.integer({ min: 0, max: 39 }), fc.constantFrom('BF16', 'F16') as fc.Arbitrary<'BF16' | 'F16'>, fc.float({ min: Math.fround(6e4), max: Math.fround(3.4e38), noNaN: true }), (values, at, dtype, big) => {
        values[at] = big;
        const found = bothWays(() => narrowingOverflow(values, dtype));
        expect(found.native).toBe(found.js);
      }),
      { numRuns: 300 },
    );
    // Infinities and NaNs the values already hold are not the narrowing's doing.
    const held = Float32Array.of(1, Infinity, NaN, -Infinity, 2, 3.4e38);
    expect(bothWays(() => narrowingOverflow(held, 'BF16'))).toEqual({ js: 5, native: 5 });
    expect(bothWays(() => narrowingOverflow(held.subarray(0, 5), 'BF16'))).toEqual({ js: -1, native: -1 });
  });

  it('steps FedAvg, FedAvgM and DiLoCo as the JS optimizer does, model and momentum, over several steps', () => {
    const settings = fc.record({
      name: fc.constantFrom('fedavg', 'fedavgm', 'diloco') as fc.Arbitrary<'fedavg' | 'fedavgm' | 'diloco'>,
      lr: fc.double({ min: 1e-3, max: 2, noNaN: true }),
      momentum: fc.double({ min: 0, max: 0.99, noNaN: true }),
    });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 45 }), settings, fc.integer({ min: 0, max: 2 ** 31 }), (n, o, seed) => {
        const g = fc.sample(fc.tuple(finite(n), finite(n), finite(n)), { numRuns: 1, seed })[0]!;
        const [theta0, delta, v0] = g;
        const run = () => {
          const optimizer = createOptimizer(o.name === 'fedavg' ? { name: 'fedavg', lr: o.lr } : { name: o.name, lr: o.lr, momentum: o.momentum });
          const theta = Float32Array.from(theta0);
          const state = Object.fromEntries(optimizer.stateSlots.map((s) => [s, Float32Array.from(v0)]));
          for (let step = 1; step <= 3; step++) optimizer.apply(theta, delta, state, step);
          return { theta: Buffer.from(theta.buffer), state: Object.values(state).map((s) => Buffer.from(s.buffer)) };
        };
        const r = bothWays(run);
        expect(r.native.theta.equals(r.js.theta)).toBe(true);
        r.js.state.forEach((s, k) => expect(r.native.state[k]!.equals(s)).toBe(true));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses slices of different lengths and misaligned or mistyped buffers, naming what is wrong', () => {
    const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);
    const refusal = (run: () => unknown): { name: string; code: unknown; message: string } => {
      try {
        run();
      } catch (err) {
        return { name: (err as Error).name, code: (err as { code?: unknown }).code, message: (err as Error).message };
      }
      throw new Error('the kernel took its arguments');
    };
    const native_ = (message: string) => ({ name: 'TypeError', code: 'ERR_FEDHPC_NATIVE', message });
    expect(refusal(() => native!.momentumStep!(f32(8), f32(7), null, 1, 0, false))).toEqual(native_('momentumStep needs as many values in each slice'));
    expect(refusal(() => native!.momentumStep!(f32(8), f32(8), f32(9), 1, 0.9, true))).toEqual(native_('momentumStep needs as many values in each slice'));
    expect(refusal(() => native!.momentumStep!(new Uint8Array(new ArrayBuffer(36), 1, 32), f32(8), null, 1, 0, false))).toEqual(native_('momentumStep takes aligned f32 bytes'));
    expect(refusal(() => native!.f32ToBf16!(new Uint8Array(6), f32(2)))).toEqual(native_('the bf16 conversions need as many values in dst as in src'));
    expect(refusal(() => native!.bf16ToF32!(f32(2), new Uint8Array(3)))).toEqual(native_('the bf16 conversions take aligned bytes of whole values'));
    expect(refusal(() => native!.findNarrowingOverflow!(f32(4), '1' as unknown as number))).toEqual(native_("findNarrowingOverflow's limit must be a u32"));
  });
});
