//! Plans the activation memory of a real ONNX graph: import (with shape inference),
//! lifetimes, each strategy against the lower bound, and one inference pass walked
//! through the arena.
//!
//! Run with `cargo run -p memwarden-examples --example plan_onnx [MODEL.onnx]`; without
//! an argument it plans the ResNet-18 export the lifetime crate's tests use.

use std::path::PathBuf;

use anyhow::Context;
use memwarden_lifetime::{Arena, PlanOptions, Strategy, onnx, plan};

fn main() -> anyhow::Result<()> {
    env_logger::init();
    let path = std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../crates/lifetime/tests/data/resnet18.onnx")
        },
        PathBuf::from,
    );
    let graph =
        onnx::import_file(&path).with_context(|| format!("importing {}", path.display()))?;
    println!(
        "{}: {} nodes, {} tensors, inputs {:?}",
        path.display(),
        graph.nodes.len(),
        graph.tensors.len(),
        graph
            .inputs
            .iter()
            .map(|&t| &graph.tensors[t.index()].name)
            .collect::<Vec<_>>()
    );

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!("\nstrategy         arena MiB   arena/LB   time");
    let mut best = None;
    for strategy in Strategy::ALL {
        let options = PlanOptions {
            strategy,
            ..PlanOptions::default()
        };
        let p = plan(&graph, &options)?;
        println!(
            "{:<16} {:>9.3}   {:>8.4}   {:.2} ms",
            strategy.to_string(),
            mib(p.arena_bytes),
            p.arena_bytes as f64 / p.lower_bound_bytes as f64,
            p.planning_time.as_secs_f64() * 1e3
        );
        if strategy == Strategy::Best {
            best = Some(p);
        }
    }
    let p = best.context("best was planned")?;
    println!(
        "\n{} steps; naive {:.3} MiB, lower bound {:.3} MiB, best arena {:.3} MiB ({:.1}x less than naive)",
        p.steps,
        mib(p.naive_bytes),
        mib(p.lower_bound_bytes),
        mib(p.arena_bytes),
        p.naive_bytes as f64 / p.arena_bytes as f64
    );
    println!("\nfirst tensors of the plan:");
    for t in p.tensors.iter().take(8) {
        println!(
            "  {:>10} B  steps {:>3}..{:<3} offset {:>10}  {}",
            t.bytes, t.first_step, t.last_step, t.offset, t.name
        );
    }

    // One pass through the arena: at every step, the live tensors' slices are disjoint
    // (the borrow checker sees them as separate `&mut [u8]`), and each step writes its
    // outputs.
    let mut arena = Arena::new(&p)?;
    let mut touched = 0u64;
    for step in 0..p.steps {
        let mut view = arena.step(step)?;
        for (_, bytes) in view.iter_mut() {
            bytes.fill(step as u8);
            touched += bytes.len() as u64;
        }
    }
    println!(
        "\nwalked {} steps through one {:.3} MiB arena, writing {:.1} MiB of live tensors",
        p.steps,
        mib(arena.len() as u64),
        mib(touched)
    );
    Ok(())
}
