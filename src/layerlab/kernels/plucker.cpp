// Causal Grassmann mixing, the pair encoding of every offset averaged in one pass: forward and
// backward by hand. Built lazily by layerlab/kernels/plucker.py (torch.utils.cpp_extension).
//
// For each batch element and position t, with a = z_t, b = z_{t - delta} (r dims) for the offsets
// delta <= t (c of them):
//   p_ij = a_i b_j - a_j b_i (i < j),   n = max(|p|, eps),   mean_t = (1/c) sum_delta p / n
// Backward, with G = dL/dmean_t and q = p / n: dq = G / c; dp = (dq - q (q . dq)) / |p| where
// |p| > eps, else dq / eps; with Dp the antisymmetric r x r matrix holding dp above the
// diagonal: dz_t += Dp b, dz_{t - delta} += Dp^T a.
// Shapes (contiguous): z (B, L, r) -> mean (B, L, r(r-1)/2); work split over the batch.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

template <typename T>
void pair(const T* a, const T* b, int64_t r, T* p) {
  int64_t k = 0;
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = i + 1; j < r; ++j) p[k++] = a[i] * b[j] - a[j] * b[i];
}

}  // namespace

torch::Tensor grassmann_forward(torch::Tensor z, std::vector<int64_t> windows, double eps) {
  const int64_t B = z.size(0), L = z.size(1), r = z.size(2), P = r * (r - 1) / 2;
  auto out = torch::zeros({B, L, P}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "grassmann_forward", [&] {
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> p(P);
      for (int64_t bi = begin; bi < end; ++bi) {
        const scalar_t* zb = z.data_ptr<scalar_t>() + bi * L * r;
        scalar_t* ob = out.data_ptr<scalar_t>() + bi * L * P;
        for (int64_t t = 0; t < L; ++t) {
          int64_t c = 0;
          for (int64_t d : windows) c += (t - d >= 0);
          if (c == 0) continue;
          scalar_t* o = ob + t * P;
          for (int64_t d : windows) {
            if (t - d < 0) continue;
            pair(zb + t * r, zb + (t - d) * r, r, p.data());
            scalar_t sq = 0;
            for (int64_t k = 0; k < P; ++k) sq += p[k] * p[k];
            const scalar_t scale = scalar_t(1) / (std::max(std::sqrt(sq), scalar_t(eps)) * scalar_t(c));
            for (int64_t k = 0; k < P; ++k) o[k] += p[k] * scale;
          }
        }
      }
    });
  });
  return out;
}

torch::Tensor grassmann_backward(torch::Tensor z, torch::Tensor grad, std::vector<int64_t> windows, double eps) {
  const int64_t B = z.size(0), L = z.size(1), r = z.size(2), P = r * (r - 1) / 2;
  auto dz = torch::zeros_like(z);
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "grassmann_backward", [&] {
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> p(P), dp(P);
      for (int64_t bi = begin; bi < end; ++bi) {
        const scalar_t* zb = z.data_ptr<scalar_t>() + bi * L * r;
        const scalar_t* gb = grad.data_ptr<scalar_t>() + bi * L * P;
        scalar_t* dzb = dz.data_ptr<scalar_t>() + bi * L * r;
        for (int64_t t = 0; t < L; ++t) {
          int64_t c = 0;
          for (int64_t d : windows) c += (t - d >= 0);
          if (c == 0) continue;
          const scalar_t* G = gb + t * P;
          const scalar_t* a = zb + t * r;
          for (int64_t d : windows) {
            if (t - d < 0) continue;
            const scalar_t* b = zb + (t - d) * r;
            pair(a, b, r, p.data());
            scalar_t sq = 0;
            for (int64_t k = 0; k < P; ++k) sq += p[k] * p[k];
            const scalar_t norm = std::sqrt(sq);
            const scalar_t inv_c = scalar_t(1) / scalar_t(c);
            if (norm > scalar_t(eps)) {  // d(p / |p|) = (dq - q (q . dq)) / |p|
              scalar_t q_dq = 0;
              for (int64_t k = 0; k < P; ++k) q_dq += p[k] * G[k];
              q_dq *= inv_c / (norm * norm);
              for (int64_t k = 0; k < P; ++k) dp[k] = (G[k] * inv_c - p[k] * q_dq) / norm;
            } else {  // p / eps: linear
              for (int64_t k = 0; k < P; ++k) dp[k] = G[k] * inv_c / scalar_t(eps);
            }
            scalar_t* da = dzb + t * r;
            scalar_t* db = dzb + (t - d) * r;
            int64_t k = 0;
            for (int64_t i = 0; i < r; ++i)
              for (int64_t j = i + 1; j < r; ++j, ++k) {  // p_ij = a_i b_j - a_j b_i
                da[i] += dp[k] * b[j];
                da[j] -= dp[k] * b[i];
                db[j] += dp[k] * a[i];
                db[i] -= dp[k] * a[j];
              }
          }
        }
      }
    });
  });
  return dz;
}
