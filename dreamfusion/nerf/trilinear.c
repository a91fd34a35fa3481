/* Trilinear reads of every level of a dense feature grid in one pass per point, and their spatial derivatives.
 *
 * The levels live in one table [S, F]: level l occupies rows offset[l] .. offset[l] + r_l³, z-major, then y,
 * then x, which is `grid_sample`'s [F, D, H, W] layout transposed; a point p in [-1, 1]³ sits at voxel
 * coordinate (p + 1) / 2 · (r − 1) (`align_corners=True`). A corner c of weight w_c contributes w_c · v_c to the
 * features and ∂w_c/∂p · v_c to their derivatives; the field wants those derivatives only contracted with one
 * vector u per point (the decoder's input gradient), so they are never stored: ∇(u · f) = Σ_c ∂w_c/∂p (u · v_c).
 * One thread, a fixed loop order: the same inputs give the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The cell of coordinate c on a side of r voxels (i0 in [0, r − 2]) and the fraction into it, in [0, 1]. */
static void cell(float c, int64_t r, int64_t *i0, float *frac) {
    float p = (c + 1.0f) * 0.5f * (float)(r - 1);
    /* floor(p) clamped to [0, r − 2], as a truncation of the clamped p: inline, where floorf is a libm call */
    const float last = (float)(r - 2);
    const float lo = (float)(int64_t)(p < 0.0f ? 0.0f : (p > last ? last : p));
    *i0 = (int64_t)lo;
    const float f = p - lo; /* fminf and fmaxf are libm calls too */
    *frac = f < 0.0f ? 0.0f : (f > 1.0f ? 1.0f : f);
}

/* The 8 corners of a point in one level: their rows, weights and (if asked) the weights' derivatives along x, y,
 * z. */
static inline void corners(const float *point, int64_t r, int64_t offset, int64_t rows[8], float w[8],
                           float dw[3][8], int derivatives) {
    int64_t ix, iy, iz;
    float fx, fy, fz;
    cell(point[0], r, &ix, &fx);
    cell(point[1], r, &iy, &fy);
    cell(point[2], r, &iz, &fz);
    const float s = 0.5f * (float)(r - 1); /* d voxel coordinate / d p */
    const float wx[2] = {1.0f - fx, fx}, wy[2] = {1.0f - fy, fy}, wz[2] = {1.0f - fz, fz}, d[2] = {-s, s};
    int c = 0;
    for (int dz = 0; dz < 2; dz++)
        for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++, c++) {
                rows[c] = offset + ((iz + dz) * r + (iy + dy)) * r + (ix + dx);
                w[c] = wz[dz] * wy[dy] * wx[dx];
                if (!derivatives) continue;
                dw[0][c] = wz[dz] * wy[dy] * d[dx];
                dw[1][c] = wz[dz] * d[dy] * wx[dx];
                dw[2][c] = d[dz] * wy[dy] * wx[dx];
            }
}

/* Inlined with a constant F (the presets' 2, 4 and 8), the feature loops become a few vector instructions. */
#define INLINE static inline __attribute__((always_inline))

INLINE void forward_point(const float *table, const float *point, int64_t levels, int64_t features,
                          const int64_t *res, const int64_t *offset, float *out) {
    int64_t rows[8];
    float w[8], dw[3][8];
    for (int64_t l = 0; l < levels; l++) {
        corners(point, res[l], offset[l], rows, w, dw, 0);
        float *o = out + l * features;
        for (int c = 0; c < 8; c++) {
            const float *v = table + rows[c] * features;
            for (int64_t f = 0; f < features; f++) o[f] += w[c] * v[f];
        }
    }
}

INLINE void backward_point(const float *point, int64_t levels, int64_t features, const int64_t *res,
                           const int64_t *offset, const float *go, float *grad_table) {
    int64_t rows[8];
    float w[8], dw[3][8];
    for (int64_t l = 0; l < levels; l++) {
        corners(point, res[l], offset[l], rows, w, dw, 0);
        for (int c = 0; c < 8; c++) {
            float *g = grad_table + rows[c] * features;
            for (int64_t f = 0; f < features; f++) g[f] += w[c] * go[l * features + f];
        }
    }
}

