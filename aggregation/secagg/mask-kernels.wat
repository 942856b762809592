;; fedhpc secure-aggregation mask kernels, WebAssembly SIMD (128-bit): folding AES-CTR keystream
;; slices into a slice of masked words modulo 2^b, and decoding a slice of an unmasked sum.
;;
;; Unlike aggregation/kernels/kernels.wat, this module owns its memory and that memory is not
;; shared: it serves one thread (aggregation/secagg/mask-workspace.ts), and V8 copies into a
;; non-shared buffer ~1.7× faster than into a shared one (measured: 140 M words in 11 vs 20 ms),
;; which is most of what folding costs. Addresses are byte addresses; counts are words.
;;
;; Every result is exact modular arithmetic, or (decoding) one IEEE multiply, so the plain-JS
;; folds and decoder in mask-workspace.ts give the same bits.
;;
;; Regenerate mask-kernels.wasm's embedded copy, mask-kernels-wasm.ts, with
;; `node scripts/build-wasm.mjs`.
(module
  ;; 14 pages: the slice (128 KiB), four keystream slices (512 KiB) and a decoded f64 slice (256 KiB).
  (memory (export "memory") 14)

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
