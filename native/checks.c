/*
 * The checks the coordinator and the agents make on every byte they move: the CRC32C of each
 * chunk, with SSE4.2's crc32 instruction (about four times @node-rs/crc32 per CPU-second here), the
 * finiteness of bf16 and f32 delta values read in place (the WebAssembly kernel must first copy
 * them into its own memory), and a site's delta, local − global, in AVX-512. x86-64 only; module.c
 * exports none of it elsewhere.
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

#define AVX512 FEDHPC_AVX512

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

/* The AVX-512 kernels here, in mask.c and in step.c (FEDHPC_AVX512); the quantiser's finiteness test uses AVX2 beside AVX-512F and VL. */
int fedhpc_cpu_has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2");
}

#endif /* __x86_64__ */
