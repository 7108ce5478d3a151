// The AutoBuild predictor's whole training-mode network on flat chain graphs,
// forward and backward, in two calls (paper Sec. 3.2, Eq. 2):
//
//   h^0     = |FE-MLP(x)|                       one scalar per feature category
//   h^m+1   = encoder layer m (chain_layer.cpp)   ReLU(BN(GATv2(h^m))) (+ h^m)
//   norm_m  = mean over a graph's nodes of the row sums of h^m = ||h_G^m||_1
//   pred    = lin2(ReLU(lin1(h_G^M)))
//
// Between the encoder layers everything is a few short loops over the nodes,
// so a training step makes a handful of calls instead of a hundred tensor
// operations.  Sums over nodes and graphs run in double, in node order.
//
// Parameter lists, in the order ChainNetwork (chain_network.py) passes them,
// and gradient lists of the same layout:
//   fe:    per categorical feature  embedding [V, W], linear weight [1, W], bias [1];
//          then per numeric feature linear1 weight [W, d], bias [W], linear2 weight [1, W], bias [1]
//   convs: per layer  lin_l weight, lin_l bias, lin_r weight, lin_r bias, att, bias, BN weight, BN bias
//   head:  linear1 weight, bias, linear2 weight, bias
//   stats: per layer  BN running_mean, running_var, num_batches_tracked (forward only)
#include "chain_layer.h"

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kConv = 8;  // tensors per encoder layer in `convs`
constexpr int64_t kStats = 3;

const float* f(const torch::Tensor& t) { return t.data_ptr<float>(); }
float* f(torch::Tensor& t) { return t.data_ptr<float>(); }

void check_float(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous(), what,
              " must be a contiguous float32 CPU tensor");
}

// The FE-MLP's parameter list: categorical features first, the numeric ones the remainder of `fe`.
struct FeLayout {
  int64_t n_cat, n_num, width;
  std::vector<const float*> num_params;  // per numeric feature: linear1 weight, bias, linear2 weight, bias
  std::vector<int64_t> num_dims, num_starts;  // its input width and first column in `num`
};

FeLayout fe_layout(const std::vector<torch::Tensor>& fe, const torch::Tensor& cat) {
  const int64_t n_cat = cat.size(1);
  TORCH_CHECK(static_cast<int64_t>(fe.size()) >= 3 * n_cat && (fe.size() - 3 * n_cat) % 4 == 0,
              "FE-MLP parameter list does not match ", n_cat, " categorical features");
  for (const auto& t : fe) check_float(t, "every FE-MLP parameter");
  FeLayout L{n_cat, static_cast<int64_t>(fe.size() - 3 * n_cat) / 4, n_cat ? fe[0].size(1) : fe[0].size(0), {}, {}, {0}};
  for (int64_t q = 0; q < L.n_num; ++q) {
    for (int64_t t = 0; t < 4; ++t) L.num_params.push_back(f(fe[3 * n_cat + 4 * q + t]));
    L.num_dims.push_back(fe[3 * n_cat + 4 * q].size(1));
    L.num_starts.push_back(L.num_starts.back() + L.num_dims.back());
  }
  return L;
}

}  // namespace

