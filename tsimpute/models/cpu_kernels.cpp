// Fused CPU kernels for the inference forward of tsimpute's denoisers (compiled on first use, see cpu_kernels.py).
//
// Tensors are passed as raw pointers to contiguous float32 (dtype 0) or bfloat16 (dtype 1) data; arithmetic is
// float32. Each entry point processes a range [i0, i1) of independent units (sequences or token rows), so that
// the caller can split the work over threads. Entry points return 0, or a negative value for unsupported shapes.
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE__)
#include <immintrin.h>
#endif

namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v16i __attribute__((vector_size(64)));

#if defined(__AVX512BF16__) && defined(__AVX512VL__)
#define TSI_DOT_BF16 1
#endif

template <typename V = v16>
inline V splat(float x) {
    return (V){} + x;
}

// 2^t for t <= 0, on vectors of 16 or 8 floats: t = n + f with n an integer and |f| <= 1/2, 2^f by its Taylor
// polynomial of degree DEG (relative error below 1.2e-7 for degree 6, 4.2e-5 for degree 4, enough for bfloat16
// outputs), times 2^n.
// Without AVX-512, and for inputs that may be -inf (CLAMP), t is first raised to -126.
template <int DEG = 6, bool CLAMP = true, typename V>
inline V exp2_neg(V t) {
    static_assert(DEG == 4 || DEG == 6, "degree 4 or 6");
#if defined(__AVX512VL__)
    if constexpr (CLAMP) {
        if constexpr (sizeof(V) == 64)
            t = (V)_mm512_max_ps((__m512)t, _mm512_set1_ps(-126.0f));
        else
            t = (V)_mm256_max_ps((__m256)t, _mm256_set1_ps(-126.0f));
    }
#else
    t = t < splat<V>(-126.0f) ? splat<V>(-126.0f) : t;
#endif
    V n;
    if constexpr (sizeof(V) == 64) {
#if defined(__AVX512F__)
        n = (V)_mm512_roundscale_ps((__m512)t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
        n = (t + splat<V>(12582912.0f)) - splat<V>(12582912.0f);  // adding 1.5 * 2^23 rounds to an integer
#endif
    } else {
#if defined(__AVX512VL__)
        n = (V)_mm256_roundscale_ps((__m256)t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
        n = (t + splat<V>(12582912.0f)) - splat<V>(12582912.0f);
#endif
    }
    V f = t - n;
    V p;
    if (DEG == 6) {
        p = splat<V>(1.5403530393381606e-4f);
        p = p * f + splat<V>(1.3333558146428443e-3f);
        p = p * f + splat<V>(9.6181291076284772e-3f);
    } else {
        p = splat<V>(9.6181291076284772e-3f);
    }
    p = p * f + splat<V>(5.5504108664821580e-2f);
    p = p * f + splat<V>(2.4022650695910071e-1f);
    p = p * f + splat<V>(6.9314718055994531e-1f);
    p = p * f + splat<V>(1.0f);
#if defined(__AVX512VL__)
    if constexpr (sizeof(V) == 64)
        return (V)_mm512_scalef_ps((__m512)p, (__m512)n);
    else
        return (V)_mm256_scalef_ps((__m256)p, (__m256)n);
#else
    typedef int32_t vi __attribute__((vector_size(sizeof(V))));
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (V)e;
#endif
}

constexpr float LOG2E = 1.44269504088896341f;

// exp(x) for x <= 0.
template <int DEG = 6>
inline v16 exp_neg(v16 x) {
    return exp2_neg<DEG>(x * splat(LOG2E));
}

// Degree of the exponential for outputs of type T: 4 suffices for bfloat16 (8 significant bits).
template <typename T>
constexpr int exp_degree() {
    return sizeof(T) == 2 ? 4 : 6;
}

inline float hsum(v16 v) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps((__m512)v);
#else
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
#endif
}

// 1 / x: the 14-bit hardware estimate refined by one Newton step (about 1 ulp), much cheaper than a division.
template <typename V>
inline V reciprocal(V x) {
#if defined(__AVX512VL__)
    V r;
    if constexpr (sizeof(V) == 64)
        r = (V)_mm512_rcp14_ps((__m512)x);
    else
        r = (V)_mm256_rcp14_ps((__m256)x);
    return r * (splat<V>(2.0f) - x * r);
#else
    return splat<V>(1.0f) / x;
#endif
}

template <int DEG = 6>
inline v16 sigmoid(v16 x) {
    v16 ax = x < splat(0.0f) ? -x : x;
    v16 e = exp_neg<DEG>(-ax);
    v16 inv = reciprocal(splat(1.0f) + e);
    return x < splat(0.0f) ? e * inv : inv;
}

typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint32_t v16u __attribute__((vector_size(64)));

// 16 consecutive values as a float32 vector, and back.
inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, 64);
    return v;
}
inline v16 load16(const uint16_t *p) {
    v16h h;
    memcpy(&h, p, 32);
    return (v16)(__builtin_convertvector(h, v16u) << 16);
}
inline void store16(float *p, v16 v) { memcpy(p, &v, 64); }
inline void store16(uint16_t *p, v16 v) {
#if defined(__AVX512BF16__)
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh((__m512)v));
#else
    v16u b = (v16u)v;
    b += 0x7FFFu + ((b >> 16) & 1u);  // round to nearest even
    v16h h = __builtin_convertvector(b >> 16, v16h);
    memcpy(p, &h, 32);
