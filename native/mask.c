/*
 * The site's masked encoding in AVX-512 (aggregation/secagg/mask.ts): the quantiser, the folds of
 * keystream words into it, and the fused masker, which makes a tensor range's masked words straight
 * from the two models' bytes with the keystreams of prg.c, block by block in L1. x86-64 only;
 * module.c exports these where the CPU has AVX-512 (and, for the masker, AES-NI).
 */
#include "fedhpc_native.h"
#include "bf16.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

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
 * The largest f32 magnitude the quantiser needs neither to clip nor to hold: |x| ≤ clip, and
 * weight·|x|·scale (rounded as the quantiser rounds it) ≤ zero − 1, so that ⌊t⌋ lies within
 * [−zero, zero] whatever the rounding word. Rounding is monotone, so every smaller |x| qualifies
 * too. −1 (no value qualifies) when zero < 1 or the scale is not finite.
 */
static float unclipped_limit(double clip, double zero, double scale, double weight) {
  if (!(zero >= 1 && isfinite(scale) && scale > 0 && weight >= 0 && clip > 0)) return -1.0f;
  double bound = clip;
  if (weight > 0 && (zero - 1) / (weight * scale) < bound) bound = (zero - 1) / (weight * scale);
  float limit = (float)bound;
  while (limit > 0 && ((double)limit > clip || (weight * (double)limit) * scale > zero - 1)) limit = nextafterf(limit, 0.0f);
  return limit;
}

/* The quantiser's parameters and constants, made once for all the blocks a call quantises. */
struct quantizer {
  double clip, zero, scale, weight;
  int nsrc, neg;
  __m512d c, negc, z, negz, s, w, inv32;
  __m256i zi, exponent, carries, flip[4];
  __m128i carries16;
  __m256 magnitude, limit;
};

/* A quantizer for these parameters and `nsrc` (0 to 4) sources, subtracted where bit j of `neg` is set. */
AVX512 static void quantizer_init(struct quantizer *q, double clip, double zero, double scale, double weight, int nsrc, int neg) {
  q->clip = clip, q->zero = zero, q->scale = scale, q->weight = weight, q->nsrc = nsrc, q->neg = neg;
  q->c = _mm512_set1_pd(clip), q->negc = _mm512_set1_pd(-clip), q->z = _mm512_set1_pd(zero), q->negz = _mm512_set1_pd(-zero);
  q->s = _mm512_set1_pd(scale), q->w = _mm512_set1_pd(weight), q->inv32 = _mm512_set1_pd(0x1p-32);
  q->zi = _mm256_set1_epi32((int)(uint32_t)zero);
  q->exponent = _mm256_set1_epi32(0x7F800000);
  q->magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  q->limit = _mm256_set1_ps(unclipped_limit(clip, zero, scale, weight));
  const int subtracted = source_flips(q->flip, nsrc, neg);
  q->carries = _mm256_set1_epi32(subtracted);
  q->carries16 = _mm_set1_epi16((short)subtracted);
}

/*
 * fedhpc_quantize_f32's eight-value steps over values [0, n − n % 8), for a fixed count of sources and
 * width, so that the compiler makes one loop per pair without a branch on either per step. Returns
 * 1 at the first step holding a NaN or ±Infinity, else 0.
 */
