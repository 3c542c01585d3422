// The (gated) delta rule, token by token on the CPU: one pass over the state, forward and backward
// by hand. Built lazily by layerlab/kernels/delta_rule.py (torch.utils.cpp_extension).
//
// Per row z (one batch element and head) and sub-step t, with the state M in R^{Dk x Dv}
// (the transpose of the paper's S_t; delta_rule.py's notation):
//
//   P_t = exp(g_t) M_{t-1}              (P_t = M_{t-1} without a decay)
//   r_t = v_t - P_t^T k_t               (the value the memory misses)
//   M_t = P_t + beta_t k_t r_t^T
//   o_i = M_t^T q_i                     at the read sub-steps, t = i s + s - 1 (s = steps per token)
//
// s = 1 is the delta rule (gated with g); s = n_h > 1 is DeltaProduct's interleaved sequence.
// Backward, with G the gradient w.r.t. M_t (plus q_i do_i^T at a read):
//   dq_i = M_t do_i,   db_t = k_t^T G r_t,   dr = beta_t G^T k_t,   dv_t = dr,
//   dk_t = beta_t G r_t - P_t dr,   dP = G - k_t dr^T,   dg_t = <dP, P_t>,   G <- exp(g_t) dP.
// The forward keeps M entering every K-th sub-step (checkpoints); the backward recomputes P_t and
// r_t of one checkpoint interval from its checkpoint, then runs the reverse pass through it.
// Shapes (contiguous): q (Z, Lq, Dk), k (Z, T, Dk), v (Z, T, Dv), beta, g (Z, T), M0 (Z, Dk, Dv).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Shape {
  int64_t Z, Lq, T, Dk, Dv, s, K, n_ckpt;
};

Shape shape_of(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t s, int64_t K) {
  const int64_t T = k.size(1);
  return {q.size(0), q.size(1), T, k.size(2), v.size(2), s, K, (T + K - 1) / K};
}

// One sub-step on the state M (Dk x Dv, in place): P = a M, r = v - P^T k, M = P + b k r^T.
// Writes r (Dv); also P (Dk x Dv) where P is not null (the backward's recomputation keeps it).
template <typename T>
inline void advance(const Shape& d, T* M, const T* kt, const T* vt, T a, T b, T* r, T* P) {
  std::copy(vt, vt + d.Dv, r);
  for (int64_t i = 0; i < d.Dk; ++i) {  // P = a M and r = v - P^T k in one pass over the state
    const T ki = kt[i];
    T* row = M + i * d.Dv;
#pragma omp simd
    for (int64_t j = 0; j < d.Dv; ++j) {
      row[j] *= a;
      r[j] -= ki * row[j];
    }
    if (P) std::copy(row, row + d.Dv, P + i * d.Dv);
  }
  for (int64_t i = 0; i < d.Dk; ++i) {
    const T bk = b * kt[i];
    T* row = M + i * d.Dv;
#pragma omp simd
    for (int64_t j = 0; j < d.Dv; ++j) row[j] += bk * r[j];
  }
}

template <typename T>
void forward_row(const Shape& d, const T* q, const T* k, const T* v, const T* beta, const T* g, const T* M0,
                 T* o, T* M_out, T* ckpt) {
  const int64_t S = d.Dk * d.Dv;
  std::vector<T> M(S, T(0)), r(d.Dv);
  if (M0) std::copy(M0, M0 + S, M.begin());
  for (int64_t t = 0; t < d.T; ++t) {
    if (t % d.K == 0) std::copy(M.begin(), M.end(), ckpt + (t / d.K) * S);
    advance(d, M.data(), k + t * d.Dk, v + t * d.Dv, g ? std::exp(g[t]) : T(1), beta[t], r.data(),
            static_cast<T*>(nullptr));
    if ((t + 1) % d.s == 0) {
      const int64_t n = t / d.s;
      const T* qn = q + n * d.Dk;
      T* on = o + n * d.Dv;
      std::fill(on, on + d.Dv, T(0));
      for (int64_t i = 0; i < d.Dk; ++i) {
        const T qi = qn[i];
        const T* row = M.data() + i * d.Dv;
#pragma omp simd
        for (int64_t j = 0; j < d.Dv; ++j) on[j] += qi * row[j];
      }
    }
  }
  std::copy(M.begin(), M.end(), M_out);
}

