// The AutoBuild training loss (paper Eq. 4) and its gradient, in one call:
//
//   L = MSE(y, y') + 1/(M+1) sum_m (1 - SRCC(y, ||h_G^m||_1))
//
// with the differentiable SRCC of chain_predictor.chain_loss: the soft ranks
// of Blondel et al. (2020), l2 regularisation, computed as torchsort's
// SoftRank does (sort descending, pool-adjacent-violators on s - [n..1],
// block means in backward), in float32 in the same order.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace {

// Soft rank of one vector and what its backward needs.
struct SoftRank {
  std::vector<int64_t> perm;  // descending order of the values
  std::vector<float> dual;    // isotonic solution, in sorted order
  std::vector<float> rank;    // the soft ranks, in input order
  float scale;

  SoftRank(const float* x, int64_t stride, int64_t n, float scale_) : perm(n), dual(n), rank(n), scale(scale_) {
    std::vector<float> theta(n);
    for (int64_t i = 0; i < n; ++i) theta[i] = x[i * stride] * scale;
    std::iota(perm.begin(), perm.end(), 0);
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return theta[a] > theta[b]; });
    std::vector<float> s(n);
    for (int64_t i = 0; i < n; ++i) {
      s[i] = theta[perm[i]];
      dual[i] = s[i] - static_cast<float>(n - i);
    }
    isotonic_l2();
    for (int64_t i = 0; i < n; ++i) rank[perm[i]] = s[i] - dual[i];
  }

  // Pool adjacent violators for a non-increasing fit, in place on `dual`
  // (torchsort's isotonic_l2_kernel, from scikit-learn).
  void isotonic_l2() {
    const int64_t n = static_cast<int64_t>(dual.size());
    std::vector<float>& sol = dual;
    std::vector<float> sums(sol), c(n, 1.0f);
    std::vector<int64_t> target(n);
    std::iota(target.begin(), target.end(), 0);
    int64_t i = 0;
    while (i < n) {
      int64_t k = target[i] + 1;
      if (k == n) break;
      if (sol[i] > sol[k]) {
        i = k;
        continue;
      }
      float sum_y = sums[i], sum_c = c[i];
      while (true) {
        const float prev_y = sol[k];
        sum_y += sums[k];
        sum_c += c[k];
        k = target[k] + 1;
        if (k == n || prev_y > sol[k]) {
          sol[i] = sum_y / sum_c;
          sums[i] = sum_y;
          c[i] = sum_c;
          target[i] = k - 1;
          target[k - 1] = i;
          if (i > 0) i = target[i - 1];
          break;
        }
      }
    }
    for (i = 0; i < n;) {
      const int64_t k = target[i] + 1;
      for (int64_t j = i + 1; j < k; ++j) sol[j] = sol[i];
      i = k;
    }
  }

  // Gradient to the input from the gradient `g` to the ranks (input order), in place.
  void backward(std::vector<float>& g) const {
    const int64_t n = static_cast<int64_t>(g.size());
    std::vector<float> block(n);
    for (int64_t start = 0; start < n;) {  // blocks of equal solution, as torchsort's partition
      int64_t end = start + 1;
      while (end < n && !(std::abs(dual[end] - dual[end - 1]) > 1.0e-9f)) ++end;
      float sum = 0.0f;
      for (int64_t i = start; i < end; ++i) sum += g[perm[i]];
      const float mean = (1.0f / static_cast<float>(end - start)) * sum;
      for (int64_t i = start; i < end; ++i) block[i] = mean;
      start = end;
    }
    for (int64_t i = 0; i < n; ++i) g[perm[i]] = (g[perm[i]] - block[i]) * scale;
  }
};

}  // namespace

// Returns {loss (0-dim), dL/dpred [B], dL/dnorms [B, M+1]}; `norms` holds ||h_G^m||_1 per graph and hop.
std::vector<torch::Tensor> rank_loss(const torch::Tensor& y_in, const torch::Tensor& pred_in,
                                     const torch::Tensor& norms_in, bool hop_srcc, double strength) {
  const torch::Tensor y = y_in.contiguous(), pred = pred_in.contiguous(), norms = norms_in.contiguous();
  for (const torch::Tensor* t : {&y, &pred, &norms})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kFloat32, "rank_loss takes float32 CPU tensors");
  const int64_t B = y.numel(), hops = norms.size(1);
  TORCH_CHECK(pred.numel() == B && norms.dim() == 2 && norms.size(0) == B && B >= 1,
              "y, pred and norms must describe the same graphs");
  const float *Y = y.data_ptr<float>(), *P = pred.data_ptr<float>(), *N = norms.data_ptr<float>();
  torch::Tensor dpred = torch::empty({B}, y.options()), dnorms = torch::zeros({B, hops}, y.options());
  double mse = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const float d = P[b] - Y[b];
    mse += static_cast<double>(d) * d;
    dpred.data_ptr<float>()[b] = 2.0f * d / static_cast<float>(B);
  }
  double loss = mse / B;
  if (hop_srcc && B >= 2) {
    const float scale = static_cast<float>(1.0 / strength);
    std::vector<float> rt = SoftRank(Y, 1, B, scale).rank;
    const float mt = std::accumulate(rt.begin(), rt.end(), 0.0f) / static_cast<float>(B);
    double tt = 0.0;
    for (float& r : rt) {
      r -= mt;
      tt += static_cast<double>(r) * r;
    }
    const double wn = std::sqrt(tt);
    for (int64_t m = 0; m < hops; ++m) {
      const SoftRank sr(N + m, hops, B, scale);
      std::vector<float> c = sr.rank;
      const float mp = std::accumulate(c.begin(), c.end(), 0.0f) / static_cast<float>(B);
      double u = 0.0, vv = 0.0;
      for (int64_t b = 0; b < B; ++b) {
        c[b] -= mp;
        u += static_cast<double>(c[b]) * rt[b];
        vv += static_cast<double>(c[b]) * c[b];
      }
      const double v = std::sqrt(vv), den = v * wn + 1e-12;
      loss += (1.0 - u / den) / hops;
      // d(-srcc/hops)/dc, then through the centring and the soft rank
      std::vector<float> g(B);
      const double coef = -1.0 / hops, cross = v > 0.0 ? u * wn / (v * den * den) : 0.0;
      double gm = 0.0;
      for (int64_t b = 0; b < B; ++b) {
        g[b] = static_cast<float>(coef * (rt[b] / den - cross * c[b]));
        gm += g[b];
      }
      for (float& gb : g) gb -= static_cast<float>(gm / B);
      sr.backward(g);
      for (int64_t b = 0; b < B; ++b) dnorms.data_ptr<float>()[b * hops + m] = g[b];
    }
  }
  return {torch::scalar_tensor(static_cast<float>(loss), y.options()), dpred, dnorms};
}
