// f64 elementary functions for the activation and softmax kernels, each in a scalar and an f64x2 form that
// perform exactly the same IEEE operations in the same order, so a SIMD kernel and its scalar twin agree
// bit for bit. All are accurate to a few f64 ulps, far below the f32 rounding of the kernels' outputs.
//
//   exp64(x)      Cody-Waite reduction x = k ln2 + r (ln2 split as in fdlibm's e_exp.c), |r| <= ln2/2,
//                 Taylor polynomial of degree 12 (truncation < 2e-16 relative), scaled by 2^k as two
//                 exponent-field multiplications (2^(k>>1) * 2^(k-(k>>1))), so under- and overflow round once.
//   expm1pos(x)   exp(x) - 1 for 0 <= x <= 700 without cancellation near 0 (same reduction, polynomial without
//                 its constant term: 2^k q + (2^k - 1)).
//   phi64(x)      the standard normal CDF 0.5 erfc(-x / sqrt 2), from the rational approximations of erf/erfc
//                 in FreeBSD msun s_erf.c (Sun Microsystems, 1993; coefficients below are theirs, see notice),
//                 evaluated as erfc on |x| / sqrt 2 so that the lower tail keeps full relative precision
//                 (Phi(-10) ~ 7.6e-24 instead of 1 + erf(-7.07) = 0).
//
// ====================================================
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this
// software is freely granted, provided that this notice
// is preserved.
// ====================================================

// ---------------------------------------------------------------- exp

const LOG2E: f64 = 1.4426950408889634;
const LN2_HI: f64 = 6.93147180369123816490e-1; // 0x3FE62E42FEE00000: k * LN2_HI exact for |k| < 2^11
const LN2_LO: f64 = 1.90821492927058770002e-10; // 0x3DEA39EF35793C76
const EXP_MIN: f64 = -746.0; // exp(-746) < 2^-1075: rounds to 0
const EXP_MAX: f64 = 710.0; // exp(710) > f64 max: rounds to inf

// 1/n! for n = 2..12
const E2: f64 = 0.5;
const E3: f64 = 1.6666666666666666e-1;
const E4: f64 = 4.1666666666666664e-2;
const E5: f64 = 8.3333333333333332e-3;
const E6: f64 = 1.3888888888888889e-3;
const E7: f64 = 1.9841269841269841e-4;
const E8: f64 = 2.4801587301587302e-5;
const E9: f64 = 2.7557319223985893e-6;
const E10: f64 = 2.7557319223985888e-7;
const E11: f64 = 2.5052108385441720e-8;
const E12: f64 = 2.0876756987868100e-9;

/** 2^k for -1022 <= k <= 1023 from the exponent field. */
// @ts-ignore: decorator
@inline function pow2i(k: i32): f64 {
  return reinterpret<f64>(<i64>(k + 1023) << 52);
}

/** e^x (f64). */
export function exp64(x: f64): f64 {
  x = min(max(x, EXP_MIN), EXP_MAX);
  const kf = nearest(x * LOG2E);
  const r = x - kf * LN2_HI - kf * LN2_LO;
  const p = 1.0 + r * (1.0 + r * (E2 + r * (E3 + r * (E4 + r * (E5 + r * (E6 + r * (E7 + r * (E8 + r * (E9 + r * (E10 + r * (E11 + r * E12)))))))))));
  const k = <i32>kf;
  const k1 = k >> 1;
  return p * pow2i(k1) * pow2i(k - k1);
}

/** e^x - 1 for 0 <= x <= 700 (f64). */
export function expm1pos(x: f64): f64 {
  const kf = nearest(x * LOG2E);
  const r = x - kf * LN2_HI - kf * LN2_LO;
  const q = r * (1.0 + r * (E2 + r * (E3 + r * (E4 + r * (E5 + r * (E6 + r * (E7 + r * (E8 + r * (E9 + r * (E10 + r * (E11 + r * E12)))))))))));
  const s = pow2i(<i32>kf);
  return s * q + (s - 1.0);
}

// f64x2 forms ------------------------------------------------------

// @ts-ignore: decorator
@inline function pow2x2(k: v128): v128 {
  // k: i32 lanes 0, 1 -> f64 lanes 2^k
  return i64x2.shl(i64x2.add(i64x2.extend_low_i32x4_s(k), i64x2.splat(1023)), 52);
}

