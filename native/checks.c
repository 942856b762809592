/*
 * The checks the coordinator and the agents make on every byte they move: the CRC32C of each
 * chunk, with SSE4.2's crc32 instruction (about 1.5× @node-rs/crc32 per CPU-second here), and the
 * finiteness of bf16 and f32 delta values read in place (the WebAssembly kernel must first copy
 * them into its own memory). x86-64 only; module.c exports none of it elsewhere.
 */
#include "fedhpc_native.h"
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

/* x^(8·RUN) mod P, reflected, made once. */
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

SSE42 uint32_t fedhpc_crc32c(const uint8_t *p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  if (shift_run == 0) shift_run = x_pow_8n(RUN);
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
    /* crc(A‖B‖C) = crc(A)·x^(16·RUN·8/2…) folded: shift A over B, xor B, shift over C, xor C. */
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
