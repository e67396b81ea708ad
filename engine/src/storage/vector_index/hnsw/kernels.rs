//! The distance kernels of the graph walk: an inner product or a squared
//! L2 distance of a query with one stored vector, or with four at once.
//!
//! Written here rather than taken from a crate: the walk's cost is these
//! kernels waiting on memory, and computing four distances per pass over
//! the query (one load of each query lane for four vectors, four
//! independent accumulators) is what lets the walk keep up with FAISS's;
//! no maintained Rust crate offers a one-against-four kernel. AVX2 with
//! FMA is chosen at run time; other CPUs get portable loops.

/// One query against one stored vector.
pub(super) type Kernel = fn(&[f32], &[f32]) -> f32;
/// One query against four stored vectors.
pub(super) type Kernel4 = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

/// Whether a kernel computes an inner product or a squared L2 distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// `a·b`.
    Dot,
    /// `|a − b|²`.
    SquaredL2,
}

/// The fastest kernels this CPU runs for `form`.
pub(super) fn for_form(form: Form) -> (Kernel, Kernel4) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        return match form {
            Form::Dot => (avx2::dot, avx2::dot4),
            Form::SquaredL2 => (avx2::l2, avx2::l2_4),
        };
    }
    match form {
        Form::Dot => (portable::dot, portable::dot4),
        Form::SquaredL2 => (portable::l2, portable::l2_4),
    }
}