// @ts-ignore: decorator
@inline function hornerExp(r: v128, c0: f64): v128 {
  let p = f64x2.add(f64x2.splat(E11), f64x2.mul(r, f64x2.splat(E12)));
  p = f64x2.add(f64x2.splat(E10), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E9), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E8), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E7), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E6), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E5), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E4), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E3), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(E2), f64x2.mul(r, p));
  p = f64x2.add(f64x2.splat(1.0), f64x2.mul(r, p));
  if (c0 != 0) return f64x2.add(f64x2.splat(c0), f64x2.mul(r, p));
  return f64x2.mul(r, p);
}

/** e^x per f64 lane (same operations as {@link exp64}). */
function exp64x2_(x: v128): v128 {
  x = f64x2.min(f64x2.max(x, f64x2.splat(EXP_MIN)), f64x2.splat(EXP_MAX));
  const kf = f64x2.nearest(f64x2.mul(x, f64x2.splat(LOG2E)));
  const r = f64x2.sub(f64x2.sub(x, f64x2.mul(kf, f64x2.splat(LN2_HI))), f64x2.mul(kf, f64x2.splat(LN2_LO)));
  const p = hornerExp(r, 1.0);
  const k = i32x4.trunc_sat_f64x2_s_zero(kf);
  const k1 = i32x4.shr_s(k, 1);
  return f64x2.mul(f64x2.mul(p, pow2x2(k1)), pow2x2(i32x4.sub(k, k1)));
}

/** e^x - 1 per f64 lane for 0 <= x <= 700 (same operations as {@link expm1pos}). */
function expm1posx2_(x: v128): v128 {
  const kf = f64x2.nearest(f64x2.mul(x, f64x2.splat(LOG2E)));
  const r = f64x2.sub(f64x2.sub(x, f64x2.mul(kf, f64x2.splat(LN2_HI))), f64x2.mul(kf, f64x2.splat(LN2_LO)));
  const q = hornerExp(r, 0);
  const s = pow2x2(i32x4.trunc_sat_f64x2_s_zero(kf));
  return f64x2.add(f64x2.mul(s, q), f64x2.sub(s, f64x2.splat(1.0)));
}

// ---------------------------------------------------------------- Phi (normal CDF) from FreeBSD's erf/erfc