template <typename T>
void backward_row(const Shape& d, const T* q, const T* k, const T* v, const T* beta, const T* g, const T* ckpt,
                  const T* dO, const T* dMT, T* dq, T* dk, T* dv, T* db, T* dg, T* dM0) {
  const int64_t S = d.Dk * d.Dv;
  std::vector<T> G(S, T(0)), P(d.K * S), R(d.K * d.Dv), M(S), dr(d.Dv), Gk(d.Dv);
  if (dMT) std::copy(dMT, dMT + S, G.begin());
  for (int64_t c = d.n_ckpt - 1; c >= 0; --c) {
    const int64_t t0 = c * d.K, t1 = std::min(d.T, t0 + d.K);
    std::copy(ckpt + c * S, ckpt + (c + 1) * S, M.begin());
    for (int64_t t = t0; t < t1; ++t) {  // recompute P_t and r_t of this interval
      advance(d, M.data(), k + t * d.Dk, v + t * d.Dv, g ? std::exp(g[t]) : T(1), beta[t],
              R.data() + (t - t0) * d.Dv, P.data() + (t - t0) * S);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const T* Pt = P.data() + (t - t0) * S;
      const T* rt = R.data() + (t - t0) * d.Dv;
      const T* kt = k + t * d.Dk;
      const T b = beta[t];
      if ((t + 1) % d.s == 0) {  // o_n = M_t^T q_n with M_t = P_t + b k r^T
        const int64_t n = t / d.s;
        const T* qn = q + n * d.Dk;
        const T* don = dO + n * d.Dv;
        T* dqn = dq + n * d.Dk;
        T r_do = 0;
        for (int64_t j = 0; j < d.Dv; ++j) r_do += rt[j] * don[j];
        for (int64_t i = 0; i < d.Dk; ++i) {
          const T* row = Pt + i * d.Dv;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t j = 0; j < d.Dv; ++j) acc += row[j] * don[j];
          dqn[i] = acc + b * kt[i] * r_do;
          const T qi = qn[i];
          T* Grow = G.data() + i * d.Dv;
#pragma omp simd
          for (int64_t j = 0; j < d.Dv; ++j) Grow[j] += qi * don[j];
        }
      }
      std::fill(Gk.begin(), Gk.end(), T(0));  // G^T k
      for (int64_t i = 0; i < d.Dk; ++i) {
        const T ki = kt[i];
        const T* Grow = G.data() + i * d.Dv;
#pragma omp simd
        for (int64_t j = 0; j < d.Dv; ++j) Gk[j] += ki * Grow[j];
      }
      T dbeta = 0;
      for (int64_t j = 0; j < d.Dv; ++j) {
        dbeta += Gk[j] * rt[j];
        dr[j] = b * Gk[j];
        dv[t * d.Dv + j] = dr[j];
      }
      db[t] = dbeta;
      T* dkt = dk + t * d.Dk;
      for (int64_t i = 0; i < d.Dk; ++i) {
        const T* Grow = G.data() + i * d.Dv;
        const T* Prow = Pt + i * d.Dv;
        T acc_g = 0, acc_p = 0;
#pragma omp simd reduction(+ : acc_g, acc_p)
        for (int64_t j = 0; j < d.Dv; ++j) {
          acc_g += Grow[j] * rt[j];
          acc_p += Prow[j] * dr[j];
        }
        dkt[i] = b * acc_g - acc_p;
      }
      if (g) {  // dP = G - k dr^T, dg_t = <dP, P_t>, G <- a dP, in one pass
        const T a = std::exp(g[t]);
        T acc = 0;
        for (int64_t i = 0; i < d.Dk; ++i) {
          const T ki = kt[i];
          T* Grow = G.data() + i * d.Dv;
          const T* Prow = Pt + i * d.Dv;
#pragma omp simd reduction(+ : acc)
          for (int64_t j = 0; j < d.Dv; ++j) {
            const T dP = Grow[j] - ki * dr[j];
            acc += dP * Prow[j];
            Grow[j] = a * dP;
          }
        }
        dg[t] = acc;
      } else {
        for (int64_t i = 0; i < d.Dk; ++i) {  // dP = G - k dr^T
          const T ki = kt[i];
          T* Grow = G.data() + i * d.Dv;
#pragma omp simd
          for (int64_t j = 0; j < d.Dv; ++j) Grow[j] -= ki * dr[j];
        }
      }
    }
  }
  std::copy(G.begin(), G.end(), dM0);
}

