//! Seeded random graphs for tests and benchmarks: CNN-like DAGs with DenseNet-style
//! concatenation blocks, inception-style branches, residual blocks and long skips.
//!
//! The generator uses its own SplitMix64, so a seed gives the same graph on every
//! platform and in every version of the dependencies.
//!
//! ```
//! use memwarden_lifetime::{PlanOptions, plan, synth};
//!
//! let g = synth::random_dag(7, 60);
//! assert_eq!(g, synth::random_dag(7, 60));
//! assert!(g.nodes.len() >= 60);
//! let p = plan(&g, &PlanOptions::default())?;
//! assert!(p.arena_bytes >= p.lower_bound_bytes);
//! # Ok::<(), memwarden_lifetime::LifetimeError>(())
//! ```

use crate::ir::{Dim, Graph, Node, Tensor, TensorId};
use crate::place::Record;
use crate::rng::SplitMix64;

/// An activation on the main path: its id, channels and spatial extent.
#[derive(Clone, Copy, Debug)]
struct Act {
    id: TensorId,
    channels: u64,
    extent: u64,
}

struct Gen {
    rng: SplitMix64,
    g: Graph,
    history: Vec<Act>,
}

impl Gen {
    fn act(&mut self, channels: u64, extent: u64) -> Act {
        let k = self.g.tensors.len();
        let id = self.g.add_tensor(Tensor::new(
            format!("t{k}"),
            4,
            Some(vec![
                Dim::Known(1),
                Dim::Known(channels),
                Dim::Known(extent),
                Dim::Known(extent),
            ]),
        ));
        Act {
            id,
            channels,
            extent,
        }
    }

    fn node(&mut self, op: &str, inputs: &[TensorId], outputs: &[TensorId]) {
        let name = format!("{op}_{}", self.g.nodes.len());
        self.g.add_node(Node::new(name, op, inputs, outputs));
    }

    fn conv(&mut self, x: Act, channels: u64, stride: u64) -> Act {
        let k = self.g.tensors.len();
        let w = self.g.add_tensor(
            Tensor::new(
                format!("w{k}"),
                4,
                Some(vec![
                    Dim::Known(channels),
                    Dim::Known(x.channels),
                    Dim::Known(3),
                    Dim::Known(3),
                ]),
            )
            .constant(),
        );
        let y = self.act(channels, (x.extent / stride).max(1));
        self.node("Conv", &[x.id, w], &[y.id]);
        y
    }

    fn unary(&mut self, op: &str, x: Act) -> Act {
        let y = self.act(x.channels, x.extent);
        self.node(op, &[x.id], &[y.id]);
        y
    }

    fn concat(&mut self, parts: &[Act]) -> Act {
        let channels = parts.iter().map(|a| a.channels).sum::<u64>();
        let y = self.act(channels, parts[0].extent);
        let ids: Vec<TensorId> = parts.iter().map(|a| a.id).collect();
        self.node("Concat", &ids, &[y.id]);
        y
    }

    fn channels(&mut self) -> u64 {
        *self.rng.pick(&[16, 24, 32, 48, 64, 96, 128, 192, 256])
    }

    fn chain(&mut self, mut x: Act) -> Act {
        for _ in 0..self.rng.range(1, 3) {
            let c = self.channels();
            x = self.conv(x, c, 1);
            x = self.unary("Relu", x);
        }
        if self.rng.chance(0.2) {
            // Inference Dropout: its mask output is never read (a dead output).
            let y = self.act(x.channels, x.extent);
            let mask = self.act(x.channels, x.extent);
            self.node("Dropout", &[x.id], &[y.id, mask.id]);
            x = y;
        }
        x
    }

    fn dense(&mut self, x: Act) -> Act {
        let growth = *self.rng.pick(&[8, 12, 16, 32]);
        let mut feats = vec![x];
        for _ in 0..self.rng.range(2, 6) {
            let input = if feats.len() == 1 {
                feats[0]
            } else {
                self.concat(&feats)
            };
            let y = self.conv(input, growth, 1);
            let y = self.unary("Relu", y);
            feats.push(y);
        }
        let all = self.concat(&feats);
        let c = (all.channels / 2).max(16);
        let t = self.conv(all, c, 1);
        if t.extent > 7 && self.rng.chance(0.5) {
            let y = self.act(t.channels, t.extent / 2);
            self.node("AveragePool", &[t.id], &[y.id]);
            y
        } else {
            t
        }
    }

