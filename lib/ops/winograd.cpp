#include "ops/winograd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RESLAB_WINOGRAD_X86 1
#define RESLAB_AVX2 __attribute__((target("avx2,fma")))
#endif
// The register-blocked loops below must be unrolled for their accumulators to stay in registers (without it GCC
// 12 kept them on the stack: 3x slower).
#if defined(__clang__)
#define RESLAB_UNROLL _Pragma("unroll")
#else
#define RESLAB_UNROLL _Pragma("GCC unroll 8")
#endif

namespace reslab {

namespace {

std::atomic<bool> winograd_on{true};

// Above this many channels in or out, the transformed weights (positions x C x K floats: 256 KiB for F(2x2, 3x3)
// at 64, 576 KiB for F(4x4, 3x3)) outgrow the second-level cache that every block of tiles reads them from;
// wider layers were not measured and go to oneDNN.
constexpr int64_t kMaxChannels = 64;

#if RESLAB_WINOGRAD_X86

// Notation (Lavin and Gray): F(m x m, 3x3) turns an (m + 2) x (m + 2) input patch d into V = B^T d B and a 3x3
// filter g into U = G g G^T, and gives the m x m output tile as A^T (sum over input channels of U . V) A. The
// (m + 2)^2 positions xi of the transformed domain are independent matrix products over channels. For F(2x2, 3x3)
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1];
// F(4x4, 3x3)'s are at its tile functions below. Layouts: activations NHWC; V[xi][tile][c] and M[xi][tile][k]
// per block of tiles; U[xi][c][k].

constexpr int64_t kLanes = 8;  // floats per AVX2 register

struct Geometry {
  int64_t n, h, w;  // batch and map size (input and output: stride 1, padding 1)
  int64_t th, tw;   // tiles per column and row
  int64_t tiles;    // n * th * tw
};

// F(m x m, 3x3): output tiles of m x m from (m + 2) x (m + 2) input patches, (m + 2)^2 positions.
template <int M>
constexpr int64_t kPositions = (M + 2) * (M + 2);

struct Tile {
  int64_t image, ti, tj;
};

// Tiles first .. first + count - 1 in order (image, tile row, tile column) into `out`: one division, then steps.
void list_tiles(const Geometry& g, int64_t first, int64_t count, Tile* out) {
  Tile t{first / (g.th * g.tw), (first % (g.th * g.tw)) / g.tw, first % g.tw};
  for (int64_t s = 0; s < count; ++s) {
    out[s] = t;
    if (++t.tj == g.tw) {
      t.tj = 0;
      if (++t.ti == g.th) {
        t.ti = 0;
        ++t.image;
      }
    }
  }
}

Geometry geometry(int64_t n, int64_t h, int64_t w, int64_t m) {
  Geometry g{n, h, w, (h + m - 1) / m, (w + m - 1) / m, 0};
  g.tiles = n * g.th * g.tw;
  return g;
}

// Tiles per block: the block's transformed input and output (positions x tiles x (C + K) floats) stay near
// 128 KiB, in the 512 KiB second-level cache beside the transformed weights.
int64_t block_tiles(int64_t positions, int64_t c, int64_t k) {
  return std::clamp<int64_t>((32768 / (positions * (c + k))) / 6 * 6, 6, 120);
}

RESLAB_AVX2 inline void transform_patch4(const float* const* pixel, int64_t channels, float* out, int64_t xi_stride);

// V[xi][slot][c..] = B^T d B for the 4x4 patch d whose pixel (a, b) starts at pixel[4a + b] (channels floats).
RESLAB_AVX2 inline void transform_patch(const float* const* pixel, int64_t channels, float* out, int64_t xi_stride) {
  for (int64_t c = 0; c < channels; c += kLanes) {
    __m256 d[4][4];
    for (int a = 0; a < 4; ++a) {
      for (int b = 0; b < 4; ++b) d[a][b] = _mm256_loadu_ps(pixel[4 * a + b] + c);
    }
    __m256 t[4][4];
    for (int b = 0; b < 4; ++b) {
      t[0][b] = _mm256_sub_ps(d[0][b], d[2][b]);
      t[1][b] = _mm256_add_ps(d[1][b], d[2][b]);
      t[2][b] = _mm256_sub_ps(d[2][b], d[1][b]);
      t[3][b] = _mm256_sub_ps(d[1][b], d[3][b]);
    }
    for (int a = 0; a < 4; ++a) {
      float* o = out + (4 * a) * xi_stride + c;
      _mm256_storeu_ps(o, _mm256_sub_ps(t[a][0], t[a][2]));
      _mm256_storeu_ps(o + xi_stride, _mm256_add_ps(t[a][1], t[a][2]));
      _mm256_storeu_ps(o + 2 * xi_stride, _mm256_sub_ps(t[a][2], t[a][1]));
      _mm256_storeu_ps(o + 3 * xi_stride, _mm256_sub_ps(t[a][1], t[a][3]));
    }
  }
}

// The transformed input patch of `tile` into V[xi][slot]; pixels outside the map read `zeros` (channels floats).
template <int M>
RESLAB_AVX2 void input_tile(const float* x, const Geometry& g, int64_t channels, const Tile& tile, float* v,
                            int64_t slot, int64_t xi_stride, const float* zeros) {
  constexpr int kSide = M + 2;
  const int64_t r0 = M * tile.ti - 1, c0 = M * tile.tj - 1;
  const float* base = x + tile.image * g.h * g.w * channels;
  const float* pixel[kSide * kSide];
  for (int64_t a = 0; a < kSide; ++a) {
    const int64_t r = r0 + a;
    for (int64_t b = 0; b < kSide; ++b) {
      const int64_t c = c0 + b;
      pixel[kSide * a + b] = r >= 0 && r < g.h && c >= 0 && c < g.w ? base + (r * g.w + c) * channels : zeros;
    }
  }
  if constexpr (M == 2) {
    transform_patch(pixel, channels, v + slot * channels, xi_stride);
  } else {
    transform_patch4(pixel, channels, v + slot * channels, xi_stride);
  }
}

// The 2x2 output tile (image, ti, tj) = A^T M A, written where it lies inside the map.
RESLAB_AVX2 void output_tile(const float* m, int64_t slot, int64_t xi_stride, int64_t channels, const Geometry& g,
                             const Tile& tile, float* y) {
  const int64_t image = tile.image, r0 = 2 * tile.ti, c0 = 2 * tile.tj;
  const bool row1 = r0 + 1 < g.h, col1 = c0 + 1 < g.w;
  float* base = y + ((image * g.h + r0) * g.w + c0) * channels;
  const float* in = m + slot * channels;
  for (int64_t k = 0; k < channels; k += kLanes) {
    __m256 s[2][4];
    for (int b = 0; b < 4; ++b) {
      const __m256 m0 = _mm256_loadu_ps(in + b * xi_stride + k);
      const __m256 m1 = _mm256_loadu_ps(in + (4 + b) * xi_stride + k);
      const __m256 m2 = _mm256_loadu_ps(in + (8 + b) * xi_stride + k);
      const __m256 m3 = _mm256_loadu_ps(in + (12 + b) * xi_stride + k);
      s[0][b] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
      s[1][b] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
    }
    for (int r = 0; r < (row1 ? 2 : 1); ++r) {
      float* o = base + r * g.w * channels + k;
      _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(s[r][0], s[r][1]), s[r][2]));
      if (col1) _mm256_storeu_ps(o + channels, _mm256_sub_ps(_mm256_sub_ps(s[r][1], s[r][2]), s[r][3]));
    }
  }
}

