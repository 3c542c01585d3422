// Fused diagonal linear recurrences on the CPU: one pass over the state, forward and backward by
// hand. Built lazily by layerlab/kernels/selective_scan.py (torch.utils.cpp_extension).
//
// 1. The selective scan (Mamba's S6 recurrence), below. 2. The plain recurrence
// h_t = a_t h_{t-1} + b_t, real or complex (LRU, RG-LRU), at the end of the file.
//
//   Abar_t[d, n] = exp(delta_t[d] A[d, n])          (or 2 exp(delta_t[d] A[d, n]) - 1)
//   h_t[d, n]    = Abar_t[d, n] h_{t-1}[d, n] + delta_t[d] x_t[d] B_t[n]
//   y_t[d]       = sum_n C_t[n] h_t[d, n]
//   out_t[d]     = (y_t[d] + Dskip[d] x_t[d]) silu(z_t[d])     (each part optional, as Mamba's)
//
// Shapes (contiguous): delta, x, z (B, L, D); A (D, N); Bm, Cm (B, L, N); h0 (B, D, N); Dskip (D,).
// Work is split over (batch, group of channels); a thread walks its channels in sub-blocks of
// SUB channels, so that a sub-block's states and the chunk's recomputed states stay in cache.
// The forward keeps the state entering every chunk of K tokens (checkpoints); the backward
// recomputes a chunk's states from its checkpoint, then runs the reverse scan through it.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t SUB = 16;  // channels per sub-block

// exp for the transitions. float: inlined so that g++ vectorizes it with the loop around it
// (libmvec's call costs ~1/3 of the forward): exp(x) = 2^k exp(r), k = round(x / ln 2),
// r = x - k ln 2 in [-ln2/2, ln2/2] (ln 2 split in two for an exact product), exp(r) by its
// Taylor series to r^7 (truncation < 2e-9 relative, below float's 6e-8 rounding); x is
// clamped to [-87, 88], where 2^k stays a normal float (exp(-87) = 1.6e-38: a transition that
// small is 0 for the state either way). double: the C library's (libmvec under -ffast-math).
template <typename T>
inline T transition_exp(T x) { return std::exp(x); }

template <>
inline float transition_exp<float>(float x) {
  x = std::min(88.0f, std::max(-87.0f, x));
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

struct Dims {
  int64_t B, L, D, N, K, n_chunks, groups, per_group;
};

Dims dims_of(const torch::Tensor& delta, const torch::Tensor& A, int64_t K, int64_t groups) {
  Dims s;
  s.B = delta.size(0);
  s.L = delta.size(1);
  s.D = delta.size(2);
  s.N = A.size(1);
  s.K = std::max<int64_t>(1, std::min<int64_t>(K, s.L));
  s.n_chunks = (s.L + s.K - 1) / s.K;
  s.groups = std::max<int64_t>(1, std::min<int64_t>(groups, s.D));
  s.per_group = (s.D + s.groups - 1) / s.groups;
  return s;
}

template <typename T, bool NEG>
void forward_impl(const T* delta, const T* A, const T* Bm, const T* Cm, const T* x, const T* h0,
                  const T* Dskip, const T* z, T* y, T* h_last, T* ckpt, const Dims s) {
  const int64_t B = s.B, L = s.L, D = s.D, N = s.N, K = s.K;
  at::parallel_for(0, B * s.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> h(SUB * N);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / s.groups, g = item % s.groups;
      const int64_t d_end = std::min(D, (g + 1) * s.per_group);
      for (int64_t d0 = g * s.per_group; d0 < d_end; d0 += SUB) {
        const int64_t nd = std::min(SUB, d_end - d0);
        for (int64_t i = 0; i < nd * N; ++i) h[i] = h0 ? h0[(b * D + d0) * N + i] : T(0);
        for (int64_t t = 0; t < L; ++t) {
          if (t % K == 0) {  // the state entering chunk t / K
            T* c = ckpt + ((b * s.n_chunks + t / K) * D + d0) * N;
            std::copy(h.data(), h.data() + nd * N, c);
          }
          const T* Bt = Bm + (b * L + t) * N;
          const T* Ct = Cm + (b * L + t) * N;
          const int64_t row = (b * L + t) * D;
          for (int64_t j = 0; j < nd; ++j) {
            const int64_t d = d0 + j;
            const T dt = delta[row + d], dx = dt * x[row + d];
            const T* Ad = A + d * N;
            T* hd = h.data() + j * N;
            T acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t n = 0; n < N; ++n) {
              T a = transition_exp(dt * Ad[n]);
              if (NEG) a = 2 * a - 1;
              const T hn = a * hd[n] + dx * Bt[n];
              hd[n] = hn;
              acc += Ct[n] * hn;
            }
            if (Dskip) acc += Dskip[d] * x[row + d];
            if (z) acc *= z[row + d] / (1 + std::exp(-z[row + d]));
            y[row + d] = acc;
          }
        }
        std::copy(h.data(), h.data() + nd * N, h_last + (b * D + d0) * N);
      }
    }
  });
}

