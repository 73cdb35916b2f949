//! Helpers: a small text format for hand-built graphs, and a brute-force plan checker
//! that shares no code with the crate's own validation.

use std::collections::BTreeMap;

use memwarden_lifetime::ir::{Dim, Graph, Node, Tensor, TensorId};
use memwarden_lifetime::{Plan, PlanOptions, Strategy};

/// Builds a graph from lines:
///
/// ```text
/// in x            graph inputs
/// out z           graph outputs
/// const w         constants (initializers)
/// size x 400      bytes of a tensor (default 100)
/// shape x 4 N 8   element bytes, then dims (numbers or symbols)
/// n0 Relu x -> a  a node: name, op, inputs (`_` = omitted), outputs
/// ```
///
/// Tensors are declared by first use.
pub(crate) fn build(spec: &str) -> Graph {
    let mut g = Graph::new("test");
    let mut ids: BTreeMap<String, TensorId> = BTreeMap::new();
    let mut id = |g: &mut Graph, name: &str| {
        *ids.entry(name.to_owned())
            .or_insert_with(|| g.add_tensor(Tensor::with_bytes(name, 100)))
    };
    for line in spec.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "in" => {
                for w in &words[1..] {
                    let t = id(&mut g, w);
                    g.inputs.push(t);
                }
            }
            "out" => {
                for w in &words[1..] {
                    let t = id(&mut g, w);
                    g.outputs.push(t);
                }
            }
            "const" => {
                for w in &words[1..] {
                    let t = id(&mut g, w);
                    g.tensors[t.index()] = Tensor::with_bytes(*w, 100).constant();
                }
            }
            "size" => {
                let t = id(&mut g, words[1]);
                g.tensors[t.index()] = Tensor::with_bytes(words[1], words[2].parse().unwrap());
            }
            "shape" => {
                let t = id(&mut g, words[1]);
                let dims = words[3..]
                    .iter()
                    .map(|d| d.parse::<u64>().map_or_else(|_| Dim::from(*d), Dim::from))
                    .collect();
                g.tensors[t.index()] = Tensor::new(words[1], words[2].parse().unwrap(), Some(dims));
            }
            "unknown" => {
                let t = id(&mut g, words[1]);
                g.tensors[t.index()].shape = None;
            }
            _ => {
                let arrow = words
                    .iter()
                    .position(|w| *w == "->")
                    .expect("a node line has ->");
                let inputs: Vec<Option<TensorId>> = words[2..arrow]
                    .iter()
                    .map(|w| (*w != "_").then(|| id(&mut g, w)))
                    .collect();
                let outputs: Vec<TensorId> =
                    words[arrow + 1..].iter().map(|w| id(&mut g, w)).collect();
                let mut node = Node::new(words[0], words[1], &[], &outputs);
                node.inputs = inputs;
                g.add_node(node);
            }
        }
    }
    g
}

/// `name[first,last]` for every planned tensor, `=target` for an alias.
pub(crate) fn lifetimes(plan: &Plan) -> String {
    plan.tensors
        .iter()
        .map(|t| {
            let alias = t
                .alias_of
                .as_ref()
                .map(|a| format!("={a}"))
                .unwrap_or_default();
            format!("{}[{},{}]{alias}", t.name, t.first_step, t.last_step)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Options with alignment 1 and the given strategy.
pub(crate) fn opts(strategy: Strategy) -> PlanOptions {
    PlanOptions {
        strategy,
        align: 1,
        ..PlanOptions::default()
    }
}

/// The buffer owner of a tensor: the end of its alias chain.
fn owner<'a>(plan: &'a Plan, name: &'a str) -> &'a str {
    let mut cur = name;
    while let Some(a) = plan.tensor(cur).and_then(|t| t.alias_of.as_deref()) {
        cur = a;
    }
    cur
}

/// Checks a plan pair by pair: tensors live at a common step that do not share a
/// buffer must have disjoint byte ranges; offsets aligned; the arena covers all.
pub(crate) fn brute_check(plan: &Plan) {
    for t in &plan.tensors {
        assert_eq!(t.offset % plan.align, 0, "{} misaligned", t.name);
        assert!(
            t.offset + t.bytes <= plan.arena_bytes,
            "{} past the arena",
            t.name
        );
        assert!(t.first_step <= t.last_step);
    }
    for (i, a) in plan.tensors.iter().enumerate() {
        for b in &plan.tensors[i + 1..] {
            let together = a.first_step <= b.last_step && b.first_step <= a.last_step;
            let apart = a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset;
            let shared = owner(plan, &a.name) == owner(plan, &b.name);
            assert!(
                !together || apart || shared || a.bytes == 0 || b.bytes == 0,
                "{} and {} overlap",
                a.name,
                b.name
            );
        }
    }
}