// D[xi][slot][k..] = A G A^T for the 2x2 output-gradient tile G (0 outside the map): the gradient with respect
// to M of the tile's output.
RESLAB_AVX2 void gradient_tile(const float* dy, const Geometry& g, int64_t channels, const Tile& tile, float* dm,
                               int64_t slot, int64_t xi_stride) {
  const int64_t image = tile.image, r0 = 2 * tile.ti, c0 = 2 * tile.tj;
  const bool row1 = r0 + 1 < g.h, col1 = c0 + 1 < g.w;
  const float* base = dy + ((image * g.h + r0) * g.w + c0) * channels;
  float* out = dm + slot * channels;
  for (int64_t k = 0; k < channels; k += kLanes) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256 g00 = _mm256_loadu_ps(base + k);
    const __m256 g01 = col1 ? _mm256_loadu_ps(base + channels + k) : zero;
    const __m256 g10 = row1 ? _mm256_loadu_ps(base + g.w * channels + k) : zero;
    const __m256 g11 = row1 && col1 ? _mm256_loadu_ps(base + (g.w + 1) * channels + k) : zero;
    // Rows: A G, with A = [1 0; 1 1; 1 -1; 0 -1].
    const __m256 t[4][2] = {{g00, g01},
                            {_mm256_add_ps(g00, g10), _mm256_add_ps(g01, g11)},
                            {_mm256_sub_ps(g00, g10), _mm256_sub_ps(g01, g11)},
                            {_mm256_sub_ps(zero, g10), _mm256_sub_ps(zero, g11)}};
    for (int a = 0; a < 4; ++a) {
      float* o = out + (4 * a) * xi_stride + k;
      _mm256_storeu_ps(o, t[a][0]);
      _mm256_storeu_ps(o + xi_stride, _mm256_add_ps(t[a][0], t[a][1]));
      _mm256_storeu_ps(o + 2 * xi_stride, _mm256_sub_ps(t[a][0], t[a][1]));
      _mm256_storeu_ps(o + 3 * xi_stride, _mm256_sub_ps(zero, t[a][1]));
    }
  }
}

