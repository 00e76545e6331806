//! Layer constructors with PyTorch's default initialisation (tch's defaults differ):
//! Conv/Linear weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, BatchNorm weight 1
//! and bias 0, and xavier-normal for the downstream classifier.

use tch::nn;

fn uniform(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

/// `nn.Conv2d` with PyTorch's default init.
pub fn conv2d(
    p: &nn::Path,
    cin: i64,
    cout: i64,
    kernel: [i64; 2],
    stride: [i64; 2],
    padding: [i64; 2],
    bias: bool,
) -> nn::Conv2D {
    let fan_in = cin * kernel[0] * kernel[1];
    let cfg = nn::ConvConfigND::<[i64; 2]> {
        stride,
        padding,
        dilation: [1, 1],
        groups: 1,
        bias,
        ws_init: uniform(fan_in),
        bs_init: uniform(fan_in),
        padding_mode: nn::PaddingMode::Zeros,
    };
    nn::conv(p, cin, cout, kernel, cfg)
}

/// `nn.Linear` with PyTorch's default init.
pub fn linear(p: &nn::Path, cin: i64, cout: i64, bias: bool) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: uniform(cin),
        bs_init: if bias { Some(uniform(cin)) } else { None },
        bias,
    };
    nn::linear(p, cin, cout, cfg)
}

/// `nn.Linear` with xavier-normal weight and zero bias (the downstream classifier).
pub fn linear_xavier(p: &nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let std = (2.0 / (cin + cout) as f64).sqrt();
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, cin, cout, cfg)
}

fn bn_config(affine: bool) -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        cudnn_enabled: true,
        eps: 1e-5,
        momentum: 0.1,
        affine,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
    }
}

/// `nn.BatchNorm1d(n)`.
pub fn batch_norm1d(p: &nn::Path, n: i64) -> nn::BatchNorm {
    nn::batch_norm1d(p, n, bn_config(true))
}

/// `nn.BatchNorm1d(n, affine=False)`.
pub fn batch_norm1d_plain(p: &nn::Path, n: i64) -> nn::BatchNorm {
    nn::batch_norm1d(p, n, bn_config(false))
}

/// `nn.BatchNorm2d(n)`.
pub fn batch_norm2d(p: &nn::Path, n: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, n, bn_config(true))
}
