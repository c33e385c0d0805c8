#include "models/winograd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RESLAB_WINOGRAD_X86 1
#define RESLAB_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace reslab {

namespace {

std::atomic<bool> winograd_on{true};

// Above this many channels in or out, the transformed weights (16 x C x K floats; 256 KiB at 64) would not stay in
// the second-level cache while every block of tiles reads them.
constexpr int64_t kMaxChannels = 64;

#if RESLAB_WINOGRAD_X86

// Notation (Lavin and Gray): a 4x4 input patch d gives V = B^T d B, a 3x3 filter g gives U = G g G^T, and the
// 2x2 output tile is A^T (sum over input channels of U . V) A, with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// The 16 positions xi = 4a + b of the transformed domain are 16 independent matrix products over channels.
// Layouts: activations NHWC; V[xi][tile][c] and M[xi][tile][k] per block of tiles; U[xi][c][k].

constexpr int64_t kLanes = 8;  // floats per AVX2 register

struct Geometry {
  int64_t n, h, w;    // batch and map size (input and output: stride 1, padding 1)
  int64_t th, tw;     // tiles per column and row
  int64_t tiles;      // n * th * tw
  void locate(int64_t t, int64_t& image, int64_t& ti, int64_t& tj) const {
    image = t / (th * tw);
    const int64_t r = t % (th * tw);
    ti = r / tw;
    tj = r % tw;
  }
};

Geometry geometry(int64_t n, int64_t h, int64_t w) {
  Geometry g{n, h, w, (h + 1) / 2, (w + 1) / 2, 0};
  g.tiles = n * g.th * g.tw;
  return g;
}

// Tiles per block: the block's transformed input and output (16 x tiles x (C + K) floats) stay near 128 KiB, in
// the 512 KiB second-level cache beside the transformed weights.
int64_t block_tiles(int64_t c, int64_t k) { return std::clamp<int64_t>((2048 / (c + k)) / 6 * 6, 6, 120); }

// V[xi][slot][c..] = B^T d B for the 4x4 patch d whose pixel (a, b) is at p + a * row + b * channels.
RESLAB_AVX2 inline void transform_patch(const float* p, int64_t row, int64_t channels, float* out,
                                        int64_t xi_stride) {
  for (int64_t c = 0; c < channels; c += kLanes) {
    __m256 d[4][4];
    for (int a = 0; a < 4; ++a) {
      for (int b = 0; b < 4; ++b) d[a][b] = _mm256_loadu_ps(p + a * row + b * channels + c);
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

// The transformed input patch of tile (image, ti, tj) into V[xi][slot]; pixels outside the map are 0 (copied
// into `border`, 16 x channels floats, first).
RESLAB_AVX2 void input_tile(const float* x, const Geometry& g, int64_t channels, int64_t image, int64_t ti,
                            int64_t tj, float* v, int64_t slot, int64_t xi_stride, float* border) {
  const int64_t r0 = 2 * ti - 1, c0 = 2 * tj - 1;
  const float* base = x + image * g.h * g.w * channels;
  if (r0 >= 0 && c0 >= 0 && r0 + 3 < g.h && c0 + 3 < g.w) {
    transform_patch(base + (r0 * g.w + c0) * channels, g.w * channels, channels, v + slot * channels, xi_stride);
    return;
  }
  for (int64_t a = 0; a < 4; ++a) {
    for (int64_t b = 0; b < 4; ++b) {
      float* to = border + (4 * a + b) * channels;
      const int64_t r = r0 + a, c = c0 + b;
      if (r >= 0 && r < g.h && c >= 0 && c < g.w) {
        std::copy(base + (r * g.w + c) * channels, base + (r * g.w + c + 1) * channels, to);
      } else {
        std::fill(to, to + channels, 0.0f);
      }
    }
  }
  transform_patch(border, 4 * channels, channels, v + slot * channels, xi_stride);
}

// The 2x2 output tile (image, ti, tj) = A^T M A, written where it lies inside the map.
RESLAB_AVX2 void output_tile(const float* m, int64_t slot, int64_t xi_stride, int64_t channels, const Geometry& g,
                             int64_t image, int64_t ti, int64_t tj, float* y) {
  const int64_t r0 = 2 * ti, c0 = 2 * tj;
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
RESLAB_AVX2 void gradient_tile(const float* dy, const Geometry& g, int64_t channels, int64_t image, int64_t ti,
                               int64_t tj, float* dm, int64_t slot, int64_t xi_stride) {
  const int64_t r0 = 2 * ti, c0 = 2 * tj;
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

// M[r][k0..k0 + 8 KV) = sum over c of V[r][c] U[c][k0..] for R rows (tiles) of one position xi.
template <int R, int KV>
RESLAB_AVX2 void multiply_rows(const float* v, int64_t c_count, const float* u, int64_t k_count, float* m) {
  __m256 acc[R][KV];
  _Pragma("GCC unroll 8") for (int i = 0; i < R; ++i) {
    _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t c = 0; c < c_count; ++c) {
    __m256 w[KV];
    _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) w[j] = _mm256_loadu_ps(u + c * k_count + j * kLanes);
    _Pragma("GCC unroll 8") for (int i = 0; i < R; ++i) {
      const __m256 b = _mm256_broadcast_ss(v + i * c_count + c);
      _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) acc[i][j] = _mm256_fmadd_ps(b, w[j], acc[i][j]);
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < R; ++i) {
    _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) _mm256_storeu_ps(m + i * k_count + j * kLanes, acc[i][j]);
  }
}

// dU[c0 + i][k0..k0 + 8 KV) += sum over the block's tiles t of V[t][c0 + i] D[t][k0..] for R channels i.
template <int R, int KV>
RESLAB_AVX2 void accumulate_rows(const float* v, int64_t c_count, const float* d, int64_t k_count, int64_t tiles,
                                 float* du) {
  __m256 acc[R][KV];
  _Pragma("GCC unroll 8") for (int i = 0; i < R; ++i) {
    _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) acc[i][j] = _mm256_loadu_ps(du + i * k_count + j * kLanes);
  }
  for (int64_t t = 0; t < tiles; ++t) {
    __m256 w[KV];
    _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) w[j] = _mm256_loadu_ps(d + t * k_count + j * kLanes);
    _Pragma("GCC unroll 8") for (int i = 0; i < R; ++i) {
      const __m256 b = _mm256_broadcast_ss(v + t * c_count + i);
      _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) acc[i][j] = _mm256_fmadd_ps(b, w[j], acc[i][j]);
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < R; ++i) {
    _Pragma("GCC unroll 8") for (int j = 0; j < KV; ++j) _mm256_storeu_ps(du + i * k_count + j * kLanes, acc[i][j]);
  }
}

template <int KV>
RESLAB_AVX2 void multiply_rows_n(int rows, const float* v, int64_t c, const float* u, int64_t k, float* m) {
  switch (rows) {
    case 6: multiply_rows<6, KV>(v, c, u, k, m); break;
    case 5: multiply_rows<5, KV>(v, c, u, k, m); break;
    case 4: multiply_rows<4, KV>(v, c, u, k, m); break;
    case 3: multiply_rows<3, KV>(v, c, u, k, m); break;
    case 2: multiply_rows<2, KV>(v, c, u, k, m); break;
    default: multiply_rows<1, KV>(v, c, u, k, m); break;
  }
}

template <int KV>
RESLAB_AVX2 void accumulate_rows_n(int rows, const float* v, int64_t c, const float* d, int64_t k, int64_t tiles,
                                   float* du) {
  switch (rows) {
    case 6: accumulate_rows<6, KV>(v, c, d, k, tiles, du); break;
    case 5: accumulate_rows<5, KV>(v, c, d, k, tiles, du); break;
    case 4: accumulate_rows<4, KV>(v, c, d, k, tiles, du); break;
    case 3: accumulate_rows<3, KV>(v, c, d, k, tiles, du); break;
    case 2: accumulate_rows<2, KV>(v, c, d, k, tiles, du); break;
    default: accumulate_rows<1, KV>(v, c, d, k, tiles, du); break;
  }
}

// y (NHWC, k_count channels) = the convolution of x (NHWC, c_count channels) with transformed weights
// u[xi][c][k].
RESLAB_AVX2 void convolve(const float* x, const Geometry& g, int64_t c_count, const float* u, int64_t k_count,
                          float* y) {
  const int64_t block = block_tiles(c_count, k_count);
  const int64_t blocks = (g.tiles + block - 1) / block;
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> v(16 * block * c_count), m(16 * block * k_count), border(16 * c_count);
    for (int64_t b = first; b < last; ++b) {
      const int64_t t0 = b * block, count = std::min(block, g.tiles - t0);
      for (int64_t s = 0; s < count; ++s) {
        int64_t image, ti, tj;
        g.locate(t0 + s, image, ti, tj);
        input_tile(x, g, c_count, image, ti, tj, v.data(), s, block * c_count, border.data());
      }
      for (int64_t xi = 0; xi < 16; ++xi) {
        const float* vx = v.data() + xi * block * c_count;
        const float* ux = u + xi * c_count * k_count;
        float* mx = m.data() + xi * block * k_count;
        for (int64_t s = 0; s < count; s += 6) {
          const int rows = static_cast<int>(std::min<int64_t>(6, count - s));
          int64_t k = 0;
          for (; k + 2 * kLanes <= k_count; k += 2 * kLanes) {
            multiply_rows_n<2>(rows, vx + s * c_count, c_count, ux + k, k_count, mx + s * k_count + k);
          }
          if (k < k_count) multiply_rows_n<1>(rows, vx + s * c_count, c_count, ux + k, k_count, mx + s * k_count + k);
        }
      }
      for (int64_t s = 0; s < count; ++s) {
        int64_t image, ti, tj;
        g.locate(t0 + s, image, ti, tj);
        output_tile(m.data(), s, block * k_count, k_count, g, image, ti, tj, y);
      }
    }
  });
}

