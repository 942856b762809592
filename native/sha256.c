/*
 * SHA-256 (FIPS 180-4) with the SHA extensions, one message or two states over the same message
 * at once. A coordinator that takes tensor digests hashes every byte it receives twice — the piece
 * digest the wire carries and the whole delta's digest it journals — and SHA256RNDS2's latency,
 * not its throughput, bounds one stream: two independent chains in one loop cost little more than
 * one (docs/decisions.md). For the same reason a chunk's CRC32C rides in the block loop of one
 * state almost for nothing (fedhpc_sha256_update_crc32c): where a stripe is proved whole, the
 * coordinator reads each received byte once for both. States live in caller memory (struct
 * fedhpc_sha256), so JavaScript owns them.
 */
#include "fedhpc_native.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define SHANI_CRC __attribute__((target("sha,sse4.1,ssse3,sse4.2")))

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The state as SHA256RNDS2 wants it: ABEF and CDGH. */
SHANI static void load_state(const uint32_t h[8], __m128i *abef, __m128i *cdgh) {
  __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]);
  __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]);
  __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  *abef = _mm_alignr_epi8(cdab, efgh, 8);
  *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

SHANI static void store_state(uint32_t h[8], __m128i abef, __m128i cdgh) {
  __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)

/* 64 rounds of one block on (abef, cdgh), message words from p. */
#define BLOCK_ROUNDS(p, abef, cdgh)                                                                    \
  do {                                                                                                 \
    __m128i w[16];                                                                                     \
    __m128i save0 = abef, save1 = cdgh;                                                                \
    for (int i = 0; i < 16; i++) {                                                                     \
      if (i < 4) {                                                                                     \
        w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * i)), BSWAP_MASK);         \
      } else {                                                                                         \
        __m128i t = _mm_add_epi32(_mm_sha256msg1_epu32(w[i - 4], w[i - 3]), _mm_alignr_epi8(w[i - 1], w[i - 2], 4)); \
        w[i] = _mm_sha256msg2_epu32(t, w[i - 1]);                                                     \
      }                                                                                                \
      __m128i wk = _mm_add_epi32(w[i], _mm_loadu_si128((const __m128i *)&K[4 * i]));                 \
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);                                                    \
      abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));                          \
    }                                                                                                  \
    abef = _mm_add_epi32(abef, save0);                                                                 \
    cdgh = _mm_add_epi32(cdgh, save1);                                                                 \
  } while (0)

SHANI static void blocks1(uint32_t h[8], const uint8_t *p, size_t n) {
  __m128i abef, cdgh;
  load_state(h, &abef, &cdgh);
  for (; n > 0; n--, p += 64) BLOCK_ROUNDS(p, abef, cdgh);
  store_state(h, abef, cdgh);
}

/* blocks1 with the CRC32C register `*crc` extended over the same blocks: its crc32 chain (eight a
 * block) runs in the shadow of the rounds' latency. */
SHANI_CRC static void blocks1_crc(uint32_t h[8], const uint8_t *p, size_t n, uint32_t *crc) {
  __m128i abef, cdgh;
  uint64_t c = *crc;
  load_state(h, &abef, &cdgh);
  for (; n > 0; n--, p += 64) {
    for (int j = 0; j < 8; j++) {
      uint64_t w;
      memcpy(&w, p + 8 * j, 8);
      c = _mm_crc32_u64(c, w);
    }
    BLOCK_ROUNDS(p, abef, cdgh);
  }
  store_state(h, abef, cdgh);
  *crc = (uint32_t)c;
}