#endif
}

constexpr int SMAX = 512;

// erf(x), Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
template <int DEG = 6>
inline v16 erf(v16 x) {
    v16 ax = x < splat(0.0f) ? -x : x;
    v16 t = reciprocal(splat(1.0f) + splat(0.3275911f) * ax);
    v16 p = splat(1.061405429f);
    p = p * t + splat(-1.453152027f);
    p = p * t + splat(1.421413741f);
    p = p * t + splat(-0.284496736f);
    p = p * t + splat(0.254829592f);
    v16 y = splat(1.0f) - p * t * exp_neg<DEG>(-ax * ax);
    return x < splat(0.0f) ? -y : y;
}

#if defined(TSI_DOT_BF16)
// acc + the dot products of the bfloat16 pairs in the lanes of q with the bfloat16 pair k.
inline v16 dot_pairs(v16 acc, v16 q, uint32_t k) {
    return (v16)_mm512_dpbf16_ps((__m512)acc, (__m512bh)q, (__m512bh)_mm512_set1_epi32((int)k));
}
inline v8 dot_pairs(v8 acc, v8 q, uint32_t k) {
    return (v8)_mm256_dpbf16_ps((__m256)acc, (__m256bh)q, (__m256bh)_mm256_set1_epi32((int)k));
}
#endif