// F(4x4, 3x3) (Lavin and Gray's points 0, 1, -1, 2, -2 and infinity):
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
// 36 multiplications per 16 outputs instead of 16 per 4 (F(2x2, 3x3)) or 144 (direct), for more additions and a
// few more bits of rounding.

// r = B^T d for six vectors.
RESLAB_AVX2 inline void input_rows4(const __m256* d, __m256* r) {
  const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
  const __m256 a = _mm256_fnmadd_ps(four, d[2], d[4]);  // d4 - 4 d2
  const __m256 b = _mm256_fnmadd_ps(four, d[1], d[3]);  // d3 - 4 d1
  const __m256 c = _mm256_sub_ps(d[4], d[2]);
  const __m256 e = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1]));
  r[0] = _mm256_fnmadd_ps(five, d[2], _mm256_fmadd_ps(four, d[0], d[4]));
  r[1] = _mm256_add_ps(a, b);
  r[2] = _mm256_sub_ps(a, b);
  r[3] = _mm256_add_ps(c, e);
  r[4] = _mm256_sub_ps(c, e);
  r[5] = _mm256_fnmadd_ps(five, d[3], _mm256_fmadd_ps(four, d[1], d[5]));
}

RESLAB_AVX2 inline void transform_patch4(const float* const* pixel, int64_t channels, float* out, int64_t xi_stride) {
  for (int64_t c = 0; c < channels; c += kLanes) {
    __m256 t[6][6];  // t[a][b] = (B^T d)[a][b]
    for (int b = 0; b < 6; ++b) {
      __m256 d[6], r[6];
      for (int a = 0; a < 6; ++a) d[a] = _mm256_loadu_ps(pixel[6 * a + b] + c);
      input_rows4(d, r);
      for (int a = 0; a < 6; ++a) t[a][b] = r[a];
    }
    for (int a = 0; a < 6; ++a) {
      __m256 r[6];
      input_rows4(t[a], r);
      for (int b = 0; b < 6; ++b) _mm256_storeu_ps(out + (6 * a + b) * xi_stride + c, r[b]);
    }
  }
}

// y = A^T m for six vectors m.
RESLAB_AVX2 inline void output_rows4(const __m256* m, __m256* y) {
  const __m256 s12 = _mm256_add_ps(m[1], m[2]), d12 = _mm256_sub_ps(m[1], m[2]);
  const __m256 s34 = _mm256_add_ps(m[3], m[4]), d34 = _mm256_sub_ps(m[3], m[4]);
  y[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
  y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);
  y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
  y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), m[5]);
}

RESLAB_AVX2 void output_tile4(const float* m, int64_t slot, int64_t xi_stride, int64_t channels, const Geometry& g,
                              const Tile& tile, float* y) {
  const int64_t r0 = 4 * tile.ti, c0 = 4 * tile.tj;
  const int64_t rows = std::min<int64_t>(4, g.h - r0), cols = std::min<int64_t>(4, g.w - c0);
  float* base = y + ((tile.image * g.h + r0) * g.w + c0) * channels;
  const float* in = m + slot * channels;
  for (int64_t k = 0; k < channels; k += kLanes) {
    __m256 s[4][6];  // s[i][b] = (A^T m)[i][b]
    for (int b = 0; b < 6; ++b) {
      __m256 col[6], r[4];
      for (int a = 0; a < 6; ++a) col[a] = _mm256_loadu_ps(in + (6 * a + b) * xi_stride + k);
      output_rows4(col, r);
      for (int i = 0; i < 4; ++i) s[i][b] = r[i];
    }
    for (int i = 0; i < rows; ++i) {
      __m256 r[4];
      output_rows4(s[i], r);
      for (int j = 0; j < cols; ++j) _mm256_storeu_ps(base + (i * g.w + j) * channels + k, r[j]);
    }
  }
}