/* out [3] = Σ_d (∂features_d / ∂p) · u_d: the gradient of u · features(p) with u held fixed. */
INLINE void gradient_point(const float *table, const float *point, int64_t levels, int64_t features,
                           const int64_t *res, const int64_t *offset, const float *u, float *out) {
    int64_t rows[8];
    float w[8], dw[3][8];
    for (int64_t l = 0; l < levels; l++) {
        corners(point, res[l], offset[l], rows, w, dw, 1);
        for (int c = 0; c < 8; c++) {
            const float *v = table + rows[c] * features;
            float s = 0.0f;
            for (int64_t f = 0; f < features; f++) s += v[f] * u[l * features + f];
            for (int k = 0; k < 3; k++) out[k] += dw[k][c] * s;
        }
    }
}

/* The gradient's backward: with d_c = Σ_k ∂w_c/∂p_k · grad_out_k, grad_table[c] += d_c · u, grad_u += d_c · v_c. */
INLINE void gradient_backward_point(const float *table, const float *point, int64_t levels, int64_t features,
                                    const int64_t *res, const int64_t *offset, const float *u, const float *go,
                                    float *grad_table, float *grad_u) {
    int64_t rows[8];
    float w[8], dw[3][8];
    for (int64_t l = 0; l < levels; l++) {
        corners(point, res[l], offset[l], rows, w, dw, 1);
        for (int c = 0; c < 8; c++) {
            const float d = dw[0][c] * go[0] + dw[1][c] * go[1] + dw[2][c] * go[2];
            const float *v = table + rows[c] * features;
            float *g = grad_table + rows[c] * features;
            for (int64_t f = 0; f < features; f++) {
                g[f] += d * u[l * features + f];
                grad_u[l * features + f] += d * v[f];
            }
        }
    }
}

#define DISPATCH(F, call)        \
    switch (F) {                 \
        case 2: call(2); break;  \
        case 4: call(4); break;  \
        case 8: call(8); break;  \
        default: call(F); break; \
    }

/* out [N, L·F]: the features of each point. */
void trilinear_forward(const float *table, const float *points, int64_t n, int64_t levels, int64_t features,
                       const int64_t *res, const int64_t *offset, float *out) {
    memset(out, 0, sizeof(float) * n * levels * features);
#define FORWARD(F) \
    for (int64_t i = 0; i < n; i++) forward_point(table, points + 3 * i, levels, F, res, offset, out + i * levels * F)
    DISPATCH(features, FORWARD)
}

/* grad_table [S, F] (zeroed here) from grad_out [N, L·F]. */
void trilinear_backward(const float *points, int64_t n, int64_t levels, int64_t features, const int64_t *res,
                        const int64_t *offset, const float *grad_out, float *grad_table, int64_t table_rows) {
    memset(grad_table, 0, sizeof(float) * table_rows * features);
#define BACKWARD(F)                 \
    for (int64_t i = 0; i < n; i++) \
        backward_point(points + 3 * i, levels, F, res, offset, grad_out + i * levels * F, grad_table)
    DISPATCH(features, BACKWARD)
}

/* out [N, 3]: per point, the gradient of u · features with u [N, L·F] held fixed. */
void trilinear_gradient(const float *table, const float *points, int64_t n, int64_t levels, int64_t features,
                        const int64_t *res, const int64_t *offset, const float *u, float *out) {
    memset(out, 0, sizeof(float) * n * 3);
#define GRADIENT(F)                 \
    for (int64_t i = 0; i < n; i++) \
        gradient_point(table, points + 3 * i, levels, F, res, offset, u + i * levels * F, out + 3 * i)
    DISPATCH(features, GRADIENT)
}

/* grad_table [S, F] and grad_u [N, L·F] (both zeroed here) from grad_out [N, 3]. */
void trilinear_gradient_backward(const float *table, const float *points, int64_t n, int64_t levels,
                                 int64_t features, const int64_t *res, const int64_t *offset, const float *u,
                                 const float *grad_out, float *grad_table, int64_t table_rows, float *grad_u) {
    memset(grad_table, 0, sizeof(float) * table_rows * features);
    memset(grad_u, 0, sizeof(float) * n * levels * features);
#define GRADIENT_BACKWARD(F)                                                                                 \
    for (int64_t i = 0; i < n; i++)                                                                          \
        gradient_backward_point(table, points + 3 * i, levels, F, res, offset, u + i * levels * F,         \
                                grad_out + 3 * i, grad_table, grad_u + i * levels * F)
    DISPATCH(features, GRADIENT_BACKWARD)
}
