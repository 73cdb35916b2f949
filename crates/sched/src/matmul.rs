//! [`batched_matmul`](crate::ParallelScheduler::batched_matmul): many small `f32`
//! matrix products, tiled for the caches and spread over the pool.

use crate::{CacheInfo, ParallelScheduler, SchedError};

/// Rows of C one micro-kernel step updates.
const MR: usize = 4;
/// Columns of C one micro-kernel step updates (two 4-wide vectors, or one 8-wide).
const NR: usize = 8;
/// Products smaller than this many multiply-adds run on the caller's thread: waking the
/// pool would cost more than the arithmetic.
const INLINE_FLOPS: usize = 1 << 17;

/// The shape of a batched product `out[b] = a[b] · b[b]`, row-major: `a` is
/// `batch × m × k`, `b` is `batch × k × n` (or one `k × n` matrix shared by every
/// batch item), `out` is `batch × m × n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    /// Matrices in the batch.
    pub batch: usize,
    /// Rows of each `a` and `out` matrix.
    pub m: usize,
    /// Columns of `a`, rows of `b`.
    pub k: usize,
    /// Columns of each `b` and `out` matrix.
    pub n: usize,
}

impl std::fmt::Display for MatmulShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} x {} x {} x {}", self.batch, self.m, self.k, self.n)
    }
}

/// Tile sizes: a `kc × nc` panel of `b` is reused by every row block, so it is kept in
/// half the L2; the `MR × nc` strip of `out` being updated stays in half the L1d.
#[derive(Debug, Clone, Copy)]
struct Tiles {
    kc: usize,
    nc: usize,
}

impl Tiles {
    fn for_cache(cache: &CacheInfo) -> Tiles {
        let f32_bytes = size_of::<f32>();
        let nc = (cache.l1d / (2 * MR * f32_bytes)) / NR * NR;
        let nc = nc.max(NR);
        let kc = (cache.l2 / (2 * f32_bytes * nc)).max(16);
        Tiles { kc, nc }
    }
}

/// One matrix's operands: `a` is `rows × k` (the rows being computed), `b` is `k × n`.
#[derive(Clone, Copy)]
struct Operands<'a> {
    a: &'a [f32],
    b: &'a [f32],
    k: usize,
    n: usize,
}

/// A piece of the work: rows `row0..` of batch item `batch`, written into `out`.
struct Unit<'a> {
    batch: usize,
    row0: usize,
    out: &'a mut [f32],
}

impl ParallelScheduler {
    /// `out[i] = a[i] · b[i]` for every matrix `i` of the batch (see [`MatmulShape`] for
    /// the layout; a `b` of exactly `k × n` elements is shared by the whole batch).
    ///
    /// Tiled for the caches (a panel of `b` in the L2, a strip of `out` in the L1d,
    /// a 4 × 8 block of `out` in registers); parallel over the batch, and over blocks
    /// of rows when the batch has fewer matrices than the scheduler has workers. Small
    /// products run inline. The sums run in a different order than a naive triple
    /// loop's, so results agree with it to rounding, not bit for bit.
    ///
    /// ```
    /// use memwarden_sched::{MatmulShape, ParallelScheduler};
    ///
    /// let sched = ParallelScheduler::new();
    /// let a = [1.0, 2.0, 3.0, 4.0]; // one 2 x 2 matrix
    /// let identity = [1.0, 0.0, 0.0, 1.0];
    /// let mut out = [0.0; 4];
    /// sched.batched_matmul(MatmulShape { batch: 1, m: 2, k: 2, n: 2 }, &a, &identity, &mut out)?;
    /// assert_eq!(out, a);
    /// # Ok::<(), memwarden_sched::SchedError>(())
    /// ```
    pub fn batched_matmul(
        &self,
        shape: MatmulShape,
        a: &[f32],
        b: &[f32],
        out: &mut [f32],
    ) -> Result<(), SchedError> {
        let MatmulShape { batch, m, k, n } = shape;
        let overflow = || SchedError::ShapeOverflow {
            shape: shape.to_string(),
        };
        let mk = m.checked_mul(k).ok_or_else(overflow)?;
        let kn = k.checked_mul(n).ok_or_else(overflow)?;
        let mn = m.checked_mul(n).ok_or_else(overflow)?;
        let a_len = batch.checked_mul(mk).ok_or_else(overflow)?;
        let b_len = batch.checked_mul(kn).ok_or_else(overflow)?;
        let out_len = batch.checked_mul(mn).ok_or_else(overflow)?;
        let mismatch = |operand, expected, actual| SchedError::ShapeMismatch {
            operand,
            expected,
            actual,
            shape: shape.to_string(),
        };
        if a.len() != a_len {
            return Err(mismatch("a", a_len, a.len()));
        }
        if b.len() != b_len && b.len() != kn {
            return Err(mismatch("b", b_len, b.len()));
        }
        if out.len() != out_len {
            return Err(mismatch("out", out_len, out.len()));
        }
        if out.is_empty() {
            return Ok(());
        }
        // A shared `b` is read at offset 0 by every batch item.
        let b_stride = if b.len() == b_len { kn } else { 0 };
        let tiles = Tiles::for_cache(&self.cache());
        let work = out_len.saturating_mul(k);
        let jobs = self.jobs_now();

        // Row blocks: whole matrices when the batch alone gives every worker four of
        // them; otherwise each matrix is cut so that there are about that many blocks,
        // in multiples of the micro-kernel's rows.
        let units_wanted = jobs * 4;
        let rows = if batch >= units_wanted || jobs == 1 {
            m
        } else {
            let per_matrix = units_wanted.div_ceil(batch);
            m.div_ceil(per_matrix).next_multiple_of(MR).min(m)
        };
        let mut units: Vec<Unit<'_>> = Vec::with_capacity(batch * m.div_ceil(rows));
        for (batch_index, matrix) in out.chunks_mut(mn).enumerate() {
            for (block, rows_out) in matrix.chunks_mut(rows * n).enumerate() {
                units.push(Unit {
                    batch: batch_index,
                    row0: block * rows,
                    out: rows_out,
                });
            }
        }
        let run = |_: usize, units: &mut [Unit<'_>]| {
            for unit in units {
                let a_rows = &a[unit.batch * mk..][..mk][unit.row0 * k..][..unit.out.len() / n * k];
                let b_matrix = &b[unit.batch * b_stride..][..kn];
                let ops = Operands {
                    a: a_rows,
                    b: b_matrix,
                    k,
                    n,
                };
                gemm_rows(ops, unit.out, tiles);
            }
        };
        if work < INLINE_FLOPS || jobs == 1 {
            run(0, &mut units);
        } else {
            self.for_each_chunk_mut_by(&mut units, Some(1), run);
        }
        Ok(())
    }
}