// r = A g for four vectors g (A = (A^T)^T, 6 x 4).
RESLAB_AVX2 inline void gradient_rows4(const __m256* g, __m256* r) {
  const __m256 s02 = _mm256_add_ps(g[0], g[2]), s13 = _mm256_add_ps(g[1], g[3]);
  const __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), g[2], g[0]);  // g0 + 4 g2
  const __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), g[3], g[1]);  // g1 + 4 g3
  const __m256 two = _mm256_set1_ps(2.0f);
  r[0] = g[0];
  r[1] = _mm256_add_ps(s02, s13);
  r[2] = _mm256_sub_ps(s02, s13);
  r[3] = _mm256_fmadd_ps(two, q, p);
  r[4] = _mm256_fnmadd_ps(two, q, p);
  r[5] = g[3];
}

RESLAB_AVX2 void gradient_tile4(const float* dy, const Geometry& g, int64_t channels, const Tile& tile, float* dm,
                                int64_t slot, int64_t xi_stride) {
  const int64_t r0 = 4 * tile.ti, c0 = 4 * tile.tj;
  const int64_t rows = std::min<int64_t>(4, g.h - r0), cols = std::min<int64_t>(4, g.w - c0);
  const float* base = dy + ((tile.image * g.h + r0) * g.w + c0) * channels;
  float* out = dm + slot * channels;
  for (int64_t k = 0; k < channels; k += kLanes) {
    __m256 t[6][4];  // t[a][j] = (A G)[a][j]
    for (int j = 0; j < 4; ++j) {
      __m256 col[4], r[6];
      for (int i = 0; i < 4; ++i) {
        col[i] = i < rows && j < cols ? _mm256_loadu_ps(base + (i * g.w + j) * channels + k) : _mm256_setzero_ps();
      }
      gradient_rows4(col, r);
      for (int a = 0; a < 6; ++a) t[a][j] = r[a];
    }
    for (int a = 0; a < 6; ++a) {
      __m256 r[6];
      gradient_rows4(t[a], r);
      for (int b = 0; b < 6; ++b) _mm256_storeu_ps(out + (6 * a + b) * xi_stride + k, r[b]);
    }
  }
}

// The two matrix products in the transformed domain, for R rows i of `out` and 8 KV of its columns, with b's and
// out's rows `columns` floats apart and a's `stride` floats apart:
//   kProduct:     out[i][..] = sum over s < steps of a[i][s] b[s][..]   (rows: tiles, steps: input channels;
//                 a holds one tile's input channels per row)
//   kAccumulate:  out[i][..] += sum over s < steps of a[s][i] b[s][..]  (rows: input channels, steps: tiles;
//                 the weights' gradient, summed over blocks)
// The kind is a template argument so that the unit stride stays a constant in the inner loop (as runtime strides,
// both ran 2-10% slower).
enum class Update { kProduct, kAccumulate };

template <Update U, int R, int KV>
RESLAB_AVX2 void update_rows(const float* a, int64_t stride, const float* b, int64_t columns, int64_t steps,
                             float* out) {
  constexpr bool kAccumulate = U == Update::kAccumulate;
  __m256 acc[R][KV];
  RESLAB_UNROLL for (int i = 0; i < R; ++i) {
    RESLAB_UNROLL for (int j = 0; j < KV; ++j) {
      acc[i][j] = kAccumulate ? _mm256_loadu_ps(out + i * columns + j * kLanes) : _mm256_setzero_ps();
    }
  }
  for (int64_t s = 0; s < steps; ++s) {
    __m256 w[KV];
    RESLAB_UNROLL for (int j = 0; j < KV; ++j) w[j] = _mm256_loadu_ps(b + s * columns + j * kLanes);
    RESLAB_UNROLL for (int i = 0; i < R; ++i) {
      const __m256 x = _mm256_broadcast_ss(kAccumulate ? a + s * stride + i : a + i * stride + s);
      RESLAB_UNROLL for (int j = 0; j < KV; ++j) acc[i][j] = _mm256_fmadd_ps(x, w[j], acc[i][j]);
    }
  }
  RESLAB_UNROLL for (int i = 0; i < R; ++i) {
    RESLAB_UNROLL for (int j = 0; j < KV; ++j) _mm256_storeu_ps(out + i * columns + j * kLanes, acc[i][j]);
  }
}

