#include "ops/winograd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "ops/torch_compat.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RESLAB_WINOGRAD_X86 1
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

// Above this many channels in or out, the transformed weights (positions x C x K floats: 256 KiB for F(2x2, 3x3)
// at 64, 576 KiB for F(4x4, 3x3)) outgrow the second-level cache that every block of tiles reads them from;
// wider layers were not measured and go to oneDNN.
constexpr int64_t kMaxChannels = 64;

// Floats per register at `isa`: the channel multiple its kernels take.
int64_t lanes(ConvIsa isa) { return isa == ConvIsa::kAvx512 ? 16 : 8; }

#if RESLAB_WINOGRAD_X86
// Notation (Lavin and Gray): F(m x m, 3x3) turns an (m + 2) x (m + 2) input patch d into V = B^T d B and a 3x3
// filter g into U = G g G^T, and gives the m x m output tile as A^T (sum over input channels of U . V) A. The
// (m + 2)^2 positions xi of the transformed domain are independent matrix products over channels. For F(2x2, 3x3)
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1];
// F(4x4, 3x3)'s are at its tile functions below. Layouts: activations NHWC; V[xi][tile][c] and M[xi][tile][k]
// per block of tiles; U[xi][c][k].

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

// The vector loops, once per width (winograd_kernels.inc).
namespace avx2 {
#define RW_LANES 8
#define RW_VEC __m256
#define RW_TARGET __attribute__((target("avx2,fma")))
#define RW_LOAD _mm256_loadu_ps
#define RW_STORE _mm256_storeu_ps
#define RW_ADD _mm256_add_ps
#define RW_SUB _mm256_sub_ps
#define RW_MUL _mm256_mul_ps
#define RW_FMADD _mm256_fmadd_ps
#define RW_FNMADD _mm256_fnmadd_ps
#define RW_SET1 _mm256_set1_ps
#define RW_ZERO _mm256_setzero_ps
#define RW_BCAST _mm256_broadcast_ss
#include "ops/winograd_kernels.inc"
}  // namespace avx2

namespace avx512 {
#define RW_LANES 16
#define RW_VEC __m512
#define RW_TARGET __attribute__((target("avx512f,avx2,fma")))
#define RW_LOAD _mm512_loadu_ps
#define RW_STORE _mm512_storeu_ps
#define RW_ADD _mm512_add_ps
#define RW_SUB _mm512_sub_ps
#define RW_MUL _mm512_mul_ps
#define RW_FMADD _mm512_fmadd_ps
#define RW_FNMADD _mm512_fnmadd_ps
#define RW_SET1 _mm512_set1_ps
#define RW_ZERO _mm512_setzero_ps
#define RW_BCAST(p) _mm512_set1_ps(*(p))
#include "ops/winograd_kernels.inc"
}  // namespace avx512

bool cpu_has(ConvIsa isa) {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
  return isa == ConvIsa::kAvx512 ? avx512 : avx2;
}

template <int M>
void convolve(ConvIsa isa, const float* x, const Geometry& g, int64_t c_count, const float* u, int64_t k_count,
              float* y) {
  isa == ConvIsa::kAvx512 ? avx512::convolve<M>(x, g, c_count, u, k_count, y)
                          : avx2::convolve<M>(x, g, c_count, u, k_count, y);
}

template <int M>
void accumulate_weight_gradient(ConvIsa isa, const float* x, const float* dy, const Geometry& g, int64_t c_count,
                                int64_t k_count, float* du) {
  isa == ConvIsa::kAvx512 ? avx512::accumulate_weight_gradient<M>(x, dy, g, c_count, k_count, du)
                          : avx2::accumulate_weight_gradient<M>(x, dy, g, c_count, k_count, du);
}

#else
bool cpu_has(ConvIsa) { return false; }
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

// Which pass of a convolution a Winograd kernel computes: the mixed algorithm's tile depends on it.
enum class Pass { kForward, kGradient };

// Calls f with std::integral_constant<int, 2> or <int, 4>: the output tile's side of a Winograd algorithm in
// `pass` (the mixed one: 2 forward, 4 for the gradients).
template <typename F>
void with_tile(ConvAlgorithm algorithm, Pass pass, F&& f) {
  TORCH_CHECK(algorithm != ConvAlgorithm::kDirect, "winograd: the direct convolution is not a Winograd kernel");
  const bool four = algorithm == ConvAlgorithm::kWinograd4x4 ||
                    (algorithm == ConvAlgorithm::kWinogradMixed && pass == Pass::kGradient);
  four ? f(std::integral_constant<int, 4>()) : f(std::integral_constant<int, 2>());
}

