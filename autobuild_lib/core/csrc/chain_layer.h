// One fused encoder layer of the AutoBuild predictor on flat chain graphs
// (training mode): see chain_layer.cpp.
#pragma once

#include <torch/extension.h>

#include <vector>

// Returns {out, xlr, alpha, z, rstd}; updates running_mean / running_var in place.
std::vector<torch::Tensor> layer_forward(const torch::Tensor& h, const torch::Tensor& follows,
                                         const torch::Tensor& w, const torch::Tensor& b,
                                         const torch::Tensor& att, const torch::Tensor& bias,
                                         const torch::Tensor& gamma, const torch::Tensor& beta,
                                         torch::Tensor running_mean, torch::Tensor running_var,
                                         double momentum, double eps, double slope, bool residual);

// Returns {dh, dw, db, datt, dbias, dgamma, dbeta}.
std::vector<torch::Tensor> layer_backward(const torch::Tensor& dout_in, const torch::Tensor& h,
                                          const torch::Tensor& follows, const torch::Tensor& w,
                                          const torch::Tensor& xlr, const torch::Tensor& alpha,
                                          const torch::Tensor& z, const torch::Tensor& rstd,
                                          const torch::Tensor& att, const torch::Tensor& gamma,
                                          const torch::Tensor& beta, double slope, bool residual);