template <typename T>
const T* data_or_null(const torch::Tensor& x) {
  return x.numel() ? x.data_ptr<T>() : nullptr;
}

}  // namespace

// Returns (o (Z, Lq, Dv), M_T (Z, Dk, Dv), checkpoints (Z, n_ckpt, Dk, Dv)); g and M0 may be empty.
std::vector<torch::Tensor> delta_rule_forward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor beta,
                                              torch::Tensor g, torch::Tensor M0, int64_t s, int64_t K) {
  const Shape d = shape_of(q, k, v, s, K);
  auto o = torch::empty({d.Z, d.Lq, d.Dv}, v.options());
  auto M = torch::empty({d.Z, d.Dk, d.Dv}, v.options());
  auto ckpt = torch::empty({d.Z, d.n_ckpt, d.Dk, d.Dv}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "delta_rule_forward", [&] {
    const scalar_t *gp = data_or_null<scalar_t>(g), *M0p = data_or_null<scalar_t>(M0);
    at::parallel_for(0, d.Z, 1, [&](int64_t begin, int64_t end) {
      for (int64_t z = begin; z < end; ++z) {
        forward_row<scalar_t>(d, q.data_ptr<scalar_t>() + z * d.Lq * d.Dk, k.data_ptr<scalar_t>() + z * d.T * d.Dk,
                              v.data_ptr<scalar_t>() + z * d.T * d.Dv, beta.data_ptr<scalar_t>() + z * d.T,
                              gp ? gp + z * d.T : nullptr, M0p ? M0p + z * d.Dk * d.Dv : nullptr,
                              o.data_ptr<scalar_t>() + z * d.Lq * d.Dv, M.data_ptr<scalar_t>() + z * d.Dk * d.Dv,
                              ckpt.data_ptr<scalar_t>() + z * d.n_ckpt * d.Dk * d.Dv);
      }
    });
  });
  return {o, M, ckpt};
}

// Returns (dq, dk, dv, dbeta, dg (empty without g), dM0); dMT may be empty (no gradient of M_T).
std::vector<torch::Tensor> delta_rule_backward(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor beta,
                                               torch::Tensor g, torch::Tensor ckpt, torch::Tensor dO,
                                               torch::Tensor dMT, int64_t s, int64_t K) {
  const Shape d = shape_of(q, k, v, s, K);
  auto dq = torch::zeros_like(q);
  auto dk = torch::empty_like(k);
  auto dv = torch::empty_like(v);
  auto db = torch::empty_like(beta);
  auto dg = g.numel() ? torch::empty_like(g) : torch::empty({0}, v.options());
  auto dM0 = torch::empty({d.Z, d.Dk, d.Dv}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "delta_rule_backward", [&] {
    const scalar_t *gp = data_or_null<scalar_t>(g), *dMTp = data_or_null<scalar_t>(dMT);
    at::parallel_for(0, d.Z, 1, [&](int64_t begin, int64_t end) {
      for (int64_t z = begin; z < end; ++z) {
        backward_row<scalar_t>(d, q.data_ptr<scalar_t>() + z * d.Lq * d.Dk, k.data_ptr<scalar_t>() + z * d.T * d.Dk,
                               v.data_ptr<scalar_t>() + z * d.T * d.Dv, beta.data_ptr<scalar_t>() + z * d.T,
                               gp ? gp + z * d.T : nullptr, ckpt.data_ptr<scalar_t>() + z * d.n_ckpt * d.Dk * d.Dv,
                               dO.data_ptr<scalar_t>() + z * d.Lq * d.Dv, dMTp ? dMTp + z * d.Dk * d.Dv : nullptr,
                               dq.data_ptr<scalar_t>() + z * d.Lq * d.Dk, dk.data_ptr<scalar_t>() + z * d.T * d.Dk,
                               dv.data_ptr<scalar_t>() + z * d.T * d.Dv, db.data_ptr<scalar_t>() + z * d.T,
                               gp ? dg.data_ptr<scalar_t>() + z * d.T : nullptr,
                               dM0.data_ptr<scalar_t>() + z * d.Dk * d.Dv);
      }
    });
  });
  return {dq, dk, dv, db, dg, dM0};
}
