/*
 * fedhpc's native module: Node-API glue over the C kernels of prg.c (the mask keystream), checks.c
 * (CRC32C, finiteness of delta values, a site's delta), mask.c (the masked encoding), sha256.c (SHA-256, two states at once) and step.c (the
 * server step's conversions and momentum rules), loaded by aggregation/native.ts. Each function is
 * exported only where this CPU runs it (x86-64 with AES-NI, SSE4.2, the SHA extensions, AVX-512);
 * aggregation/native.ts and its callers fall back to node:crypto, @node-rs/crc32, the WebAssembly
 * kernels and the JS loops elsewhere.
 */
#include <node_api.h>
#include <stdbool.h>
#include "fedhpc_native.h"

#if defined(__x86_64__)
#define HAVE_X86 1
#endif

/* Set at load: the widest registers the keystream may use on this CPU (128: AES-NI alone; 256: VAES
 * and AVX2; 512: VAES and AVX-512, each enabled by the OS). */
static int max_width = 128;

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_FEDHPC_NATIVE", msg);
  return NULL;
}

static int bytes_of(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  void *p;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &type, &length, &p, &ab, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *data = p;
  *len = length;
  return 1;
}

/*
 * aes256CtrInto(key: Uint8Array(32), blockHi: number, blockLo: number, skip: number, out: Uint8Array,
 * width?: 128 | 256 | 512): `width` holds the loop to registers of at most that many bits (tests
 * compare each loop with node:crypto); the widest this CPU has by default.
 */
static napi_value aes256_ctr_into(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return fail(env, "aes256CtrInto takes 5 or 6 arguments");
  int width = max_width;
  napi_valuetype width_type = napi_undefined;
  if (argc == 6 && napi_typeof(env, argv[5], &width_type) != napi_ok) return fail(env, "width must be 128, 256 or 512");
  if (width_type != napi_undefined) {
    double w;
    if (napi_get_value_double(env, argv[5], &w) != napi_ok || !(w == 128 || w == 256 || w == 512)) return fail(env, "width must be 128, 256 or 512");
    if ((int)w < width) width = (int)w;
  }
  uint8_t *key, *out;
  size_t key_len, out_len;
  if (!bytes_of(env, argv[0], &key, &key_len) || key_len != 32) return fail(env, "key must be a 32-byte Uint8Array");
  double hi, lo, skip;
  if (napi_get_value_double(env, argv[1], &hi) != napi_ok || napi_get_value_double(env, argv[2], &lo) != napi_ok ||
      napi_get_value_double(env, argv[3], &skip) != napi_ok) return fail(env, "block and skip must be numbers");
  if (!(hi >= 0 && hi <= 4294967295.0 && hi == (double)(uint64_t)hi)) return fail(env, "blockHi must be an integer in [0, 2^32)");
  if (!(lo >= 0 && lo <= 4294967295.0 && lo == (double)(uint64_t)lo)) return fail(env, "blockLo must be an integer in [0, 2^32)");
  if (!(skip >= 0 && skip < 16 && skip == (double)(uint64_t)skip)) return fail(env, "skip must be an integer in [0, 16)");
  if (!bytes_of(env, argv[4], &out, &out_len)) return fail(env, "out must be a Uint8Array");
#ifdef HAVE_X86
  /* The 64-bit block index is hi·2^32 + lo; the counter's upper 64 bits start at 0, as the IV's do. */
  fedhpc_aes256_ctr(key, 0, ((uint64_t)hi << 32) | (uint64_t)lo, (size_t)skip, out, out_len, width);
  return NULL;
#else
  return fail(env, "no AES-NI on this machine");
#endif
}

/* crc32c(data: Uint8Array): number */
static napi_value crc32c(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  uint8_t *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1) return fail(env, "crc32c takes 1 argument");
  if (!bytes_of(env, argv[0], &data, &len)) return fail(env, "crc32c takes a Uint8Array");
#ifdef HAVE_X86
  if (napi_create_uint32(env, fedhpc_crc32c(data, len), &result) != napi_ok) return NULL;
  return result;