AVX512 static inline __attribute__((always_inline)) int quantize_steps(uint8_t *dst, const uint8_t *x, const uint8_t *u, size_t n, const struct quantizer *q,
                                                                       const uint8_t *src, size_t stride, const int nsrc, const int wide) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    __m256i bits = _mm256_loadu_si256((const __m256i *)(x + 4 * i));
    __m256 xs = _mm256_castsi256_ps(bits);
    /* u·2^-32 is exact, so adding it in the multiply-add rounds once, as the separate add does. */
    __m512d r = _mm512_cvtepu32_pd(_mm256_loadu_si256((const __m256i *)(u + 4 * i)));
    __m512d t;
    if (_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(xs, q->magnitude), q->limit, _CMP_LE_OQ)) == 0xFF) {
      t = _mm512_fmadd_pd(r, q->inv32, _mm512_mul_pd(_mm512_mul_pd(q->w, _mm512_cvtps_pd(xs)), q->s));
    } else {
      if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_and_si256(bits, q->exponent), q->exponent)) != 0) return 1;
      __m512d clipped = _mm512_max_pd(_mm512_min_pd(_mm512_cvtps_pd(xs), q->c), q->negc);
      /* zero is an integer, so ⌊t⌋ held to [−zero, zero] is ⌊t held to it⌋. */
      t = _mm512_min_pd(_mm512_max_pd(_mm512_fmadd_pd(r, q->inv32, _mm512_mul_pd(_mm512_mul_pd(q->w, clipped), q->s)), q->negz), q->z);
    }
    /* ⌊t⌋ fits an int32; zero + k is taken modulo 2^32, where it lies in [0, 2·zero]. */
    __m256i word = _mm256_add_epi32(_mm512_cvt_roundpd_epi32(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC), q->zi);
    if (wide) {
      for (int j = 0; j < nsrc; j++) {
        __m256i term = _mm256_loadu_si256((const __m256i *)(src + j * stride + 4 * i));
        word = _mm256_add_epi32(word, _mm256_xor_si256(term, q->flip[j]));
      }
      if (nsrc > 0) word = _mm256_add_epi32(word, q->carries);
      _mm256_storeu_si256((__m256i *)(dst + 4 * i), word);
    } else {
      __m128i half = _mm256_cvtepi32_epi16(word);
      for (int j = 0; j < nsrc; j++) {
        __m128i term = _mm_loadu_si128((const __m128i *)(src + j * stride + 2 * i));
        half = _mm_add_epi16(half, _mm_xor_si128(term, _mm256_castsi256_si128(q->flip[j])));
      }
      if (nsrc > 0) half = _mm_add_epi16(half, q->carries16);
      _mm_storeu_si128((__m128i *)(dst + 2 * i), half);
    }
  }
  return 0;
}

/* fedhpc_quantize_f32 by a quantizer made once: the eight-value steps, then the tail one value at a time. */
AVX512 static int quantize_with(const struct quantizer *q, uint8_t *dst, const uint8_t *x, const uint8_t *u, size_t n, int wide, const uint8_t *src, size_t stride) {
  int found;
#define STEPS(k) (wide ? quantize_steps(dst, x, u, n, q, src, stride, k, 1) : quantize_steps(dst, x, u, n, q, src, stride, k, 0))
  switch (q->nsrc) {
    case 0: found = STEPS(0); break;
    case 1: found = STEPS(1); break;
    case 2: found = STEPS(2); break;
    case 3: found = STEPS(3); break;
    default: found = STEPS(4); break;
  }
#undef STEPS
  if (found) return 1;
  const double clip = q->clip, zero = q->zero, scale = q->scale, weight = q->weight;
  size_t i = n - n % 8;
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
    uint32_t out = fold_scalar((uint32_t)word, src, stride, q->nsrc, q->neg, i, wide);
    if (wide) memcpy(dst + 4 * i, &out, 4);
    else {
      uint16_t out16 = (uint16_t)out;
      memcpy(dst + 2 * i, &out16, 2);
    }
  }
  return 0;
}

/*
 * The quantiser of secure aggregation's masked encoding (aggregation/secagg/quantize.ts,
 * `quantizeRange`), bit for bit: in float64, t = weight·clip(x)·scale + u·2^-32, k = ⌊t⌋ held to
 * [−zero, zero], word = zero + k, the same IEEE results (the file is built with -ffp-contract=off;
 * the one multiply-add is written out, where the product is exact). Eight values a step in
 * AVX-512 against the WebAssembly kernel's two. Where all eight lie within unclipped_limit, neither
 * the clip nor the hold can change them, and both are skipped: four of the step's ten 512-bit
 * operations. Each word then takes `nsrc` (at most 4) keystream words before it is stored, source
 * j's at src + j·stride, subtracted where bit j of `neg` is set, modulo 2^b: the slice is
 * quantised and masked in one pass and written once, straight where it goes. Returns 1, having
 * written nothing reliable, when x holds a NaN or ±Infinity (the caller then finds the index), −1
 * for more than four sources, else 0.
 */