// The convolution of x (N, C, H, W; channels-last) with `weight` (K, C, 3, 3), or, for the input gradient, of
// the output gradient (N, K, H, W) with the flipped, transposed weight.
torch::Tensor convolve_tensor(const torch::Tensor& x, const torch::Tensor& weight, bool for_input_gradient,
                              const ConvKernel& kernel) {
  const torch::Tensor in = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor w = weight.contiguous();
  const int64_t k_count = for_input_gradient ? w.size(1) : w.size(0);
  torch::Tensor out = torch::empty({in.size(0), k_count, in.size(2), in.size(3)},
                                   in.options().memory_format(torch::MemoryFormat::ChannelsLast));
#if RESLAB_WINOGRAD_X86
  with_tile(kernel.algorithm, for_input_gradient ? Pass::kGradient : Pass::kForward, [&](auto tile) {
    constexpr int kM = decltype(tile)::value;
    torch::Tensor u = torch::empty({kPositions<kM> * w.size(0) * w.size(1)}, w.options());
    transform_weight<kM>(w.data_ptr<float>(), w.size(0), w.size(1), for_input_gradient, u.data_ptr<float>());
    convolve<kM>(kernel.isa, in.data_ptr<float>(), geometry(in.size(0), in.size(2), in.size(3), kM), in.size(1),
                 u.data_ptr<float>(), k_count, out.data_ptr<float>());
  });
#endif
  return out;
}

torch::Tensor input_gradient(const torch::Tensor& grad, const torch::Tensor& weight, const ConvKernel& kernel) {
  return convolve_tensor(grad, weight, true, kernel);
}

torch::Tensor weight_gradient(const torch::Tensor& grad, const torch::Tensor& input, const torch::Tensor& weight,
                              const ConvKernel& kernel) {
  const torch::Tensor in = input.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor dy = grad.contiguous(torch::MemoryFormat::ChannelsLast);
  const int64_t k_count = weight.size(0), c_count = weight.size(1);
  torch::Tensor grad_weight = torch::empty({k_count, c_count, 3, 3}, weight.options());
#if RESLAB_WINOGRAD_X86
  with_tile(kernel.algorithm, Pass::kGradient, [&](auto tile) {
    constexpr int kM = decltype(tile)::value;
    torch::Tensor du = torch::empty({kPositions<kM> * c_count * k_count}, weight.options());
    accumulate_weight_gradient<kM>(kernel.isa, in.data_ptr<float>(), dy.data_ptr<float>(),
                                   geometry(in.size(0), in.size(2), in.size(3), kM), c_count, k_count,
                                   du.data_ptr<float>());
    untransform_weight_gradient<kM>(du.data_ptr<float>(), k_count, c_count, grad_weight.data_ptr<float>());
  });
#endif
  return grad_weight.contiguous(weight.suggest_memory_format());
}

class WinogradConv : public torch::autograd::Function<WinogradConv> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, int64_t algorithm, int64_t isa) {
    ctx->save_for_backward({input, weight});
    ctx->saved_data["algorithm"] = algorithm;
    ctx->saved_data["isa"] = isa;
    return convolve_tensor(input, weight, false, kernel_of(algorithm, isa));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ConvKernel kernel = kernel_of(ctx->saved_data["algorithm"].toInt(), ctx->saved_data["isa"].toInt());
    const torch::Tensor grad = grads[0].contiguous(torch::MemoryFormat::ChannelsLast);
    return {ctx->needs_input_grad(0) ? input_gradient(grad, saved[1], kernel) : torch::Tensor(),
            ctx->needs_input_grad(1) ? weight_gradient(grad, saved[0], saved[1], kernel) : torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }

  static ConvKernel kernel_of(int64_t algorithm, int64_t isa) {
    return {static_cast<ConvAlgorithm>(algorithm), static_cast<ConvIsa>(isa)};
  }
};

torch::Tensor apply_winograd(const torch::Tensor& input, const torch::Tensor& weight, const ConvKernel& kernel) {
  return WinogradConv::apply(input, weight, static_cast<int64_t>(kernel.algorithm), static_cast<int64_t>(kernel.isa));
}

// The process's convolution settings: the policy, the width fixed by RESLAB_CONV_ISA (-1: none) and the plan.
std::atomic<int> policy_in_force{static_cast<int>(ConvPolicy::kAuto)};
std::atomic<int> isa_in_force{-1};
std::mutex plan_mutex;
std::shared_ptr<const ConvPlan> plan_in_force = std::make_shared<const ConvPlan>();