// gBp, gCp: (groups, B, L, N) partial sums over each group's channels; gAp: (B, D, N) partial
// sums over each batch element (the caller sums them).
template <typename T, bool NEG>
void backward_impl(const T* delta, const T* A, const T* Bm, const T* Cm, const T* x, const T* ckpt,
                   const T* Dskip, const T* z, const T* gy, const T* gh_last, T* gdelta, T* gAp, T* gBp,
                   T* gCp, T* gx, T* gh0, T* gDp, T* gz, const Dims s) {
  const int64_t B = s.B, L = s.L, D = s.D, N = s.N, K = s.K;
  at::parallel_for(0, B * s.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> hs((K + 1) * SUB * N), es(K * SUB * N), gh(SUB * N), gA(SUB * N);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / s.groups, g = item % s.groups;
      const int64_t d_end = std::min(D, (g + 1) * s.per_group);
      T* gB = gBp + (g * B + b) * L * N;
      T* gC = gCp + (g * B + b) * L * N;
      std::fill(gB, gB + L * N, T(0));
      std::fill(gC, gC + L * N, T(0));
      if (gDp)
        for (int64_t d = g * s.per_group; d < d_end; ++d) gDp[b * D + d] = 0;
      for (int64_t d0 = g * s.per_group; d0 < d_end; d0 += SUB) {
        const int64_t nd = std::min(SUB, d_end - d0), w = nd * N;
        for (int64_t i = 0; i < w; ++i) gh[i] = gh_last ? gh_last[(b * D + d0) * N + i] : T(0);
        std::fill(gA.begin(), gA.end(), T(0));
        for (int64_t c = s.n_chunks - 1; c >= 0; --c) {
          const int64_t t0 = c * K, t1 = std::min(L, t0 + K);
          // recompute h_{t0-1} .. h_{t1-1} (rows 0 .. t1-t0 of hs) and exp(delta A) of the chunk
          const T* start = ckpt + ((b * s.n_chunks + c) * D + d0) * N;
          std::copy(start, start + w, hs.data());
          for (int64_t t = t0; t < t1; ++t) {
            const T* Bt = Bm + (b * L + t) * N;
            const int64_t row = (b * L + t) * D;
            const T* prev = hs.data() + (t - t0) * w;
            T* cur = hs.data() + (t - t0 + 1) * w;
            T* e = es.data() + (t - t0) * w;
            for (int64_t j = 0; j < nd; ++j) {
              const int64_t d = d0 + j;
              const T dt = delta[row + d], dx = dt * x[row + d];
              const T* Ad = A + d * N;
#pragma omp simd
              for (int64_t n = 0; n < N; ++n) {
                const T en = transition_exp(dt * Ad[n]);
                const T a = NEG ? 2 * en - 1 : en;
                e[j * N + n] = en;
                cur[j * N + n] = a * prev[j * N + n] + dx * Bt[n];
              }
            }
          }
          // reverse scan: gh holds dLoss/dh_t from the future (through h_{t+1}) on entry
          for (int64_t t = t1 - 1; t >= t0; --t) {
            const T* Bt = Bm + (b * L + t) * N;
            const T* Ct = Cm + (b * L + t) * N;
            T* gBt = gB + t * N;
            T* gCt = gC + t * N;
            const int64_t row = (b * L + t) * D;
            const T* prev = hs.data() + (t - t0) * w;
            const T* cur = hs.data() + (t - t0 + 1) * w;
            const T* e = es.data() + (t - t0) * w;
            for (int64_t j = 0; j < nd; ++j) {
              const int64_t d = d0 + j;
              const T dt = delta[row + d], xv = x[row + d], dx = dt * xv;
              T gyt = gy[row + d], gx_skip = 0;
              if (z) {  // out = (y + D x) silu(z): y recomputed from h_t
                T yt = Dskip ? Dskip[d] * xv : T(0);
                const T* hc = cur + j * N;
#pragma omp simd reduction(+ : yt)
                for (int64_t n = 0; n < N; ++n) yt += Ct[n] * hc[n];
                const T zt = z[row + d], sg = 1 / (1 + std::exp(-zt));
                gz[row + d] = gyt * yt * sg * (1 + zt * (1 - sg));
                gyt *= zt * sg;
              }
              if (Dskip) {
                gDp[b * D + d] += gyt * xv;
                gx_skip = gyt * Dskip[d];
              }
              const T* Ad = A + d * N;
              T* ghd = gh.data() + j * N;
              T* gAd = gA.data() + j * N;
              T g_dx = 0, g_dt = 0;
#pragma omp simd reduction(+ : g_dx, g_dt)
              for (int64_t n = 0; n < N; ++n) {
                const T en = e[j * N + n];
                const T ghn = ghd[n] + gyt * Ct[n];        // dLoss/dh_t, all paths
                gCt[n] += gyt * cur[j * N + n];
                gBt[n] += ghn * dx;
                g_dx += ghn * Bt[n];
                const T g_arg = ghn * prev[j * N + n] * (NEG ? 2 * en : en);  // d/d(delta A)
                g_dt += g_arg * Ad[n];
                gAd[n] += g_arg * dt;
                ghd[n] = ghn * (NEG ? 2 * en - 1 : en);  // through h_t = Abar_t h_{t-1} + ...
              }
              gdelta[row + d] = g_dt + g_dx * xv;
              gx[row + d] = g_dx * dt + gx_skip;
            }
          }
        }
        std::copy(gh.data(), gh.data() + w, gh0 + (b * D + d0) * N);
        std::copy(gA.data(), gA.data() + w, gAp + (b * D + d0) * N);
      }
    }
  });
}