// Softmax attention of one head of dimension D over sequences of length S, queries 16 (or, for the last few,
// 8) at a time in the lanes of a vector: scores, maximum, exponentials, normaliser and the weighted sum of values
// stay in registers. The projections' bias (3C values, or null) is added as the rows are read. With bfloat16
// inputs on a CPU with AVX512-BF16, q.k is computed by bfloat16 dot-product instructions (exact products,
// float32 sums).
template <typename T, int D>
void attention_impl(const T *qkv, const T *bias, T *out, int64_t q0, int64_t q1, int64_t nb, int64_t sa, int64_t sb,
                    int64_t se, int S, int C) {
    const int H = C / D;
    const int nblk = (S + 15) / 16;
    const int64_t ld = 3 * C;
    const float c2 = LOG2E / sqrtf((float)D);  // softmax(q.k / sqrt(D)) with exp(x) = 2^(x log2 e)
#if defined(TSI_DOT_BF16)
    constexpr bool dot_bf16 = sizeof(T) == 2;
    uint16_t *rows16 = new uint16_t[(size_t)S * ld];
#else
    constexpr bool dot_bf16 = false;
#endif
    alignas(64) float qt[D][SMAX];     // float32 queries, transposed: a channel's values for consecutive queries
    alignas(64) uint32_t qp[D / 2][SMAX];  // bfloat16 queries as channel pairs, transposed
    alignas(64) v16 scores[SMAX];
    float *rows = new float[(size_t)S * ld];
    float *obuf = new float[(size_t)S * C];
    v16 *bv = new v16[ld / 16];
    for (int k = 0; k < ld / 16; k++) bv[k] = bias ? load16(bias + 16 * k) : splat(0.0f);
    memset(qt, 0, sizeof(qt));
    memset(qp, 0, sizeof(qp));

    // queries i0 .. i0 + lanes - 1 of head h, lanes the width of vector type V
    auto block = [&](auto zero, int h, int i0) {
        using V = decltype(zero);
        constexpr int W = sizeof(V) / 4;
        V *sc = reinterpret_cast<V *>(scores);
        const float *kr = rows + C + h * D, *vr = rows + 2 * C + h * D;
        V m = splat<V>(-INFINITY);
        if constexpr (dot_bf16) {
#if defined(TSI_DOT_BF16)
            const uint16_t *kr16 = rows16 + C + h * D;
            V qv[D / 2];
            for (int c = 0; c < D / 2; c++) memcpy(&qv[c], &qp[c][i0], sizeof(V));
            for (int j = 0; j < S; j++) {
                const uint16_t *kj = kr16 + j * ld;
                V s = zero;
                for (int c = 0; c < D / 2; c++) {
                    uint32_t w;
                    memcpy(&w, kj + 2 * c, 4);
                    s = dot_pairs(s, qv[c], w);
                }
                sc[j] = s;
                m = s > m ? s : m;
            }
#endif
        } else {
            V qv[D];
            for (int c = 0; c < D; c++) memcpy(&qv[c], &qt[c][i0], sizeof(V));
            for (int j = 0; j < S; j++) {
                V s = qv[0] * kr[j * ld];
                for (int c = 1; c < D; c++) s += qv[c] * kr[j * ld + c];
                sc[j] = s;
                m = s > m ? s : m;
            }
        }
        V o[D];
        for (int c = 0; c < D; c++) o[c] = zero;
        V sum = zero;
        for (int j = 0; j < S; j++) {
            // bfloat16 outputs: a degree-4 exponential (relative error 4e-5, against 4e-3 for bfloat16)
            // (scores are finite: no clamp)
            V p = sizeof(T) == 2 ? exp2_neg<4, false>((sc[j] - m) * (dot_bf16 ? splat<V>(c2) : splat<V>(1.0f)))
                                 : exp2_neg<6, false>(sc[j] - m);
            sum += p;
            for (int c = 0; c < D; c++) o[c] += p * vr[j * ld + c];
        }
        // queries are in lanes, channels in vectors: transpose through L1 into the sequence's output rows
        const V inv = reciprocal(sum);
        alignas(64) float ot[D][W];
        for (int c = 0; c < D; c++) {
            V v = o[c] * inv;
            memcpy(ot[c], &v, sizeof(V));
        }
        const int ni = S - i0 < W ? S - i0 : W;
        for (int i = 0; i < ni; i++)
            for (int c = 0; c < D; c++) obuf[(size_t)(i0 + i) * C + h * D + c] = ot[c][i];
    };

    for (int64_t q = q0; q < q1; q++) {
        const int64_t base = (q / nb) * sa + (q % nb) * sb;
        for (int e = 0; e < S; e++) {
            const T *src = qkv + (base + e * se) * ld;
            float *dst = rows + (size_t)e * ld;
            for (int k = 0; k < ld / 16; k++) store16(dst + 16 * k, load16(src + 16 * k) + bv[k]);
#if defined(TSI_DOT_BF16)
            if (dot_bf16)  // rounded to bfloat16 as a bfloat16 projection with bias would be
                for (int k = 0; k < ld / 16; k++) store16(rows16 + (size_t)e * ld + 16 * k, load16(dst + 16 * k));
#endif
        }
        for (int h = 0; h < H; h++) {
#if defined(TSI_DOT_BF16)
            if (dot_bf16)
                for (int e = 0; e < S; e++)
                    for (int c = 0; c < D / 2; c++) memcpy(&qp[c][e], rows16 + (size_t)e * ld + h * D + 2 * c, 4);
            else
#endif
                for (int e = 0; e < S; e++)  // float32 queries carry the factor log2(e) / sqrt(D)
                    for (int c = 0; c < D; c++) qt[c][e] = rows[(size_t)e * ld + h * D + c] * c2;
            for (int ib = 0; ib < nblk; ib++) {
                if (S - ib * 16 <= 8)
                    block(splat<v8>(0.0f), h, ib * 16);  // the last few queries: half-width vectors
                else
                    block(splat<v16>(0.0f), h, ib * 16);
            }
        }
        for (int e = 0; e < S; e++) {
            T *dst = out + (base + e * se) * C;
            for (int k = 0; k < C / 16; k++) store16(dst + 16 * k, load16(obuf + (size_t)e * C + 16 * k));
        }
    }
#if defined(TSI_DOT_BF16)
    delete[] rows16;
#endif
    delete[] bv;
    delete[] obuf;
    delete[] rows;
}

template <typename T>
int attention_dispatch(const void *qkv, const void *bias, void *out, int64_t q0, int64_t q1, int64_t nb, int64_t sa,
                       int64_t sb, int64_t se, int S, int C, int H) {
    const T *x = (const T *)qkv, *b = (const T *)bias;
    T *y = (T *)out;
    switch (C / H) {
        case 4: attention_impl<T, 4>(x, b, y, q0, q1, nb, sa, sb, se, S, C); return 0;
        case 8: attention_impl<T, 8>(x, b, y, q0, q1, nb, sa, sb, se, S, C); return 0;
        case 16: attention_impl<T, 16>(x, b, y, q0, q1, nb, sa, sb, se, S, C); return 0;
        case 32: attention_impl<T, 32>(x, b, y, q0, q1, nb, sa, sb, se, S, C); return 0;
        default: return -2;
    }
}