// Returns {pred [B], norms [B, M+1], then what network_backward needs}.
std::vector<torch::Tensor> network_forward(const std::vector<torch::Tensor>& fe,
                                           const std::vector<torch::Tensor>& convs,
                                           const std::vector<torch::Tensor>& head,
                                           const std::vector<torch::Tensor>& stats, const torch::Tensor& cat,
                                           const torch::Tensor& num, const torch::Tensor& follows,
                                           const torch::Tensor& ptr, double momentum, double eps, double slope) {
  const at::NoGradGuard no_grad;
  TORCH_CHECK(cat.scalar_type() == torch::kInt64 && ptr.scalar_type() == torch::kInt64 && cat.is_contiguous() &&
                  ptr.is_contiguous() && cat.dim() == 2,
              "cat must be a contiguous int64 [nodes, categories] tensor and ptr a contiguous int64 vector");
  check_float(num, "num");
  check_float(follows, "follows");
  const FeLayout L = fe_layout(fe, cat);
  const int64_t n = cat.size(0), n_layers = static_cast<int64_t>(convs.size()) / kConv;
  const int64_t cols = L.n_cat + L.n_num, B = ptr.size(0) - 1;
  TORCH_CHECK(n >= 2 && num.size(0) == n && follows.numel() == n && B >= 1 && ptr.data_ptr<int64_t>()[B] == n,
              "cat, num, follows and ptr disagree on the number of nodes (at least 2 needed)");
  TORCH_CHECK(n_layers >= 1 && static_cast<int64_t>(convs.size()) == kConv * n_layers &&
                  static_cast<int64_t>(stats.size()) == kStats * n_layers && head.size() == 4,
              "encoder, statistics or head parameter lists have the wrong length");
  const auto opt = num.options();

  // FE-MLP: every categorical value's scalar f_c(v) once, then a gather
  std::vector<float> values;
  for (int64_t c = 0; c < L.n_cat; ++c) {
    const torch::Tensor& emb = fe[3 * c];
    const float* lw = f(fe[3 * c + 1]);
    const float lb = f(fe[3 * c + 2])[0];
    for (int64_t v = 0; v < emb.size(0); ++v) {
      const float* e = f(emb) + v * L.width;
      float acc = 0.0f;
      for (int64_t j = 0; j < L.width; ++j) acc += e[j] * lw[j];
      values.push_back(acc + lb);
    }
  }
  const int64_t* C = cat.data_ptr<int64_t>();
  for (int64_t i = 0; i < n * L.n_cat; ++i)
    TORCH_CHECK(C[i] >= 0 && C[i] < static_cast<int64_t>(values.size()), "categorical index out of range");
  torch::Tensor raw = torch::empty({n, cols}, opt);
  torch::Tensor hidden = torch::empty({n, L.n_num * L.width}, opt);
  float* R = f(raw);
  float* Hd = f(hidden);
  const int64_t d_all = num.size(1);
  const std::vector<const float*>& nw = L.num_params;
  const float* X = f(num);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < L.n_cat; ++c) R[i * cols + c] = values[C[i * L.n_cat + c]];
    const float* x = X + i * d_all;
    for (int64_t q = 0; q < L.n_num; ++q) {
      const float *w1 = nw[4 * q], *b1 = nw[4 * q + 1], *w2 = nw[4 * q + 2];
      const int64_t d = L.num_dims[q];
      float out = 0.0f;
      for (int64_t k = 0; k < L.width; ++k) {
        float a = 0.0f;
        for (int64_t j = 0; j < d; ++j) a += x[j] * w1[k * d + j];
        a += b1[k];
        Hd[i * L.n_num * L.width + q * L.width + k] = a;
        out += a * w2[k];
      }
      R[i * cols + L.n_cat + q] = out + nw[4 * q + 3][0];
      x += d;
    }
  }
  std::vector<torch::Tensor> hs{raw.abs()};
  std::vector<torch::Tensor> saved;
  for (int64_t m = 0; m < n_layers; ++m) {
    const torch::Tensor* p = convs.data() + kConv * m;
    torch::Tensor w = torch::cat({p[0], p[2]});
    auto out = layer_forward(hs.back(), follows, w, torch::cat({p[1], p[3]}), p[4].view(-1), p[5], p[6], p[7],
                             stats[kStats * m], stats[kStats * m + 1], momentum, eps, slope, m > 0);
    stats[kStats * m + 2].add_(1);
    saved.insert(saved.end(), {w, out[1], out[2], out[3], out[4]});
    hs.push_back(out[0]);
  }

  // pooling: per graph, the mean row sum of every hop and the mean of h^M
  const int64_t hops = n_layers + 1, hid = hs.back().size(1);
  const int64_t* P = ptr.data_ptr<int64_t>();
  torch::Tensor norms = torch::empty({B, hops}, opt), pooled = torch::empty({B, hid}, opt);
  float *NO = f(norms), *PO = f(pooled);
  std::vector<const float*> hp;
  std::vector<int64_t> widths;
  for (const auto& h : hs) {
    hp.push_back(f(h));
    widths.push_back(h.size(1));
  }
  std::vector<double> acc(hops + hid);
  for (int64_t b = 0; b < B; ++b) {
    std::fill(acc.begin(), acc.end(), 0.0);
    const int64_t count = P[b + 1] - P[b];
    TORCH_CHECK(count >= 1, "every graph needs at least one node");
    for (int64_t i = P[b]; i < P[b + 1]; ++i) {
      for (int64_t m = 0; m < hops; ++m) {
        const float* row = hp[m] + i * widths[m];
        float s = 0.0f;
        for (int64_t k = 0; k < widths[m]; ++k) s += row[k];
        acc[m] += s;
      }
      const float* last = hp[n_layers] + i * hid;
      for (int64_t k = 0; k < hid; ++k) acc[hops + k] += last[k];
    }
    for (int64_t m = 0; m < hops; ++m) NO[b * hops + m] = static_cast<float>(acc[m] / count);
    for (int64_t k = 0; k < hid; ++k) PO[b * hid + k] = static_cast<float>(acc[hops + k] / count);
  }

  // head: pred = lin2(ReLU(lin1(h_G^M)))
  const int64_t hw = head[0].size(0);
  torch::Tensor a = torch::empty({B, hw}, opt), pred = torch::empty({B}, opt);
  const float *W1 = f(head[0]), *b1 = f(head[1]), *w2 = f(head[2]), b2 = f(head[3])[0];
  float *AO = f(a), *PR = f(pred);
  for (int64_t b = 0; b < B; ++b) {
    const float* x = PO + b * hid;
    float out = 0.0f;
    for (int64_t j = 0; j < hw; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < hid; ++k) s += x[k] * W1[j * hid + k];
      s += b1[j];
      AO[b * hw + j] = s;
      out += std::max(s, 0.0f) * w2[j];
    }
    PR[b] = out + b2;
  }
  std::vector<torch::Tensor> result{pred, norms, raw, hidden, pooled, a};
  result.insert(result.end(), hs.begin(), hs.end());
  result.insert(result.end(), saved.begin(), saved.end());
  return result;
}