template <Update U, int KV>
RESLAB_AVX2 void update_rows_n(int rows, const float* a, int64_t stride, const float* b, int64_t columns, int64_t steps,
                               float* out) {
  switch (rows) {
    case 6:
      update_rows<U, 6, KV>(a, stride, b, columns, steps, out);
      break;
    case 5:
      update_rows<U, 5, KV>(a, stride, b, columns, steps, out);
      break;
    case 4:
      update_rows<U, 4, KV>(a, stride, b, columns, steps, out);
      break;
    case 3:
      update_rows<U, 3, KV>(a, stride, b, columns, steps, out);
      break;
    case 2:
      update_rows<U, 2, KV>(a, stride, b, columns, steps, out);
      break;
    default:
      update_rows<U, 1, KV>(a, stride, b, columns, steps, out);
      break;
  }
}

// update_rows over all `columns` (a multiple of 8): two registers wide, then one for the rest.
template <Update U>
RESLAB_AVX2 void update_block(int rows, const float* a, int64_t stride, const float* b, int64_t columns, int64_t steps,
                              float* out) {
  int64_t k = 0;
  for (; k + 2 * kLanes <= columns; k += 2 * kLanes) {
    update_rows_n<U, 2>(rows, a, stride, b + k, columns, steps, out + k);
  }
  if (k < columns) update_rows_n<U, 1>(rows, a, stride, b + k, columns, steps, out + k);
}

// y (NHWC, k_count channels) = the convolution of x (NHWC, c_count channels) with transformed weights
// u[xi][c][k].
template <int M>
RESLAB_AVX2 void convolve(const float* x, const Geometry& g, int64_t c_count, const float* u, int64_t k_count,
                          float* y) {
  constexpr int64_t kP = kPositions<M>;
  const int64_t block = block_tiles(kP, c_count, k_count);
  const int64_t blocks = (g.tiles + block - 1) / block;
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> v(kP * block * c_count), m(kP * block * k_count), zeros(c_count, 0.0f);
    std::vector<Tile> tiles(block);
    for (int64_t b = first; b < last; ++b) {
      const int64_t t0 = b * block, count = std::min(block, g.tiles - t0);
      list_tiles(g, t0, count, tiles.data());
      for (int64_t s = 0; s < count; ++s) {
        input_tile<M>(x, g, c_count, tiles[s], v.data(), s, block * c_count, zeros.data());
      }
      for (int64_t xi = 0; xi < kP; ++xi) {
        const float* vx = v.data() + xi * block * c_count;
        const float* ux = u + xi * c_count * k_count;
        float* mx = m.data() + xi * block * k_count;
        for (int64_t s = 0; s < count; s += 6) {
          const int rows = static_cast<int>(std::min<int64_t>(6, count - s));
          update_block<Update::kProduct>(rows, vx + s * c_count, c_count, ux, k_count, c_count, mx + s * k_count);
        }
      }
      for (int64_t s = 0; s < count; ++s) {
        if constexpr (M == 2) {
          output_tile(m.data(), s, block * k_count, k_count, g, tiles[s], y);
        } else {
          output_tile4(m.data(), s, block * k_count, k_count, g, tiles[s], y);
        }
      }
    }
  });
}

