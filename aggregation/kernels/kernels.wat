;; fedhpc decode-and-accumulate kernels, WebAssembly SIMD (128-bit).
;;
;; Every kernel works on byte addresses in one imported shared memory, so a pool of worker
;; threads can run the same module over one WebAssembly.Memory, each on its own element range.
;; Addresses are unsigned i32 (memories up to 4 GiB); counts are elements, not bytes. Loads and
;; stores carry no alignment promise, so any byte address is valid (bf16 and int8 wire data sit at
;; arbitrary offsets).
;;
;; Rounding contract (the JS reference in reference.ts does exactly the same): each element gets
;;   t = f32(w * x)  then  acc = f32(acc + t)
;; with one f32 multiply and one f32 add, never a fused multiply-add; int8 first decodes
;; x = f32(scale * f32(q)). Results are therefore identical bit for bit to the reference except
;; for NaN payloads, which WebAssembly leaves unspecified.
;;
;; Regenerate kernels.wasm and kernels-wasm.ts with `node scripts/build-wasm.mjs`.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; acc[i] += w * src[i], f32. Sixteen elements per iteration, then a scalar tail.
  (func (export "acc_f32") (param $acc i32) (param $src i32) (param $n i32) (param $w f32)
    (local $wv v128) (local $end i32) (local $end16 i32)
    (local.set $wv (f32x4.splat (local.get $w)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end16 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end16)))
      (v128.store offset=0 (local.get $acc)
        (f32x4.add (v128.load offset=0 (local.get $acc)) (f32x4.mul (local.get $wv) (v128.load offset=0 (local.get $src)))))
      (v128.store offset=16 (local.get $acc)
        (f32x4.add (v128.load offset=16 (local.get $acc)) (f32x4.mul (local.get $wv) (v128.load offset=16 (local.get $src)))))
      (v128.store offset=32 (local.get $acc)
        (f32x4.add (v128.load offset=32 (local.get $acc)) (f32x4.mul (local.get $wv) (v128.load offset=32 (local.get $src)))))
      (v128.store offset=48 (local.get $acc)
        (f32x4.add (v128.load offset=48 (local.get $acc)) (f32x4.mul (local.get $wv) (v128.load offset=48 (local.get $src)))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (f32.store (local.get $acc)
        (f32.add (f32.load (local.get $acc)) (f32.mul (local.get $w) (f32.load (local.get $src)))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (br $tail))))

  ;; acc[i] = (((acc[i] + w0*s0[i]) + w1*s1[i]) + w2*s2[i]) + w3*s3[i], f32: four sources in one
  ;; pass, with the rounding sequence of four acc_f32 calls in order, but the accumulator is loaded
  ;; and stored once instead of four times.
  (func (export "acc_f32_x4") (param $acc i32) (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $s3 i32)
        (param $n i32) (param $w0 f32) (param $w1 f32) (param $w2 f32) (param $w3 f32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $a v128) (local $b v128)
    (local $end i32) (local $end8 i32) (local $x f32)
    (local.set $v0 (f32x4.splat (local.get $w0)))
    (local.set $v1 (f32x4.splat (local.get $w1)))
    (local.set $v2 (f32x4.splat (local.get $w2)))
    (local.set $v3 (f32x4.splat (local.get $w3)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end8 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end8)))
      (local.set $a (v128.load offset=0 (local.get $acc)))
      (local.set $b (v128.load offset=16 (local.get $acc)))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v0) (v128.load offset=0 (local.get $s0)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v0) (v128.load offset=16 (local.get $s0)))))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v1) (v128.load offset=0 (local.get $s1)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v1) (v128.load offset=16 (local.get $s1)))))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v2) (v128.load offset=0 (local.get $s2)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v2) (v128.load offset=16 (local.get $s2)))))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v3) (v128.load offset=0 (local.get $s3)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v3) (v128.load offset=16 (local.get $s3)))))
      (v128.store offset=0 (local.get $acc) (local.get $a))
      (v128.store offset=16 (local.get $acc) (local.get $b))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $s0 (i32.add (local.get $s0) (i32.const 32)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 32)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 32)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (local.set $x (f32.load (local.get $acc)))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w0) (f32.load (local.get $s0)))))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w1) (f32.load (local.get $s1)))))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w2) (f32.load (local.get $s2)))))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w3) (f32.load (local.get $s3)))))
      (f32.store (local.get $acc) (local.get $x))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $s0 (i32.add (local.get $s0) (i32.const 4)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 4)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 4)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 4)))
      (br $tail))))

  ;; acc_bf16 over four sources in one pass (same rounding sequence as four acc_bf16 calls).
  (func (export "acc_bf16_x4") (param $acc i32) (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $s3 i32)
        (param $n i32) (param $w0 f32) (param $w1 f32) (param $w2 f32) (param $w3 f32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128) (local $a v128) (local $b v128)
    (local $q v128) (local $z v128) (local $end i32) (local $end8 i32) (local $x f32)
    (local.set $v0 (f32x4.splat (local.get $w0)))
    (local.set $v1 (f32x4.splat (local.get $w1)))
    (local.set $v2 (f32x4.splat (local.get $w2)))
    (local.set $v3 (f32x4.splat (local.get $w3)))
    (local.set $z (v128.const i32x4 0 0 0 0))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end8 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end8)))
      (local.set $a (v128.load offset=0 (local.get $acc)))
      (local.set $b (v128.load offset=16 (local.get $acc)))
      (local.set $q (v128.load (local.get $s0)))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v0) (i8x16.shuffle 0 0 16 17 0 0 18 19 0 0 20 21 0 0 22 23 (local.get $z) (local.get $q)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v0) (i8x16.shuffle 0 0 24 25 0 0 26 27 0 0 28 29 0 0 30 31 (local.get $z) (local.get $q)))))
      (local.set $q (v128.load (local.get $s1)))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v1) (i8x16.shuffle 0 0 16 17 0 0 18 19 0 0 20 21 0 0 22 23 (local.get $z) (local.get $q)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v1) (i8x16.shuffle 0 0 24 25 0 0 26 27 0 0 28 29 0 0 30 31 (local.get $z) (local.get $q)))))
      (local.set $q (v128.load (local.get $s2)))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v2) (i8x16.shuffle 0 0 16 17 0 0 18 19 0 0 20 21 0 0 22 23 (local.get $z) (local.get $q)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v2) (i8x16.shuffle 0 0 24 25 0 0 26 27 0 0 28 29 0 0 30 31 (local.get $z) (local.get $q)))))
      (local.set $q (v128.load (local.get $s3)))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $v3) (i8x16.shuffle 0 0 16 17 0 0 18 19 0 0 20 21 0 0 22 23 (local.get $z) (local.get $q)))))
      (local.set $b (f32x4.add (local.get $b) (f32x4.mul (local.get $v3) (i8x16.shuffle 0 0 24 25 0 0 26 27 0 0 28 29 0 0 30 31 (local.get $z) (local.get $q)))))
      (v128.store offset=0 (local.get $acc) (local.get $a))
      (v128.store offset=16 (local.get $acc) (local.get $b))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $s0 (i32.add (local.get $s0) (i32.const 16)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 16)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 16)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 16)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (local.set $x (f32.load (local.get $acc)))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w0) (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $s0)) (i32.const 16))))))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w1) (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $s1)) (i32.const 16))))))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w2) (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $s2)) (i32.const 16))))))
      (local.set $x (f32.add (local.get $x) (f32.mul (local.get $w3) (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $s3)) (i32.const 16))))))
      (f32.store (local.get $acc) (local.get $x))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $s0 (i32.add (local.get $s0) (i32.const 2)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 2)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 2)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 2)))
      (br $tail))))

  ;; acc[i] += w * f32(src[i] << 16): bf16 is the high half of an f32, so widening is a shuffle
  ;; that puts zero bytes below each 16-bit word.
  (func (export "acc_bf16") (param $acc i32) (param $src i32) (param $n i32) (param $w f32)
    (local $wv v128) (local $end i32) (local $end16 i32) (local $a v128) (local $b v128) (local $z v128)
    (local.set $wv (f32x4.splat (local.get $w)))
    (local.set $z (v128.const i32x4 0 0 0 0))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end16 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end16)))
      (local.set $a (v128.load offset=0 (local.get $src)))
      (local.set $b (v128.load offset=16 (local.get $src)))
      (v128.store offset=0 (local.get $acc) (f32x4.add (v128.load offset=0 (local.get $acc))
        (f32x4.mul (local.get $wv) (i8x16.shuffle 0 0 16 17 0 0 18 19 0 0 20 21 0 0 22 23 (local.get $z) (local.get $a)))))
      (v128.store offset=16 (local.get $acc) (f32x4.add (v128.load offset=16 (local.get $acc))
        (f32x4.mul (local.get $wv) (i8x16.shuffle 0 0 24 25 0 0 26 27 0 0 28 29 0 0 30 31 (local.get $z) (local.get $a)))))
      (v128.store offset=32 (local.get $acc) (f32x4.add (v128.load offset=32 (local.get $acc))
        (f32x4.mul (local.get $wv) (i8x16.shuffle 0 0 16 17 0 0 18 19 0 0 20 21 0 0 22 23 (local.get $z) (local.get $b)))))
      (v128.store offset=48 (local.get $acc) (f32x4.add (v128.load offset=48 (local.get $acc))
        (f32x4.mul (local.get $wv) (i8x16.shuffle 0 0 24 25 0 0 26 27 0 0 28 29 0 0 30 31 (local.get $z) (local.get $b)))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (f32.store (local.get $acc)
        (f32.add (f32.load (local.get $acc))
          (f32.mul (local.get $w) (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $src)) (i32.const 16))))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (br $tail))))

  ;; acc[i] += w * (scale * q) over $n values of the int8 block stream at $src, starting $skip
  ;; values into its first block. Block: little-endian f32 scale, then up to 128 int8 values;
  ;; only the last block of a tensor is short, and the caller never asks past it.
  (func (export "acc_int8") (param $acc i32) (param $src i32) (param $skip i32) (param $n i32) (param $w f32)
    (local $m i32) (local $q i32) (local $end16 i32) (local $end i32) (local $scale f32)
    (local $wv v128) (local $sv v128) (local $bytes v128) (local $half v128)
    (local.set $wv (f32x4.splat (local.get $w)))
    (block $blocks_done (loop $blocks
      (br_if $blocks_done (i32.eqz (local.get $n)))
      (local.set $scale (f32.load (local.get $src)))
      (local.set $sv (f32x4.splat (local.get $scale)))
      ;; m = min(128 - skip, n) values of this block
      (local.set $m (i32.sub (i32.const 128) (local.get $skip)))
      (if (i32.lt_u (local.get $n) (local.get $m)) (then (local.set $m (local.get $n))))
      (local.set $q (i32.add (i32.add (local.get $src) (i32.const 4)) (local.get $skip)))
      (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $m) (i32.const 2))))
      (local.set $end16 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $m) (i32.const -16)) (i32.const 2))))
      (block $done (loop $loop
        (br_if $done (i32.eq (local.get $acc) (local.get $end16)))
        (local.set $bytes (v128.load (local.get $q)))
        (local.set $half (i16x8.extend_low_i8x16_s (local.get $bytes)))
        (v128.store offset=0 (local.get $acc) (f32x4.add (v128.load offset=0 (local.get $acc))
          (f32x4.mul (local.get $wv) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $half)))))))
        (v128.store offset=16 (local.get $acc) (f32x4.add (v128.load offset=16 (local.get $acc))
          (f32x4.mul (local.get $wv) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $half)))))))
        (local.set $half (i16x8.extend_high_i8x16_s (local.get $bytes)))
        (v128.store offset=32 (local.get $acc) (f32x4.add (v128.load offset=32 (local.get $acc))
          (f32x4.mul (local.get $wv) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $half)))))))
        (v128.store offset=48 (local.get $acc) (f32x4.add (v128.load offset=48 (local.get $acc))
          (f32x4.mul (local.get $wv) (f32x4.mul (local.get $sv) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $half)))))))
        (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
        (local.set $q (i32.add (local.get $q) (i32.const 16)))
        (br $loop)))
      (block $tdone (loop $tail
        (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
        (f32.store (local.get $acc)
          (f32.add (f32.load (local.get $acc))
            (f32.mul (local.get $w) (f32.mul (local.get $scale) (f32.convert_i32_s (i32.load8_s (local.get $q)))))))
        (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $tail)))
      (local.set $n (i32.sub (local.get $n) (local.get $m)))
      (local.set $src (i32.add (local.get $src) (i32.const 132)))
      (local.set $skip (i32.const 0))
      (br $blocks))))

  ;; acc[i] = acc[i] + src[i] mod 2^32 (masked secure-aggregation words).
  (func (export "add_mod_u32") (param $acc i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end16 i32)
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end16 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end16)))
      (v128.store offset=0 (local.get $acc) (i32x4.add (v128.load offset=0 (local.get $acc)) (v128.load offset=0 (local.get $src))))
      (v128.store offset=16 (local.get $acc) (i32x4.add (v128.load offset=16 (local.get $acc)) (v128.load offset=16 (local.get $src))))
      (v128.store offset=32 (local.get $acc) (i32x4.add (v128.load offset=32 (local.get $acc)) (v128.load offset=32 (local.get $src))))
      (v128.store offset=48 (local.get $acc) (i32x4.add (v128.load offset=48 (local.get $acc)) (v128.load offset=48 (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store (local.get $acc) (i32.add (i32.load (local.get $acc)) (i32.load (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (br $tail))))

  ;; acc[i] = acc[i] - src[i] mod 2^32.
  (func (export "sub_mod_u32") (param $acc i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end16 i32)
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end16 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end16)))
      (v128.store offset=0 (local.get $acc) (i32x4.sub (v128.load offset=0 (local.get $acc)) (v128.load offset=0 (local.get $src))))
      (v128.store offset=16 (local.get $acc) (i32x4.sub (v128.load offset=16 (local.get $acc)) (v128.load offset=16 (local.get $src))))
      (v128.store offset=32 (local.get $acc) (i32x4.sub (v128.load offset=32 (local.get $acc)) (v128.load offset=32 (local.get $src))))
      (v128.store offset=48 (local.get $acc) (i32x4.sub (v128.load offset=48 (local.get $acc)) (v128.load offset=48 (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store (local.get $acc) (i32.sub (i32.load (local.get $acc)) (i32.load (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (br $tail))))

  ;; acc[i] = acc[i] + src[i] mod 2^16.
  (func (export "add_mod_u16") (param $acc i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end32 i32)
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 1))))
    (local.set $end32 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -32)) (i32.const 1))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end32)))
      (v128.store offset=0 (local.get $acc) (i16x8.add (v128.load offset=0 (local.get $acc)) (v128.load offset=0 (local.get $src))))
      (v128.store offset=16 (local.get $acc) (i16x8.add (v128.load offset=16 (local.get $acc)) (v128.load offset=16 (local.get $src))))
      (v128.store offset=32 (local.get $acc) (i16x8.add (v128.load offset=32 (local.get $acc)) (v128.load offset=32 (local.get $src))))
      (v128.store offset=48 (local.get $acc) (i16x8.add (v128.load offset=48 (local.get $acc)) (v128.load offset=48 (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store16 (local.get $acc) (i32.add (i32.load16_u (local.get $acc)) (i32.load16_u (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 2)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (br $tail))))

  ;; acc[i] = acc[i] - src[i] mod 2^16.
  (func (export "sub_mod_u16") (param $acc i32) (param $src i32) (param $n i32)
    (local $end i32) (local $end32 i32)
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 1))))
    (local.set $end32 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -32)) (i32.const 1))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end32)))
      (v128.store offset=0 (local.get $acc) (i16x8.sub (v128.load offset=0 (local.get $acc)) (v128.load offset=0 (local.get $src))))
      (v128.store offset=16 (local.get $acc) (i16x8.sub (v128.load offset=16 (local.get $acc)) (v128.load offset=16 (local.get $src))))
      (v128.store offset=32 (local.get $acc) (i16x8.sub (v128.load offset=32 (local.get $acc)) (v128.load offset=32 (local.get $src))))
      (v128.store offset=48 (local.get $acc) (i16x8.sub (v128.load offset=48 (local.get $acc)) (v128.load offset=48 (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store16 (local.get $acc) (i32.sub (i32.load16_u (local.get $acc)) (i32.load16_u (local.get $src))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 2)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (br $tail))))

  ;; Zeroes $n bytes at $dst. memory.fill is a memset; TypedArray.prototype.fill on a shared
  ;; buffer runs ~40× slower in V8 (2 GB/s measured), which made clearing the accumulator dominate.
  (func (export "zero") (param $dst i32) (param $n i32)
    (memory.fill (local.get $dst) (i32.const 0) (local.get $n)))

  ;; Index of the first NaN or ±Inf among $n f32 values at $src, or -1. An f32 is non-finite
  ;; exactly when all eight exponent bits are set.
  (func (export "find_non_finite") (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $n16 i32) (local $mask v128)
    (local.set $mask (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
    (local.set $n16 (i32.and (local.get $n) (i32.const -16)))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $i) (local.get $n16)))
      ;; exp bits all set <=> (x & mask) == mask; OR the four compares, then find the lane below
      (if (v128.any_true
            (v128.or
              (v128.or
                (i32x4.eq (v128.and (v128.load offset=0 (local.get $src)) (local.get $mask)) (local.get $mask))
                (i32x4.eq (v128.and (v128.load offset=16 (local.get $src)) (local.get $mask)) (local.get $mask)))
              (v128.or
                (i32x4.eq (v128.and (v128.load offset=32 (local.get $src)) (local.get $mask)) (local.get $mask))
                (i32x4.eq (v128.and (v128.load offset=48 (local.get $src)) (local.get $mask)) (local.get $mask)))))
        (then (br $done)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $i) (local.get $n)))
      (if (i32.eq (i32.and (i32.load (local.get $src)) (i32.const 0x7f800000)) (i32.const 0x7f800000))
        (then (return (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (br $tail)))
    (i32.const -1))

  ;; bf16 bits of four f32 lanes, in the low half of each i32 lane: round to nearest even, and a NaN
  ;; stays a NaN (its quiet bit forced, so truncation cannot turn it into an infinity) — exactly
  ;; f32ToBf16 (aggregation/safetensors/dtype.ts).
  (func $bf16_rne (param $x v128) (result v128)
    (v128.bitselect
      (i32x4.shr_u (v128.or (local.get $x) (v128.const i32x4 0x400000 0x400000 0x400000 0x400000)) (i32.const 16))
      (i32x4.shr_u
        (i32x4.add
          (i32x4.add (local.get $x) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff))
          (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (v128.const i32x4 1 1 1 1)))
        (i32.const 16))
      (i32x4.gt_u
        (v128.and (local.get $x) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
        (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))))

  (func $bf16_rne1 (param $x i32) (result i32)
    (if (result i32) (i32.gt_u (i32.and (local.get $x) (i32.const 0x7fffffff)) (i32.const 0x7f800000))
      (then (i32.or (i32.shr_u (local.get $x) (i32.const 16)) (i32.const 0x40)))
      (else (i32.shr_u
        (i32.add (i32.add (local.get $x) (i32.const 0x7fff)) (i32.and (i32.shr_u (local.get $x) (i32.const 16)) (i32.const 1)))
        (i32.const 16)))))

  ;; A site's delta: dst[i] = f32(l[i]) − f32(g[i]) for $n values, each source f32 ($lh / $gh = 0)
  ;; or bf16 ($lh / $gh = 1; widening is exact), written as f32 ($ob = 0) or rounded to bf16
  ;; ($ob = 1, $bf16_rne). One f32 subtraction and at most one rounding per value, as the JS path
  ;; (encode.ts: the difference, then f32ToBf16).
  (func (export "delta") (param $dst i32) (param $l i32) (param $g i32) (param $n i32) (param $lh i32) (param $gh i32) (param $ob i32)
    (local $i i32) (local $n8 i32) (local $la v128) (local $lb v128) (local $ga v128) (local $gb v128) (local $v v128)
    (local $ls i32) (local $gs i32) (local $d f32)
    (local.set $n8 (i32.and (local.get $n) (i32.const -8)))
    ;; bytes per 8 values of each source
    (local.set $ls (select (i32.const 16) (i32.const 32) (local.get $lh)))
    (local.set $gs (select (i32.const 16) (i32.const 32) (local.get $gh)))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $i) (local.get $n8)))
      (if (local.get $lh)
        (then
          (local.set $v (v128.load (local.get $l)))
          (local.set $la (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16)))
          (local.set $lb (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16))))
        (else
          (local.set $la (v128.load (local.get $l)))
          (local.set $lb (v128.load offset=16 (local.get $l)))))
      (if (local.get $gh)
        (then
          (local.set $v (v128.load (local.get $g)))
          (local.set $ga (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16)))
          (local.set $gb (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16))))
        (else
          (local.set $ga (v128.load (local.get $g)))
          (local.set $gb (v128.load offset=16 (local.get $g)))))
      (local.set $la (f32x4.sub (local.get $la) (local.get $ga)))
      (local.set $lb (f32x4.sub (local.get $lb) (local.get $gb)))
      (if (local.get $ob)
        (then
          (v128.store (local.get $dst) (i16x8.narrow_i32x4_u (call $bf16_rne (local.get $la)) (call $bf16_rne (local.get $lb))))
          (local.set $dst (i32.add (local.get $dst) (i32.const 16))))
        (else
          (v128.store (local.get $dst) (local.get $la))
          (v128.store offset=16 (local.get $dst) (local.get $lb))
          (local.set $dst (i32.add (local.get $dst) (i32.const 32)))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (local.set $l (i32.add (local.get $l) (local.get $ls)))
      (local.set $g (i32.add (local.get $g) (local.get $gs)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $i) (local.get $n)))
      (local.set $d (f32.sub
        (if (result f32) (local.get $lh)
          (then (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $l)) (i32.const 16))))
          (else (f32.load (local.get $l))))
        (if (result f32) (local.get $gh)
          (then (f32.reinterpret_i32 (i32.shl (i32.load16_u (local.get $g)) (i32.const 16))))
          (else (f32.load (local.get $g))))))
      (if (local.get $ob)
        (then
          (i32.store16 (local.get $dst) (call $bf16_rne1 (i32.reinterpret_f32 (local.get $d))))
          (local.set $dst (i32.add (local.get $dst) (i32.const 2))))
        (else
          (f32.store (local.get $dst) (local.get $d))
          (local.set $dst (i32.add (local.get $dst) (i32.const 4)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $l (i32.add (local.get $l) (i32.shr_u (local.get $ls) (i32.const 3))))
      (local.set $g (i32.add (local.get $g) (i32.shr_u (local.get $gs) (i32.const 3))))
      (br $tail))))

  ;; Index of the first bf16 NaN or ±Inf among $n values at $src, or -1: all eight exponent bits
  ;; set, as for f32 (bf16 keeps f32's exponent). 32 values a step, four compares OR-ed.
  (func (export "find_non_finite_bf16") (param $src i32) (param $n i32) (result i32)
    (local $i i32) (local $n32 i32) (local $mask v128)
    (local.set $mask (v128.const i16x8 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80 0x7f80))
    (local.set $n32 (i32.and (local.get $n) (i32.const -32)))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $i) (local.get $n32)))
      (if (v128.any_true
            (v128.or
              (v128.or
                (i16x8.eq (v128.and (v128.load offset=0 (local.get $src)) (local.get $mask)) (local.get $mask))
                (i16x8.eq (v128.and (v128.load offset=16 (local.get $src)) (local.get $mask)) (local.get $mask)))
              (v128.or
                (i16x8.eq (v128.and (v128.load offset=32 (local.get $src)) (local.get $mask)) (local.get $mask))
                (i16x8.eq (v128.and (v128.load offset=48 (local.get $src)) (local.get $mask)) (local.get $mask)))))
        (then (br $done)))
      (local.set $i (i32.add (local.get $i) (i32.const 32)))
      (local.set $src (i32.add (local.get $src) (i32.const 64)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $i) (local.get $n)))
      (if (i32.eq (i32.and (i32.load16_u (local.get $src)) (i32.const 0x7f80)) (i32.const 0x7f80))
        (then (return (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (br $tail)))
    (i32.const -1))
)