    fn branches(&mut self, x: Act) -> Act {
        let mut outs = Vec::new();
        for _ in 0..self.rng.range(2, 4) {
            let mut b = x;
            for _ in 0..self.rng.range(1, 3) {
                let c = self.channels();
                b = self.conv(b, c, 1);
            }
            outs.push(b);
        }
        self.concat(&outs)
    }

    fn residual(&mut self, x: Act) -> Act {
        let y = self.conv(x, x.channels, 1);
        let y = self.unary("Relu", y);
        let y = self.conv(y, x.channels, 1);
        let s = self.act(x.channels, x.extent);
        self.node("Add", &[y.id, x.id], &[s.id]);
        self.unary("Relu", s)
    }

    fn long_skip(&mut self, x: Act) -> Act {
        if self.history.len() < 6 {
            return self.residual(x);
        }
        let old = self.history[self.rng.below(self.history.len() - 4)];
        let stride = (old.extent / x.extent).max(1);
        let p = self.conv(old, x.channels, stride);
        let p = Act {
            extent: x.extent,
            ..p
        };
        self.g.tensors[p.id.index()].shape = Some(vec![
            Dim::Known(1),
            Dim::Known(x.channels),
            Dim::Known(x.extent),
            Dim::Known(x.extent),
        ]);
        let s = self.act(x.channels, x.extent);
        self.node("Add", &[x.id, p.id], &[s.id]);
        s
    }

    fn downsample(&mut self, x: Act) -> Act {
        if x.extent <= 7 {
            return self.chain(x);
        }
        let c = (x.channels * 2).min(512);
        let y = self.conv(x, c, 2);
        self.unary("Relu", y)
    }
}

/// A random CNN-like DAG of at least `nodes` nodes, from `seed`.
///
/// One input `[1, C, H, H]` (f32; `C` 3..32, `H` 32..112), then blocks drawn at
/// random until the node count is reached: Conv+Relu chains (sometimes ending in an
/// inference `Dropout` whose mask is never read), DenseNet-style blocks (each layer
/// reads the concatenation of every earlier feature map of the block), inception-style
/// branches joined by a `Concat`, residual blocks, long skips (an `Add` of a tensor
/// from far back), and stride-2 downsampling; a global pool and a `Gemm` end it.
/// Every `Conv` reads a constant weight, and the graph starts with a constant-folded
/// `ConstantOfShape` -> `Reshape` pair feeding the first `Mul`, so weights and folded
/// nodes are exercised.
pub fn random_dag(seed: u64, nodes: usize) -> Graph {
    let mut b = Gen {
        rng: SplitMix64::new(seed ^ 0x5EED_0FDA_6000),
        g: Graph::new(format!("synth_{seed}_{nodes}")),
        history: Vec::new(),
    };
    let c0 = *b.rng.pick(&[3, 8, 16, 32]);
    let h0 = *b.rng.pick(&[32, 56, 64, 112]);
    let x = b.act(c0, h0);
    b.g.inputs = vec![x.id];
    // A constant-folded pair: ConstantOfShape(shape) -> Reshape: weights, not steps.
    let shape =
        b.g.add_tensor(Tensor::new("scale_shape", 8, Some(vec![Dim::Known(4)])).constant());
    let raw =
        b.g.add_tensor(Tensor::new("scale_raw", 4, Some(vec![Dim::Known(c0)])));
    let scale = b.g.add_tensor(Tensor::new(
        "scale",
        4,
        Some(vec![
            Dim::Known(1),
            Dim::Known(c0),
            Dim::Known(1),
            Dim::Known(1),
        ]),
    ));
    b.node("ConstantOfShape", &[shape], &[raw]);
    b.node("Reshape", &[raw, shape], &[scale]);
    let y = b.act(c0, h0);
    b.node("Mul", &[x.id, scale], &[y.id]);
    let c1 = b.rng.range(16, 64) as u64;
    let mut cur = b.conv(y, c1, 1);
    while b.g.nodes.len() < nodes {
        b.history.push(cur);
        cur = match b.rng.below(10) {
            0..=1 => b.chain(cur),
            2..=4 => b.dense(cur),
            5 => b.branches(cur),
            6 => b.residual(cur),
            7 => b.long_skip(cur),
            _ => b.downsample(cur),
        };
    }
    let pooled = b.act(cur.channels, 1);
    b.node("GlobalAveragePool", &[cur.id], &[pooled.id]);
    let w = b.g.add_tensor(
        Tensor::new(
            "fc_w",
            4,
            Some(vec![Dim::Known(1000), Dim::Known(cur.channels)]),
        )
        .constant(),
    );
    let logits = b.g.add_tensor(Tensor::new(
        "logits",
        4,
        Some(vec![Dim::Known(1), Dim::Known(1000)]),
    ));
    b.node("Gemm", &[pooled.id, w], &[logits]);
    b.g.outputs = vec![logits];
    b.g
}

