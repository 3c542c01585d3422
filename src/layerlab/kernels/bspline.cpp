// Local piecewise-polynomial bases on uniform knots (B-splines of a KAN layer), forward and backward.
// Input i has knots t[i][j] = t[i][0] + j h[i] (passed as (in, n + k + 1)). On knot interval
// q_i = floor((x - t[i][0]) / h) with local coordinate s = (x - t[i][q_i]) / h, only the k + 1
// basis functions m = q_i - r (r = 0..k) can be non-zero, and basis m equals the polynomial piece
// r: sum_j coef[j][r] s^j. The forward writes, per (row, input), the dense feature block
// [silu(x)?, B_0(x), ..., B_{n-1}(x)]; the backward gathers the incoming gradient at the same
// k + 1 positions (and the SiLU's).
// The SiLU column (and its slope) comes in computed by PyTorch's vectorized kernels.
//
// Input i has knots t_j = t[i][j] = t[i][0] + j h[i] (uniform; t passed as (in, n + k + 1)). On knot interval q_i = floor((x - knots) / h) with local
// coordinate s = (x - knots)/h - q_i, only the k + 1 basis functions m = q_i - r (r = 0..k) can be
// non-zero, and basis m equals the polynomial piece r: sum_j coef[j][r] s^j. The forward writes,
// per (row, input), the dense feature block [silu(x)?, B_0(x), ..., B_{n-1}(x)]; the backward
// gathers the incoming gradient at the same k + 1 positions (and the SiLU's).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace {

// The k + 1 pieces as compile-time-sized Horner loops (the compiler unrolls them).
template <typename scalar_t, int K>
struct Pieces {
  scalar_t coef[K + 1][K + 1];  // coef[j][r]: coefficient of s^j in piece r

  explicit Pieces(const double* c) {
    for (int j = 0; j <= K; ++j)
      for (int r = 0; r <= K; ++r) coef[j][r] = static_cast<scalar_t>(c[j * (K + 1) + r]);
  }
  scalar_t value(int r, scalar_t s) const {
    scalar_t acc = coef[K][r];
    for (int j = K - 1; j >= 0; --j) acc = acc * s + coef[j][r];
    return acc;
  }
  scalar_t slope(int r, scalar_t s) const {  // d/ds
    scalar_t acc = K * coef[K][r];
    for (int j = K - 1; j >= 1; --j) acc = acc * s + j * coef[j][r];
    return acc;
  }
};

void check(const torch::Tensor& x, const torch::Tensor& knots, const torch::Tensor& inv_h, const torch::Tensor& coef,
           int64_t n_basis) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == 2, "bspline: x must be a contiguous CPU (rows, in) tensor");
  TORCH_CHECK(knots.is_contiguous() && inv_h.is_contiguous() && knots.dim() == 2 && knots.size(0) == x.size(1) &&
              inv_h.numel() == x.size(1), "bspline: knots (in, n + k + 1) and inv_h (in,) must be contiguous");
  TORCH_CHECK(knots.size(1) == n_basis + coef.size(0), "bspline: knots must have n_basis + k + 1 columns");
  TORCH_CHECK(knots.scalar_type() == x.scalar_type() && inv_h.scalar_type() == x.scalar_type(), "bspline: dtypes differ");
  TORCH_CHECK(coef.dim() == 2 && coef.size(0) == coef.size(1) && coef.size(0) >= 3 && coef.size(0) <= 6 &&
              coef.scalar_type() == torch::kFloat64 && coef.is_contiguous(),
              "bspline: coef must be a contiguous float64 (k+1, k+1) tensor, 2 <= k <= 5");
}

// Per row: a first pass over the inputs (vectorizable: no calls, no branches) gives each
// input's interval and its k + 1 piece values (or slopes); a second places them.
// s is measured from the interval's own knot: x - t_q keeps more digits than x - t_0.
template <typename scalar_t, int K, bool Slope>
void local_pass(const scalar_t* x, const scalar_t* tp, int64_t nk, const scalar_t* hp, const Pieces<scalar_t, K>& pieces,
                int64_t in, scalar_t hi, int32_t* q, scalar_t* vals) {
  for (int64_t i = 0; i < in; ++i) {
    const scalar_t* t = tp + i * nk;
    const scalar_t u = (x[i] - t[0]) * hp[i];
    const scalar_t c = std::min(std::max(u, scalar_t(-1)), hi);  // NaN stays NaN
    const int32_t qi = static_cast<int32_t>(c + scalar_t(1)) - 1;  // floor, c + 1 >= 0
    const int32_t knot = std::min(std::max(qi, int32_t(0)), static_cast<int32_t>(nk - 1));
    const scalar_t s = (x[i] - t[knot]) * hp[i];
    q[i] = (c == c) ? qi : int32_t(-K - 1);  // NaN input: no basis function claims it
    for (int r = 0; r <= K; ++r) vals[r * in + i] = Slope ? pieces.slope(r, s) * hp[i] : pieces.value(r, s);
  }
}

template <typename scalar_t, int K>
void forward_rows(const scalar_t* xp, const scalar_t* silu, const scalar_t* tp, int64_t nk, const scalar_t* hp,
                  const Pieces<scalar_t, K>& pieces, scalar_t* op, int64_t row_begin, int64_t row_end, int64_t in,
                  int64_t n_basis) {
  const int64_t off = silu ? 1 : 0, width = n_basis + off;
  const scalar_t hi = static_cast<scalar_t>(n_basis + K);
  std::vector<int32_t> q(in);
  std::vector<scalar_t> vals((K + 1) * in);
  for (int64_t n = row_begin; n < row_end; ++n) {
    local_pass<scalar_t, K, false>(xp + n * in, tp, nk, hp, pieces, in, hi, q.data(), vals.data());
    scalar_t* o = op + n * in * width;
    std::fill(o, o + in * width, scalar_t(0));
    for (int64_t i = 0; i < in; ++i) {
      scalar_t* oi = o + i * width;
      if (silu) oi[0] = silu[n * in + i];
      oi += off;
      for (int r = 0; r <= K; ++r) {
        const int64_t m = static_cast<int64_t>(q[i]) - r;
        if (m >= 0 && m < n_basis) oi[m] = vals[r * in + i];
      }
    }
  }
}