constexpr int VMAX = 64;  // rows of at most 64 vectors (1024 values)

// out = LayerNorm(x + y + ybias) * w + b over rows of C values.
template <typename T, int NV>  // NV: vectors per row, fixed at compile time (registers), or 0 for C / 16
void add_layer_norm_rows(const T *x, const T *y, const T *ybias, const T *w, const T *b, T *out, int64_t r0,
                         int64_t r1, int C, float eps) {
    const int nv = NV > 0 ? NV : C / 16;
    v16 wv[VMAX], bv[VMAX], yb[VMAX], v[VMAX];
    for (int k = 0; k < nv; k++) {
        wv[k] = load16(w + 16 * k);
        bv[k] = load16(b + 16 * k);
        yb[k] = ybias ? load16(ybias + 16 * k) : splat(0.0f);
    }
    for (int64_t r = r0; r < r1; r++) {
        v16 s = splat(0.0f);
        for (int k = 0; k < nv; k++) {
            v[k] = load16(x + r * C + 16 * k) + load16(y + r * C + 16 * k) + yb[k];
            s += v[k];
        }
        const float mean = hsum(s) / C;
        v16 q = splat(0.0f);
        for (int k = 0; k < nv; k++) {
            v[k] -= mean;
            q += v[k] * v[k];
        }
        const float rstd = 1.0f / sqrtf(hsum(q) / C + eps);
        for (int k = 0; k < nv; k++) store16(out + r * C + 16 * k, v[k] * rstd * wv[k] + bv[k]);
    }
}

template <typename T>
void add_layer_norm_impl(const T *x, const T *y, const T *ybias, const T *w, const T *b, T *out, int64_t r0,
                         int64_t r1, int C, float eps) {
    switch (C / 16) {
        case 2: add_layer_norm_rows<T, 2>(x, y, ybias, w, b, out, r0, r1, C, eps); break;
        case 4: add_layer_norm_rows<T, 4>(x, y, ybias, w, b, out, r0, r1, C, eps); break;
        case 8: add_layer_norm_rows<T, 8>(x, y, ybias, w, b, out, r0, r1, C, eps); break;
        default: add_layer_norm_rows<T, 0>(x, y, ybias, w, b, out, r0, r1, C, eps);
    }
}

// out = gelu(x + bias) (the exact, erf-based GELU) over rows of C values.
template <typename T>
void bias_gelu_impl(const T *x, const T *bias, T *out, int64_t r0, int64_t r1, int C) {
    const int nv = C / 16;
    v16 bv[VMAX];
    for (int k = 0; k < nv; k++) bv[k] = load16(bias + 16 * k);
    for (int64_t r = r0; r < r1; r++)
        for (int k = 0; k < nv; k++) {
            v16 v = load16(x + r * C + 16 * k) + bv[k];
            store16(out + r * C + 16 * k, splat(0.5f) * v * (splat(1.0f) + erf<exp_degree<T>()>(v * splat(0.70710678118654752f))));
        }
}

// CSDI's gated activation of y = m + side: out = sigmoid(y[:, :C]) * tanh(y[:, C:]), rows of 2C values; row r of m
// uses row r % side_rows of side (the side information broadcast over the samples folded in front).
template <typename T>
void gated_impl(const T *m, const T *side, T *out, int64_t r0, int64_t r1, int64_t side_rows, int C) {
    const int nv = C / 16;
    int64_t rs = r0 % side_rows;
    for (int64_t r = r0; r < r1; r++, rs = rs + 1 == side_rows ? 0 : rs + 1) {
        const T *mr = m + r * 2 * C, *sr = side + rs * 2 * C;
        for (int k = 0; k < nv; k++) {
            v16 gate = load16(mr + 16 * k) + load16(sr + 16 * k);
            v16 filt = load16(mr + C + 16 * k) + load16(sr + C + 16 * k);
            v16 th = splat(2.0f) * sigmoid<exp_degree<T>()>(splat(2.0f) * filt) - splat(1.0f);
            store16(out + r * C + 16 * k, sigmoid<exp_degree<T>()>(gate) * th);
        }
    }
}

