/*
 * f32 to bf16 with round-to-nearest-even, a NaN kept a NaN with its quiet bit set: dtype.ts's
 * f32ToBf16 and the kernels' deltaToBf16Ref, shared by a site's delta (checks.c) and the server
 * step (step.c). Internal to the native module.
 */
#ifndef FEDHPC_BF16_H
#define FEDHPC_BF16_H
#include <stdint.h>

/* The target of the AVX-512 kernels; fedhpc_cpu_has_avx512 checks these features. */
#define FEDHPC_AVX512 __attribute__((target("avx2,avx512f,avx512vl")))

static inline uint16_t fedhpc_bf16_of(uint32_t x) {
  return (x & 0x7FFFFFFFu) > 0x7F800000u ? (uint16_t)((x >> 16) | 0x40) : (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

#if defined(__x86_64__)
#include <immintrin.h>
/* Sixteen f32 bit patterns narrowed as fedhpc_bf16_of. */
FEDHPC_AVX512 static inline __m256i fedhpc_bf16_of16(__m512i x) {
  __m512i high = _mm512_srli_epi32(x, 16);
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), _mm512_and_si512(high, _mm512_set1_epi32(1))), 16);
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, _mm512_set1_epi32(0x40))));
}
#endif

#endif
