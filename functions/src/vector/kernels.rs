//! Distance arithmetic on `f32` slices. Written as fixed-width lane
//! accumulators over `chunks_exact`, which LLVM turns into SIMD on any target
//! without `unsafe` or per-CPU dispatch; sums stay in `f32` as pgvector's do.

/// Independent partial sums per reduction. A sum's additions wait on each
/// other (four cycles apiece), so one register of partial sums leaves the
/// core mostly idle; 32 keep eight SSE, four AVX or eight NEON registers
/// in flight, which makes a 384-dimension dot product bound by memory
/// rather than by the additions (it was twice as slow at 8). The lane
/// order is fixed here, not by the target, so every build sums alike.
const LANES: usize = 32;

/// Σ aᵢ·bᵢ.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |x, y| x * y)
}

/// Σ (aᵢ − bᵢ)².
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |x, y| (x - y) * (x - y))
}

/// Σ |aᵢ − bᵢ|.
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, |x, y| (x - y).abs())
}

/// 1 − cos(a, b), NaN when either vector is zero (as pgvector).
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    // Three passes over two vectors in cache: a fused pass would hold three
    // sets of partial sums, more than the registers.
    cosine_from_dots(dot(a, b), dot(a, a), dot(b, b))
}

/// 1 − cos(a, b) from `dot(a, b)`, `dot(a, a)` and `dot(b, b)`: what
/// [`cosine_distance`] computes, so a scan that keeps each row's
/// `dot(a, a)` computes one dot product per row and still returns the SQL
/// function's distance, bit for bit.
pub fn cosine_from_dots(ab: f32, aa: f32, bb: f32) -> f64 {
    let similarity = f64::from(ab) / (f64::from(aa) * f64::from(bb)).sqrt();
    // Rounding can push |similarity| just past 1.
    1.0 - similarity.clamp(-1.0, 1.0)
}

#[inline(always)]
fn fold(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            acc[lane] += term(x[lane], y[lane]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum += term(*x, *y);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn agree_with_naive_sums_across_lane_boundaries() {
        for n in [1usize, 7, 8, 9, 384, 1537] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!((dot(&a, &b) - naive_dot(&a, &b)).abs() < 1e-3, "dot n={n}");
            let l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!((squared_l2(&a, &b) - l2).abs() < 1e-3, "l2 n={n}");
            let manhattan: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
            assert!((l1(&a, &b) - manhattan).abs() < 1e-3, "l1 n={n}");
        }
    }

    #[test]
    fn cosine_edge_cases() {
        assert!((cosine_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!(cosine_distance(&[2.0, 2.0], &[1.0, 1.0]).abs() < 1e-7);
        assert!(cosine_distance(&[0.0, 0.0], &[1.0, 1.0]).is_nan());
    }
}