std::shared_ptr<const ConvPlan> current_plan() {
  const std::lock_guard<std::mutex> lock(plan_mutex);
  return plan_in_force;
}

}  // namespace

ConvAlgorithm policy_algorithm(ConvPolicy policy) {
  switch (policy) {
    case ConvPolicy::kDirect:
      return ConvAlgorithm::kDirect;
    case ConvPolicy::kWinograd4x4:
      return ConvAlgorithm::kWinograd4x4;
    case ConvPolicy::kWinogradMixed:
      return ConvAlgorithm::kWinogradMixed;
    default:
      return ConvAlgorithm::kWinograd2x2;  // auto, for a shape no plan names: what reslab ran before plans
  }
}

std::string to_string(ConvAlgorithm algorithm) {
  switch (algorithm) {
    case ConvAlgorithm::kDirect:
      return "direct";
    case ConvAlgorithm::kWinograd2x2:
      return "winograd2x2";
    case ConvAlgorithm::kWinograd4x4:
      return "winograd4x4";
    case ConvAlgorithm::kWinogradMixed:
      return "winograd-mixed";
  }
  return "?";
}

std::string to_string(ConvIsa isa) { return isa == ConvIsa::kAvx512 ? "avx512" : "avx2"; }

std::string to_string(const ConvKernel& kernel) {
  return kernel.algorithm == ConvAlgorithm::kDirect ? "direct"
                                                    : to_string(kernel.algorithm) + "-" + to_string(kernel.isa);
}

std::string to_string(ConvPolicy policy) {
  return policy == ConvPolicy::kAuto ? "auto" : to_string(policy_algorithm(policy));
}

ConvAlgorithm parse_conv_algorithm(const std::string& name) {
  for (ConvAlgorithm a : {ConvAlgorithm::kDirect, ConvAlgorithm::kWinograd2x2, ConvAlgorithm::kWinograd4x4,
                          ConvAlgorithm::kWinogradMixed}) {
    if (name == to_string(a)) return a;
  }
  throw std::invalid_argument("'" + name +
                              "' is not a convolution algorithm (expected direct, winograd2x2, winograd4x4 or "
                              "winograd-mixed)");
}

ConvIsa parse_conv_isa(const std::string& name) {
  if (name == "avx2") return ConvIsa::kAvx2;
  if (name == "avx512") return ConvIsa::kAvx512;
  throw std::invalid_argument("'" + name + "' is not an instruction set the kernels have (expected avx2 or avx512)");
}

ConvKernel parse_conv_kernel(const std::string& name) {
  if (name == "direct") return {ConvAlgorithm::kDirect, ConvIsa::kAvx2};
  const auto dash = name.rfind('-');
  if (dash == std::string::npos) {
    throw std::invalid_argument("'" + name +
                                "' is not a convolution kernel (expected direct, or winograd2x2, winograd4x4 or "
                                "winograd-mixed with -avx2 or -avx512)");
  }
  const ConvAlgorithm algorithm = parse_conv_algorithm(name.substr(0, dash));
  if (algorithm == ConvAlgorithm::kDirect) throw std::invalid_argument("'" + name + "': direct takes no ISA");
  return {algorithm, parse_conv_isa(name.substr(dash + 1))};
}

bool isa_available(ConvIsa isa) { return cpu_has(isa); }

std::string ConvShape::key() const {
  return std::to_string(in_channels) + "-" + std::to_string(out_channels) + "-" + std::to_string(height) + "x" +
         std::to_string(width);
}

ConvShape parse_conv_shape(const std::string& key) {
  ConvShape s;
  char dash1 = 0, dash2 = 0, times = 0;
  int consumed = 0;
  const int read = std::sscanf(key.c_str(), "%ld%c%ld%c%ld%c%ld%n", &s.in_channels, &dash1, &s.out_channels, &dash2,
                               &s.height, &times, &s.width, &consumed);
  if (read != 7 || dash1 != '-' || dash2 != '-' || times != 'x' || consumed != static_cast<int>(key.size()) ||
      s.in_channels < 1 || s.out_channels < 1 || s.height < 1 || s.width < 1 || s.in_channels > 1 << 20 ||
      s.out_channels > 1 << 20 || s.height > 1 << 20 || s.width > 1 << 20 || key.size() > 64) {
    throw std::invalid_argument("'" + key.substr(0, 64) +
                                "' is not a convolution shape (expected IN-OUT-HxW, e.g. 16-16-32x32)");
  }
  return s;
}