const void* ptr_or_null(const torch::Tensor& t) { return t.numel() ? t.data_ptr() : nullptr; }

}  // namespace

// Returns (y (B, L, D), h_last (B, D, N), checkpoints (B, n_chunks, D, N)).
std::vector<torch::Tensor> selective_scan_forward(torch::Tensor delta, torch::Tensor A, torch::Tensor Bm,
                                                  torch::Tensor Cm, torch::Tensor x, torch::Tensor h0,
                                                  torch::Tensor Dskip, torch::Tensor z, bool negative, int64_t K,
                                                  int64_t groups) {
  const Dims s = dims_of(delta, A, K, groups);
  auto y = torch::empty_like(delta);
  auto h_last = torch::empty({s.B, s.D, s.N}, delta.options());
  auto ckpt = torch::empty({s.B, s.n_chunks, s.D, s.N}, delta.options());
  AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "selective_scan_forward", [&] {
    auto f = negative ? forward_impl<scalar_t, true> : forward_impl<scalar_t, false>;
    f(delta.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(), Bm.data_ptr<scalar_t>(), Cm.data_ptr<scalar_t>(),
      x.data_ptr<scalar_t>(), static_cast<const scalar_t*>(ptr_or_null(h0)),
      static_cast<const scalar_t*>(ptr_or_null(Dskip)), static_cast<const scalar_t*>(ptr_or_null(z)),
      y.data_ptr<scalar_t>(), h_last.data_ptr<scalar_t>(), ckpt.data_ptr<scalar_t>(), s);
  });
  return {y, h_last, ckpt};
}

// Returns (g_delta (B, L, D), g_A partial (B, D, N), g_B partial (groups, B, L, N),
// g_C partial (groups, B, L, N), g_x (B, L, D), g_h0 (B, D, N), g_D partial (B, D) or empty,
// g_z (B, L, D) or empty).
std::vector<torch::Tensor> selective_scan_backward(torch::Tensor delta, torch::Tensor A, torch::Tensor Bm,
                                                   torch::Tensor Cm, torch::Tensor x, torch::Tensor ckpt,
                                                   torch::Tensor Dskip, torch::Tensor z, torch::Tensor gy,
                                                   torch::Tensor gh_last, bool negative, int64_t K,
                                                   int64_t groups) {
  const Dims s = dims_of(delta, A, K, groups);
  auto gdelta = torch::empty_like(delta);
  auto gx = torch::empty_like(delta);
  auto gAp = torch::empty({s.B, s.D, s.N}, delta.options());
  auto gBp = torch::empty({s.groups, s.B, s.L, s.N}, delta.options());
  auto gCp = torch::empty({s.groups, s.B, s.L, s.N}, delta.options());
  auto gh0 = torch::empty({s.B, s.D, s.N}, delta.options());
  auto gDp = Dskip.numel() ? torch::empty({s.B, s.D}, delta.options()) : torch::empty({0}, delta.options());
  auto gz = z.numel() ? torch::empty_like(delta) : torch::empty({0}, delta.options());
  AT_DISPATCH_FLOATING_TYPES(delta.scalar_type(), "selective_scan_backward", [&] {
    auto f = negative ? backward_impl<scalar_t, true> : backward_impl<scalar_t, false>;
    f(delta.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(), Bm.data_ptr<scalar_t>(), Cm.data_ptr<scalar_t>(),
      x.data_ptr<scalar_t>(), ckpt.data_ptr<scalar_t>(), static_cast<const scalar_t*>(ptr_or_null(Dskip)),
      static_cast<const scalar_t*>(ptr_or_null(z)), gy.data_ptr<scalar_t>(),
      static_cast<const scalar_t*>(ptr_or_null(gh_last)), gdelta.data_ptr<scalar_t>(), gAp.data_ptr<scalar_t>(),
      gBp.data_ptr<scalar_t>(), gCp.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gh0.data_ptr<scalar_t>(),
      gDp.numel() ? gDp.data_ptr<scalar_t>() : nullptr, gz.numel() ? gz.data_ptr<scalar_t>() : nullptr, s);
  });
  return {gdelta, gAp, gBp, gCp, gx, gh0, gDp, gz};
}