#else
  (void)result;
  return fail(env, "no SSE4.2 on this machine");
#endif
}

/*
 * findNonFiniteBf16(bytes) / findNonFiniteF32(bytes): index of the first NaN or ±Infinity, or -1.
 * One callback for both; the value width (2 or 4) is the function's data.
 */
static napi_value find_non_finite(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  uint8_t *data;
  size_t len;
  void *width_data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &width_data) != napi_ok || argc != 1) return fail(env, "the finiteness checks take 1 argument");
  int width = (int)(intptr_t)width_data;
  if (!bytes_of(env, argv[0], &data, &len)) return fail(env, "the finiteness checks take a Uint8Array");
  if (len % width != 0) return fail(env, width == 2 ? "bf16 bytes must be a whole number of values" : "f32 bytes must be a whole number of values");
#ifdef HAVE_X86
  int64_t at = width == 2 ? fedhpc_find_non_finite_bf16(data, len / 2) : fedhpc_find_non_finite_f32(data, len / 4);
  if (napi_create_int64(env, at, &result) != napi_ok) return NULL;
  return result;
#else
  (void)result;
  return fail(env, "no x86-64 kernels on this machine");
#endif
}

/* A SHA-256 state in a Uint8Array of at least sizeof(struct fedhpc_sha256) bytes, 8-aligned. */
static struct fedhpc_sha256 *sha_state(napi_env env, napi_value v) {
  uint8_t *p;
  size_t len;
  if (!bytes_of(env, v, &p, &len) || len < sizeof(struct fedhpc_sha256) || ((uintptr_t)p & 7) != 0) return NULL;
  return (struct fedhpc_sha256 *)p;
}

/*
 * sha256Init(state) / sha256Update(state, data) / sha256Update2(a, b, data) / sha256Final(state,
 * out32) / sha256UpdateCrc32c(state, data), which returns the CRC32C of data from the same pass:
 * one callback; which of the five (0 to 4) is the function's data.
 */
static napi_value sha256_call(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result = NULL;
  void *op_data;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &op_data) != napi_ok) return fail(env, "wrong number of arguments to a SHA-256 call");
  int op = (int)(intptr_t)op_data;
  size_t want = op == 0 ? 1 : op == 2 ? 3 : 2;
  if (argc != want) return fail(env, "wrong number of arguments to a SHA-256 call");
  struct fedhpc_sha256 *a = sha_state(env, argv[0]);
  if (a == NULL) return fail(env, "a SHA-256 state must be an 8-aligned Uint8Array of sha256StateBytes");
#ifdef HAVE_X86
  uint8_t *data;
  size_t len;
  if (op == 0) {
    fedhpc_sha256_init(a);
  } else if (op == 1 || op == 4) {
    if (!bytes_of(env, argv[1], &data, &len)) return fail(env, "SHA-256 data must be a Uint8Array");
    if (op == 1) fedhpc_sha256_update(a, data, len);
    else if (napi_create_uint32(env, fedhpc_sha256_update_crc32c(a, data, len), &result) != napi_ok) return NULL;
  } else if (op == 2) {
    struct fedhpc_sha256 *b = sha_state(env, argv[1]);
    if (b == NULL || b == a) return fail(env, "sha256Update2 needs two distinct states");
    if (!bytes_of(env, argv[2], &data, &len)) return fail(env, "SHA-256 data must be a Uint8Array");
    fedhpc_sha256_update2(a, b, data, len);
  } else {
    if (!bytes_of(env, argv[1], &data, &len) || len != 32) return fail(env, "a SHA-256 digest goes into 32 bytes");
    fedhpc_sha256_final(a, data);
  }
  return result;
#else
  return fail(env, "no SHA extensions on this machine");
#endif
}

/*
 * Reads the keystream sources of quantizeF32 and foldWords from argv[0..3]: src (a Uint8Array),
 * stride (bytes between sources), count (0 to 4; at least `least`) and neg (bit j: source j is
 * subtracted). Each source must hold `bytes` bytes and lie within src.
 */