bool winograd_shape(const ConvShape& shape, ConvIsa isa) {
  const int64_t l = lanes(isa);
  return shape.in_channels % l == 0 && shape.out_channels % l == 0 && shape.in_channels >= l &&
         shape.out_channels >= l && shape.in_channels <= kMaxChannels && shape.out_channels <= kMaxChannels &&
         shape.height > 0 && shape.width > 0;
}

bool winograd_applies(const torch::Tensor& input, const torch::Tensor& weight, ConvIsa isa) {
  const int64_t l = lanes(isa);
  return cpu_has(isa) && input.device().is_cpu() && weight.device().is_cpu() && input.scalar_type() == torch::kFloat &&
         weight.scalar_type() == torch::kFloat && input.dim() == 4 &&
         input.is_contiguous(torch::MemoryFormat::ChannelsLast) && weight.dim() == 4 && weight.size(2) == 3 &&
         weight.size(3) == 3 && weight.size(1) == input.size(1) && input.size(1) % l == 0 && weight.size(0) % l == 0 &&
         input.size(1) <= kMaxChannels && weight.size(0) <= kMaxChannels && input.numel() > 0;
}

bool winograd_applies(const torch::Tensor& input, const torch::Tensor& weight) {
  return winograd_applies(input, weight, ConvIsa::kAvx2);
}

torch::Tensor winograd_conv3x3(const torch::Tensor& input, const torch::Tensor& weight, ConvAlgorithm algorithm,
                               ConvIsa isa) {
  TORCH_CHECK(winograd_applies(input, weight, isa), "winograd_conv3x3: input ", input.sizes(), " and weight ",
              weight.sizes(), " are not a case it takes at ", to_string(isa), " (see winograd_applies)");
  TORCH_CHECK(algorithm != ConvAlgorithm::kDirect, "winograd_conv3x3: direct is not a Winograd algorithm");
  return apply_winograd(input, weight, {algorithm, isa});
}

std::pair<torch::Tensor, torch::Tensor> winograd_conv3x3_backward(const torch::Tensor& grad_output,
                                                                  const torch::Tensor& input,
                                                                  const torch::Tensor& weight, ConvAlgorithm algorithm,
                                                                  ConvIsa isa) {
  TORCH_CHECK(winograd_applies(input, weight, isa), "winograd_conv3x3_backward: input ", input.sizes(), " and weight ",
              weight.sizes(), " are not a case it takes at ", to_string(isa), " (see winograd_applies)");
  TORCH_CHECK(algorithm != ConvAlgorithm::kDirect, "winograd_conv3x3_backward: direct is not a Winograd algorithm");
  const torch::NoGradGuard no_grad;
  const torch::Tensor grad = grad_output.contiguous(torch::MemoryFormat::ChannelsLast);
  const ConvKernel kernel{algorithm, isa};
  return {input_gradient(grad, weight, kernel), weight_gradient(grad, input, weight, kernel)};
}

bool winograd_candidate(const torch::nn::Conv2dImpl& conv) {
  const auto& o = conv.options;
  const auto* padding = compat::get_if<torch::ExpandingArray<2>>(&o.padding());
  const auto all = [](const torch::ExpandingArray<2>& a, int64_t v) { return (*a)[0] == v && (*a)[1] == v; };
  return padding != nullptr && all(*padding, 1) && all(o.kernel_size(), 3) && all(o.stride(), 1) &&
         all(o.dilation(), 1) && o.groups() == 1 && !o.bias() &&
         compat::get_if<torch::enumtype::kZeros>(&o.padding_mode()) != nullptr;
}

ConvKernel conv_kernel(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  const ConvKernel direct{ConvAlgorithm::kDirect, ConvIsa::kAvx2};
  // Under autocast LibTorch's convolution computes in the lower precision; the Winograd kernels are float32 only.
  if (compat::autocast_enabled(at::kCPU)) return direct;
  if (!winograd_candidate(conv) || x.dim() != 4 || !winograd_applies(x, conv.weight, ConvIsa::kAvx2)) return direct;
  const ConvShape shape{x.size(1), conv.weight.size(0), x.size(2), x.size(3)};
  const auto plan = current_plan();
  const auto planned = plan->find(shape);
  const int fixed = isa_in_force.load();
  ConvKernel kernel;
  if (planned != plan->end()) {
    kernel = planned->second;
  } else {
    kernel.algorithm = policy_algorithm(static_cast<ConvPolicy>(policy_in_force.load()));
    kernel.isa = widest_isa().value_or(ConvIsa::kAvx2);
  }
  if (kernel.algorithm == ConvAlgorithm::kDirect) return direct;
  if (fixed >= 0) kernel.isa = static_cast<ConvIsa>(fixed);
  // The width the plan or the policy asks for where it takes the shape, else the narrower one: the same floats.
  if (!winograd_applies(x, conv.weight, kernel.isa)) kernel.isa = ConvIsa::kAvx2;
  return kernel;
}

