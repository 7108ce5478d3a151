// One encoder layer of the AutoBuild predictor on flat chain graphs, fused
// (paper Sec. 3.2; the chain form of GATv2 is derived in chain_predictor.py):
//
//   xlr   = h W^T + b                          W = [W_l; W_r], one matrix product
//   e_i,j = a^T LeakyReLU(xl_j + xr_i)         j in {i - 1, i}
//   alpha = sigmoid(e_i,i-1 - e_i,i)            0 where node i opens its graph
//   g_i   = xl_i + alpha (xl_i-1 - xl_i) + bias
//   out   = ReLU(BN(g)) (+ h on layers after the first)
//
// Forward and backward each make one pass over the nodes for the attention and
// one or two for BatchNorm, instead of ~20 separate tensor operations.  Only
// training mode (batch statistics) is fused; evaluation keeps the tensor path.
//
// Determinism: built without -ffast-math and with -ffp-contract=off, every sum
// has a fixed order written in the source (columns over nodes in double, a
// row's 32 terms in eight lanes), so the result does not depend on the vector
// width: the AVX2 and baseline clones of the loops give the same bits.
// -fno-trapping-math only lets the compiler vectorise the branches.
#include "chain_layer.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using fptr = float* __restrict__;
using cfptr = const float* __restrict__;
using dptr = double* __restrict__;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define AB_CLONES
#endif

constexpr int64_t kLanes = 8;

