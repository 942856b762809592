/*
 * The checks the coordinator and the agents make on every byte they move: the CRC32C of each
 * chunk, with SSE4.2's crc32 instruction (about four times @node-rs/crc32 per CPU-second here), the
 * finiteness of bf16 and f32 delta values read in place (the WebAssembly kernel must first copy
 * them into its own memory). x86-64 only; module.c exports none of it elsewhere.
 */
#include "fedhpc_native.h"
#include "bf16.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define SSE42 __attribute__((target("sse4.2")))

/* Three independent crc32 chains over three thirds of a run hide the instruction's latency; their
 * CRCs are joined by shifting each over the bytes after it (zeros appended), which for CRC32C is a
 * multiplication by x^(8n) modulo the polynomial: done bit by bit, once per 3 × 8 KiB run. */
#define RUN 8192

/* a·b mod P in the reflected representation (bit 31 is x^0). */
static uint32_t gf_multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 0; i < 32; i++) {
    if (a & 0x80000000u) product ^= b;
    a <<= 1;
    b = (b >> 1) ^ ((b & 1) ? 0x82F63B78u : 0);
  }
  return product;
}

/* x^(8·RUN) mod P, reflected: set by fedhpc_checks_init when the module loads. */
static uint32_t shift_run = 0;

static uint32_t x_pow_8n(size_t n) {
  uint32_t result = 0x80000000u; /* x^0 */
  uint32_t power = 0x40000000u;  /* x^1 */
  for (uint64_t bits = (uint64_t)n * 8; bits > 0; bits >>= 1) {
    if (bits & 1) result = gf_multiply(result, power);
    power = gf_multiply(power, power);
  }
  return result;
}

SSE42 static uint32_t crc_bytes(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
  }
  crc = (uint32_t)c;
  for (; n > 0; p++, n--) crc = _mm_crc32_u8(crc, *p);
  return crc;
}

SSE42 uint32_t fedhpc_crc32c_extend(uint32_t crc, const uint8_t *p, size_t n) {
  return crc_bytes(crc, p, n);
}

void fedhpc_checks_init(void) {
  shift_run = x_pow_8n(RUN);
}

SSE42 uint32_t fedhpc_crc32c(const uint8_t *p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  while (n >= 3 * RUN) {
    uint64_t a = crc, b = 0, c = 0;
    for (size_t i = 0; i < RUN; i += 8) {
      uint64_t wa, wb, wc;
      memcpy(&wa, p + i, 8);
      memcpy(&wb, p + RUN + i, 8);
      memcpy(&wc, p + 2 * RUN + i, 8);
      a = _mm_crc32_u64(a, wa);
      b = _mm_crc32_u64(b, wb);
      c = _mm_crc32_u64(c, wc);
    }
    /* Registers after A‖B‖C: ((a·x^(8·RUN)) ⊕ b)·x^(8·RUN) ⊕ c, where b and c started from 0. */
    crc = gf_multiply(gf_multiply((uint32_t)a, shift_run) ^ (uint32_t)b, shift_run) ^ (uint32_t)c;
    p += 3 * RUN;
    n -= 3 * RUN;
  }
  return ~crc_bytes(crc, p, n);
}

int fedhpc_cpu_has_sse42(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

/* SSE2 is part of x86-64: eight bf16 (or four f32) exponent fields compared at once. */
int64_t fedhpc_find_non_finite_bf16(const uint8_t *p, size_t n) {
  const __m128i mask = _mm_set1_epi16(0x7F80);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i v = _mm_and_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i)), mask);
    if (_mm_movemask_epi8(_mm_cmpeq_epi16(v, mask)) != 0) break;
  }
  for (; i < n; i++) {
    uint16_t v;
    memcpy(&v, p + 2 * i, 2);
    if ((v & 0x7F80) == 0x7F80) return (int64_t)i;
  }
  return -1;
}

int64_t fedhpc_find_non_finite_f32(const uint8_t *p, size_t n) {
  const __m128i mask = _mm_set1_epi32(0x7F800000);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m128i v = _mm_and_si128(_mm_loadu_si128((const __m128i *)(p + 4 * i)), mask);
    if (_mm_movemask_epi8(_mm_cmpeq_epi32(v, mask)) != 0) break;
  }
  for (; i < n; i++) {
    uint32_t v;
    memcpy(&v, p + 4 * i, 4);
    if ((v & 0x7F800000u) == 0x7F800000u) return (int64_t)i;
  }
  return -1;
}

#endif /* __x86_64__ */

#if defined(__x86_64__)
#include <math.h>

#define AVX512 FEDHPC_AVX512

/*
 * Masks are folded in by adding, for each source j, its word xor m_j, where m_j is all ones for a
 * source subtracted and zero for one added: −s = ~s + 1 mod 2^b, so after the sources one add of
 * the count of subtracted ones finishes every subtraction at once.
 */
