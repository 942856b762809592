/* The C kernels behind fedhpc's native module (module.c is its Node-API glue). */
#ifndef FEDHPC_NATIVE_H
#define FEDHPC_NATIVE_H
#include <stddef.h>
#include <stdint.h>

/* prg.c: AES-256-CTR keystream bytes [skip, skip + n) of the blocks from (hi, lo), into out;
 * skip < 16 (module.c checks it), by registers of at most `width` bits (128: AES-NI alone, 256 and
 * 512: VAES, which the caller checks the CPU has). The round keys can be expanded once. */
struct fedhpc_aes256_key {
  _Alignas(16) uint8_t round[15 * 16];
};
void fedhpc_aes256_ctr(const uint8_t key[32], uint64_t hi, uint64_t lo, size_t skip, uint8_t *out, size_t n, int width);
void fedhpc_aes256_expand(const uint8_t key[32], struct fedhpc_aes256_key *k);
void fedhpc_aes256_ctr_expanded(const struct fedhpc_aes256_key *k, uint64_t hi, uint64_t lo, size_t skip, uint8_t *out, size_t n, int width);
int fedhpc_cpu_has_aesni(void);
int fedhpc_cpu_has_vaes(void);
int fedhpc_cpu_has_vaes512(void);

/* checks.c: CRC32C (Castagnoli, reflected, init and final xor 0xffffffff) of n bytes. */
uint32_t fedhpc_crc32c(const uint8_t *p, size_t n);
/* The running (not inverted) CRC32C register `crc` extended over p[0..n), one chain: for short runs. */
uint32_t fedhpc_crc32c_extend(uint32_t crc, const uint8_t *p, size_t n);
/* Makes CRC32C's constant; called once when the module loads, before any fedhpc_crc32c. */
void fedhpc_checks_init(void);
int fedhpc_cpu_has_sse42(void);
/* Index of the first NaN or ±Infinity among n little-endian bf16 (or f32) values, or -1. */
int64_t fedhpc_find_non_finite_bf16(const uint8_t *p, size_t n);
int64_t fedhpc_find_non_finite_f32(const uint8_t *p, size_t n);
/* A site's delta: dst[i] = local[i] − global[i] in f32 over n values (sources F32 or BF16 bytes),
 * written as f32 or rounded to bf16. */
void fedhpc_delta(uint8_t *dst, const uint8_t *local, int local_bf16, const uint8_t *global, int global_bf16, size_t n, int out_bf16);
int fedhpc_cpu_has_avx512(void);

/* mask.c (AVX-512, exported where fedhpc_cpu_has_avx512): the masked encoding's quantiser over n
 * f32 values and u32 rounding words into u32 (wide) or u16 words, each then taking nsrc (≤ 4)
 * keystream words, source j's at src + j·stride, subtracted where bit j of neg is set; 1 when x
 * holds a NaN or ±Infinity, −1 for nsrc outside 0 to 4. */
int fedhpc_quantize_f32(uint8_t *dst, const uint8_t *x, const uint8_t *u, size_t n, double clip, double zero, double scale, double weight, int wide,
                        const uint8_t *src, size_t stride, int nsrc, int neg);
/* dst's n words take nsrc (1 to 4) keystream words each, as fedhpc_quantize_f32's do; −1 for nsrc outside 1 to 4. */
int fedhpc_fold_words(uint8_t *dst, const uint8_t *src, size_t stride, int nsrc, int neg, size_t n, int wide);
/* A site's masked words for n values of Δ = local − global (each F32 or BF16 bytes, as
 * fedhpc_delta), made block by block from the two models' bytes: keys holds 32-byte keys, the
 * rounding stream's (32-bit words) and then nmasks masks' (words of the modulus's width), minus[j]
 * nonzero where mask j is subtracted, each stream read from word `word_offset` on, by keystream loops
 * of at most `width` bits. −1 when done; the index of the first NaN or ±Infinity in Δ, the words
 * then partly written; −2 when memory for the round keys cannot be had. */
int64_t fedhpc_mask_delta(uint8_t *dst, const uint8_t *local, int local_bf16, const uint8_t *global, int global_bf16, size_t n,
                          const uint8_t *keys, const uint8_t *minus, size_t nmasks, uint64_t word_offset, int wide, int width,
                          double clip, double zero, double scale, double weight);

/* step.c (AVX-512, exported where fedhpc_cpu_has_avx512): bf16 to f32 exactly; f32 to bf16 rounded
 * to nearest even, NaN kept quiet; the first finite value that narrowing turns into ±Inf (|bits| in
 * [limit, 0x7F800000)), or −1; one momentum step in place (v NULL: FedAvg), f64 per element. */
void fedhpc_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
void fedhpc_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
int64_t fedhpc_find_narrowing_overflow(const float *src, size_t n, uint32_t limit);
void fedhpc_momentum_step(float *theta, const float *delta, float *v, size_t n, double lr, double mu, int nesterov);

/* sha256.c: SHA-256 with the SHA extensions; the state lives in the caller's memory. */
struct fedhpc_sha256 {
  uint32_t h[8];
  uint64_t bytes;
  uint32_t buffered;
  uint8_t block[64];
};
void fedhpc_sha256_init(struct fedhpc_sha256 *s);
void fedhpc_sha256_update(struct fedhpc_sha256 *s, const uint8_t *p, size_t n);
/* Both states take the same bytes, their blocks interleaved. */
void fedhpc_sha256_update2(struct fedhpc_sha256 *a, struct fedhpc_sha256 *b, const uint8_t *p, size_t n);
void fedhpc_sha256_final(struct fedhpc_sha256 *s, uint8_t out[32]);
/* fedhpc_sha256_update, returning the CRC32C of the same bytes, computed in the same pass (needs SSE4.2 too). */
uint32_t fedhpc_sha256_update_crc32c(struct fedhpc_sha256 *s, const uint8_t *p, size_t n);
int fedhpc_cpu_has_sha(void);

#endif