// du[xi][c][k] = sum over tiles of V[xi][tile][c] D[xi][tile][k] for input x (c_count channels) and output
// gradient dy (k_count channels).
RESLAB_AVX2 void accumulate_weight_gradient(const float* x, const float* dy, const Geometry& g, int64_t c_count,
                                            int64_t k_count, float* du) {
  const int64_t block = block_tiles(c_count, k_count);
  const int64_t blocks = (g.tiles + block - 1) / block;
  // One accumulator per part, parts of equal share, summed in a fixed order: the result does not depend on which
  // thread ran which part.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks));
  const int64_t size = 16 * c_count * k_count;
  std::vector<std::vector<float>> partial(static_cast<size_t>(parts));
  at::parallel_for(0, parts, 1, [&](int64_t first, int64_t last) {
    std::vector<float> v(16 * block * c_count), d(16 * block * k_count), border(16 * c_count);
    for (int64_t p = first; p < last; ++p) {
      std::vector<float>& acc = partial[static_cast<size_t>(p)];
      acc.assign(static_cast<size_t>(size), 0.0f);
      for (int64_t b = p * blocks / parts; b < (p + 1) * blocks / parts; ++b) {
        const int64_t t0 = b * block, count = std::min(block, g.tiles - t0);
        for (int64_t s = 0; s < count; ++s) {
          int64_t image, ti, tj;
          g.locate(t0 + s, image, ti, tj);
          input_tile(x, g, c_count, image, ti, tj, v.data(), s, block * c_count, border.data());
          gradient_tile(dy, g, k_count, image, ti, tj, d.data(), s, block * k_count);
        }
        for (int64_t xi = 0; xi < 16; ++xi) {
          const float* vx = v.data() + xi * block * c_count;
          const float* dx = d.data() + xi * block * k_count;
          float* ax = acc.data() + xi * c_count * k_count;
          for (int64_t c = 0; c < c_count; c += 6) {
            const int rows = static_cast<int>(std::min<int64_t>(6, c_count - c));
            int64_t k = 0;
            for (; k + 2 * kLanes <= k_count; k += 2 * kLanes) {
              accumulate_rows_n<2>(rows, vx + c, c_count, dx + k, k_count, count, ax + c * k_count + k);
            }
            if (k < k_count) accumulate_rows_n<1>(rows, vx + c, c_count, dx + k, k_count, count, ax + c * k_count + k);
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

// u[xi][in][out] = G g G^T for every filter g, with in/out the channels of the convolution being computed: the
// forward one (g = w[k][c], in = c) or the input-gradient one (g = w[k][c] rotated by 180 degrees, in = k).
void transform_weight(const float* w, int64_t k_count, int64_t c_count, bool for_input_gradient, float* u) {
  const int64_t in_count = for_input_gradient ? k_count : c_count;
  const int64_t out_count = for_input_gradient ? c_count : k_count;
  for (int64_t k = 0; k < k_count; ++k) {
    for (int64_t c = 0; c < c_count; ++c) {
      const float* f = w + (k * c_count + c) * 9;
      float g[3][3];
      for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) g[a][b] = for_input_gradient ? f[(2 - a) * 3 + (2 - b)] : f[a * 3 + b];
      }
      float gg[4][3];  // G g
      for (int b = 0; b < 3; ++b) {
        gg[0][b] = g[0][b];
        gg[1][b] = 0.5f * (g[0][b] + g[1][b] + g[2][b]);
        gg[2][b] = 0.5f * (g[0][b] - g[1][b] + g[2][b]);
        gg[3][b] = g[2][b];
      }
      const int64_t in = for_input_gradient ? k : c, out = for_input_gradient ? c : k;
      for (int a = 0; a < 4; ++a) {
        const float row[4] = {gg[a][0], 0.5f * (gg[a][0] + gg[a][1] + gg[a][2]),
                              0.5f * (gg[a][0] - gg[a][1] + gg[a][2]), gg[a][2]};
        for (int b = 0; b < 4; ++b) u[((4 * a + b) * in_count + in) * out_count + out] = row[b];
      }
    }
  }
}

// w[k][c] = G^T du[xi][c][k] G: the weights' gradient from its transformed form.
void untransform_weight_gradient(const float* du, int64_t k_count, int64_t c_count, float* w) {
  for (int64_t k = 0; k < k_count; ++k) {
    for (int64_t c = 0; c < c_count; ++c) {
      float x[4][4];
      for (int a = 0; a < 4; ++a) {
        for (int b = 0; b < 4; ++b) x[a][b] = du[((4 * a + b) * c_count + c) * k_count + k];
      }
      float y[3][4];  // G^T x, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]
      for (int b = 0; b < 4; ++b) {
        y[0][b] = x[0][b] + 0.5f * (x[1][b] + x[2][b]);
        y[1][b] = 0.5f * (x[1][b] - x[2][b]);
        y[2][b] = 0.5f * (x[1][b] + x[2][b]) + x[3][b];
      }
      float* f = w + (k * c_count + c) * 9;
      for (int a = 0; a < 3; ++a) {
        f[a * 3 + 0] = y[a][0] + 0.5f * (y[a][1] + y[a][2]);
        f[a * 3 + 1] = 0.5f * (y[a][1] - y[a][2]);
        f[a * 3 + 2] = 0.5f * (y[a][1] + y[a][2]) + y[a][3];
      }
    }
  }
}

// The convolution of x (N, C, H, W; channels-last) with transformed weights u (16 x C x K floats).
torch::Tensor convolve_tensor(const torch::Tensor& x, const torch::Tensor& u, int64_t k_count) {
  const torch::Tensor in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  torch::Tensor out = torch::empty({in.size(0), k_count, in.size(2), in.size(3)},
                                   in.options().memory_format(torch::MemoryFormat::ChannelsLast));
#if RESLAB_WINOGRAD_X86
  convolve(in.data_ptr<float>(), geometry(in.size(0), in.size(2), in.size(3)), in.size(1), u.data_ptr<float>(), k_count,
           out.data_ptr<float>());
#endif
  return out;
}

torch::Tensor transformed(const torch::Tensor& weight, bool for_input_gradient) {
  const torch::Tensor w = weight.contiguous();
  torch::Tensor u = torch::empty({16 * w.size(0) * w.size(1)}, w.options());
  transform_weight(w.data_ptr<float>(), w.size(0), w.size(1), for_input_gradient, u.data_ptr<float>());
  return u;
}

torch::Tensor input_gradient(const torch::Tensor& grad, const torch::Tensor& weight) {
  return convolve_tensor(grad, transformed(weight, true), weight.size(1));
}

torch::Tensor weight_gradient(const torch::Tensor& grad, const torch::Tensor& input, const torch::Tensor& weight) {
  const torch::Tensor in = input.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor dy = grad.contiguous(torch::MemoryFormat::ChannelsLast);
  const int64_t k_count = weight.size(0), c_count = weight.size(1);
  torch::Tensor du = torch::empty({16 * c_count * k_count}, weight.options());
  torch::Tensor grad_weight = torch::empty({k_count, c_count, 3, 3}, weight.options());
#if RESLAB_WINOGRAD_X86
  accumulate_weight_gradient(in.data_ptr<float>(), dy.data_ptr<float>(), geometry(in.size(0), in.size(2), in.size(3)),
                             c_count, k_count, du.data_ptr<float>());
#endif
  untransform_weight_gradient(du.data_ptr<float>(), k_count, c_count, grad_weight.data_ptr<float>());
  return grad_weight.contiguous(weight.suggest_memory_format());
}

class WinogradConv : public torch::autograd::Function<WinogradConv> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight) {
    ctx->save_for_backward({input, weight});
    return convolve_tensor(input, transformed(weight, false), weight.size(0));
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
         weight.size(3) == 3 && weight.size(1) == input.size(1) && input.size(1) % 8 == 0 &&
         weight.size(0) % 8 == 0 && input.size(1) <= kMaxChannels && weight.size(0) <= kMaxChannels &&
         input.numel() > 0;
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
  if (!asked.empty() && asked != "winograd" && asked != "direct") {
    throw std::invalid_argument("RESLAB_CONV: unknown value '" + asked +
                                "' (expected winograd, the default, or direct: LibTorch's own convolutions)");
  }
  set_winograd(asked != "direct");
  return convolution_policy();
}

std::string convolution_policy() {
  if (!winograd_on.load()) return "direct";
  return cpu_has_avx2() ? "winograd" : "direct (no AVX2)";
}

std::string convolution_policy(const torch::Device& device) {
  return device.is_cpu() ? convolution_policy() : "direct";
}

void set_winograd(bool enabled) { winograd_on.store(enabled); }
bool winograd_enabled() { return winograd_on.load(); }

}  // namespace reslab