static bool sources_of(napi_env env, napi_value *argv, size_t bytes, int least, const uint8_t **src, size_t *stride, int *count, int *neg) {
  uint8_t *p;
  size_t len;
  double st, c, m;
  if (!bytes_of(env, argv[0], &p, &len)) return fail(env, "the keystream sources must be a Uint8Array"), false;
  if (napi_get_value_double(env, argv[1], &st) != napi_ok || napi_get_value_double(env, argv[2], &c) != napi_ok || napi_get_value_double(env, argv[3], &m) != napi_ok)
    return fail(env, "stride, count and negative must be numbers"), false;
  if (!(c >= least && c <= 4 && c == (double)(int)c)) return fail(env, least > 0 ? "count must be an integer in [1, 4]" : "count must be an integer in [0, 4]"), false;
  if (!(m >= 0 && m < 16 && m == (double)(int)m)) return fail(env, "negative must be an integer bit mask in [0, 16)"), false;
  if (!(st >= 0 && st <= 9007199254740991.0 && st == (double)(size_t)st)) return fail(env, "stride must be a non-negative integer"), false;
  *stride = (size_t)st;
  *count = (int)c;
  *neg = (int)m;
  if (*count > 0 && ((*count > 1 && *stride < bytes) || (size_t)(*count - 1) * *stride + bytes > len)) return fail(env, "each keystream source needs as many words as dst, within the sources and apart by stride"), false;
  *src = p;
  return true;
}

/*
 * quantizeF32(dst, x, u, src, stride, count, negative, clip, zero, scale, weight, wide): 0, or 1 when x
 * holds a NaN or ±Infinity; each word takes `count` keystream words from src before it is stored.
 */
static napi_value quantize_f32(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12], result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 12) return fail(env, "quantizeF32 takes 12 arguments");
  uint8_t *dst, *x, *u;
  size_t dst_len, x_len, u_len;
  double p[4];
  bool wide;
  if (!bytes_of(env, argv[0], &dst, &dst_len) || !bytes_of(env, argv[1], &x, &x_len) || !bytes_of(env, argv[2], &u, &u_len)) return fail(env, "quantizeF32's buffers must be Uint8Arrays");
  for (int i = 0; i < 4; i++)
    if (napi_get_value_double(env, argv[7 + i], &p[i]) != napi_ok) return fail(env, "quantizeF32's parameters must be numbers");
  if (napi_get_value_bool(env, argv[11], &wide) != napi_ok) return fail(env, "quantizeF32's wide must be a boolean");
  size_t n = x_len / 4;
  if (x_len % 4 != 0 || u_len != x_len || dst_len != n * (wide ? 4 : 2)) return fail(env, "quantizeF32 needs n f32 values, n rounding words and n output words");
  const uint8_t *src;
  size_t stride;
  int count, neg;
  if (!sources_of(env, argv + 3, dst_len, 0, &src, &stride, &count, &neg)) return NULL;
#ifdef HAVE_X86
  int found = fedhpc_quantize_f32(dst, x, u, n, p[0], p[1], p[2], p[3], wide, src, stride, count, neg);
  if (found < 0) return fail(env, "quantizeF32 takes 0 to 4 sources");
  if (napi_create_int32(env, found, &result) != napi_ok) return NULL;
  return result;
#else
  (void)result;
  return fail(env, "no AVX-512 on this machine");
#endif
}

/* foldWords(dst, src, stride, count, negative, wide): dst's words take `count` keystream words each. */
static napi_value fold_words(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) return fail(env, "foldWords takes 6 arguments");
  uint8_t *dst;
  size_t dst_len;
  bool wide;
  if (!bytes_of(env, argv[0], &dst, &dst_len)) return fail(env, "foldWords's dst must be a Uint8Array");
  if (napi_get_value_bool(env, argv[5], &wide) != napi_ok) return fail(env, "foldWords's wide must be a boolean");
  if (dst_len % (wide ? 4 : 2) != 0) return fail(env, "foldWords's dst must hold whole words");
  const uint8_t *src;
  size_t stride;
  int count, neg;
  if (!sources_of(env, argv + 1, dst_len, 1, &src, &stride, &count, &neg)) return NULL;
