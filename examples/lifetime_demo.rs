//! Tensor lifetime analysis on a small hand-built graph: lifetimes, a plan per
//! strategy against the lower bound, in-place aliasing, and the arena walked step by
//! step.
//!
//! Run with `cargo run -p memwarden-examples --example lifetime_demo`.

use memwarden_lifetime::ir::{Dim, Graph, Node, Tensor, TensorId};
use memwarden_lifetime::{Arena, PlanOptions, Strategy, analyze, plan};

/// A small residual network on a `1x16x32x32` image: stem, two residual blocks (the
/// second with a 1x1 projection on its skip), a branch pair joined by a `Concat`, and
/// a classifier. Weights are constants, so they stay out of the arena.
fn build() -> Graph {
    let mut g = Graph::new("tiny_resnet");
    let act = |g: &mut Graph, name: &str, c: u64, hw: u64| {
        g.add_tensor(Tensor::new(
            name,
            4,
            Some(vec![
                Dim::from(1),
                Dim::from(c),
                Dim::from(hw),
                Dim::from(hw),
            ]),
        ))
    };
    let x = act(&mut g, "image", 16, 32);
    let weight =
        |g: &mut Graph, name: &str| g.add_tensor(Tensor::with_bytes(name, 4096).constant());
    let conv = |g: &mut Graph, name: &str, input: TensorId, out: TensorId| {
        let w = weight(g, &format!("{name}.weight"));
        g.add_node(Node::new(name, "Conv", &[input, w], &[out]));
    };

    let stem = act(&mut g, "stem", 32, 32);
    conv(&mut g, "stem_conv", x, stem);
    let stem_relu = act(&mut g, "stem_relu", 32, 32);
    g.add_node(Node::new("stem_act", "Relu", &[stem], &[stem_relu]));

    // Residual block 1: two convs, the skip is the block input.
    let b1a = act(&mut g, "b1_a", 32, 32);
    conv(&mut g, "b1_conv1", stem_relu, b1a);
    let b1r = act(&mut g, "b1_relu", 32, 32);
    g.add_node(Node::new("b1_act", "Relu", &[b1a], &[b1r]));
    let b1b = act(&mut g, "b1_b", 32, 32);
    conv(&mut g, "b1_conv2", b1r, b1b);
    let b1 = act(&mut g, "b1_out", 32, 32);
    g.add_node(Node::new("b1_add", "Add", &[b1b, stem_relu], &[b1]));

    // Residual block 2: downsample, with a projection on the skip.
    let b2a = act(&mut g, "b2_a", 64, 16);
    conv(&mut g, "b2_conv1", b1, b2a);
    let b2r = act(&mut g, "b2_relu", 64, 16);
    g.add_node(Node::new("b2_act", "Relu", &[b2a], &[b2r]));
    let b2b = act(&mut g, "b2_b", 64, 16);
    conv(&mut g, "b2_conv2", b2r, b2b);
    let proj = act(&mut g, "b2_proj", 64, 16);
    conv(&mut g, "b2_skip", b1, proj);
    let b2 = act(&mut g, "b2_out", 64, 16);
    g.add_node(Node::new("b2_add", "Add", &[b2b, proj], &[b2]));

    // Two branches joined by a Concat.
    let left = act(&mut g, "left", 32, 16);
    conv(&mut g, "left_conv", b2, left);
    let right = act(&mut g, "right", 32, 16);
    conv(&mut g, "right_conv", b2, right);
    let joined = act(&mut g, "joined", 64, 16);
    g.add_node(Node::new("concat", "Concat", &[left, right], &[joined]));

    let pooled = act(&mut g, "pooled", 64, 1);
    g.add_node(Node::new("pool", "GlobalAveragePool", &[joined], &[pooled]));
    let logits = g.add_tensor(Tensor::new(
        "logits",
        4,
        Some(vec![Dim::from(1), Dim::from(10)]),
    ));
    let fc = weight(&mut g, "fc.weight");
    g.add_node(Node::new("fc", "Gemm", &[pooled, fc], &[logits]));

    g.inputs = vec![x];
    g.outputs = vec![logits];
    g
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let graph = build();

    let analysis = analyze(&graph, &PlanOptions::default())?;
    println!(
        "{}: {} steps, {} activations",
        graph.name,
        analysis.steps.len(),
        analysis.tensors.len()
    );
    println!("\n{:<12} {:>10}  lifetime   producer", "tensor", "bytes");
    for t in &analysis.tensors {
        let bar: String = (0..analysis.steps.len())
            .map(|s| {
                if (t.first_step..=t.last_step).contains(&s) {
                    '#'
                } else {
                    '.'
                }
            })
            .collect();
        println!(
            "{:<12} {:>10}  {bar}  {}",
            t.name,
            t.bytes,
            t.producer_op.as_deref().unwrap_or("graph input")
        );
    }

    println!(
        "\n{:<15} {:>12} {:>12} {:>12} {:>9}",
        "strategy", "naive", "lower bound", "arena", "arena/LB"
    );
    let mut chosen = None;
    for strategy in Strategy::ALL {
        let p = plan(
            &graph,
            &PlanOptions {
                strategy,
                ..PlanOptions::default()
            },
        )?;
        println!(
            "{:<15} {:>12} {:>12} {:>12} {:>9.3}",
            strategy.to_string(),
            kib(p.naive_bytes),
            kib(p.lower_bound_bytes),
            kib(p.arena_bytes),
            p.arena_bytes as f64 / p.lower_bound_bytes as f64
        );
        chosen = Some(p);
    }
    let inplace = plan(
        &graph,
        &PlanOptions {
            inplace: true,
            ..PlanOptions::default()
        },
    )?;
    println!(
        "{:<15} {:>12} {:>12} {:>12} {:>9.3}",
        "best --inplace",
        kib(inplace.naive_bytes),
        kib(inplace.lower_bound_bytes),
        kib(inplace.arena_bytes),
        inplace.arena_bytes as f64 / inplace.lower_bound_bytes as f64
    );
    for t in inplace.tensors.iter().filter(|t| t.alias_of.is_some()) {
        println!(
            "  in place: {} writes over {}",
            t.name,
            t.alias_of.as_deref().unwrap_or("")
        );
    }

    // Materialise the best plan and walk it: at each step, fill the live tensors
    // with the step number (a stand-in for running the node).
    let p = chosen.ok_or_else(|| anyhow::anyhow!("no plan"))?;
    let mut arena = Arena::new(&p)?;
    println!(
        "\narena of {} aligned to {}; walking the steps:",
        kib(arena.len() as u64),
        arena.align()
    );
    for (s, step) in p.schedule.iter().enumerate() {
        let mut view = arena.step(s)?;
        let live: Vec<String> = view.names().map(str::to_owned).collect();
        for (_, bytes) in view.iter_mut() {
            bytes.fill(s as u8);
        }
        println!(
            "  step {s:>2} {:<11} {:<18} live: {}",
            step.op,
            step.node,
            live.join(", ")
        );
    }
    Ok(())
}