// The end of a residual block: with [res, sk] = y + bias (rows of 2C), x_out = (x + res) / sqrt(2) and
// skip = sk (first block) or skip + sk.
template <typename T>
void residual_skip_impl(const T *x, const T *y, const T *bias, T *x_out, T *skip, int64_t r0, int64_t r1, int C,
                        int first) {
    const int nv = C / 16;
    v16 br[VMAX], bs[VMAX];
    for (int k = 0; k < nv; k++) br[k] = load16(bias + 16 * k), bs[k] = load16(bias + C + 16 * k);
    for (int64_t r = r0; r < r1; r++)
        for (int k = 0; k < nv; k++) {
            const int64_t i = r * C + 16 * k;
            v16 res = load16(y + 2 * r * C + 16 * k) + br[k];
            v16 sk = load16(y + 2 * r * C + C + 16 * k) + bs[k];
            store16(x_out + i, (load16(x + i) + res) * splat(0.70710678118654752f));
            store16(skip + i, first ? sk : load16(skip + i) + sk);
        }
}

// Denormal inputs and results (exponentials of very negative arguments, their products) take a slow
// microcoded path on x86: the kernels flush them to zero (FTZ, DAZ), restoring the caller's setting after.
struct FlushDenormals {
#if defined(__SSE__)
    unsigned int saved = _mm_getcsr();
    FlushDenormals() { _mm_setcsr(saved | 0x8040u); }
    ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

}  // namespace

extern "C" {

int tsi_attention(const void *qkv, const void *bias, void *out, int dtype, int64_t q0, int64_t q1, int64_t nb,
                  int64_t sa, int64_t sb, int64_t se, int S, int C, int H) {
    FlushDenormals ftz;
    if (S < 1 || S > SMAX || H < 1 || C % H || C % 16) return -1;
    return dtype == 0 ? attention_dispatch<float>(qkv, bias, out, q0, q1, nb, sa, sb, se, S, C, H)
                      : attention_dispatch<uint16_t>(qkv, bias, out, q0, q1, nb, sa, sb, se, S, C, H);
}

int tsi_add_layer_norm(const void *x, const void *y, const void *ybias, const void *w, const void *b, void *out,
                       int dtype, int64_t r0, int64_t r1, int C, float eps) {
    FlushDenormals ftz;
    if (C % 16 || C < 16 || C > 16 * VMAX) return -1;
    if (dtype == 0)
        add_layer_norm_impl((const float *)x, (const float *)y, (const float *)ybias, (const float *)w,
                            (const float *)b, (float *)out, r0, r1, C, eps);
    else
        add_layer_norm_impl((const uint16_t *)x, (const uint16_t *)y, (const uint16_t *)ybias, (const uint16_t *)w,
                            (const uint16_t *)b, (uint16_t *)out, r0, r1, C, eps);
    return 0;
}

int tsi_bias_gelu(const void *x, const void *bias, void *out, int dtype, int64_t r0, int64_t r1, int C) {
    FlushDenormals ftz;
    if (C % 16 || C < 16 || C > 16 * VMAX) return -1;
    if (dtype == 0)
        bias_gelu_impl((const float *)x, (const float *)bias, (float *)out, r0, r1, C);
    else
        bias_gelu_impl((const uint16_t *)x, (const uint16_t *)bias, (uint16_t *)out, r0, r1, C);
    return 0;
}

int tsi_gated(const void *m, const void *side, void *out, int dtype, int64_t r0, int64_t r1, int64_t side_rows,
              int C) {
    FlushDenormals ftz;
    if (C % 16 || C < 16 || side_rows < 1) return -1;
    if (dtype == 0)
        gated_impl((const float *)m, (const float *)side, (float *)out, r0, r1, side_rows, C);
    else
        gated_impl((const uint16_t *)m, (const uint16_t *)side, (uint16_t *)out, r0, r1, side_rows, C);
    return 0;
}

int tsi_residual_skip(const void *x, const void *y, const void *bias, void *x_out, void *skip, int dtype, int64_t r0,
                      int64_t r1, int C, int first) {
    FlushDenormals ftz;
    if (C % 16 || C < 16 || C > 16 * VMAX) return -1;
    if (dtype == 0)
        residual_skip_impl((const float *)x, (const float *)y, (const float *)bias, (float *)x_out, (float *)skip, r0,
                           r1, C, first);
    else
        residual_skip_impl((const uint16_t *)x, (const uint16_t *)y, (const uint16_t *)bias, (uint16_t *)x_out,
                           (uint16_t *)skip, r0, r1, C, first);
    return 0;
}

int tsi_version(void) { return 2; }
}