// du[xi][c][k] = sum over tiles of V[xi][tile][c] D[xi][tile][k] for input x (c_count channels) and output
// gradient dy (k_count channels).
template <int M>
RESLAB_AVX2 void accumulate_weight_gradient(const float* x, const float* dy, const Geometry& g, int64_t c_count,
                                            int64_t k_count, float* du) {
  constexpr int64_t kP = kPositions<M>;
  const int64_t block = block_tiles(kP, c_count, k_count);
  const int64_t blocks = (g.tiles + block - 1) / block;
  // One accumulator per part, parts of equal share, summed in a fixed order: the result does not depend on which
  // thread ran which part.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks));
  const int64_t size = kP * c_count * k_count;
  std::vector<std::vector<float>> partial(static_cast<size_t>(parts));
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
    std::vector<float> v(kP * block * c_count), d(kP * block * k_count), zeros(c_count, 0.0f);
    std::vector<Tile> tiles(block);
    for (int64_t p = first; p < last; ++p) {
      std::vector<float>& acc = partial[static_cast<size_t>(p)];
      acc.assign(static_cast<size_t>(size), 0.0f);
      for (int64_t b = p * blocks / parts; b < (p + 1) * blocks / parts; ++b) {
        const int64_t t0 = b * block, count = std::min(block, g.tiles - t0);
        list_tiles(g, t0, count, tiles.data());
        for (int64_t s = 0; s < count; ++s) {
          input_tile<M>(x, g, c_count, tiles[s], v.data(), s, block * c_count, zeros.data());
          if constexpr (M == 2) {
            gradient_tile(dy, g, k_count, tiles[s], d.data(), s, block * k_count);
          } else {
            gradient_tile4(dy, g, k_count, tiles[s], d.data(), s, block * k_count);
          }
        }
        for (int64_t xi = 0; xi < kP; ++xi) {
          const float* vx = v.data() + xi * block * c_count;
          const float* dx = d.data() + xi * block * k_count;
          float* ax = acc.data() + xi * c_count * k_count;
          for (int64_t c = 0; c < c_count; c += 6) {
            const int rows = static_cast<int>(std::min<int64_t>(6, c_count - c));
            update_block<Update::kAccumulate>(rows, vx + c, c_count, dx, k_count, count, ax + c * k_count);
          }
        }
      }
    }
  });
  std::fill(du, du + size, 0.0f);
  for (const auto& acc : partial) {
    for (int64_t i = 0; i < size; ++i) du[i] += acc[static_cast<size_t>(i)];
  }
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

#else
bool cpu_has_avx2() { return false; }
#endif

// G of F(2x2, 3x3) and of F(4x4, 3x3), a row per position along one side.
constexpr float kG2[4][3] = {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}};
constexpr float kG4[6][3] = {{1.0f / 4, 0, 0},
                             {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                             {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                             {1.0f / 24, 1.0f / 12, 1.0f / 6},
                             {1.0f / 24, -1.0f / 12, 1.0f / 6},
                             {0, 0, 1}};

template <int M>
float g_entry(int a, int i) {
  if constexpr (M == 2) {
    return kG2[a][i];
  } else {
    return kG4[a][i];
  }
}

// u[xi][in][out] = G g G^T for every filter g, with in/out the channels of the convolution being computed: the
// forward one (g = w[k][c], in = c) or the input-gradient one (g = w[k][c] rotated by 180 degrees, in = k).
template <int M>
void transform_weight(const float* w, int64_t k_count, int64_t c_count, bool for_input_gradient, float* u) {
  constexpr int kSide = M + 2;
  const int64_t in_count = for_input_gradient ? k_count : c_count;
  const int64_t out_count = for_input_gradient ? c_count : k_count;
  for (int64_t k = 0; k < k_count; ++k) {
    for (int64_t c = 0; c < c_count; ++c) {
      const float* f = w + (k * c_count + c) * 9;
      float g[3][3];
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) g[i][j] = for_input_gradient ? f[(2 - i) * 3 + (2 - j)] : f[i * 3 + j];
      }
      float gg[kSide][3];  // G g
      for (int a = 0; a < kSide; ++a) {
        for (int j = 0; j < 3; ++j) {
          gg[a][j] = g_entry<M>(a, 0) * g[0][j] + g_entry<M>(a, 1) * g[1][j] + g_entry<M>(a, 2) * g[2][j];
        }
      }
      const int64_t in = for_input_gradient ? k : c, out = for_input_gradient ? c : k;
      for (int a = 0; a < kSide; ++a) {
        for (int b = 0; b < kSide; ++b) {
          u[((kSide * a + b) * in_count + in) * out_count + out] =
              gg[a][0] * g_entry<M>(b, 0) + gg[a][1] * g_entry<M>(b, 1) + gg[a][2] * g_entry<M>(b, 2);
        }
      }
    }
  }
}