// A row's sum in a fixed order: eight running lanes, then the lanes pairwise.
inline float lane_sum(cfptr t, int64_t n) {
  float acc[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t k = 0; k < n; k += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += t[k + j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// LeakyReLU without a branch: equal to x > 0 ? x : slope x.
inline float leaky(float x, float slope) { return std::max(x, 0.0f) + slope * std::min(x, 0.0f); }
// d LeakyReLU / dx, torch's convention at 0 (slope).
inline float leaky_grad(float x, float slope) { return x > 0.0f ? 1.0f : slope; }

// Attention and aggregation of all nodes: G = g, AL = alpha, sum = column sums of g.
AB_CLONES void attention_forward(int64_t n, int64_t hid, float slope, cfptr X, cfptr F, cfptr A, cfptr B,
                                 fptr G, fptr AL, dptr sum) {
  float tp[256], ts[256];
  for (int64_t i = 0; i < n; ++i) {
    cfptr xl = X + i * 2 * hid;
    cfptr xr = xl + hid;
    fptr g = G + i * hid;
    float a = 0.0f;
    if (F[i] != 0.0f) {
      cfptr xp = xl - 2 * hid;
      for (int64_t k = 0; k < hid; ++k) {
        tp[k] = A[k] * leaky(xp[k] + xr[k], slope);
        ts[k] = A[k] * leaky(xl[k] + xr[k], slope);
      }
      a = 1.0f / (1.0f + std::exp(lane_sum(ts, hid) - lane_sum(tp, hid)));
      for (int64_t k = 0; k < hid; ++k) g[k] = xl[k] + a * (xp[k] - xl[k]) + B[k];
    } else {
      for (int64_t k = 0; k < hid; ++k) g[k] = xl[k] + B[k];
    }
    AL[i] = a;
    for (int64_t k = 0; k < hid; ++k) sum[k] += g[k];
  }
}

AB_CLONES void centred_squares(int64_t n, int64_t hid, cfptr G, cfptr mean, dptr sq) {
  for (int64_t i = 0; i < n; ++i) {
    cfptr g = G + i * hid;
    for (int64_t k = 0; k < hid; ++k) {
      const double d = g[k] - mean[k];
      sq[k] += d * d;
    }
  }
}

// Z = (g - mean) rstd in place of g; O = ReLU(Z gamma + beta) (+ H).
AB_CLONES void normalise(int64_t n, int64_t hid, cfptr mean, cfptr rstd, cfptr gamma, cfptr beta, cfptr H,
                         fptr Z, fptr O) {
  for (int64_t i = 0; i < n * hid; i += hid) {
    for (int64_t k = 0; k < hid; ++k) {
      const float z = (Z[i + k] - mean[k]) * rstd[k];
      Z[i + k] = z;
      O[i + k] = std::max(z * gamma[k] + beta[k], 0.0f) + (H ? H[i + k] : 0.0f);
    }
  }
}

// ReLU's mask: DY = dout where z gamma + beta > 0; column sums of DY and DY z.
AB_CLONES void relu_backward(int64_t n, int64_t hid, cfptr Z, cfptr DO, cfptr gamma, cfptr beta, fptr DY,
                             dptr sdy, dptr sdyz) {
  for (int64_t i = 0; i < n * hid; i += hid) {
    for (int64_t k = 0; k < hid; ++k) {
      const float z = Z[i + k];
      const float d = DO[i + k];
      const float m = z * gamma[k] + beta[k] > 0.0f ? d : 0.0f;
      DY[i + k] = m;
      sdy[k] += m;
      sdyz[k] += static_cast<double>(m * z);
    }
  }
}

// BatchNorm and GATv2 backward, node by node.  Row i of DX (= [dxl, dxr]) is
// written by node i and then receives node i + 1's share to its predecessor.
AB_CLONES void attention_backward(int64_t n, int64_t hid, float slope, cfptr X, cfptr F, cfptr A, cfptr AL,
                                  cfptr DY, cfptr Z, cfptr scale, cfptr mdy, cfptr mdyz, fptr DX,
                                  dptr datt, dptr dbias) {
  float dg[256], t[256], gu[256], gv[256];
  for (int64_t i = 0; i < n; ++i) {
    cfptr dy = DY + i * hid;
    cfptr z = Z + i * hid;
    for (int64_t k = 0; k < hid; ++k) {
      dg[k] = scale[k] * (dy[k] - mdy[k] - z[k] * mdyz[k]);
      dbias[k] += dg[k];
    }
    cfptr xl = X + i * 2 * hid;
    cfptr xr = xl + hid;
    fptr dxl = DX + i * 2 * hid;
    fptr dxr = dxl + hid;
    if (F[i] == 0.0f) {
      for (int64_t k = 0; k < hid; ++k) {
        dxl[k] = dg[k];
        dxr[k] = 0.0f;
      }
      continue;
    }
    const float a = AL[i];
    cfptr xp = xl - 2 * hid;
    for (int64_t k = 0; k < hid; ++k) t[k] = dg[k] * (xp[k] - xl[k]);
    const float dd = lane_sum(t, hid) * a * (1.0f - a);  // d e_i,i-1; d e_i,i is its negative
    for (int64_t k = 0; k < hid; ++k) {
      const float pu = xp[k] + xr[k], pv = xl[k] + xr[k];
      datt[k] += static_cast<double>(dd * (leaky(pu, slope) - leaky(pv, slope)));
      gu[k] = dd * A[k] * leaky_grad(pu, slope);
      gv[k] = -dd * A[k] * leaky_grad(pv, slope);
    }
    fptr dxp = DX + (i - 1) * 2 * hid;
    for (int64_t k = 0; k < hid; ++k) {
      dxl[k] = dg[k] * (1.0f - a) + gv[k];
      dxr[k] = gu[k] + gv[k];
      dxp[k] += dg[k] * a + gu[k];
    }
  }
}

// Weight and input gradients of a layer with a narrow input (the first layer reads the FE-MLP's few
// columns), where the library's skinny matrix products cost ~3x the 32-wide ones on this CPU:
// DW = DX^T H (summed over nodes in double) and DH = DX W (each row's sum in eight lanes).
AB_CLONES void narrow_backward(int64_t n, int64_t in, int64_t out, cfptr DX, cfptr H, cfptr W, fptr DW, fptr DH) {
  std::vector<double> acc(in * out, 0.0);  // acc[c * out + j] = DW[j, c]
  std::vector<float> wt(in * out);          // W transposed
  for (int64_t j = 0; j < out; ++j)
    for (int64_t c = 0; c < in; ++c) wt[c * out + j] = W[j * in + c];
  float t[512];
  for (int64_t i = 0; i < n; ++i) {
    cfptr dx = DX + i * out;
    for (int64_t c = 0; c < in; ++c) {
      const float hc = H[i * in + c];
      double* a = acc.data() + c * out;
      const float* wc = wt.data() + c * out;
      for (int64_t j = 0; j < out; ++j) {
        a[j] += static_cast<double>(hc * dx[j]);
        t[j] = dx[j] * wc[j];
      }
      DH[i * in + c] = lane_sum(t, out);
    }
  }
  for (int64_t j = 0; j < out; ++j)
    for (int64_t c = 0; c < in; ++c) DW[j * in + c] = static_cast<float>(acc[c * out + j]);
}

void check(const torch::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(),
              "chain_layer inputs must be contiguous float32 CPU tensors");
}

torch::Tensor from_double(const std::vector<double>& v, const torch::TensorOptions& opt) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(v.size())}, opt);
  for (size_t k = 0; k < v.size(); ++k) t.data_ptr<float>()[k] = static_cast<float>(v[k]);
  return t;
}

}  // namespace

