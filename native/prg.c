/*
 * AES-256-CTR keystream written into caller-owned memory, for the mask generator
 * (aggregation/secagg/prg.ts; the Node-API glue is module.c). Node 20's cipher.update allocates (and zero-fills) a fresh output
 * buffer on every call and cannot write into a caller's; this writes the same bytes straight into
 * the mask kernels' memory. The keystream is exactly OpenSSL's aes-256-ctr with the same key and
 * IV (128-bit big-endian counter), which the tests check against node:crypto.
 *
 * Only x86-64 with AES-NI: elsewhere the module says so (`aesni` false) and prg.ts keeps using
 * node:crypto. Where the CPU has VAES, the blocks are made several to a register, their counters
 * by vector adds: two to an AVX2 register, sixteen in flight (`vaes` true), or, with AVX-512,
 * four to a register and thirty-two in flight (`vaes512`; 7–8 % more keystream per CPU-second on
 * this machine's Zen 4, which splits each 512-bit operation in two). The round keys can be
 * expanded once for many runs (fedhpc_aes256_expand), as the fused masker (mask.c) needs.
 */
#include "fedhpc_native.h"
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#ifdef HAVE_X86

#define AESNI __attribute__((target("aes,sse4.1")))

AESNI static inline __m128i expand_even(__m128i k, __m128i assist) {
  assist = _mm_shuffle_epi32(assist, 0xff);
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  return _mm_xor_si128(k, assist);
}

AESNI static inline __m128i expand_odd(__m128i k, __m128i prev) {
  __m128i assist = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(prev, 0x00), 0xaa);
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  k = _mm_xor_si128(k, _mm_slli_si128(k, 4));
  return _mm_xor_si128(k, assist);
}

/* FIPS-197 AES-256 key expansion: 15 round keys. */
AESNI static void expand_key(const uint8_t key[32], __m128i rk[15]) {
  rk[0] = _mm_loadu_si128((const __m128i *)key);
  rk[1] = _mm_loadu_si128((const __m128i *)(key + 16));
#define EVEN(i, rcon) rk[i] = expand_even(rk[i - 2], _mm_aeskeygenassist_si128(rk[i - 1], rcon))
#define ODD(i) rk[i] = expand_odd(rk[i - 2], rk[i - 1])
  EVEN(2, 0x01); ODD(3);
  EVEN(4, 0x02); ODD(5);
  EVEN(6, 0x04); ODD(7);
  EVEN(8, 0x08); ODD(9);
  EVEN(10, 0x10); ODD(11);
  EVEN(12, 0x20); ODD(13);
  EVEN(14, 0x40);
#undef EVEN
#undef ODD
}

/* The counter block for block index (hi, lo) + i, as the big-endian 128-bit integer CTR uses. */
static inline __m128i counter_block(uint64_t hi, uint64_t lo, uint64_t i) {
  uint64_t l = lo + i;
  uint64_t h = hi + (l < lo);
  return _mm_set_epi64x((long long)__builtin_bswap64(l), (long long)__builtin_bswap64(h));
}

AESNI static inline __m128i encrypt_block(const __m128i rk[15], __m128i x) {
  x = _mm_xor_si128(x, rk[0]);
  for (int r = 1; r < 14; r++) x = _mm_aesenc_si128(x, rk[r]);
  return _mm_aesenclast_si128(x, rk[14]);
}

#define VAES __attribute__((target("aes,avx2,vaes")))

/*
 * Whole 256-byte runs of the keystream from block `block` with VAES: two blocks per 256-bit
 * register, sixteen in flight. Each register's counters advance by a vector add on their low 64
 * bits and reach CTR's big-endian order by one byte shuffle: building them a block at a time in
 * general registers cost a seventh of the loop's time. A run whose low 64 bits would carry into
 * the high ones is left to the caller's block-at-a-time loop. Returns the bytes written.
 */