bool winograd_takes(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  return conv_kernel(conv, x).algorithm != ConvAlgorithm::kDirect;
}

torch::Tensor conv_forward(torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  const ConvKernel kernel = conv_kernel(conv, x);
  return kernel.algorithm == ConvAlgorithm::kDirect ? conv.forward(x) : apply_winograd(x, conv.weight, kernel);
}

std::string choose_convolutions() {
  const char* choice = std::getenv("RESLAB_CONV");
  const std::string asked = choice == nullptr ? "" : choice;
  ConvPolicy policy;
  if (asked.empty() || asked == "auto") {
    policy = ConvPolicy::kAuto;
  } else if (asked == "winograd" || asked == "winograd2x2") {
    policy = ConvPolicy::kWinograd2x2;
  } else if (asked == "winograd4x4") {
    policy = ConvPolicy::kWinograd4x4;
  } else if (asked == "winograd-mixed") {
    policy = ConvPolicy::kWinogradMixed;
  } else if (asked == "direct") {
    policy = ConvPolicy::kDirect;
  } else {
    throw std::invalid_argument("RESLAB_CONV: unknown value '" + asked +
                                "' (expected auto, the default: each shape's kernel measured on this machine; "
                                "winograd2x2, winograd4x4 or winograd-mixed (2x2 tiles forward, 4x4 for the "
                                "gradients) to fix the Winograd algorithm everywhere; or direct: LibTorch's own "
                                "convolutions)");
  }
  const char* isa = std::getenv("RESLAB_CONV_ISA");
  std::optional<ConvIsa> width;
  if (isa != nullptr && *isa != '\0') {
    try {
      width = parse_conv_isa(isa);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("RESLAB_CONV_ISA: ") + e.what());
    }
    if (!cpu_has(*width)) {
      throw std::invalid_argument(std::string("RESLAB_CONV_ISA: ") + isa + ": this CPU has no " + to_string(*width) +
                                  " (expected " + (cpu_has(ConvIsa::kAvx2) ? "avx2 or unset)" : "unset)"));
    }
  }
  set_conv_policy(policy);
  set_conv_isa(width);
  return convolution_policy();
}

std::string convolution_policy() {
  if (!cpu_has(ConvIsa::kAvx2)) return "direct (no AVX2)";
  return to_string(conv_policy());
}

std::string convolution_policy(const torch::Device& device) {
  return device.is_cpu() ? convolution_policy() : "direct";
}

void set_conv_policy(ConvPolicy policy) {
  policy_in_force.store(static_cast<int>(policy));
  set_conv_plan({});
}

ConvPolicy conv_policy() { return static_cast<ConvPolicy>(policy_in_force.load()); }

void set_conv_isa(std::optional<ConvIsa> isa) {
  if (isa && !cpu_has(*isa)) {
    throw std::invalid_argument("set_conv_isa: this CPU has no " + to_string(*isa));
  }
  isa_in_force.store(isa ? static_cast<int>(*isa) : -1);
}

std::optional<ConvIsa> conv_isa() {
  const int fixed = isa_in_force.load();
  return fixed < 0 ? std::nullopt : std::optional<ConvIsa>(static_cast<ConvIsa>(fixed));
}

std::optional<ConvIsa> widest_isa() {
  if (auto fixed = conv_isa()) return fixed;
  if (cpu_has(ConvIsa::kAvx512)) return ConvIsa::kAvx512;
  if (cpu_has(ConvIsa::kAvx2)) return ConvIsa::kAvx2;
  return std::nullopt;
}

void set_conv_plan(const ConvPlan& plan) {
  auto next = std::make_shared<const ConvPlan>(plan);
  const std::lock_guard<std::mutex> lock(plan_mutex);
  plan_in_force = std::move(next);
}

ConvPlan conv_plan() { return *current_plan(); }

}  // namespace reslab