// Returns {out, xlr, alpha, z, rstd}; updates running_mean / running_var in place.
std::vector<torch::Tensor> layer_forward(const torch::Tensor& h, const torch::Tensor& follows,
                                         const torch::Tensor& w, const torch::Tensor& b,
                                         const torch::Tensor& att, const torch::Tensor& bias,
                                         const torch::Tensor& gamma, const torch::Tensor& beta,
                                         torch::Tensor running_mean, torch::Tensor running_var,
                                         double momentum, double eps, double slope, bool residual) {
  for (const torch::Tensor* p : std::initializer_list<const torch::Tensor*>{
           &h, &follows, &w, &b, &att, &bias, &gamma, &beta, &running_mean, &running_var})
    check(*p);
  const int64_t n = h.size(0), hid = att.numel();
  TORCH_CHECK(n >= 2, "BatchNorm in training mode needs at least 2 nodes");
  TORCH_CHECK(hid % kLanes == 0 && hid <= 256, "hidden width must be a multiple of 8, at most 256");
  TORCH_CHECK(!residual || h.size(1) == hid, "a residual layer needs input width == hidden");
  const auto opt = h.options();
  torch::Tensor xlr = torch::addmm(b, h, w.t());  // [n, 2 hid]
  torch::Tensor z = torch::empty({n, hid}, opt);   // g, then normalised in place
  torch::Tensor alpha = torch::empty({n}, opt);
  std::vector<double> sum(hid, 0.0), sq(hid, 0.0);
  attention_forward(n, hid, static_cast<float>(slope), xlr.data_ptr<float>(), follows.data_ptr<float>(),
                    att.data_ptr<float>(), bias.data_ptr<float>(), z.data_ptr<float>(), alpha.data_ptr<float>(),
                    sum.data());
  std::vector<float> mean(hid);
  for (int64_t k = 0; k < hid; ++k) mean[k] = static_cast<float>(sum[k] / n);
  centred_squares(n, hid, z.data_ptr<float>(), mean.data(), sq.data());
  torch::Tensor rstd = torch::empty({hid}, opt);
  float* R = rstd.data_ptr<float>();
  float* RM = running_mean.data_ptr<float>();
  float* RV = running_var.data_ptr<float>();
  const float m = static_cast<float>(momentum);
  for (int64_t k = 0; k < hid; ++k) {  // BatchNorm1d: biased variance normalises, unbiased is tracked
    R[k] = static_cast<float>(1.0 / std::sqrt(sq[k] / n + eps));
    RM[k] = m * mean[k] + (1.0f - m) * RM[k];
    RV[k] = m * static_cast<float>(sq[k] / (n - 1)) + (1.0f - m) * RV[k];
  }
  torch::Tensor out = torch::empty({n, hid}, opt);
  normalise(n, hid, mean.data(), R, gamma.data_ptr<float>(), beta.data_ptr<float>(),
            residual ? h.data_ptr<float>() : nullptr, z.data_ptr<float>(), out.data_ptr<float>());
  return {out, xlr, alpha, z, rstd};
}

// Returns {dh, dw, db, datt, dbias, dgamma, dbeta}.
std::vector<torch::Tensor> layer_backward(const torch::Tensor& dout_in, const torch::Tensor& h,
                                          const torch::Tensor& follows, const torch::Tensor& w,
                                          const torch::Tensor& xlr, const torch::Tensor& alpha,
                                          const torch::Tensor& z, const torch::Tensor& rstd,
                                          const torch::Tensor& att, const torch::Tensor& gamma,
                                          const torch::Tensor& beta, double slope, bool residual) {
  const torch::Tensor dout = dout_in.contiguous();
  const int64_t n = h.size(0), hid = att.numel();
  const auto opt = h.options();
  // ReLU and BatchNorm: dg = rstd gamma (dy - mean(dy) - z mean(dy z))
  torch::Tensor dy = torch::empty({n, hid}, opt);
  std::vector<double> sdy(hid, 0.0), sdyz(hid, 0.0);
  relu_backward(n, hid, z.data_ptr<float>(), dout.data_ptr<float>(), gamma.data_ptr<float>(),
                beta.data_ptr<float>(), dy.data_ptr<float>(), sdy.data(), sdyz.data());
  std::vector<float> mdy(hid), mdyz(hid), scale(hid);
  for (int64_t k = 0; k < hid; ++k) {
    mdy[k] = static_cast<float>(sdy[k] / n);
    mdyz[k] = static_cast<float>(sdyz[k] / n);
    scale[k] = rstd.data_ptr<float>()[k] * gamma.data_ptr<float>()[k];
  }
  torch::Tensor dxlr = torch::empty({n, 2 * hid}, opt);
  std::vector<double> datt(hid, 0.0), dbias(hid, 0.0);
  attention_backward(n, hid, static_cast<float>(slope), xlr.data_ptr<float>(), follows.data_ptr<float>(),
                     att.data_ptr<float>(), alpha.data_ptr<float>(), dy.data_ptr<float>(), z.data_ptr<float>(),
                     scale.data(), mdy.data(), mdyz.data(), dxlr.data_ptr<float>(), datt.data(), dbias.data());
  const int64_t in = h.size(1);
  torch::Tensor dw, dh;
  if (!residual && in < kLanes) {
    dw = torch::empty({2 * hid, in}, opt);
    dh = torch::empty({n, in}, opt);
    narrow_backward(n, in, 2 * hid, dxlr.data_ptr<float>(), h.data_ptr<float>(), w.data_ptr<float>(),
                    dw.data_ptr<float>(), dh.data_ptr<float>());
  } else {
    dw = torch::mm(dxlr.t(), h);
    dh = residual ? torch::addmm(dout, dxlr, w) : torch::mm(dxlr, w);
  }
  torch::Tensor db = dxlr.sum(0);
  return {dh, dw, db, from_double(datt, opt), from_double(dbias, opt), from_double(sdyz, opt),
          from_double(sdy, opt)};
}