#ifdef HAVE_X86
  if (fedhpc_fold_words(dst, src, stride, count, neg, dst_len / (wide ? 4 : 2), wide) != 0) return fail(env, "foldWords takes 1 to 4 sources");
  return NULL;
#else
  return fail(env, "no AVX-512 on this machine");
#endif
}

/*
 * maskDelta(dst, local, localBf16, global, globalBf16, keys, minus, wordOffset, clip, zero, scale,
 * weight, wide): the masked words of Δ = local − global into dst (n words of 32 bits where `wide`,
 * else 16), from n values of each source; keys holds the rounding stream's 32-byte key and then one
 * per mask, minus one byte per mask (nonzero: subtracted). −1, or the index of the first NaN or
 * ±Infinity in Δ.
 */
static napi_value mask_delta(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13], result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 13) return fail(env, "maskDelta takes 13 arguments");
  uint8_t *dst, *local, *global, *keys, *minus;
  size_t dst_len, local_len, global_len, keys_len, minus_len;
  bool local_bf16, global_bf16, wide;
  double offset, p[4];
  if (!bytes_of(env, argv[0], &dst, &dst_len) || !bytes_of(env, argv[1], &local, &local_len) || !bytes_of(env, argv[3], &global, &global_len) ||
      !bytes_of(env, argv[5], &keys, &keys_len) || !bytes_of(env, argv[6], &minus, &minus_len)) return fail(env, "maskDelta's buffers must be Uint8Arrays");
  if (napi_get_value_bool(env, argv[2], &local_bf16) != napi_ok || napi_get_value_bool(env, argv[4], &global_bf16) != napi_ok || napi_get_value_bool(env, argv[12], &wide) != napi_ok)
    return fail(env, "maskDelta's dtype and width flags must be booleans");
  if (napi_get_value_double(env, argv[7], &offset) != napi_ok) return fail(env, "maskDelta's word offset must be a number");
  for (int i = 0; i < 4; i++)
    if (napi_get_value_double(env, argv[8 + i], &p[i]) != napi_ok) return fail(env, "maskDelta's parameters must be numbers");
  size_t n = dst_len / (wide ? 4 : 2);
  if (dst_len % (wide ? 4 : 2) != 0 || local_len != n * (local_bf16 ? 2 : 4) || global_len != n * (global_bf16 ? 2 : 4))
    return fail(env, "maskDelta needs n values in each source and room for n words in dst");
  if (keys_len != 32 * (minus_len + 1) || minus_len > 1u << 20) return fail(env, "maskDelta needs a 32-byte key for the rounding stream and one for each mask");
  /* The rounding stream's bytes reach 4·(offset + n): that must stay a safe integer, as the JS keystream's do. */
  if (!(offset >= 0 && 4 * (offset + (double)n) <= 9007199254740991.0 && offset == (double)(uint64_t)offset))
    return fail(env, "maskDelta's word offset must be a non-negative integer, its streams' bytes safe integers");
#ifdef HAVE_X86
  int64_t found = fedhpc_mask_delta(dst, local, local_bf16, global, global_bf16, n, keys, minus, minus_len, (uint64_t)offset, wide, max_width, p[0], p[1], p[2], p[3]);
  if (found == -2) return fail(env, "maskDelta could not allocate its round keys");
  if (napi_create_int64(env, found, &result) != napi_ok) return NULL;
  return result;
#else
  (void)result;
  return fail(env, "no AVX-512 on this machine");
#endif
}