VAES static size_t keystream_wide(const __m128i rk128[15], uint64_t hi, uint64_t lo, uint64_t block, uint8_t *out, size_t n) {
  const uint64_t first = lo + block;
  const uint64_t blocks = n / 256 * 16;
  const uint64_t high = hi + (first < lo);
  if (blocks == 0 || first + (blocks - 1) < first) return 0;
  __m256i rk[15];
  for (int r = 0; r < 15; r++) rk[r] = _mm256_broadcastsi128_si256(rk128[r]);
  /* Each 128-bit lane holds (high, low) as little-endian 64-bit words; the shuffle reverses each. */
  const __m256i to_big_endian = _mm256_broadcastsi128_si256(_mm_set_epi8(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i two = _mm256_set_epi64x(2, 0, 2, 0);
  __m256i counters = _mm256_set_epi64x((long long)(first + 1), (long long)high, (long long)first, (long long)high);
  size_t done = 0;
  for (; n - done >= 256; done += 256) {
    __m256i x[8];
    for (int j = 0; j < 8; j++) {
      x[j] = _mm256_xor_si256(_mm256_shuffle_epi8(counters, to_big_endian), rk[0]);
      counters = _mm256_add_epi64(counters, two);
    }
    for (int r = 1; r < 14; r++)
      for (int j = 0; j < 8; j++) x[j] = _mm256_aesenc_epi128(x[j], rk[r]);
    for (int j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(out + done + 32 * j), _mm256_aesenclast_epi128(x[j], rk[14]));
  }
  return done;
}

#define VAES512 __attribute__((target("aes,avx2,vaes,avx512f,avx512bw")))

/* keystream_wide with four blocks per 512-bit register, thirty-two in flight: 512-byte runs. */
VAES512 static size_t keystream_wide512(const __m128i rk128[15], uint64_t hi, uint64_t lo, uint64_t block, uint8_t *out, size_t n) {
  const uint64_t first = lo + block;
  const uint64_t blocks = n / 512 * 32;
  const uint64_t high = hi + (first < lo);
  if (blocks == 0 || first + (blocks - 1) < first) return 0;
  __m512i rk[15];
  for (int r = 0; r < 15; r++) rk[r] = _mm512_broadcast_i32x4(rk128[r]);
  const __m512i to_big_endian = _mm512_broadcast_i32x4(_mm_set_epi8(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  const __m512i four = _mm512_set_epi64(4, 0, 4, 0, 4, 0, 4, 0);
  __m512i counters = _mm512_set_epi64((long long)(first + 3), (long long)high, (long long)(first + 2), (long long)high, (long long)(first + 1), (long long)high,
                                      (long long)first, (long long)high);
  size_t done = 0;
  for (; n - done >= 512; done += 512) {
    __m512i x[8];
    for (int j = 0; j < 8; j++) {
      x[j] = _mm512_xor_si512(_mm512_shuffle_epi8(counters, to_big_endian), rk[0]);
      counters = _mm512_add_epi64(counters, four);
    }
    for (int r = 1; r < 14; r++)
      for (int j = 0; j < 8; j++) x[j] = _mm512_aesenc_epi128(x[j], rk[r]);
    for (int j = 0; j < 8; j++) _mm512_storeu_si512((void *)(out + done + 64 * j), _mm512_aesenclast_epi128(x[j], rk[14]));
  }
  return done;
}

AESNI void fedhpc_aes256_expand(const uint8_t key[32], struct fedhpc_aes256_key *k) {
  expand_key(key, (__m128i *)k->round);
}

/* Keystream bytes [skip, skip + n) of the blocks counted from (hi, lo), into out, by registers of at most `width` bits. */
AESNI void fedhpc_aes256_ctr_expanded(const struct fedhpc_aes256_key *k, uint64_t hi, uint64_t lo, size_t skip, uint8_t *out, size_t n, int width) {
  const __m128i *rk = (const __m128i *)k->round;
  uint64_t block = 0;
  if (skip > 0 && n > 0) {
    uint8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, encrypt_block(rk, counter_block(hi, lo, 0)));
    size_t take = 16 - skip < n ? 16 - skip : n;
    memcpy(out, tmp + skip, take);
    out += take;
    n -= take;
    block = 1;
  }
  if (width >= 512) {
    size_t done = keystream_wide512(rk, hi, lo, block, out, n);
    out += done;
    n -= done;
    block += done / 16;
  }
  if (width >= 256) {
    size_t done = keystream_wide(rk, hi, lo, block, out, n);
    out += done;
    n -= done;
    block += done / 16;
  }
  while (n >= 128) {
    __m128i x[8];
    for (int j = 0; j < 8; j++) x[j] = _mm_xor_si128(counter_block(hi, lo, block + j), rk[0]);
    for (int r = 1; r < 14; r++)
      for (int j = 0; j < 8; j++) x[j] = _mm_aesenc_si128(x[j], rk[r]);
    for (int j = 0; j < 8; j++) _mm_storeu_si128((__m128i *)(out + 16 * j), _mm_aesenclast_si128(x[j], rk[14]));
    out += 128;
    n -= 128;
    block += 8;
  }
  while (n > 0) {
    uint8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, encrypt_block(rk, counter_block(hi, lo, block)));
    size_t take = n < 16 ? n : 16;
    memcpy(out, tmp, take);
    out += take;
    n -= take;
    block++;
  }
}

void fedhpc_aes256_ctr(const uint8_t key[32], uint64_t hi, uint64_t lo, size_t skip, uint8_t *out, size_t n, int width) {
  struct fedhpc_aes256_key k;
  fedhpc_aes256_expand(key, &k);
  fedhpc_aes256_ctr_expanded(&k, hi, lo, skip, out, n, width);
}

int fedhpc_cpu_has_aesni(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1");
}

/* libgcc's check includes the OS's support for the 256-bit registers (XGETBV). */
int fedhpc_cpu_has_vaes(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx2");
}

int fedhpc_cpu_has_vaes512(void) {
  __builtin_cpu_init();
  return fedhpc_cpu_has_vaes() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

#endif /* HAVE_X86 */
