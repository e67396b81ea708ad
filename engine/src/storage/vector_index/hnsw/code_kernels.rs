//! The kernel of a walk over 8-bit codes: `Σ wᵢ·cᵢ` of a query's float
//! weights with one node's codes, or with four nodes' at once. Every
//! metric's coded distance is this sum plus constants
//! ([`super::quantized`]).
//!
//! Written here for the reason [`super::kernels`] is: a one-against-four
//! kernel over `u8` codes is what no maintained Rust crate offers. AVX2
//! with FMA is chosen at run time; other CPUs get portable loops.

/// One query's weights against one node's codes.
pub(super) type CodeKernel = fn(&[f32], &[u8]) -> f32;
/// One query's weights against four nodes' codes.
pub(super) type CodeKernel4 = fn(&[f32], [&[u8]; 4]) -> [f32; 4];

/// The fastest code kernels this CPU runs.
pub(super) fn fastest() -> (CodeKernel, CodeKernel4) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        return (avx2::dot, avx2::dot4);
    }
    (portable::dot, portable::dot4)
}

mod portable {
    //! Eight independent accumulators, as in [`super::super::kernels`].

    pub(super) fn dot(w: &[f32], c: &[u8]) -> f32 {
        let mut lanes = [0f32; 8];
        let whole = w.len().min(c.len()) / 8 * 8;
        for (w, c) in w[..whole].chunks_exact(8).zip(c[..whole].chunks_exact(8)) {
            for lane in 0..8 {
                lanes[lane] += w[lane] * f32::from(c[lane]);
            }
        }
        let tail: f32 = w[whole..]
            .iter()
            .zip(&c[whole..])
            .map(|(w, &c)| w * f32::from(c))
            .sum();
        lanes.iter().sum::<f32>() + tail
    }

    pub(super) fn dot4(w: &[f32], c: [&[u8]; 4]) -> [f32; 4] {
        c.map(|c| dot(w, c))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! Handed out by [`super::fastest`] only after the CPU was checked for
    //! AVX2 and FMA, which makes the calls into the `target_feature`
    //! functions below sound.
    use std::arch::x86_64::{
        __m128i, __m256, _mm_loadl_epi64, _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32,
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    };

    use super::super::kernels::avx2::sum;

    /// Eight weights.
    #[inline(always)]
    fn weights(w: &[f32]) -> __m256 {
        assert!(w.len() >= 8);
        // SAFETY: `w` holds at least the eight floats read.
        unsafe { _mm256_loadu_ps(w.as_ptr()) }
    }

    /// Eight codes, widened to floats.
    #[inline(always)]
    fn codes(c: &[u8]) -> __m256 {
        assert!(c.len() >= 8);
        // SAFETY: `c` holds at least the eight bytes read; the widening
        // instructions need AVX2, which every caller enables.
        unsafe {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                c.as_ptr().cast::<__m128i>(),
            )))
        }
    }

    fn tail(w: &[f32], c: &[u8], whole: usize, len: usize) -> f32 {
        w[whole..len]
            .iter()
            .zip(&c[whole..len])
            .map(|(w, &c)| w * f32::from(c))
            .sum()
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2(w: &[f32], c: &[u8]) -> f32 {
        let len = w.len().min(c.len());
        let whole = len / 16 * 16;
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (w, c) in w[..whole].chunks_exact(16).zip(c[..whole].chunks_exact(16)) {
            s0 = _mm256_fmadd_ps(weights(&w[..8]), codes(&c[..8]), s0);
            s1 = _mm256_fmadd_ps(weights(&w[8..]), codes(&c[8..]), s1);
        }
        sum(s0) + sum(s1) + tail(w, c, whole, len)
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot4_avx2(w: &[f32], c: [&[u8]; 4]) -> [f32; 4] {
        let len = c.iter().fold(w.len(), |len, c| len.min(c.len()));
        let whole = len / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 4];
        // Chunks, not indexing: the loop then carries no bounds checks.
        let [c0, c1, c2, c3] = c.map(|c| c[..whole].chunks_exact(8));
        for (w, ((a, b), (d, e))) in w[..whole].chunks_exact(8).zip(c0.zip(c1).zip(c2.zip(c3))) {
            let lanes = weights(w);
            for (acc, c) in acc.iter_mut().zip([a, b, d, e]) {
                *acc = _mm256_fmadd_ps(lanes, codes(c), *acc);
            }
        }
        let mut out = acc.map(sum);
        for (out, c) in out.iter_mut().zip(c) {
            *out += tail(w, c, whole, len);
        }
        out
    }

    pub(super) fn dot(w: &[f32], c: &[u8]) -> f32 {
        // SAFETY: see the module's comment.
        unsafe { dot_avx2(w, c) }
    }

    pub(super) fn dot4(w: &[f32], c: [&[u8]; 4]) -> [f32; 4] {
        // SAFETY: see the module's comment.
        unsafe { dot4_avx2(w, c) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_kernels_agree_with_the_plain_sum() {
        let w: Vec<f32> = (0..43).map(|i| (i as f32 * 0.37).sin()).collect();
        let cs: Vec<Vec<u8>> = (0..4)
            .map(|k| (0..43).map(|i| ((i * 37 + k * 101) % 256) as u8).collect())
            .collect();
        let four = [&cs[0][..], &cs[1][..], &cs[2][..], &cs[3][..]];
        let plain = |c: &[u8]| w.iter().zip(c).map(|(w, &c)| w * f32::from(c)).sum::<f32>();
        for (one, four_at_once) in [fastest(), (portable::dot, portable::dot4)] {
            let all = four_at_once(&w, four);
            for (k, c) in four.iter().enumerate() {
                let want = plain(c);
                assert!((one(&w, c) - want).abs() < 1e-2, "{} vs {want}", one(&w, c));
                assert!((all[k] - want).abs() < 1e-2, "{} vs {want}", all[k]);
            }
        }
    }
}
