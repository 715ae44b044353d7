//! The quantized matrix products on their own: ours (`local::quant`) against candle's `QMatMul`
//! on the same bytes, for the weight shapes of a Llama 3.2 1B layer, at one activation row
//! (decode) and at a prompt batch; for a batch also the dot-product kernels and the AVX2 tiles
//! on their own (where the batch ran in AVX-512 tiles).
//!
//! `cargo bench -p corral-inference --features local --bench kernels [-- m…]` (default m = 1 and
//! 512); the kernel threads
//! come from `CANDLE_NUM_THREADS` (default: all cores). Prints GFLOP/s (2·m·n·k per product) and,
//! for decode, the weight bytes streamed per second.

use std::time::{Duration, Instant};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use corral_inference::local::quant::{self, Kernel, q4k::Q4K, q5_0::Q5_0, q6k::Q6K, q8_0::Q8_0};

/// Runs `f` until a second has passed (at least three times) and returns the median time.
fn median(mut f: impl FnMut()) -> Duration {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || start.elapsed() < Duration::from_secs(1) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn run<K: Kernel>(dtype: GgmlDType, n: usize, k: usize, ms: &[usize]) -> candle_core::Result<()> {
    if !quant::fits::<K>(k) {
        return Ok(());
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let w = Tensor::from_vec(
        (0..n * k).map(|_| rng.f32() - 0.5).collect::<Vec<f32>>(),
        (n, k),
        &Device::Cpu,
    )?;
    let q = QTensor::quantize(&w, dtype)?;
    let bytes = q.data()?.into_owned();
    let candle = QMatMul::from_qtensor(q)?;
    for &m in ms {
        let x: Vec<f32> = (0..m * k).map(|_| rng.f32() - 0.5).collect();
        let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu)?;
        let ours = median(|| {
            std::hint::black_box(quant::matmul::<K>(&bytes, n, k, &x, m));
        });
        let dot = if m > 1 {
            median(|| {
                std::hint::black_box(quant::dot_matmul::<K>(&bytes, n, k, &x, m));
            })
        } else {
            ours
        };
        // The AVX2 tiles on their own, where the product above ran in AVX-512 tiles.
        #[cfg(target_arch = "x86_64")]
        let avx2 = match quant::V3::try_new() {
            Some(simd) if m >= quant::tiled::MIN_ROWS && quant::tiled::fits::<K>() => {
                median(|| {
                    std::hint::black_box(quant::tiled::matmul::<K>(simd, &bytes, n, k, &x, m));
                })
            }
            _ => ours,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = ours;
        let theirs = median(|| {
            std::hint::black_box(candle.forward(&xt).ok());
        });
        let flops = 2.0 * (m * n * k) as f64;
        let gbs = |t: Duration| bytes.len() as f64 / t.as_secs_f64() / 1e9;
        let gflops = |t: Duration| flops / t.as_secs_f64() / 1e9;
        println!(
            "{dtype:?} {n:>6}×{k:<5} m={m:<4} ours {:6.1} GFLOP/s {:5.1} GB/s (dot products {:6.1}, AVX2 tiles {:6.1})   candle {:6.1} GFLOP/s {:5.1} GB/s   {:.2}×",
            gflops(ours),
            gbs(ours),
            gflops(dot),
            gflops(avx2),
            gflops(theirs),
            gbs(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64(),
        );
    }
    Ok(())
}

fn main() -> candle_core::Result<()> {
    let ms: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ms = if ms.is_empty() { vec![1, 512] } else { ms };
    let only = std::env::var("CORRAL_BENCH_ONLY").unwrap_or_default();
    // `CORRAL_BENCH_SHAPES=128256x2048,…` for other shapes (that one is Llama 3.2 1B's output
    // matrix, far larger than the caches).
    let shapes: Vec<(usize, usize)> = match std::env::var("CORRAL_BENCH_SHAPES") {
        Ok(list) => list
            .split(',')
            .filter_map(|s| {
                let (n, k) = s.split_once('x')?;
                Some((n.trim().parse().ok()?, k.trim().parse().ok()?))
            })
            .collect(),
        Err(_) => vec![(2048, 2048), (8192, 2048), (2048, 8192)],
    };
    for (n, k) in shapes {
        if only.is_empty() || only.contains("q8_0") {
            run::<Q8_0>(GgmlDType::Q8_0, n, k, &ms)?;
        }
        if only.is_empty() || only.contains("q4k") {
            run::<Q4K>(GgmlDType::Q4K, n, k, &ms)?;
        }
        if only.is_empty() || only.contains("q6k") {
            run::<Q6K>(GgmlDType::Q6K, n, k, &ms)?;
        }
        if only.is_empty() || only.contains("q5_0") {
            run::<Q5_0>(GgmlDType::Q5_0, n, k, &ms)?;
        }
    }
    Ok(())
}