static inline uint32_t fold_scalar(uint32_t word, const uint8_t *src, size_t stride, int nsrc, int neg, size_t i, int wide) {
  for (int j = 0; j < nsrc; j++) {
    uint32_t s;
    if (wide) memcpy(&s, src + j * stride + 4 * i, 4);
    else {
      uint16_t h;
      memcpy(&h, src + j * stride + 2 * i, 2);
      s = h;
    }
    word = (neg >> j) & 1 ? word - s : word + s;
  }
  return word;
}

/* flip[j]: all ones where source j is subtracted, zero where it is added or absent; returns how many are subtracted. */
AVX512 static inline int source_flips(__m256i flip[4], int nsrc, int neg) {
  int subtracted = 0;
  for (int j = 0; j < 4; j++) {
    int minus = j < nsrc && ((neg >> j) & 1);
    flip[j] = _mm256_set1_epi32(minus ? -1 : 0);
    subtracted += minus;
  }
  return subtracted;
}

/*
 * The quantiser of secure aggregation's masked encoding (aggregation/secagg/quantize.ts,
 * `quantizeRange`), bit for bit: in float64, t = weight·clip(x)·scale + u·2^-32, k = ⌊t⌋ held to
 * [−zero, zero], word = zero + k, the same IEEE operations in the same order (the file is built with
 * -ffp-contract=off, so nothing is fused). Eight values a step in AVX-512 against the WebAssembly
 * kernel's two. Each word then takes `nsrc` (at most 4) keystream words before it is stored, source
 * j's at src + j·stride, subtracted where bit j of `neg` is set, modulo 2^b: the slice is quantised
 * and masked in one pass and written once, straight where it goes. Returns 1, having written
 * nothing reliable, when x holds a NaN or ±Infinity (the caller then runs the JS formula, which
 * names the index), −1 for more than four sources, else 0.
 */
AVX512 int fedhpc_quantize_f32(uint8_t *dst, const uint8_t *x, const uint8_t *u, size_t n, double clip, double zero, double scale, double weight, int wide,
                               const uint8_t *src, size_t stride, int nsrc, int neg) {
  if (nsrc < 0 || nsrc > 4) return -1;
  const __m512d c = _mm512_set1_pd(clip), negc = _mm512_set1_pd(-clip), z = _mm512_set1_pd(zero), negz = _mm512_set1_pd(-zero);
  const __m512d s = _mm512_set1_pd(scale), w = _mm512_set1_pd(weight), inv32 = _mm512_set1_pd(0x1p-32);
  const __m256i exponent = _mm256_set1_epi32(0x7F800000);
  __m256i flip[4];
  const int subtracted = source_flips(flip, nsrc, neg);
  const __m256i carries = _mm256_set1_epi32(subtracted);
  const __m128i carries16 = _mm_set1_epi16((short)subtracted);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i bits = _mm256_loadu_si256((const __m256i *)(x + 4 * i));
    if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_and_si256(bits, exponent), exponent)) != 0) return 1;
    __m512d v = _mm512_cvtps_pd(_mm256_castsi256_ps(bits));
    __m512d clipped = _mm512_max_pd(_mm512_min_pd(v, c), negc);
    __m512d t = _mm512_mul_pd(_mm512_mul_pd(w, clipped), s);
    __m512d r = _mm512_mul_pd(_mm512_cvtepu32_pd(_mm256_loadu_si256((const __m256i *)(u + 4 * i))), inv32);
    __m512d k = _mm512_roundscale_pd(_mm512_add_pd(t, r), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    k = _mm512_min_pd(_mm512_max_pd(k, negz), z);
    __m256i word = _mm512_cvtpd_epu32(_mm512_add_pd(z, k));
    if (wide) {
      for (int j = 0; j < nsrc; j++) word = _mm256_add_epi32(word, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + j * stride + 4 * i)), flip[j]));
      if (nsrc > 0) word = _mm256_add_epi32(word, carries);
      _mm256_storeu_si256((__m256i *)(dst + 4 * i), word);
    } else {
      __m128i half = _mm256_cvtepi32_epi16(word);
      for (int j = 0; j < nsrc; j++) half = _mm_add_epi16(half, _mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + j * stride + 2 * i)), _mm256_castsi256_si128(flip[j])));
      if (nsrc > 0) half = _mm_add_epi16(half, carries16);
      _mm_storeu_si128((__m128i *)(dst + 2 * i), half);
    }
  }
  for (; i < n; i++) {
    float xf;
    uint32_t ui;
    memcpy(&xf, x + 4 * i, 4);
    memcpy(&ui, u + 4 * i, 4);
    if (!isfinite(xf)) return 1;
    double v = xf;
    double clipped = v < -clip ? -clip : v > clip ? clip : v;
    double k = floor(weight * clipped * scale + (double)ui / 4294967296.0);
    double word = zero + (k > zero ? zero : k < -zero ? -zero : k);
    uint32_t out = fold_scalar((uint32_t)word, src, stride, nsrc, neg, i, wide);
    if (wide) memcpy(dst + 4 * i, &out, 4);
    else {
      uint16_t out16 = (uint16_t)out;
      memcpy(dst + 2 * i, &out16, 2);
    }
  }
  return 0;
}