AVX512 int fedhpc_quantize_f32(uint8_t *dst, const uint8_t *x, const uint8_t *u, size_t n, double clip, double zero, double scale, double weight, int wide,
                               const uint8_t *src, size_t stride, int nsrc, int neg) {
  if (nsrc < 0 || nsrc > 4) return -1;
  struct quantizer q;
  quantizer_init(&q, clip, zero, scale, weight, nsrc, neg);
  return quantize_with(&q, dst, x, u, n, wide, src, stride);
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

/*
 * Values per block of fedhpc_mask_delta: its f32 Δ, rounding words and four keystream slices
 * (8 KiB for 16-bit words, 12 KiB for 32-bit, beside the block's bytes of the two models and its
 * words) stay in L1 between being made and being read. Blocks start on a multiple of it in the
 * whole vector, so that every stream's run after the first starts on an AES block.
 */
enum { MASK_BLOCK = 512 };

AVX512 int64_t fedhpc_mask_delta(uint8_t *dst, const uint8_t *local, int local_bf16, const uint8_t *global, int global_bf16, size_t n,
                                 const uint8_t *keys, const uint8_t *minus, size_t nmasks, uint64_t word_offset, int wide, int width,
                                 double clip, double zero, double scale, double weight) {
  struct fedhpc_aes256_key *k = malloc(sizeof *k * (nmasks + 1));
  if (k == NULL) return -2;
  for (size_t j = 0; j <= nmasks; j++) fedhpc_aes256_expand(keys + 32 * j, &k[j]);
  _Alignas(64) float x[MASK_BLOCK];
  _Alignas(64) uint8_t u[MASK_BLOCK * 4];
  _Alignas(64) uint8_t src[4][MASK_BLOCK * 4];
  const size_t wb = wide ? 4 : 2, ls = local_bf16 ? 2 : 4, gs = global_bf16 ? 2 : 4;
  /* The first four masks' signs, which the quantiser folds in: the same for every block. */
  int first_neg = 0;
  for (size_t j = 0; j < nmasks && j < 4; j++)
    if (minus[j]) first_neg |= 1 << j;
  struct quantizer q;
  quantizer_init(&q, clip, zero, scale, weight, nmasks < 4 ? (int)nmasks : 4, first_neg);
  int64_t found = -1;
  for (size_t i = 0; i < n && found < 0;) {
    const uint64_t word = word_offset + i;
    size_t m = MASK_BLOCK - (size_t)(word % MASK_BLOCK);
    if (m > n - i) m = n - i;
    fedhpc_delta((uint8_t *)x, local + ls * i, local_bf16, global + gs * i, global_bf16, m, 0);
    fedhpc_aes256_ctr_expanded(&k[0], 0, word * 4 / 16, (size_t)(word * 4 % 16), u, m * 4, width);
    for (size_t s = 0; s == 0 || s < nmasks; s += 4) {
      const int count = nmasks - s < 4 ? (int)(nmasks - s) : 4;
      int neg = 0;
      for (int j = 0; j < count; j++) {
        fedhpc_aes256_ctr_expanded(&k[1 + s + j], 0, word * wb / 16, (size_t)(word * wb % 16), src[j], m * wb, width);
        if (minus[s + j]) neg |= 1 << j;
      }
      /* The first four go in as each word is quantised, the rest four at a time after. */
      if (s > 0) fedhpc_fold_words(dst + wb * i, src[0], sizeof src[0], count, neg, m, wide);
      else if (quantize_with(&q, dst + wb * i, (const uint8_t *)x, u, m, wide, src[0], sizeof src[0]) != 0) {
        found = (int64_t)i + fedhpc_find_non_finite_f32((const uint8_t *)x, m);
        break;
      }
    }
    i += m;
  }
  free(k);
  return found;
}

#endif /* __x86_64__ */
