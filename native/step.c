/*
 * The coordinator's server step over f32 slices (coordinator/aggregate/checkpoint-writer.ts), bit
 * for bit as the JS it stands in for: the master weights and the mean delta widened from bf16, the
 * momentum rules of aggregation/optimizers/server-optimizer.ts (f64 arithmetic per element, each
 * result stored as f32), the overflow check before a narrower checkpoint is written, and the
 * narrowing to bf16 itself (aggregation/safetensors/dtype.ts). Built with -ffp-contract=off, so no
 * multiply and add are fused that JS computes apart. Sixteen f32 values a step (AVX-512), the f64
 * arithmetic eight at a time; the tails element by element, the same formulas.
 */
#include "fedhpc_native.h"
#include "bf16.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX512 FEDHPC_AVX512

/* bf16 bit patterns to f32, exactly. */
AVX512 void fedhpc_bf16_to_f32(float *dst, const uint16_t *src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i))), 16);
    _mm512_storeu_si512(dst + i, w);
  }
  for (; i < n; i++) {
    uint32_t bits = (uint32_t)src[i] << 16;
    memcpy(dst + i, &bits, 4);
  }
}

/* f32 to bf16 with round-to-nearest-even; a NaN stays a NaN with its quiet bit set (dtype.ts's f32ToBf16). */
AVX512 void fedhpc_f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), fedhpc_bf16_of16(_mm512_loadu_si512(src + i)));
  for (; i < n; i++) {
    uint32_t x;
    memcpy(&x, src + i, 4);
    dst[i] = fedhpc_bf16_of(x);
  }
}

/* Index of the first value whose magnitude's bits lie in [limit, 0x7F800000): finite, but rounded to ±Inf by the narrowing; or −1. */
AVX512 int64_t fedhpc_find_narrowing_overflow(const float *src, size_t n, uint32_t limit) {
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF), lo = _mm512_set1_epi32((int)limit), inf = _mm512_set1_epi32(0x7F800000);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i a = _mm512_and_si512(_mm512_loadu_si512(src + i), magnitude);
    __mmask16 hit = _mm512_cmpge_epu32_mask(a, lo) & _mm512_cmplt_epu32_mask(a, inf);
    if (hit) return (int64_t)(i + (size_t)__builtin_ctz(hit));
  }
  for (; i < n; i++) {
    uint32_t a;
    memcpy(&a, src + i, 4);
    a &= 0x7FFFFFFFu;
    if (a >= limit && a < 0x7F800000u) return (int64_t)i;
  }
  return -1;
}

/*
 * One server step of the momentum rules over n values, in place: with v, heavy ball (FedAvgM) or,
 * with nesterov, DiLoCo's outer Nesterov step; without v, FedAvg. In f64, as the JS does:
 *   g = −δ;  v' = μ·v + g;  v ← f32(v');  θ ← f32(θ − lr·(nesterov ? g + μ·v' : v'))
 *   FedAvg: θ ← f32(θ − lr·g)
 */
AVX512 void fedhpc_momentum_step(float *theta, const float *delta, float *v, size_t n, double lr, double mu, int nesterov) {
  const __m512d vlr = _mm512_set1_pd(lr), vmu = _mm512_set1_pd(mu);
  /* −δ flips the sign bit, as JS's unary minus does (0 − δ would turn −0 into +0). */
  const __m512i sign = _mm512_set1_epi64((long long)0x8000000000000000ULL);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m512d g = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(_mm512_cvtps_pd(_mm256_loadu_ps(delta + i))), sign));
    __m512d t = _mm512_cvtps_pd(_mm256_loadu_ps(theta + i));
    __m512d step;
    if (v == NULL) {
      step = g;
    } else {
      __m512d vi = _mm512_add_pd(_mm512_mul_pd(vmu, _mm512_cvtps_pd(_mm256_loadu_ps(v + i))), g);
      _mm256_storeu_ps(v + i, _mm512_cvtpd_ps(vi));
      step = nesterov ? _mm512_add_pd(g, _mm512_mul_pd(vmu, vi)) : vi;
    }
    _mm256_storeu_ps(theta + i, _mm512_cvtpd_ps(_mm512_sub_pd(t, _mm512_mul_pd(vlr, step))));
  }
  for (; i < n; i++) {
    double g = -(double)delta[i];
    double step = g;
    if (v != NULL) {
      double vi = mu * (double)v[i] + g;
      v[i] = (float)vi;
      step = nesterov ? g + mu * vi : vi;
    }
    theta[i] = (float)((double)theta[i] - lr * step);
  }
}

#endif /* __x86_64__ */