// Writes every parameter's gradient into `grads` (the layout of fe + convs + head).
void network_backward(const std::vector<torch::Tensor>& fe, const std::vector<torch::Tensor>& convs,
                      const std::vector<torch::Tensor>& head, std::vector<torch::Tensor> grads,
                      const std::vector<torch::Tensor>& ctx, const torch::Tensor& cat, const torch::Tensor& num,
                      const torch::Tensor& follows, const torch::Tensor& ptr, const torch::Tensor& dpred_in,
                      const torch::Tensor& dnorms_in, double slope) {
  const at::NoGradGuard no_grad;
  const FeLayout L = fe_layout(fe, cat);
  const int64_t n_layers = static_cast<int64_t>(convs.size()) / kConv, hops = n_layers + 1;
  TORCH_CHECK(grads.size() == fe.size() + convs.size() + head.size() &&
                  static_cast<int64_t>(ctx.size()) == 6 + hops + 5 * n_layers,
              "gradient or saved-tensor list has the wrong length");
  for (const auto& g : grads) check_float(g, "every gradient");
  const torch::Tensor dpred = dpred_in.contiguous(), dnorms = dnorms_in.contiguous();
  const torch::Tensor &raw = ctx[2], &hidden = ctx[3], &pooled = ctx[4], &a = ctx[5];
  const torch::Tensor* hs = ctx.data() + 6;
  const torch::Tensor* saved = hs + hops;
  torch::Tensor* g_fe = grads.data();
  torch::Tensor* g_conv = g_fe + fe.size();
  torch::Tensor* g_head = g_conv + convs.size();
  const int64_t n = cat.size(0), B = ptr.size(0) - 1, hid = pooled.size(1), hw = head[0].size(0);
  const int64_t* P = ptr.data_ptr<int64_t>();

  // head
  const float *W1 = f(head[0]), *w2 = f(head[2]), *dp = f(dpred), *A = f(a), *X = f(pooled);
  std::vector<double> gW1(hw * hid, 0.0), gb1(hw, 0.0), gw2(hw, 0.0);
  double gb2 = 0.0;
  std::vector<float> dx(B * hid, 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    gb2 += dp[b];
    for (int64_t j = 0; j < hw; ++j) {
      const float aj = A[b * hw + j];
      gw2[j] += static_cast<double>(dp[b] * std::max(aj, 0.0f));
      const float da = aj > 0.0f ? dp[b] * w2[j] : 0.0f;
      gb1[j] += da;
      for (int64_t k = 0; k < hid; ++k) {
        gW1[j * hid + k] += static_cast<double>(da * X[b * hid + k]);
        dx[b * hid + k] += da * W1[j * hid + k];
      }
    }
  }
  auto store = [](torch::Tensor& g, const std::vector<double>& v) {
    float* out = f(g);
    for (size_t k = 0; k < v.size(); ++k) out[k] = static_cast<float>(v[k]);
  };
  store(g_head[0], gW1);
  store(g_head[1], gb1);
  store(g_head[2], gw2);
  f(g_head[3])[0] = static_cast<float>(gb2);

  // mean pooling: every node of graph b gets dnorms[b, m] / count on each column of h^m
  std::vector<float> dnode(n * hops);  // per node and hop
  torch::Tensor dh = torch::empty({n, hid}, num.options());
  const float* DN = f(dnorms);
  float* DH = f(dh);
  for (int64_t b = 0; b < B; ++b) {
    const float count = static_cast<float>(P[b + 1] - P[b]);
    for (int64_t i = P[b]; i < P[b + 1]; ++i) {
      for (int64_t m = 0; m < hops; ++m) dnode[i * hops + m] = DN[b * hops + m] / count;
      for (int64_t k = 0; k < hid; ++k) DH[i * hid + k] = dx[b * hid + k] / count + dnode[i * hops + n_layers];
    }
  }
  for (int64_t m = n_layers - 1; m >= 0; --m) {
    const torch::Tensor* p = convs.data() + kConv * m;
    const torch::Tensor* s = saved + 5 * m;
    auto g = layer_backward(dh, hs[m], follows, s[0], s[1], s[2], s[3], s[4], p[4].view(-1), p[6], p[7], slope,
                            m > 0);
    torch::Tensor* gc = g_conv + kConv * m;
    const int64_t width = p[0].size(0);
    gc[0].copy_(g[1].narrow(0, 0, width));
    gc[1].copy_(g[2].narrow(0, 0, width));
    gc[2].copy_(g[1].narrow(0, width, width));
    gc[3].copy_(g[2].narrow(0, width, width));
    gc[4].view(-1).copy_(g[3]);
    gc[5].copy_(g[4]);
    gc[6].copy_(g[5]);
    gc[7].copy_(g[6]);
    dh = g[0].contiguous();
    float* D = f(dh);
    const int64_t width_m = dh.size(1);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < width_m; ++k) D[i * width_m + k] += dnode[i * hops + m];
  }

  // FE-MLP: h^0 = |raw|
  const int64_t cols = raw.size(1);
  const float *D = f(dh), *R = f(raw), *Hd = f(hidden);
  std::vector<double> dvalues;
  std::vector<int64_t> offsets{0};
  for (int64_t c = 0; c < L.n_cat; ++c) offsets.push_back(offsets.back() + fe[3 * c].size(0));
  dvalues.assign(offsets.back(), 0.0);
  const int64_t* C = cat.data_ptr<int64_t>();
  const int64_t d_all = num.size(1);
  const float* XN = f(num);
  std::vector<double> gnum(L.n_num * (L.width * d_all + 2 * L.width + 1), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < cols; ++c) {
      const float r = R[i * cols + c];
      const float draw = r > 0.0f ? D[i * cols + c] : (r < 0.0f ? -D[i * cols + c] : 0.0f);
      if (c < L.n_cat) {
        dvalues[C[i * L.n_cat + c]] += draw;
        continue;
      }
      // numeric feature q: out = lin2(lin1(x))
      const int64_t q = c - L.n_cat, d = L.num_dims[q];
      const float* w2 = L.num_params[4 * q + 2];
      double* gq = gnum.data() + q * (L.width * d_all + 2 * L.width + 1);  // gw1, gb1, gw2, gb2
      const float* x = XN + i * d_all + L.num_starts[q];
      for (int64_t k = 0; k < L.width; ++k) {
        gq[L.width * d + L.width + k] += static_cast<double>(draw * Hd[i * L.n_num * L.width + q * L.width + k]);
        const float da1 = draw * w2[k];
        gq[L.width * d + k] += da1;
        for (int64_t j = 0; j < d; ++j) gq[k * d + j] += static_cast<double>(da1 * x[j]);
      }
      gq[L.width * d + 2 * L.width] += draw;
    }
  }
  for (int64_t c = 0; c < L.n_cat; ++c) {
    const torch::Tensor& emb = fe[3 * c];
    const float *lw = f(fe[3 * c + 1]), *E = f(emb);
    float* GE = f(g_fe[3 * c]);
    std::vector<double> glw(L.width, 0.0);
    double glb = 0.0;
    for (int64_t v = 0; v < emb.size(0); ++v) {
      const float dv = static_cast<float>(dvalues[offsets[c] + v]);
      for (int64_t j = 0; j < L.width; ++j) {
        GE[v * L.width + j] = dv * lw[j];
        glw[j] += static_cast<double>(dv * E[v * L.width + j]);
      }
      glb += dv;
    }
    store(g_fe[3 * c + 1], glw);
    f(g_fe[3 * c + 2])[0] = static_cast<float>(glb);
  }
  for (int64_t q = 0; q < L.n_num; ++q) {
    const int64_t d = L.num_dims[q];
    const double* gq = gnum.data() + q * (L.width * d_all + 2 * L.width + 1);
    torch::Tensor* g = g_fe + 3 * L.n_cat + 4 * q;
    for (int64_t k = 0; k < L.width * d; ++k) f(g[0])[k] = static_cast<float>(gq[k]);
    for (int64_t k = 0; k < L.width; ++k) {
      f(g[1])[k] = static_cast<float>(gq[L.width * d + k]);
      f(g[2])[k] = static_cast<float>(gq[L.width * d + L.width + k]);
    }
    f(g[3])[0] = static_cast<float>(gq[L.width * d + 2 * L.width]);
  }
}

std::vector<torch::Tensor> rank_loss(const torch::Tensor& y, const torch::Tensor& pred, const torch::Tensor& norms,
                                     bool hop_srcc, double strength);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("layer_forward", &layer_forward, "fused chain encoder layer, forward (training mode)");
  m.def("layer_backward", &layer_backward, "fused chain encoder layer, backward");
  m.def("network_forward", &network_forward, "the predictor on chain graphs, forward (training mode)");
  m.def("network_backward", &network_backward, "the predictor on chain graphs, backward into gradient views");
  m.def("rank_loss", &rank_loss, "Eq. 4 loss with its gradients to the prediction and the hop norms");
}