/* delta(dst, local, localBf16, global, globalBf16, outBf16): dst = local − global in f32, as f32 or bf16. */
static napi_value delta(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) return fail(env, "delta takes 6 arguments");
  uint8_t *dst, *local, *global;
  size_t dst_len, local_len, global_len;
  bool bf16[3];
  if (!bytes_of(env, argv[0], &dst, &dst_len) || !bytes_of(env, argv[1], &local, &local_len) || !bytes_of(env, argv[3], &global, &global_len)) return fail(env, "delta's buffers must be Uint8Arrays");
  if (napi_get_value_bool(env, argv[2], &bf16[0]) != napi_ok || napi_get_value_bool(env, argv[4], &bf16[1]) != napi_ok || napi_get_value_bool(env, argv[5], &bf16[2]) != napi_ok) return fail(env, "delta's dtype flags must be booleans");
  size_t n = dst_len / (bf16[2] ? 2 : 4);
  if (dst_len % (bf16[2] ? 2 : 4) != 0 || local_len != n * (bf16[0] ? 2 : 4) || global_len != n * (bf16[1] ? 2 : 4)) return fail(env, "delta needs n values in each source and room for n in dst");
#ifdef HAVE_X86
  fedhpc_delta(dst, local, bf16[0], global, bf16[1], n, bf16[2]);
  return NULL;
#else
  return fail(env, "no AVX-512 on this machine");
#endif
}

/* A Uint8Array whose bytes are whole, aligned values of `width` bytes (a Float32Array's or Uint16Array's view). */
static int values_of(napi_env env, napi_value v, size_t width, uint8_t **data, size_t *count) {
  size_t len;
  if (!bytes_of(env, v, data, &len) || len % width != 0 || ((uintptr_t)*data & (width - 1)) != 0) return 0;
  *count = len / width;
  return 1;
}

/* bf16ToF32(dst f32 bytes, src bf16 bytes) / f32ToBf16(dst bf16 bytes, src f32 bytes): the same n values; which is the function's data (0, 1). */
static napi_value convert(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *which;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &which) != napi_ok || argc != 2) return fail(env, "the bf16 conversions take 2 arguments");
  int narrow = (int)(intptr_t)which;
  uint8_t *dst, *src;
  size_t dst_n, src_n;
  if (!values_of(env, argv[0], narrow ? 2 : 4, &dst, &dst_n) || !values_of(env, argv[1], narrow ? 4 : 2, &src, &src_n)) return fail(env, "the bf16 conversions take aligned bytes of whole values");
  if (dst_n != src_n) return fail(env, "the bf16 conversions need as many values in dst as in src");
#ifdef HAVE_X86
  if (narrow) fedhpc_f32_to_bf16((uint16_t *)dst, (const float *)src, src_n);
  else fedhpc_bf16_to_f32((float *)dst, (const uint16_t *)src, src_n);
  return NULL;
#else
  return fail(env, "no AVX-512 on this machine");
#endif
}

/* findNarrowingOverflow(f32 bytes, limit): index of the first finite value with |bits| ≥ limit, or −1. */
static napi_value find_narrowing_overflow(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  uint8_t *src;
  size_t n;
  uint32_t limit;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) return fail(env, "findNarrowingOverflow takes 2 arguments");
  if (!values_of(env, argv[0], 4, &src, &n)) return fail(env, "findNarrowingOverflow takes aligned f32 bytes");
  if (napi_get_value_uint32(env, argv[1], &limit) != napi_ok) return fail(env, "findNarrowingOverflow's limit must be a u32");
#ifdef HAVE_X86
  if (napi_create_int64(env, fedhpc_find_narrowing_overflow((const float *)src, n, limit), &result) != napi_ok) return NULL;
  return result;
#else
  (void)result;
  return fail(env, "no AVX-512 on this machine");
#endif
}