/// `c = a · b` for the rows of `a` given (`c` holds as many rows of `n`).
fn gemm_rows(ops: Operands<'_>, c: &mut [f32], tiles: Tiles) {
    let Operands { k, n, .. } = ops;
    c.fill(0.0);
    let rows = c.len() / n;
    for p0 in (0..k).step_by(tiles.kc) {
        let p1 = (p0 + tiles.kc).min(k);
        for j0 in (0..n).step_by(tiles.nc) {
            let j1 = (j0 + tiles.nc).min(n);
            let mut i = 0;
            while i + MR <= rows {
                let mut j = j0;
                while j + NR <= j1 {
                    micro(ops, c, i, j, p0..p1);
                    j += NR;
                }
                edge(ops, c, i..i + MR, j..j1, p0..p1);
                i += MR;
            }
            edge(ops, c, i..rows, j0..j1, p0..p1);
        }
    }
}

/// `c[i..i+MR, j..j+NR] += a[i..i+MR, ps] · b[ps, j..j+NR]`, accumulated in registers.
fn micro(ops: Operands<'_>, c: &mut [f32], i: usize, j: usize, ps: std::ops::Range<usize>) {
    let Operands { a, b, k, n } = ops;
    let mut acc = [[0.0f32; NR]; MR];
    for p in ps {
        let b_row: &[f32; NR] = b[p * n + j..][..NR]
            .try_into()
            .expect("a slice of NR elements");
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let a_ip = a[(i + r) * k + p];
            for (x, b_pj) in acc_row.iter_mut().zip(b_row) {
                *x += a_ip * b_pj;
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let c_row = &mut c[(i + r) * n + j..][..NR];
        for (x, v) in c_row.iter_mut().zip(acc_row) {
            *x += v;
        }
    }
}

/// The scalar-ish remainder: `c[is, js] += a[is, ps] · b[ps, js]`.
fn edge(
    ops: Operands<'_>,
    c: &mut [f32],
    is: std::ops::Range<usize>,
    js: std::ops::Range<usize>,
    ps: std::ops::Range<usize>,
) {
    let Operands { a, b, k, n } = ops;
    if js.is_empty() {
        return;
    }
    for i in is {
        let c_row = &mut c[i * n + js.start..i * n + js.end];
        for p in ps.clone() {
            let a_ip = a[i * k + p];
            let b_row = &b[p * n + js.start..p * n + js.end];
            for (x, b_pj) in c_row.iter_mut().zip(b_row) {
                *x += a_ip * b_pj;
            }
        }
    }
}