/*
 * dst's n words (32-bit where `wide`, else 16-bit) take `nsrc` (1 to 4) keystream words each,
 * source j's at src + j·stride, subtracted where bit j of `neg` is set, modulo 2^b: the folds of a
 * site's masks beyond the four fedhpc_quantize_f32 takes, straight into the words where they lie.
 * Returns −1, having done nothing, for a count outside 1 to 4, else 0.
 */
AVX512 int fedhpc_fold_words(uint8_t *dst, const uint8_t *src, size_t stride, int nsrc, int neg, size_t n, int wide) {
  if (nsrc < 1 || nsrc > 4) return -1;
  __m256i flip[4];
  const int subtracted = source_flips(flip, nsrc, neg);
  const __m256i carries = wide ? _mm256_set1_epi32(subtracted) : _mm256_set1_epi16((short)subtracted);
  const size_t bytes = n * (wide ? 4 : 2);
  size_t at = 0;
  for (; at + 32 <= bytes; at += 32) {
    __m256i acc = _mm256_loadu_si256((const __m256i *)(dst + at));
    __m256i sum = carries;
    for (int j = 0; j < nsrc; j++) {
      __m256i term = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + j * stride + at)), flip[j]);
      sum = wide ? _mm256_add_epi32(sum, term) : _mm256_add_epi16(sum, term);
    }
    _mm256_storeu_si256((__m256i *)(dst + at), wide ? _mm256_add_epi32(acc, sum) : _mm256_add_epi16(acc, sum));
  }
  for (size_t i = at / (wide ? 4 : 2); i < n; i++) {
    uint32_t word;
    if (wide) memcpy(&word, dst + 4 * i, 4);
    else {
      uint16_t h;
      memcpy(&h, dst + 2 * i, 2);
      word = h;
    }
    word = fold_scalar(word, src, stride, nsrc, neg, i, wide);
    if (wide) memcpy(dst + 4 * i, &word, 4);
    else {
      uint16_t h = (uint16_t)word;
      memcpy(dst + 2 * i, &h, 2);
    }
  }
  return 0;
}

/* Sixteen values of little-endian F32 or BF16 bytes from value i, widened to f32 (BF16 exactly). */
AVX512 static inline __m512 widen16(const uint8_t *p, int bf16, size_t i) {
  if (bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * i))), 16));
  return _mm512_loadu_ps(p + 4 * i);
}

static inline float widen1(const uint8_t *p, int bf16, size_t i) {
  uint32_t bits = 0;
  float f;
  if (bf16) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    bits = (uint32_t)h << 16;
    memcpy(&f, &bits, 4);
  } else {
    memcpy(&f, p + 4 * i, 4);
  }
  return f;
}

/*
 * A site's delta (aggregation/kernels/reference.ts, deltaToF32Ref and deltaToBf16Ref), bit for bit:
 * dst[i] = local[i] − global[i] in f32 for n values, each source little-endian F32 or BF16 bytes
 * read where they lie, written as f32 or (out_bf16) rounded to bf16 as fedhpc_bf16_of. Sixteen values a
 * step; the WebAssembly kernel copies both sources into its memory and the result out of it.
 */
AVX512 void fedhpc_delta(uint8_t *dst, const uint8_t *local, int local_bf16, const uint8_t *global, int global_bf16, size_t n, int out_bf16) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 d = _mm512_sub_ps(widen16(local, local_bf16, i), widen16(global, global_bf16, i));
    if (out_bf16) _mm256_storeu_si256((__m256i *)(dst + 2 * i), fedhpc_bf16_of16(_mm512_castps_si512(d)));
    else _mm512_storeu_ps(dst + 4 * i, d);
  }
  for (; i < n; i++) {
    float d = widen1(local, local_bf16, i) - widen1(global, global_bf16, i);
    if (out_bf16) {
      uint32_t x;
      memcpy(&x, &d, 4);
      uint16_t h = fedhpc_bf16_of(x);
      memcpy(dst + 2 * i, &h, 2);
    } else {
      memcpy(dst + 4 * i, &d, 4);
    }
  }
}

/* The AVX-512 kernels here and in step.c (FEDHPC_AVX512); the quantiser's finiteness test uses AVX2 beside AVX-512F and VL. */
int fedhpc_cpu_has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2");
}

#endif /* __x86_64__ */