/* momentumStep(theta, delta, v | null, lr, mu, nesterov): f32 bytes of n values each, stepped in place. */
static napi_value momentum_step(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  uint8_t *theta, *delta, *v = NULL;
  size_t n, delta_n, v_n;
  double lr, mu;
  bool nesterov;
  napi_valuetype v_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) return fail(env, "momentumStep takes 6 arguments");
  if (!values_of(env, argv[0], 4, &theta, &n) || !values_of(env, argv[1], 4, &delta, &delta_n)) return fail(env, "momentumStep takes aligned f32 bytes");
  if (napi_typeof(env, argv[2], &v_type) != napi_ok) return NULL;
  if (v_type != napi_null && !values_of(env, argv[2], 4, &v, &v_n)) return fail(env, "momentumStep's momentum must be aligned f32 bytes or null");
  if (delta_n != n || (v != NULL && v_n != n)) return fail(env, "momentumStep needs as many values in each slice");
  if (napi_get_value_double(env, argv[3], &lr) != napi_ok || napi_get_value_double(env, argv[4], &mu) != napi_ok) return fail(env, "momentumStep's lr and mu must be numbers");
  if (napi_get_value_bool(env, argv[5], &nesterov) != napi_ok) return fail(env, "momentumStep's nesterov must be a boolean");
#ifdef HAVE_X86
  fedhpc_momentum_step((float *)theta, (const float *)delta, (float *)v, n, lr, mu, nesterov);
  return NULL;
#else
  return fail(env, "no AVX-512 on this machine");
#endif
}

/* Exports `cb` as `name`, with `data` as what napi_get_cb_info hands it. */
static bool export_function(napi_env env, napi_value exports, const char *name, napi_callback cb, intptr_t data) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, (void *)data, &fn) == napi_ok && napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static bool export_flag(napi_env env, napi_value exports, const char *name, int value) {
  napi_value flag;
  return napi_get_boolean(env, value, &flag) == napi_ok && napi_set_named_property(env, exports, name, flag) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  int aesni = 0, sse42 = 0, sha = 0, avx512 = 0;
#ifdef HAVE_X86
  aesni = fedhpc_cpu_has_aesni();
  if (aesni && fedhpc_cpu_has_vaes()) max_width = fedhpc_cpu_has_vaes512() ? 512 : 256;
  sse42 = fedhpc_cpu_has_sse42();
  if (sse42) fedhpc_checks_init();
  sha = fedhpc_cpu_has_sha();
  avx512 = fedhpc_cpu_has_avx512();
#endif
  if (!export_flag(env, exports, "aesni", aesni) || !export_flag(env, exports, "vaes", max_width >= 256) || !export_flag(env, exports, "vaes512", max_width >= 512)) return NULL;
  if (aesni && !export_function(env, exports, "aes256CtrInto", aes256_ctr_into, 0)) return NULL;
  if (sse42 && !export_function(env, exports, "crc32c", crc32c, 0)) return NULL;
  if (avx512 && (!export_function(env, exports, "quantizeF32", quantize_f32, 0) || !export_function(env, exports, "foldWords", fold_words, 0) ||
                 !export_function(env, exports, "delta", delta, 0) || !export_function(env, exports, "bf16ToF32", convert, 0) ||
                 !export_function(env, exports, "f32ToBf16", convert, 1) || !export_function(env, exports, "findNarrowingOverflow", find_narrowing_overflow, 0) ||
                 !export_function(env, exports, "momentumStep", momentum_step, 0))) return NULL;
  if (avx512 && aesni && !export_function(env, exports, "maskDelta", mask_delta, 0)) return NULL;
  if (sha) {
    napi_value size;
    if (napi_create_uint32(env, (uint32_t)sizeof(struct fedhpc_sha256), &size) != napi_ok || napi_set_named_property(env, exports, "sha256StateBytes", size) != napi_ok) return NULL;
    if (!export_function(env, exports, "sha256Init", sha256_call, 0) || !export_function(env, exports, "sha256Update", sha256_call, 1) ||
        !export_function(env, exports, "sha256Update2", sha256_call, 2) || !export_function(env, exports, "sha256Final", sha256_call, 3)) return NULL;
    if (sse42 && !export_function(env, exports, "sha256UpdateCrc32c", sha256_call, 4)) return NULL;
  }
#ifdef HAVE_X86
  if (!export_function(env, exports, "findNonFiniteBf16", find_non_finite, 2) || !export_function(env, exports, "findNonFiniteF32", find_non_finite, 4)) return NULL;
#endif
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