/* Two chains at once: their rounds interleave, so each hides the other's latency. */
SHANI static void blocks2(uint32_t ha[8], const uint8_t *pa, uint32_t hb[8], const uint8_t *pb, size_t n) {
  __m128i a0, a1, b0, b1;
  load_state(ha, &a0, &a1);
  load_state(hb, &b0, &b1);
  for (; n > 0; n--, pa += 64, pb += 64) {
    __m128i wa[16], wb[16];
    __m128i sa0 = a0, sa1 = a1, sb0 = b0, sb1 = b1;
    for (int i = 0; i < 16; i++) {
      if (i < 4) {
        wa[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * i)), BSWAP_MASK);
        wb[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * i)), BSWAP_MASK);
      } else {
        __m128i ta = _mm_add_epi32(_mm_sha256msg1_epu32(wa[i - 4], wa[i - 3]), _mm_alignr_epi8(wa[i - 1], wa[i - 2], 4));
        __m128i tb = _mm_add_epi32(_mm_sha256msg1_epu32(wb[i - 4], wb[i - 3]), _mm_alignr_epi8(wb[i - 1], wb[i - 2], 4));
        wa[i] = _mm_sha256msg2_epu32(ta, wa[i - 1]);
        wb[i] = _mm_sha256msg2_epu32(tb, wb[i - 1]);
      }
      __m128i k = _mm_loadu_si128((const __m128i *)&K[4 * i]);
      __m128i wka = _mm_add_epi32(wa[i], k);
      __m128i wkb = _mm_add_epi32(wb[i], k);
      a1 = _mm_sha256rnds2_epu32(a1, a0, wka);
      b1 = _mm_sha256rnds2_epu32(b1, b0, wkb);
      a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(wka, 0x0E));
      b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(wkb, 0x0E));
    }
    a0 = _mm_add_epi32(a0, sa0);
    a1 = _mm_add_epi32(a1, sa1);
    b0 = _mm_add_epi32(b0, sb0);
    b1 = _mm_add_epi32(b1, sb1);
  }
  store_state(ha, a0, a1);
  store_state(hb, b0, b1);
}

void fedhpc_sha256_init(struct fedhpc_sha256 *s) {
  memcpy(s->h, H0, sizeof H0);
  s->bytes = 0;
  s->buffered = 0;
}

/* Fills the partial block from p; returns the bytes taken. */
static size_t top_up(struct fedhpc_sha256 *s, const uint8_t *p, size_t n) {
  if (s->buffered == 0) return 0;
  size_t take = 64 - s->buffered < n ? 64 - s->buffered : n;
  memcpy(s->block + s->buffered, p, take);
  s->buffered += (uint32_t)take;
  if (s->buffered == 64) {
    blocks1(s->h, s->block, 1);
    s->buffered = 0;
  }
  return take;
}

static void keep_tail(struct fedhpc_sha256 *s, const uint8_t *p, size_t n) {
  memcpy(s->block + s->buffered, p, n);
  s->buffered += (uint32_t)n;
}

void fedhpc_sha256_update(struct fedhpc_sha256 *s, const uint8_t *p, size_t n) {
  s->bytes += n;
  size_t used = top_up(s, p, n);
  p += used;
  n -= used;
  if (n >= 64) blocks1(s->h, p, n / 64);
  keep_tail(s, p + (n & ~(size_t)63), n & 63);
}

uint32_t fedhpc_sha256_update_crc32c(struct fedhpc_sha256 *s, const uint8_t *p, size_t n) {
  s->bytes += n;
  size_t used = top_up(s, p, n);
  uint32_t crc = fedhpc_crc32c_extend(0xFFFFFFFFu, p, used);
  p += used;
  n -= used;
  if (n >= 64) blocks1_crc(s->h, p, n / 64, &crc);
  const uint8_t *tail = p + (n & ~(size_t)63);
  crc = fedhpc_crc32c_extend(crc, tail, n & 63);
  keep_tail(s, tail, n & 63);
  return ~crc;
}

void fedhpc_sha256_update2(struct fedhpc_sha256 *a, struct fedhpc_sha256 *b, const uint8_t *p, size_t n) {
  a->bytes += n;
  b->bytes += n;
  size_t ua = top_up(a, p, n), ub = top_up(b, p, n);
  const uint8_t *pa = p + ua, *pb = p + ub;
  size_t na = n - ua, nb = n - ub;
  size_t both = (na < nb ? na : nb) / 64;
  blocks2(a->h, pa, b->h, pb, both);
  pa += 64 * both;
  pb += 64 * both;
  na -= 64 * both;
  nb -= 64 * both;
  if (na >= 64) blocks1(a->h, pa, na / 64);
  if (nb >= 64) blocks1(b->h, pb, nb / 64);
  keep_tail(a, pa + (na & ~(size_t)63), na & 63);
  keep_tail(b, pb + (nb & ~(size_t)63), nb & 63);
}

void fedhpc_sha256_final(struct fedhpc_sha256 *s, uint8_t out[32]) {
  uint64_t bits = s->bytes * 8;
  uint8_t pad[72] = {0x80};
  size_t padding = (s->buffered < 56 ? 56 : 120) - s->buffered;
  for (int i = 0; i < 8; i++) pad[padding + i] = (uint8_t)(bits >> (56 - 8 * i));
  uint64_t bytes = s->bytes;
  fedhpc_sha256_update(s, pad, padding + 8);
  s->bytes = bytes;
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}

int fedhpc_cpu_has_sha(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("ssse3");
}

#endif /* __x86_64__ */