const SQRT1_2: f64 = 0.7071067811865476;
const ERX: f64 = 8.45062911510467529297e-1; // (float)0.84506291151
// erf on [0, 0.84375]: erf(z) = z + z R(z^2), R = pp/qq
const PP0: f64 = 1.28379167095512558561e-1;
const PP1: f64 = -3.25042107247001499370e-1;
const PP2: f64 = -2.84817495755985104766e-2;
const PP3: f64 = -5.77027029648944159157e-3;
const PP4: f64 = -2.37630166566501626084e-5;
const QQ1: f64 = 3.97917223959155352819e-1;
const QQ2: f64 = 6.50222499887672944485e-2;
const QQ3: f64 = 5.08130628187576562776e-3;
const QQ4: f64 = 1.32494738004321644526e-4;
const QQ5: f64 = -3.96022827877536812320e-6;
// erfc on [0.84375, 1.25]: erfc(z) = (1 - erx) - P(s)/Q(s), s = z - 1
const PA0: f64 = -2.36211856075265944077e-3;
const PA1: f64 = 4.14856118683748331666e-1;
const PA2: f64 = -3.72207876035701323847e-1;
const PA3: f64 = 3.18346619901161753674e-1;
const PA4: f64 = -1.10894694282396677476e-1;
const PA5: f64 = 3.54783043256182359371e-2;
const PA6: f64 = -2.16637559486879084300e-3;
const QA1: f64 = 1.06420880400844228286e-1;
const QA2: f64 = 5.40397917702171048937e-1;
const QA3: f64 = 7.18286544141962662868e-2;
const QA4: f64 = 1.26171219808761642112e-1;
const QA5: f64 = 1.36370839120290507362e-2;
const QA6: f64 = 1.19844998467991074170e-2;
// erfc on [1.25, 1/0.35]: erfc(z) = exp(-z^2 - 0.5625 + R(s)/S(s)) / z, s = 1/z^2
const RA0: f64 = -9.86494403484714822705e-3;
const RA1: f64 = -6.93858572707181764372e-1;
const RA2: f64 = -1.05586262253232909814e1;
const RA3: f64 = -6.23753324503260060396e1;
const RA4: f64 = -1.62396669462573470355e2;
const RA5: f64 = -1.84605092906711035994e2;
const RA6: f64 = -8.12874355063065934246e1;
const RA7: f64 = -9.81432934416914548592;
const SA1: f64 = 1.96512716674392571292e1;
const SA2: f64 = 1.37657754143519042600e2;
const SA3: f64 = 4.34565877475229228821e2;
const SA4: f64 = 6.45387271733267880336e2;
const SA5: f64 = 4.29008140027567833386e2;
const SA6: f64 = 1.08635005541779435134e2;
const SA7: f64 = 6.57024977031928170135;
const SA8: f64 = -6.04244152148580987438e-2;
// erfc on [1/0.35, 28] (and beyond, where exp underflows to 0): same form, R = rb/sb
const RB0: f64 = -9.86494292470009928597e-3;
const RB1: f64 = -7.99283237680523006574e-1;
const RB2: f64 = -1.77579549177547519889e1;
const RB3: f64 = -1.60636384855821916062e2;
const RB4: f64 = -6.37566443368389627722e2;
const RB5: f64 = -1.02509513161107724954e3;
const RB6: f64 = -4.83519191608651397019e2;
const SB1: f64 = 3.03380607434824582924e1;
const SB2: f64 = 3.25792512996573918826e2;
const SB3: f64 = 1.53672958608443695994e3;
const SB4: f64 = 3.19985821950859553908e3;
const SB5: f64 = 2.55305040643316442583e3;
const SB6: f64 = 4.74528541206955367215e2;
const SB7: f64 = -2.24409524465858183362e1;

const Z1: f64 = 0.84375;
const Z2: f64 = 1.25;
const Z3: f64 = 2.857142857142857; // 1 / 0.35

/**
 * Phi(x) = P(X <= x), X ~ N(0, 1) (f64). With z = |x| / sqrt 2 and q = 0.5 erfc(z): Phi = q for x < 0, else 1 - q.
 * Deviation from s_erf.c: in the two exp branches `exp(-z*z - 0.5625 + R/S)` is one exp call (s_erf.c splits
 * z*z exactly to gain the last f64 bits; the relative error here is ~1e-14 at z = 10, irrelevant for f32).
 */
export function phi64(x: f64): f64 {
  const z = abs(x) * SQRT1_2;
  let q: f64;
  if (z < Z1) {
    const zz = z * z;
    const r = PP0 + zz * (PP1 + zz * (PP2 + zz * (PP3 + zz * PP4)));
    const s = 1.0 + zz * (QQ1 + zz * (QQ2 + zz * (QQ3 + zz * (QQ4 + zz * QQ5))));
    q = 0.5 - 0.5 * (z + z * (r / s));
  } else if (z < Z2) {
    const s = z - 1.0;
    const P = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
    const Q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
    q = 0.5 * (1.0 - ERX - P / Q);
  } else {
    const s = 1.0 / (z * z);
    let R: f64, S: f64;
    if (z < Z3) {
      R = RA0 + s * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7))))));
      S = 1.0 + s * (SA1 + s * (SA2 + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8)))))));
    } else {
      R = RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6)))));
      S = 1.0 + s * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7))))));
    }
    q = 0.5 * exp64(-z * z - 0.5625 + R / S) / z;
  }
  return x < 0 ? q : 1.0 - q;
}

// @ts-ignore: decorator
@inline function sp(v: f64): v128 {
  return f64x2.splat(v);
}
// @ts-ignore: decorator
@inline function fma2(a: v128, x: v128, b: v128): v128 {
  // a + x * b (two roundings, as the scalar code)
  return f64x2.add(a, f64x2.mul(x, b));
}