// w[k][c] = G^T du[xi][c][k] G: the weights' gradient from its transformed form.
template <int M>
void untransform_weight_gradient(const float* du, int64_t k_count, int64_t c_count, float* w) {
  constexpr int kSide = M + 2;
  for (int64_t k = 0; k < k_count; ++k) {
    for (int64_t c = 0; c < c_count; ++c) {
      float y[3][kSide] = {};  // G^T du
      for (int a = 0; a < kSide; ++a) {
        for (int b = 0; b < kSide; ++b) {
          const float x = du[((kSide * a + b) * c_count + c) * k_count + k];
          for (int i = 0; i < 3; ++i) y[i][b] += g_entry<M>(a, i) * x;
        }
      }
      float* f = w + (k * c_count + c) * 9;
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
          float sum = 0.0f;
          for (int b = 0; b < kSide; ++b) sum += y[i][b] * g_entry<M>(b, j);
          f[i * 3 + j] = sum;
        }
      }
    }
  }
}

std::atomic<int> tile_choice{0};

// The output tile's side: 2 unless set_winograd_tile asked for 4. F(4x4, 3x3) trained resnet56 about 9% faster,
// but rounds more (about 4e-6 of a layer's largest output against 2e-7 for F(2x2, 3x3) and 5e-7 for oneDNN):
// enough to flip ReLUs whose inputs lie that close to zero, which moved a resnet20's whole gradient by 0.1-0.25%
// in two of four batches (F(2x2, 3x3) and oneDNN: 2.5e-6 in all four); docs/performance.md.
int tile_side() {
  const int asked = tile_choice.load();
  return asked != 0 ? asked : 2;
}

// The convolution of x (N, C, H, W; channels-last) with `weight` (K, C, 3, 3), or, for the input gradient, of
// the output gradient (N, K, H, W) with the flipped, transposed weight.
torch::Tensor convolve_tensor(const torch::Tensor& x, const torch::Tensor& weight, bool for_input_gradient) {
  const torch::Tensor in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor w = weight.contiguous();
  const int64_t k_count = for_input_gradient ? w.size(1) : w.size(0);
  torch::Tensor out = torch::empty({in.size(0), k_count, in.size(2), in.size(3)},
                                   in.options().memory_format(torch::MemoryFormat::ChannelsLast));
#if RESLAB_WINOGRAD_X86
  const auto run = [&](auto tile) {
    constexpr int kM = decltype(tile)::value;
    torch::Tensor u = torch::empty({kPositions<kM> * w.size(0) * w.size(1)}, w.options());
    transform_weight<kM>(w.data_ptr<float>(), w.size(0), w.size(1), for_input_gradient, u.data_ptr<float>());
    convolve<kM>(in.data_ptr<float>(), geometry(in.size(0), in.size(2), in.size(3), kM), in.size(1),
                 u.data_ptr<float>(), k_count, out.data_ptr<float>());
  };
  tile_side() == 2 ? run(std::integral_constant<int, 2>()) : run(std::integral_constant<int, 4>());
#endif
  return out;
}

torch::Tensor input_gradient(const torch::Tensor& grad, const torch::Tensor& weight) {
  return convolve_tensor(grad, weight, true);
}

torch::Tensor weight_gradient(const torch::Tensor& grad, const torch::Tensor& input, const torch::Tensor& weight) {
  const torch::Tensor in = input.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor dy = grad.contiguous(torch::MemoryFormat::ChannelsLast);
  const int64_t k_count = weight.size(0), c_count = weight.size(1);
  torch::Tensor grad_weight = torch::empty({k_count, c_count, 3, 3}, weight.options());
#if RESLAB_WINOGRAD_X86
  const auto run = [&](auto tile) {
    constexpr int kM = decltype(tile)::value;
    torch::Tensor du = torch::empty({kPositions<kM> * c_count * k_count}, weight.options());
    accumulate_weight_gradient<kM>(in.data_ptr<float>(), dy.data_ptr<float>(),
                                   geometry(in.size(0), in.size(2), in.size(3), kM), c_count, k_count,
                                   du.data_ptr<float>());
    untransform_weight_gradient<kM>(du.data_ptr<float>(), k_count, c_count, grad_weight.data_ptr<float>());
  };
  tile_side() == 2 ? run(std::integral_constant<int, 2>()) : run(std::integral_constant<int, 4>());
#endif
  return grad_weight.contiguous(weight.suggest_memory_format());
}