/// `n` random records over `steps` steps, from `seed`: lifetimes mostly short with
/// some long ones, sizes log-uniform from 64 B to 4 MiB.
pub fn random_records(seed: u64, n: usize, steps: usize) -> Vec<Record> {
    let mut rng = SplitMix64::new(seed ^ 0x07EC_07D5);
    let steps = steps.max(1);
    (0..n)
        .map(|_| {
            let first = rng.below(steps);
            let span = if rng.chance(0.15) {
                rng.below(steps)
            } else {
                rng.below(4)
            };
            let last = (first + span).min(steps - 1);
            let bytes = 64u64 << rng.below(17);
            Record::new(bytes + rng.below(bytes as usize) as u64, first, last)
        })
        .collect()
}

/// A buffer set with a known perfect layout: a `steps` × `height` rectangle (time by
/// bytes) cut into `pieces` rectangles by straight cuts, each piece a record of its
/// height in bytes over its steps. Returns the records and the offsets they had in
/// the rectangle: every step is covered exactly, so the lower bound is `height` and a
/// layout within `height` bytes exists (the returned one). Each cut splits the
/// piece with the largest area, across time or across bytes at random (across the
/// longer side twice as often), at a uniformly random point, until there are
/// `pieces` or nothing can be cut.
///
/// ```
/// use memwarden_lifetime::{lower_bound, synth};
///
/// let (records, offsets) = synth::perfect_packing(3, 200, 64, 1 << 20);
/// assert_eq!(records.len(), 200);
/// assert_eq!(lower_bound(&records), 1 << 20);
/// assert!(records.iter().zip(&offsets).all(|(r, &o)| o + r.bytes <= 1 << 20));
/// ```
pub fn perfect_packing(
    seed: u64,
    pieces: usize,
    steps: usize,
    height: u64,
) -> (Vec<Record>, Vec<u64>) {
    let mut rng = SplitMix64::new(seed ^ 0x7065_7266_6563_7421);
    // (first step, end step, offset, end offset)
    let mut rects: Vec<(usize, usize, u64, u64)> = vec![(0, steps.max(1), 0, height.max(1))];
    while rects.len() < pieces {
        let area = |r: &(usize, usize, u64, u64)| (r.1 - r.0) as u128 * u128::from(r.3 - r.2);
        let Some((k, _)) = rects
            .iter()
            .enumerate()
            .filter(|(_, r)| r.1 - r.0 > 1 || r.3 - r.2 > 1)
            .max_by_key(|(k, r)| (area(r), std::cmp::Reverse(*k)))
        else {
            break;
        };
        let (t0, t1, o0, o1) = rects[k];
        let (w, h) = (t1 - t0, o1 - o0);
        // Cut across the longer side (relative to the whole) two times in three.
        let wide = (w as f64 / steps.max(1) as f64) >= (h as f64 / height.max(1) as f64);
        let across_time = if w < 2 {
            false
        } else if h < 2 {
            true
        } else {
            wide == (rng.below(3) < 2)
        };
        if across_time {
            let cut = t0 + 1 + rng.below(w - 1);
            rects[k] = (t0, cut, o0, o1);
            rects.push((cut, t1, o0, o1));
        } else {
            let cut = o0 + 1 + rng.next_u64() % (h - 1);
            rects[k] = (t0, t1, o0, cut);
            rects.push((t0, t1, cut, o1));
        }
    }
    rects
        .into_iter()
        .map(|(t0, t1, o0, o1)| (Record::new(o1 - o0, t0, t1 - 1), o0))
        .unzip()
}