/** Phi per f64 lane (same operations as {@link phi64}; branches become lane selects). */
function phi64x2_(x: v128): v128 {
  const z = f64x2.mul(f64x2.abs(x), sp(SQRT1_2));
  const m1 = f64x2.lt(z, sp(Z1));
  const m2 = f64x2.lt(z, sp(Z2));
  const mid = v128.andnot(m2, m1); // Z1 <= z < Z2
  let q = sp(0);
  if (v128.any_true(m1)) {
    const zz = f64x2.mul(z, z);
    const r = fma2(sp(PP0), zz, fma2(sp(PP1), zz, fma2(sp(PP2), zz, fma2(sp(PP3), zz, sp(PP4)))));
    const s = fma2(sp(1.0), zz, fma2(sp(QQ1), zz, fma2(sp(QQ2), zz, fma2(sp(QQ3), zz, fma2(sp(QQ4), zz, sp(QQ5))))));
    const e = f64x2.add(z, f64x2.mul(z, f64x2.div(r, s)));
    q = v128.bitselect(f64x2.sub(sp(0.5), f64x2.mul(sp(0.5), e)), q, m1);
  }
  if (v128.any_true(mid)) {
    const s = f64x2.sub(z, sp(1.0));
    const P = fma2(sp(PA0), s, fma2(sp(PA1), s, fma2(sp(PA2), s, fma2(sp(PA3), s, fma2(sp(PA4), s, fma2(sp(PA5), s, sp(PA6)))))));
    const Q = fma2(sp(1.0), s, fma2(sp(QA1), s, fma2(sp(QA2), s, fma2(sp(QA3), s, fma2(sp(QA4), s, fma2(sp(QA5), s, sp(QA6)))))));
    const t = f64x2.mul(sp(0.5), f64x2.sub(f64x2.sub(sp(1.0), sp(ERX)), f64x2.div(P, Q)));
    q = v128.bitselect(t, q, mid);
  }
  const tail = v128.not(m2); // z >= Z2, and NaN lanes
  if (v128.any_true(tail)) {
    const s = f64x2.div(sp(1.0), f64x2.mul(z, z));
    const m3 = f64x2.lt(z, sp(Z3));
    let R = sp(0), S = sp(0);
    if (v128.any_true(v128.and(tail, m3))) {
      R = fma2(sp(RA0), s, fma2(sp(RA1), s, fma2(sp(RA2), s, fma2(sp(RA3), s, fma2(sp(RA4), s, fma2(sp(RA5), s, fma2(sp(RA6), s, sp(RA7))))))));
      S = fma2(sp(1.0), s, fma2(sp(SA1), s, fma2(sp(SA2), s, fma2(sp(SA3), s, fma2(sp(SA4), s, fma2(sp(SA5), s, fma2(sp(SA6), s, fma2(sp(SA7), s, sp(SA8)))))))));
    }
    if (v128.any_true(v128.andnot(tail, m3))) {
      const Rb = fma2(sp(RB0), s, fma2(sp(RB1), s, fma2(sp(RB2), s, fma2(sp(RB3), s, fma2(sp(RB4), s, fma2(sp(RB5), s, sp(RB6)))))));
      const Sb = fma2(sp(1.0), s, fma2(sp(SB1), s, fma2(sp(SB2), s, fma2(sp(SB3), s, fma2(sp(SB4), s, fma2(sp(SB5), s, fma2(sp(SB6), s, sp(SB7))))))));
      R = v128.bitselect(R, Rb, m3);
      S = v128.bitselect(S, Sb, m3);
    }
    const a = f64x2.add(f64x2.sub(f64x2.neg(f64x2.mul(z, z)), sp(0.5625)), f64x2.div(R, S));
    const t = f64x2.div(f64x2.mul(sp(0.5), exp64x2_(a)), z);
    q = v128.bitselect(t, q, tail);
  }
  // x < 0 ? q : 1 - q
  return v128.bitselect(q, f64x2.sub(sp(1.0), q), f64x2.lt(x, sp(0)));
}

// @ts-ignore: decorator
@inline export function exp64x2(x: v128): v128 {
  return exp64x2_(x);
}

// @ts-ignore: decorator
@inline export function expm1posx2(x: v128): v128 {
  return expm1posx2_(x);
}

// @ts-ignore: decorator
@inline export function phi64x2(x: v128): v128 {
  return phi64x2_(x);
}