template <typename scalar_t, int K>
void backward_rows(const scalar_t* gp, const scalar_t* xp, const scalar_t* dsilu, const scalar_t* tp,
                   int64_t nk, const scalar_t* hp, const Pieces<scalar_t, K>& pieces, scalar_t* rp, int64_t row_begin,
                   int64_t row_end, int64_t in, int64_t n_basis) {
  const int64_t off = dsilu ? 1 : 0, width = n_basis + off;
  const scalar_t hi = static_cast<scalar_t>(n_basis + K);
  std::vector<int32_t> q(in);
  std::vector<scalar_t> slopes((K + 1) * in);
  for (int64_t n = row_begin; n < row_end; ++n) {
    local_pass<scalar_t, K, true>(xp + n * in, tp, nk, hp, pieces, in, hi, q.data(), slopes.data());
    const scalar_t* g = gp + n * in * width;
    for (int64_t i = 0; i < in; ++i) {
      const scalar_t* gi = g + i * width;
      scalar_t acc = dsilu ? gi[0] * dsilu[n * in + i] : scalar_t(0);
      gi += off;
      for (int r = 0; r <= K; ++r) {
        const int64_t m = static_cast<int64_t>(q[i]) - r;
        if (m >= 0 && m < n_basis) acc += gi[m] * slopes[r * in + i];
      }
      rp[n * in + i] = acc;
    }
  }
}

template <typename F>
void dispatch_order(int64_t k, F&& f) {
  switch (k) {
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    default: TORCH_CHECK(false, "bspline: order must be 2..5");
  }
}

int64_t grain(int64_t in) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(in, 1)); }

}  // namespace

// silu: an undefined tensor, or silu(x) for column 0 of each input's block.
torch::Tensor bspline_features_forward(torch::Tensor x, torch::Tensor knots, torch::Tensor inv_h, torch::Tensor coef,
                                       int64_t n_basis, c10::optional<torch::Tensor> silu) {
  check(x, knots, inv_h, coef, n_basis);
  const int64_t nk = knots.size(1);
  const bool with_silu = silu.has_value() && silu->defined();
  if (with_silu) TORCH_CHECK(silu->is_contiguous() && silu->sizes() == x.sizes() && silu->scalar_type() == x.scalar_type(),
                             "bspline: silu must be contiguous, of x's shape and dtype");
  const int64_t rows = x.size(0), in = x.size(1), width = n_basis + (with_silu ? 1 : 0);
  auto out = torch::empty({rows, in * width}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bspline_features_forward", [&] {
    dispatch_order(coef.size(0) - 1, [&](auto order) {
      constexpr int K = decltype(order)::value;
      const Pieces<scalar_t, K> pieces(coef.data_ptr<double>());
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* tp = knots.data_ptr<scalar_t>();
      const scalar_t* hp = inv_h.data_ptr<scalar_t>();
      const scalar_t* sp = with_silu ? silu->data_ptr<scalar_t>() : nullptr;
      scalar_t* op = out.data_ptr<scalar_t>();
      at::parallel_for(0, rows, grain(in), [&](int64_t begin, int64_t end) {
        forward_rows<scalar_t, K>(xp, sp, tp, nk, hp, pieces, op, begin, end, in, n_basis);
      });
    });
  });
  return out;
}

// dsilu: an undefined tensor, or silu'(x) for column 0 of each input's block.
torch::Tensor bspline_features_backward(torch::Tensor grad, torch::Tensor x, torch::Tensor knots, torch::Tensor inv_h,
                                        torch::Tensor coef, int64_t n_basis, c10::optional<torch::Tensor> dsilu) {
  check(x, knots, inv_h, coef, n_basis);
  const int64_t nk = knots.size(1);
  const bool with_silu = dsilu.has_value() && dsilu->defined();
  if (with_silu) TORCH_CHECK(dsilu->is_contiguous() && dsilu->sizes() == x.sizes() && dsilu->scalar_type() == x.scalar_type(),
                             "bspline: dsilu must be contiguous, of x's shape and dtype");
  const int64_t rows = x.size(0), in = x.size(1), width = n_basis + (with_silu ? 1 : 0);
  TORCH_CHECK(grad.is_contiguous() && grad.numel() == rows * in * width && grad.scalar_type() == x.scalar_type(),
              "bspline: grad must be contiguous, of the features' size and dtype");
  auto grad_x = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bspline_features_backward", [&] {
    dispatch_order(coef.size(0) - 1, [&](auto order) {
      constexpr int K = decltype(order)::value;
      const Pieces<scalar_t, K> pieces(coef.data_ptr<double>());
      const scalar_t* gp = grad.data_ptr<scalar_t>();
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* tp = knots.data_ptr<scalar_t>();
      const scalar_t* hp = inv_h.data_ptr<scalar_t>();
      const scalar_t* dp = with_silu ? dsilu->data_ptr<scalar_t>() : nullptr;
      scalar_t* rp = grad_x.data_ptr<scalar_t>();
      at::parallel_for(0, rows, grain(in), [&](int64_t begin, int64_t end) {
        backward_rows<scalar_t, K>(gp, xp, dp, tp, nk, hp, pieces, rp, begin, end, in, n_basis);
      });
    });
  });
  return grad_x;
}
