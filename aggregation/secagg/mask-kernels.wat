;; fedhpc secure-aggregation mask kernels, WebAssembly SIMD (128-bit): quantising a slice of an
;; update into words, folding AES-CTR keystream slices into a slice of masked words modulo 2^b, and
;; decoding a slice of an unmasked sum.
;;
;; Unlike aggregation/kernels/kernels.wat, this module owns its memory and that memory is not
;; shared: it serves one thread (aggregation/secagg/mask-workspace.ts), and V8 copies into a
;; non-shared buffer ~1.7× faster than into a shared one (measured: 140 M words in 11 vs 20 ms),
;; which is most of what folding costs. Addresses are byte addresses; counts are words.
;;
;; Every result is exact modular arithmetic, the IEEE double operations of quantize.ts's element
;; formula in its order, or (decoding) one IEEE multiply, so quantizeRange and the plain-JS folds and
;; decoder in mask-workspace.ts give the same bits.
;;
;; Regenerate mask-kernels.wasm's embedded copy, mask-kernels-wasm.ts, with
;; `node scripts/build-wasm.mjs`.
(module
  ;; 14 pages: the slice (128 KiB), four keystream slices (512 KiB) and a decoded f64 slice (256 KiB).
  (memory (export "memory") 14)

  ;; The element formula of quantize.ts (quantizeRange) for $n f32 values at $x with u32 rounding
  ;; words at $u, written as u32 ($wide = 1) or u16 words at $dst, in f64x2 pairs:
  ;;   x' = clip(x, -c, c),  k = floor((w x') (Z/c) + u 2^-32) clamped to [-Z, Z],  word = Z + k.
  ;; The same double operations in the same order as the JS (u 2^-32 is u/2^32 exactly; pmax/pmin
  ;; are the JS's `a < b ? b : a` and `b < a ? b : a`), so the words are the JS's bit for bit.
  ;; Returns 1 when a value is NaN or +-Infinity (x - x != 0): the words are then garbage and the
  ;; caller runs quantizeRange, which throws NON_FINITE naming the first such index.
  (func (export "quantize_f32") (param $dst i32) (param $x i32) (param $u i32) (param $n i32)
    (param $clip f64) (param $zero f64) (param $scale f64) (param $weight f64) (param $wide i32) (result i32)
    (local $end4 i32) (local $end i32) (local $bad v128) (local $xv v128) (local $uv v128) (local $w v128)
    (local $vc v128) (local $vnc v128) (local $vz v128) (local $vnz v128) (local $vs v128) (local $vw v128)
    (local $vu v128) (local $vzi v128) (local $f f64) (local $kk f64) (local $badf i32) (local $zi i32)
    (local.set $vc (f64x2.splat (local.get $clip)))
    (local.set $vnc (f64x2.splat (f64.neg (local.get $clip))))
    (local.set $vz (f64x2.splat (local.get $zero)))
    (local.set $vnz (f64x2.splat (f64.neg (local.get $zero))))
    (local.set $vs (f64x2.splat (local.get $scale)))
    (local.set $vw (f64x2.splat (local.get $weight)))
    (local.set $vu (i64x2.splat (i64.const 0x4130000000000000)))
    (local.set $zi (i32.trunc_sat_f64_s (local.get $zero)))
    (local.set $vzi (f64x2.splat (f64.add (local.get $zero) (f64.const 0x1.8p52))))
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    ;; Four values a step: the finiteness check in f32 (x - x is 0 exactly when x is finite), the
    ;; formula on each f64x2 half. Two exact bit tricks stand in for conversions SSE lacks:
    ;; u 2^-32 is the double with bits 0x41300000_u minus 2^20 (2^20 (1 + u 2^-52) = 2^20 + u 2^-32),
    ;; and Z + k, a whole number below 2^51 in size, is the low word of Z + k + 1.5 2^52.
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $x) (local.get $end4)))
      (local.set $xv (v128.load (local.get $x)))
      (local.set $uv (v128.load (local.get $u)))
      (local.set $bad (v128.or (local.get $bad)
        (v128.not (f32x4.eq (f32x4.sub (local.get $xv) (local.get $xv)) (v128.const i32x4 0 0 0 0)))))
      (local.set $w (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27
        (f64x2.add (local.get $vzi) (f64x2.pmax (f64x2.pmin (f64x2.floor (f64x2.add
          (f64x2.mul (f64x2.mul (local.get $vw)
            (f64x2.pmin (f64x2.pmax (f64x2.promote_low_f32x4 (local.get $xv)) (local.get $vnc)) (local.get $vc)))
            (local.get $vs))
          (f64x2.sub (v128.or (i64x2.extend_low_i32x4_u (local.get $uv)) (local.get $vu)) (v128.const f64x2 0x1p20 0x1p20))))
          (local.get $vz)) (local.get $vnz)))
        (f64x2.add (local.get $vzi) (f64x2.pmax (f64x2.pmin (f64x2.floor (f64x2.add
          (f64x2.mul (f64x2.mul (local.get $vw)
            (f64x2.pmin (f64x2.pmax
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $xv) (local.get $xv)))
              (local.get $vnc)) (local.get $vc)))
            (local.get $vs))
          (f64x2.sub (v128.or (i64x2.extend_high_i32x4_u (local.get $uv)) (local.get $vu)) (v128.const f64x2 0x1p20 0x1p20))))
          (local.get $vz)) (local.get $vnz)))))
      (if (local.get $wide)
        (then
          (v128.store (local.get $dst) (local.get $w))
          (local.set $dst (i32.add (local.get $dst) (i32.const 16))))
        (else
          (v128.store64_lane 0 (local.get $dst) (i16x8.narrow_i32x4_u (local.get $w) (local.get $w)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 8)))))
      (local.set $x (i32.add (local.get $x) (i32.const 16)))
      (local.set $u (i32.add (local.get $u) (i32.const 16)))
      (br $loop)))
    (local.set $badf (v128.any_true (local.get $bad)))
    ;; The last n mod 4 values, one at a time, with the JS's comparisons written as selects.
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $x) (local.get $end)))
      (local.set $f (f64.promote_f32 (f32.load (local.get $x))))
      (if (f64.ne (f64.sub (local.get $f) (local.get $f)) (f64.const 0)) (then (local.set $badf (i32.const 1))))
      (local.set $f (select (f64.neg (local.get $clip)) (local.get $f) (f64.lt (local.get $f) (f64.neg (local.get $clip)))))
      (local.set $f (select (local.get $clip) (local.get $f) (f64.gt (local.get $f) (local.get $clip))))
      (local.set $kk (f64.floor (f64.add
        (f64.mul (f64.mul (local.get $weight) (local.get $f)) (local.get $scale))
        (f64.mul (f64.convert_i32_u (i32.load (local.get $u))) (f64.const 0x1p-32)))))
      (local.set $kk (select (local.get $zero) (local.get $kk) (f64.gt (local.get $kk) (local.get $zero))))
      (local.set $kk (select (f64.neg (local.get $zero)) (local.get $kk) (f64.lt (local.get $kk) (f64.neg (local.get $zero)))))
      (if (local.get $wide)
        (then
          (i32.store (local.get $dst) (i32.add (i32.trunc_sat_f64_s (local.get $kk)) (local.get $zi)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 4))))
        (else
          (i32.store16 (local.get $dst) (i32.add (i32.trunc_sat_f64_s (local.get $kk)) (local.get $zi)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 2)))))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $u (i32.add (local.get $u) (i32.const 4)))
      (br $tail)))
    (local.get $badf))

  ;; acc[i] = acc[i] ± Σ_j src_j[i] mod 2^32 for four sources at $src + j·$stride bytes: four
  ;; keystreams of one sign folded in one pass. $m is 0 to add the sum of the sources and -1 to
  ;; subtract it: (t ^ m) − m is t or −t mod 2^32.
  (func (export "fold4_mod_u32") (param $acc i32) (param $src i32) (param $stride i32) (param $n i32) (param $m i32)
    (local $end i32) (local $end8 i32) (local $s1 i32) (local $s2 i32) (local $s3 i32) (local $vm v128)
    (local.set $s1 (i32.add (local.get $src) (local.get $stride)))
    (local.set $s2 (i32.add (local.get $s1) (local.get $stride)))
    (local.set $s3 (i32.add (local.get $s2) (local.get $stride)))
    (local.set $vm (i32x4.splat (local.get $m)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end8 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end8)))
      (v128.store offset=0 (local.get $acc)
        (i32x4.add (v128.load offset=0 (local.get $acc))
          (i32x4.sub
            (v128.xor
              (i32x4.add
                (i32x4.add (v128.load offset=0 (local.get $src)) (v128.load offset=0 (local.get $s1)))
                (i32x4.add (v128.load offset=0 (local.get $s2)) (v128.load offset=0 (local.get $s3))))
              (local.get $vm))
            (local.get $vm))))
      (v128.store offset=16 (local.get $acc)
        (i32x4.add (v128.load offset=16 (local.get $acc))
          (i32x4.sub
            (v128.xor
              (i32x4.add
                (i32x4.add (v128.load offset=16 (local.get $src)) (v128.load offset=16 (local.get $s1)))
                (i32x4.add (v128.load offset=16 (local.get $s2)) (v128.load offset=16 (local.get $s3))))
              (local.get $vm))
            (local.get $vm))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 32)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 32)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store (local.get $acc)
        (i32.add (i32.load (local.get $acc))
          (i32.sub
            (i32.xor
              (i32.add
                (i32.add (i32.load (local.get $src)) (i32.load (local.get $s1)))
                (i32.add (i32.load (local.get $s2)) (i32.load (local.get $s3))))
              (local.get $m))
            (local.get $m))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 4)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 4)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 4)))
      (br $tail))))

  ;; The same for 16-bit words, mod 2^16 (a site's masks in Z_2^16).
  (func (export "fold4_mod_u16") (param $acc i32) (param $src i32) (param $stride i32) (param $n i32) (param $m i32)
    (local $end i32) (local $endv i32) (local $s1 i32) (local $s2 i32) (local $s3 i32) (local $vm v128)
    (local.set $s1 (i32.add (local.get $src) (local.get $stride)))
    (local.set $s2 (i32.add (local.get $s1) (local.get $stride)))
    (local.set $s3 (i32.add (local.get $s2) (local.get $stride)))
    (local.set $vm (i16x8.splat (local.get $m)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 1))))
    (local.set $endv (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 1))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $endv)))
      (v128.store offset=0 (local.get $acc)
        (i16x8.add (v128.load offset=0 (local.get $acc))
          (i16x8.sub
            (v128.xor
              (i16x8.add
                (i16x8.add (v128.load offset=0 (local.get $src)) (v128.load offset=0 (local.get $s1)))
                (i16x8.add (v128.load offset=0 (local.get $s2)) (v128.load offset=0 (local.get $s3))))
              (local.get $vm))
            (local.get $vm))))
      (v128.store offset=16 (local.get $acc)
        (i16x8.add (v128.load offset=16 (local.get $acc))
          (i16x8.sub
            (v128.xor
              (i16x8.add
                (i16x8.add (v128.load offset=16 (local.get $src)) (v128.load offset=16 (local.get $s1)))
                (i16x8.add (v128.load offset=16 (local.get $s2)) (v128.load offset=16 (local.get $s3))))
              (local.get $vm))
            (local.get $vm))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 32)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 32)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store16 (local.get $acc)
        (i32.add (i32.load16_u (local.get $acc))
          (i32.sub
            (i32.xor
              (i32.add
                (i32.add (i32.load16_u (local.get $src)) (i32.load16_u (local.get $s1)))
                (i32.add (i32.load16_u (local.get $s2)) (i32.load16_u (local.get $s3))))
              (local.get $m))
            (local.get $m))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 2)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 2)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 2)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 2)))
      (br $tail))))

  ;; fold4_mod_u32 for four sources of mixed signs: acc[i] = acc[i] + Σ_j ±src_j[i] mod 2^32, $m_j
  ;; (0 or -1) the sign of source j. Five more operations per vector than one sign's, so the caller
  ;; groups streams of one sign where it can.
  (func (export "fold4s_mod_u32") (param $acc i32) (param $src i32) (param $stride i32) (param $n i32)
    (param $m0 i32) (param $m1 i32) (param $m2 i32) (param $m3 i32)
    (local $end i32) (local $endv i32) (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (local.set $s1 (i32.add (local.get $src) (local.get $stride)))
    (local.set $s2 (i32.add (local.get $s1) (local.get $stride)))
    (local.set $s3 (i32.add (local.get $s2) (local.get $stride)))
    (local.set $v0 (i32x4.splat (local.get $m0)))
    (local.set $v1 (i32x4.splat (local.get $m1)))
    (local.set $v2 (i32x4.splat (local.get $m2)))
    (local.set $v3 (i32x4.splat (local.get $m3)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $endv (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $endv)))
      (v128.store offset=0 (local.get $acc)
        (i32x4.add (v128.load offset=0 (local.get $acc))
          (i32x4.add
            (i32x4.add (i32x4.sub (v128.xor (v128.load offset=0 (local.get $src)) (local.get $v0)) (local.get $v0))
              (i32x4.sub (v128.xor (v128.load offset=0 (local.get $s1)) (local.get $v1)) (local.get $v1)))
            (i32x4.add (i32x4.sub (v128.xor (v128.load offset=0 (local.get $s2)) (local.get $v2)) (local.get $v2))
              (i32x4.sub (v128.xor (v128.load offset=0 (local.get $s3)) (local.get $v3)) (local.get $v3))))))
      (v128.store offset=16 (local.get $acc)
        (i32x4.add (v128.load offset=16 (local.get $acc))
          (i32x4.add
            (i32x4.add (i32x4.sub (v128.xor (v128.load offset=16 (local.get $src)) (local.get $v0)) (local.get $v0))
              (i32x4.sub (v128.xor (v128.load offset=16 (local.get $s1)) (local.get $v1)) (local.get $v1)))
            (i32x4.add (i32x4.sub (v128.xor (v128.load offset=16 (local.get $s2)) (local.get $v2)) (local.get $v2))
              (i32x4.sub (v128.xor (v128.load offset=16 (local.get $s3)) (local.get $v3)) (local.get $v3))))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 32)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 32)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store (local.get $acc)
        (i32.add (i32.load (local.get $acc))
          (i32.add
            (i32.add (i32.sub (i32.xor (i32.load (local.get $src)) (local.get $m0)) (local.get $m0))
              (i32.sub (i32.xor (i32.load (local.get $s1)) (local.get $m1)) (local.get $m1)))
            (i32.add (i32.sub (i32.xor (i32.load (local.get $s2)) (local.get $m2)) (local.get $m2))
              (i32.sub (i32.xor (i32.load (local.get $s3)) (local.get $m3)) (local.get $m3))))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 4)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 4)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 4)))
      (br $tail))))

  ;; The same for 16-bit words, mod 2^16 (a site's masks in Z_2^16).
  (func (export "fold4s_mod_u16") (param $acc i32) (param $src i32) (param $stride i32) (param $n i32)
    (param $m0 i32) (param $m1 i32) (param $m2 i32) (param $m3 i32)
    (local $end i32) (local $endv i32) (local $s1 i32) (local $s2 i32) (local $s3 i32)
    (local $v0 v128) (local $v1 v128) (local $v2 v128) (local $v3 v128)
    (local.set $s1 (i32.add (local.get $src) (local.get $stride)))
    (local.set $s2 (i32.add (local.get $s1) (local.get $stride)))
    (local.set $s3 (i32.add (local.get $s2) (local.get $stride)))
    (local.set $v0 (i16x8.splat (local.get $m0)))
    (local.set $v1 (i16x8.splat (local.get $m1)))
    (local.set $v2 (i16x8.splat (local.get $m2)))
    (local.set $v3 (i16x8.splat (local.get $m3)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 1))))
    (local.set $endv (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -16)) (i32.const 1))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $endv)))
      (v128.store offset=0 (local.get $acc)
        (i16x8.add (v128.load offset=0 (local.get $acc))
          (i16x8.add
            (i16x8.add (i16x8.sub (v128.xor (v128.load offset=0 (local.get $src)) (local.get $v0)) (local.get $v0))
              (i16x8.sub (v128.xor (v128.load offset=0 (local.get $s1)) (local.get $v1)) (local.get $v1)))
            (i16x8.add (i16x8.sub (v128.xor (v128.load offset=0 (local.get $s2)) (local.get $v2)) (local.get $v2))
              (i16x8.sub (v128.xor (v128.load offset=0 (local.get $s3)) (local.get $v3)) (local.get $v3))))))
      (v128.store offset=16 (local.get $acc)
        (i16x8.add (v128.load offset=16 (local.get $acc))
          (i16x8.add
            (i16x8.add (i16x8.sub (v128.xor (v128.load offset=16 (local.get $src)) (local.get $v0)) (local.get $v0))
              (i16x8.sub (v128.xor (v128.load offset=16 (local.get $s1)) (local.get $v1)) (local.get $v1)))
            (i16x8.add (i16x8.sub (v128.xor (v128.load offset=16 (local.get $s2)) (local.get $v2)) (local.get $v2))
              (i16x8.sub (v128.xor (v128.load offset=16 (local.get $s3)) (local.get $v3)) (local.get $v3))))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 32)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 32)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store16 (local.get $acc)
        (i32.add (i32.load16_u (local.get $acc))
          (i32.add
            (i32.add (i32.sub (i32.xor (i32.load16_u (local.get $src)) (local.get $m0)) (local.get $m0))
              (i32.sub (i32.xor (i32.load16_u (local.get $s1)) (local.get $m1)) (local.get $m1)))
            (i32.add (i32.sub (i32.xor (i32.load16_u (local.get $s2)) (local.get $m2)) (local.get $m2))
              (i32.sub (i32.xor (i32.load16_u (local.get $s3)) (local.get $m3)) (local.get $m3))))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 2)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (local.set $s1 (i32.add (local.get $s1) (i32.const 2)))
      (local.set $s2 (i32.add (local.get $s2) (i32.const 2)))
      (local.set $s3 (i32.add (local.get $s3) (i32.const 2)))
      (br $tail))))

  ;; acc[i] = acc[i] ± src[i] mod 2^32 ($m as in fold4_mod_u32): one keystream.
  (func (export "fold_mod_u32") (param $acc i32) (param $src i32) (param $n i32) (param $m i32)
    (local $end i32) (local $end8 i32) (local $vm v128)
    (local.set $vm (i32x4.splat (local.get $m)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end8 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end8)))
      (v128.store offset=0 (local.get $acc)
        (i32x4.add (v128.load offset=0 (local.get $acc))
          (i32x4.sub (v128.xor (v128.load offset=0 (local.get $src)) (local.get $vm)) (local.get $vm))))
      (v128.store offset=16 (local.get $acc)
        (i32x4.add (v128.load offset=16 (local.get $acc))
          (i32x4.sub (v128.xor (v128.load offset=16 (local.get $src)) (local.get $vm)) (local.get $vm))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 32)))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store (local.get $acc)
        (i32.add (i32.load (local.get $acc)) (i32.sub (i32.xor (i32.load (local.get $src)) (local.get $m)) (local.get $m))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 4)))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (br $tail))))

  ;; acc[i] = acc[i] ± src[i] mod 2^16 ($m as in fold4_mod_u32): one 16-bit keystream.
  (func (export "fold_mod_u16") (param $acc i32) (param $src i32) (param $n i32) (param $m i32)
    (local $end i32) (local $end8 i32) (local $vm v128)
    (local.set $vm (i16x8.splat (local.get $m)))
    (local.set $end (i32.add (local.get $acc) (i32.shl (local.get $n) (i32.const 1))))
    (local.set $end8 (i32.add (local.get $acc) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 1))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $acc) (local.get $end8)))
      (v128.store (local.get $acc)
        (i16x8.add (v128.load (local.get $acc))
          (i16x8.sub (v128.xor (v128.load (local.get $src)) (local.get $vm)) (local.get $vm))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 16)))
      (local.set $src (i32.add (local.get $src) (i32.const 16)))
      (br $loop)))
    (block $tdone (loop $tail
      (br_if $tdone (i32.eq (local.get $acc) (local.get $end)))
      (i32.store16 (local.get $acc)
        (i32.add (i32.load16_u (local.get $acc)) (i32.sub (i32.xor (i32.load16_u (local.get $src)) (local.get $m)) (local.get $m))))
      (local.set $acc (i32.add (local.get $acc) (i32.const 2)))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (br $tail))))

  ;; dst[i] = (f64(src[i]) − $shift) · $step for $n u32 words at $src, f64 out at $dst: decoding a
  ;; slice of an unmasked sum. The u32 → f64 conversion and the subtraction of the integer $shift
  ;; are exact, so the one rounding is the multiply's, as in quantize.ts dequantizeSum.
  (func (export "dequant_u32_f64") (param $dst i32) (param $src i32) (param $n i32) (param $shift f64) (param $step f64)
    (local $end i32) (local $end2 i32) (local $vs v128) (local $vt v128)
    (local.set $vs (f64x2.splat (local.get $shift)))
    (local.set $vt (f64x2.splat (local.get $step)))
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end2 (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const -2)) (i32.const 2))))
    (block $done (loop $loop
      (br_if $done (i32.eq (local.get $src) (local.get $end2)))
      (v128.store (local.get $dst)
        (f64x2.mul (f64x2.sub (f64x2.convert_low_i32x4_u (v128.load64_zero (local.get $src))) (local.get $vs)) (local.get $vt)))
      (local.set $src (i32.add (local.get $src) (i32.const 8)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (br $loop)))
    (if (i32.ne (local.get $src) (local.get $end))
      (then (f64.store (local.get $dst)
        (f64.mul (f64.sub (f64.convert_i32_u (i32.load (local.get $src))) (local.get $shift)) (local.get $step))))))
)