// --- h_t = a_t h_{t-1} + b_t over dim 1 of (B, L, M), real or complex ----------------------
// Work is split over (batch, block of M columns); the backward reads h_{t-1} from the forward's
// output (which autograd keeps anyway) and runs dh_{t-1} = conj(a_t) dh_t, the complex
// convention of PyTorch (the gradient of a product is the other factor's conjugate).
namespace {

constexpr int64_t COLS = 64;

template <typename T>
inline T conj_of(T v) { return v; }
template <typename T>
inline c10::complex<T> conj_of(c10::complex<T> v) { return std::conj(v); }

template <typename T>
void recurrence_forward_impl(const T* a, const T* b, const T* h0, T* h, int64_t B, int64_t L, int64_t M) {
  const int64_t blocks = (M + COLS - 1) / COLS;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    T state[COLS];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bb = item / blocks, m0 = (item % blocks) * COLS, nm = std::min(COLS, M - m0);
      for (int64_t j = 0; j < nm; ++j) state[j] = h0 ? h0[bb * M + m0 + j] : T(0);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = (bb * L + t) * M + m0;
#pragma omp simd
        for (int64_t j = 0; j < nm; ++j) {
          state[j] = a[row + j] * state[j] + b[row + j];
          h[row + j] = state[j];
        }
      }
    }
  });
}

template <typename T>
void recurrence_backward_impl(const T* a, const T* h, const T* h0, const T* gh, T* ga, T* gb, T* gh0,
                              int64_t B, int64_t L, int64_t M) {
  const int64_t blocks = (M + COLS - 1) / COLS;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    T g[COLS];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t bb = item / blocks, m0 = (item % blocks) * COLS, nm = std::min(COLS, M - m0);
      for (int64_t j = 0; j < nm; ++j) g[j] = T(0);
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t row = (bb * L + t) * M + m0;
        const T* prev = t > 0 ? h + row - M : (h0 ? h0 + bb * M + m0 : nullptr);
#pragma omp simd
        for (int64_t j = 0; j < nm; ++j) {
          const T gt = g[j] + gh[row + j];  // dLoss/dh_t, all paths
          gb[row + j] = gt;
          ga[row + j] = prev ? gt * conj_of(prev[j]) : T(0);
          g[j] = gt * conj_of(a[row + j]);
        }
      }
      if (gh0)
        for (int64_t j = 0; j < nm; ++j) gh0[bb * M + m0 + j] = g[j];
    }
  });
}

}  // namespace

// a, b: (B, L, M) contiguous, one dtype (float, double, complex64, complex128); h0: (B, M) or empty.
torch::Tensor linear_recurrence_forward(torch::Tensor a, torch::Tensor b, torch::Tensor h0) {
  auto h = torch::empty_like(b);
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES(b.scalar_type(), "linear_recurrence_forward", [&] {
    recurrence_forward_impl<scalar_t>(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
                                      static_cast<const scalar_t*>(ptr_or_null(h0)), h.data_ptr<scalar_t>(),
                                      b.size(0), b.size(1), b.size(2));
  });
  return h;
}

// Returns (g_a, g_b, g_h0); g_h0 is empty when h0 is.
std::vector<torch::Tensor> linear_recurrence_backward(torch::Tensor a, torch::Tensor h, torch::Tensor h0,
                                                      torch::Tensor gh) {
  auto ga = torch::empty_like(a);
  auto gb = torch::empty_like(a);
  auto gh0 = torch::empty_like(h0);
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES(a.scalar_type(), "linear_recurrence_backward", [&] {
    recurrence_backward_impl<scalar_t>(a.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                                       static_cast<const scalar_t*>(ptr_or_null(h0)), gh.data_ptr<scalar_t>(),
                                       ga.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(),
                                       h0.numel() ? gh0.data_ptr<scalar_t>() : nullptr, a.size(0), a.size(1),
                                       a.size(2));
  });
  return {ga, gb, gh0};
}