class WinogradConv : public torch::autograd::Function<WinogradConv> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight) {
    ctx->save_for_backward({input, weight});
    return convolve_tensor(input, weight, false);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor grad = grads[0].contiguous(torch::MemoryFormat::ChannelsLast);
    return {ctx->needs_input_grad(0) ? input_gradient(grad, saved[1]) : torch::Tensor(),
            ctx->needs_input_grad(1) ? weight_gradient(grad, saved[0], saved[1]) : torch::Tensor()};
  }
};

}  // namespace

bool winograd_applies(const torch::Tensor& input, const torch::Tensor& weight) {
  return winograd_on.load() && cpu_has_avx2() && input.device().is_cpu() && weight.device().is_cpu() &&
         input.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat && input.dim() == 4 &&
         input.is_contiguous(torch::MemoryFormat::ChannelsLast) && weight.dim() == 4 && weight.size(2) == 3 &&
         weight.size(3) == 3 && weight.size(1) == input.size(1) && input.size(1) % 8 == 0 && weight.size(0) % 8 == 0 &&
         input.size(1) <= kMaxChannels && weight.size(0) <= kMaxChannels && input.numel() > 0;
}

torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight) {
  TORCH_CHECK(winograd_applies(input, weight), "winograd_conv3x3: input ", input.sizes(), " and weight ",
              weight.sizes(), " are not a case it takes (see winograd_applies)");
  return WinogradConv::apply(input, weight);
}

std::pair<torch::Tensor, torch::Tensor> winograd_conv3x3_backward(const torch::Tensor& grad_output,
                                                                  const torch::Tensor& input,
                                                                  const torch::Tensor& weight) {
  TORCH_CHECK(winograd_applies(input, weight), "winograd_conv3x3_backward: input ", input.sizes(), " and weight ",
              weight.sizes(), " are not a case it takes (see winograd_applies)");
  const torch::NoGradGuard no_grad;
  const torch::Tensor grad = grad_output.contiguous(torch::MemoryFormat::ChannelsLast);
  return {input_gradient(grad, weight), weight_gradient(grad, input, weight)};
}

bool winograd_takes(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  const auto& o = conv.options;
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  const auto all = [](const torch::ExpandingArray<2>& a, int64_t v) { return (*a)[0] == v && (*a)[1] == v; };
  return padding != nullptr && all(*padding, 1) && all(o.kernel_size(), 3) && all(o.stride(), 1) &&
         all(o.dilation(), 1) && o.groups() == 1 && !o.bias() &&
         c10::get_if<torch::enumtype::kZeros>(&o.padding_mode()) != nullptr && winograd_applies(x, conv.weight);
}

torch::Tensor conv_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  return winograd_takes(conv, x) ? WinogradConv::apply(x, conv.weight) : conv.forward(x);
}

std::string choose_convolutions() {
  const char* choice = std::getenv("RESLAB_CONV");
  const std::string asked = choice == nullptr ? "" : choice;
  if (asked.empty() || asked == "winograd") {
    set_winograd_tile(0);
  } else if (asked == "winograd2x2" || asked == "winograd4x4") {
    set_winograd_tile(asked == "winograd2x2" ? 2 : 4);
  } else if (asked != "direct") {
    throw std::invalid_argument("RESLAB_CONV: unknown value '" + asked +
                                "' (expected winograd, the default; winograd2x2 or winograd4x4 to fix the tile; or "
                                "direct: LibTorch's own convolutions)");
  }
  set_winograd(asked != "direct");
  return convolution_policy();
}

std::string convolution_policy() {
  if (!winograd_on.load()) return "direct";
  if (!cpu_has_avx2()) return "direct (no AVX2)";
  const int tile = tile_choice.load();
  return tile == 0 ? "winograd" : tile == 2 ? "winograd2x2" : "winograd4x4";
}

std::string convolution_policy(const torch::Device& device) {
  return device.is_cpu() ? convolution_policy() : "direct";
}

void set_winograd(bool enabled) { winograd_on.store(enabled); }

void set_winograd_tile(int side) {
  if (side != 0 && side != 2 && side != 4) {
    throw std::invalid_argument("set_winograd_tile: " + std::to_string(side) + " (expected 0: automatic, 2 or 4)");
  }
  tile_choice.store(side);
}
bool winograd_enabled() { return winograd_on.load(); }

}  // namespace reslab