/// Loads the first cache lines of `vector` (floats or codes) ahead of its
/// distance: a walk reads vectors scattered over memory, and issuing the
/// loads of all of a node's unvisited neighbours before computing the
/// first hides most of their latency (FAISS's and hnswlib's walks do the
/// same).
#[inline(always)]
pub(super) fn prefetch<T>(vector: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        /// The hardware prefetcher follows on from the first lines.
        const LINES: usize = 8;
        let start = vector.as_ptr().cast::<i8>();
        let lines = (std::mem::size_of_val(vector)).div_ceil(64).min(LINES);
        for line in 0..lines {
            // SAFETY: a prefetch never faults, and the address stays inside
            // (or one line past) `vector`'s allocation.
            unsafe { _mm_prefetch(start.wrapping_add(line * 64), _MM_HINT_T0) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
}

mod portable {
    //! Eight independent accumulators: the compiler vectorises these
    //! without reassociating a single sum.

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0f32; 8];
        let whole = a.len().min(b.len()) / 8 * 8;
        for (x, y) in a[..whole].chunks_exact(8).zip(b[..whole].chunks_exact(8)) {
            for lane in 0..8 {
                lanes[lane] += x[lane] * y[lane];
            }
        }
        let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
        lanes.iter().sum::<f32>() + tail
    }

    pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0f32; 8];
        let whole = a.len().min(b.len()) / 8 * 8;
        for (x, y) in a[..whole].chunks_exact(8).zip(b[..whole].chunks_exact(8)) {
            for lane in 0..8 {
                let d = x[lane] - y[lane];
                lanes[lane] += d * d;
            }
        }
        let tail: f32 = a[whole..]
            .iter()
            .zip(&b[whole..])
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        lanes.iter().sum::<f32>() + tail
    }

    pub(super) fn dot4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        v.map(|v| dot(q, v))
    }

    pub(super) fn l2_4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        v.map(|v| l2(q, v))
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    //! Handed out by [`super::for_form`] only after the CPU was checked
    //! for AVX2 and FMA, which makes the calls into the `target_feature`
    //! functions below sound.
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm256_sub_ps,
    };

    /// The eight lanes of `v` added up (the code kernels share it).
    #[inline(always)]
    pub(in crate::storage::vector_index::hnsw) fn sum(v: __m256) -> f32 {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds the eight floats stored.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    }

    /// Eight floats: `lanes` is a `chunks_exact` chunk, so the loops below
    /// carry no bounds checks.
    #[inline(always)]
    fn load(lanes: &[f32]) -> __m256 {
        assert!(lanes.len() >= 8);
        // SAFETY: `lanes` holds at least the eight floats read.
        unsafe { _mm256_loadu_ps(lanes.as_ptr()) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let whole = len / 16 * 16;
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (x, y) in a[..whole].chunks_exact(16).zip(b[..whole].chunks_exact(16)) {
            s0 = _mm256_fmadd_ps(load(&x[..8]), load(&y[..8]), s0);
            s1 = _mm256_fmadd_ps(load(&x[8..]), load(&y[8..]), s1);
        }
        let tail: f32 = a[whole..len]
            .iter()
            .zip(&b[whole..len])
            .map(|(x, y)| x * y)
            .sum();
        sum(_mm256_add_ps(s0, s1)) + tail
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let whole = len / 16 * 16;
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (x, y) in a[..whole].chunks_exact(16).zip(b[..whole].chunks_exact(16)) {
            let d0 = _mm256_sub_ps(load(&x[..8]), load(&y[..8]));
            let d1 = _mm256_sub_ps(load(&x[8..]), load(&y[8..]));
            s0 = _mm256_fmadd_ps(d0, d0, s0);
            s1 = _mm256_fmadd_ps(d1, d1, s1);
        }
        let tail: f32 = a[whole..len]
            .iter()
            .zip(&b[whole..len])
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        sum(_mm256_add_ps(s0, s1)) + tail
    }

    /// The floats the query and all four vectors have, in runs of eight
    /// (one of the query's, four of the vectors'), and that common length.
    #[inline(always)]
    fn runs<'a>(
        q: &'a [f32],
        v: [&'a [f32]; 4],
    ) -> (impl Iterator<Item = (&'a [f32], [&'a [f32]; 4])>, usize) {
        let len = v.iter().fold(q.len(), |len, v| len.min(v.len()));
        let whole = len / 8 * 8;
        let [v0, v1, v2, v3] = v.map(|v| v[..whole].chunks_exact(8));
        let runs = q[..whole]
            .chunks_exact(8)
            .zip(v0.zip(v1).zip(v2.zip(v3)))
            .map(|(q, ((a, b), (c, d)))| (q, [a, b, c, d]));
        (runs, len)
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot4_avx2(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        let (runs, len) = runs(q, v);
        let mut acc = [_mm256_setzero_ps(); 4];
        for (lanes, vs) in runs {
            let lanes = load(lanes);
            for (acc, v) in acc.iter_mut().zip(vs) {
                *acc = _mm256_fmadd_ps(lanes, load(v), *acc);
            }
        }
        let whole = len / 8 * 8;
        let mut out = acc.map(sum);
        for (out, v) in out.iter_mut().zip(v) {
            *out += (whole..len).map(|i| q[i] * v[i]).sum::<f32>();
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2_4_avx2(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        let (runs, len) = runs(q, v);
        let mut acc = [_mm256_setzero_ps(); 4];
        for (lanes, vs) in runs {
            let lanes = load(lanes);
            for (acc, v) in acc.iter_mut().zip(vs) {
                let d = _mm256_sub_ps(lanes, load(v));
                *acc = _mm256_fmadd_ps(d, d, *acc);
            }
        }
        let whole = len / 8 * 8;
        let mut out = acc.map(sum);
        for (out, v) in out.iter_mut().zip(v) {
            *out += (whole..len)
                .map(|i| (q[i] - v[i]) * (q[i] - v[i]))
                .sum::<f32>();
        }
        out
    }

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: see the module's comment.
        unsafe { dot_avx2(a, b) }
    }

    pub(super) fn l2(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: see the module's comment.
        unsafe { l2_avx2(a, b) }
    }

    pub(super) fn dot4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: see the module's comment.
        unsafe { dot4_avx2(q, v) }
    }

    pub(super) fn l2_4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: see the module's comment.
        unsafe { l2_4_avx2(q, v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_agrees_with_the_plain_sums() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let vs: Vec<Vec<f32>> = (0..4)
            .map(|k| (0..37).map(|i| ((i + 5 * k) as f32 * 0.11).cos()).collect())
            .collect();
        let four = [&vs[0][..], &vs[1][..], &vs[2][..], &vs[3][..]];
        let plain_dot = |b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let plain_l2 = |b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
        for (form, plain) in [
            (Form::Dot, &plain_dot as &dyn Fn(&[f32]) -> f32),
            (Form::SquaredL2, &plain_l2),
        ] {
            let (one, four_at_once) = for_form(form);
            let all = four_at_once(&a, four);
            for (k, v) in four.iter().enumerate() {
                assert!((one(&a, v) - plain(v)).abs() < 1e-4, "{form:?}");
                assert!((all[k] - plain(v)).abs() < 1e-4, "{form:?}");
            }
        }
    }
}
