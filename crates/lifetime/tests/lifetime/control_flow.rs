//! Control flow: `If` branches in consecutive windows sharing memory, `Loop` bodies
//! in one window, nesting, and plans an interval checker can verify.

use memwarden_lifetime::ir::Graph;
use memwarden_lifetime::{PlanOptions, Strategy, Unknown, plan};

use crate::util::{brute_check, lifetimes, opts};

pub(crate) const IF_GRAPH: &str = r#"{
  "name": "branchy",
  "tensors": [
    {"name": "x", "bytes": 1000}, {"name": "c", "bytes": 1},
    {"name": "r", "bytes": 1000}, {"name": "z", "bytes": 1000},
    {"name": "w", "bytes": 50}
  ],
  "constants": ["w"],
  "nodes": [
    {"name": "cond", "op": "ReduceMean", "inputs": ["x"], "outputs": ["c"]},
    {"name": "if", "op": "If", "inputs": ["c"], "outputs": ["r"], "subgraphs": [
      {"name": "then_branch", "graph": {
        "tensors": [{"name": "t1", "bytes": 4000}, {"name": "t2", "bytes": 1000}],
        "nodes": [
          {"name": "a", "op": "Conv", "inputs": ["x", "w"], "outputs": ["t1"]},
          {"name": "b", "op": "Conv", "inputs": ["t1", "w"], "outputs": ["t2"]}
        ],
        "outputs": ["t2"]}},
      {"name": "else_branch", "graph": {
        "tensors": [{"name": "e1", "bytes": 3000}, {"name": "e2", "bytes": 1000}],
        "nodes": [
          {"name": "a", "op": "Conv", "inputs": ["x", "w"], "outputs": ["e1"]},
          {"name": "b", "op": "Relu", "inputs": ["e1"], "outputs": ["e2"]}
        ],
        "outputs": ["e2"]}}
    ]},
    {"name": "head", "op": "Relu", "inputs": ["r"], "outputs": ["z"]}
  ],
  "inputs": ["x"],
  "outputs": ["z"]
}"#;

pub(crate) const LOOP_GRAPH: &str = r#"{
  "name": "loopy",
  "tensors": [
    {"name": "inp", "bytes": 1000}, {"name": "n", "shape": [], "dtype": "i64"},
    {"name": "x", "bytes": 1000}, {"name": "h0", "bytes": 1000},
    {"name": "hf", "bytes": 1000}, {"name": "scan", "shape": ["T", 1000], "elem_bytes": 1},
    {"name": "o", "bytes": 1000}, {"name": "w", "bytes": 10}
  ],
  "constants": ["w"],
  "nodes": [
    {"name": "pre", "op": "Relu", "inputs": ["inp"], "outputs": ["x"]},
    {"name": "pre2", "op": "Conv", "inputs": ["x", "w"], "outputs": ["h0"]},
    {"name": "loop", "op": "Loop", "inputs": ["n", null, "h0"], "outputs": ["hf", "scan"], "subgraphs": [
      {"name": "body", "graph": {
        "tensors": [
          {"name": "i", "shape": [], "dtype": "i64"}, {"name": "cond", "shape": [], "dtype": "bool"},
          {"name": "h", "bytes": 1000}, {"name": "a", "bytes": 1000}, {"name": "b", "bytes": 1000},
          {"name": "h_next", "bytes": 1000}, {"name": "cond_out", "shape": [], "dtype": "bool"},
          {"name": "s", "bytes": 1000}
        ],
        "nodes": [
          {"name": "conv", "op": "Conv", "inputs": ["h", "w"], "outputs": ["a"]},
          {"name": "relu", "op": "Relu", "inputs": ["a"], "outputs": ["b"]},
          {"name": "add", "op": "Add", "inputs": ["b", "h"], "outputs": ["h_next"]},
          {"name": "keep", "op": "Identity", "inputs": ["cond"], "outputs": ["cond_out"]},
          {"name": "mix", "op": "Mul", "inputs": ["b", "x"], "outputs": ["s"]}
        ],
        "inputs": ["i", "cond", "h"],
        "outputs": ["cond_out", "h_next", "s"]}}
    ]},
    {"name": "post", "op": "Relu", "inputs": ["hf"], "outputs": ["o"]}
  ],
  "inputs": ["inp", "n"],
  "outputs": ["o", "scan"]
}"#;

fn steps(p: &memwarden_lifetime::Plan) -> Vec<&str> {
    p.schedule.iter().map(|s| s.node.as_str()).collect()
}

fn range(p: &memwarden_lifetime::Plan, name: &str) -> (u64, u64) {
    let t = p.tensor(name).unwrap();
    (t.offset, t.offset + t.bytes)
}

#[test]
fn if_branches_take_consecutive_windows_and_share_memory() {
    let g = Graph::from_json(IF_GRAPH).unwrap();
    let p = plan(&g, &opts(Strategy::Best)).unwrap();
    assert_eq!(
        steps(&p),
        [
            "cond",
            "if/then_branch/a",
            "if/then_branch/b",
            "if/else_branch/a",
            "if/else_branch/b",
            "head"
        ]
    );
    // x is captured by both branches: it lives through both windows (steps 1..=4).
    assert_eq!(
        lifetimes(&p),
        "x[0,4] c[0,4] r[1,5] if/then_branch/t1[1,2] if/then_branch/t2[2,2]=r \
         if/else_branch/e1[3,4] if/else_branch/e2[4,4]=r z[5,5]"
    );
    // The branches' big tensors never live together, so they share bytes, and the
    // plan reaches the bound (x + c + r + t1 at step 1).
    let (t, e) = (
        range(&p, "if/then_branch/t1"),
        range(&p, "if/else_branch/e1"),
    );
    assert!(t.0 < e.1 && e.0 < t.1, "t1 {t:?} and e1 {e:?} share memory");
    assert_eq!(p.lower_bound_bytes, 6001);
    assert_eq!(p.arena_bytes, 6001);
    assert_eq!(range(&p, "if/then_branch/t2"), range(&p, "r"));
    for s in Strategy::ALL {
        brute_check(
            &plan(
                &g,
                &PlanOptions {
                    strategy: s,
                    ..PlanOptions::default()
                },
            )
            .unwrap(),
        );
    }
}

#[test]
fn loop_body_is_one_window() {
    let g = Graph::from_json(LOOP_GRAPH).unwrap();
    let mut o = opts(Strategy::Best);
    // The stacked scan output needs the trip count.
    let e = plan(&g, &o).unwrap_err();
    assert!(
        e.to_string().contains("scan (from Loop: unbound symbol T)"),
        "{e}"
    );
    o.dims.insert("T".to_owned(), 4);
    let p = plan(&g, &o).unwrap();
    assert_eq!(
        steps(&p),
        [
            "pre",
            "pre2",
            "loop/body/conv",
            "loop/body/relu",
            "loop/body/add",
            "loop/body/keep",
            "loop/body/mix",
            "post"
        ]
    );
    // Window = steps 2..=6. Loop inputs (n, h0) and the captured x live to its end;
    // body inputs through it; body outputs from their step to its end; the Loop's
    // outputs from its start.
    assert_eq!(
        lifetimes(&p),
        "inp[0,0] n[0,6] x[0,6] h0[1,6] hf[2,7] scan[2,7] loop/body/i[2,6] loop/body/cond[2,6] \
         loop/body/h[2,6] loop/body/a[2,3] loop/body/b[3,6] loop/body/h_next[4,6] \
         loop/body/cond_out[5,6] loop/body/s[6,6] o[7,7]"
    );
    assert_eq!(p.tensor("scan").map(|t| t.bytes), Some(4000));
    brute_check(&p);
    // In place: body inputs and outputs are never overwritten (h_next may not take
    // h's bytes, though h dies at the Add), but b may take a's, the scan slice s
    // b's (b dies at the window's last step), and the graph output o hf's.
    let p = plan(&g, &PlanOptions { inplace: true, ..o }).unwrap();
    let aliased: Vec<(&str, &str)> = p
        .tensors
        .iter()
        .filter_map(|t| Some((t.name.as_str(), t.alias_of.as_deref()?)))
        .collect();
    assert_eq!(
        aliased,
        [
            ("loop/body/b", "loop/body/a"),
            ("loop/body/s", "loop/body/b"),
            ("o", "hf")
        ]
    );
    brute_check(&p);
}

#[test]
fn nested_bodies_nest_the_rule() {
    // An If inside a Loop body: names nest, the If's branches share memory, and
    // everything validates.
    let g = Graph::from_json(r#"{
      "name": "nested",
      "tensors": [{"name": "x", "bytes": 100}, {"name": "n", "bytes": 8}, {"name": "y", "bytes": 100}],
      "nodes": [{"name": "L", "op": "Loop", "inputs": ["n", null, "x"], "outputs": ["y"], "subgraphs": [
        {"name": "body", "graph": {
          "tensors": [{"name": "i", "bytes": 8}, {"name": "c", "bytes": 1}, {"name": "h", "bytes": 100},
                      {"name": "k", "bytes": 1}, {"name": "r", "bytes": 100}],
          "nodes": [
            {"name": "test", "op": "Greater", "inputs": ["i", "n"], "outputs": ["k"]},
            {"name": "I", "op": "If", "inputs": ["k"], "outputs": ["r"], "subgraphs": {
              "else_branch": {"tensors": [{"name": "e", "bytes": 300}, {"name": "f", "bytes": 100}],
                "nodes": [{"op": "Conv", "inputs": ["h"], "outputs": ["e"]}, {"op": "Conv", "inputs": ["e"], "outputs": ["f"]}],
                "outputs": ["f"]},
              "then_branch": {"tensors": [{"name": "t", "bytes": 300}, {"name": "u", "bytes": 100}],
                "nodes": [{"op": "Conv", "inputs": ["h"], "outputs": ["t"]}, {"op": "Conv", "inputs": ["t"], "outputs": ["u"]}],
                "outputs": ["u"]}
            }}
          ],
          "inputs": ["i", "c", "h"],
          "outputs": ["c", "r"]}}
      ]}],
      "inputs": ["x", "n"],
      "outputs": ["y"]
    }"#).unwrap();
    let p = plan(&g, &opts(Strategy::Best)).unwrap();
    assert_eq!(
        steps(&p),
        [
            "L/body/test",
            "L/body/I/then_branch/Conv_0",
            "L/body/I/then_branch/Conv_1",
            "L/body/I/else_branch/Conv_0",
            "L/body/I/else_branch/Conv_1"
        ]
    );
    assert_eq!(
        p.tensor("L/body/I/then_branch/u")
            .and_then(|t| t.alias_of.as_deref()),
        Some("L/body/r")
    );
    let (t, e) = (
        range(&p, "L/body/I/then_branch/t"),
        range(&p, "L/body/I/else_branch/e"),
    );
    assert!(t.0 < e.1 && e.0 < t.1, "the branches share memory");
    brute_check(&p);
}

#[test]
fn if_with_a_pass_through_branch() {
    // The else branch returns the captured x: nothing to alias; the If output is
    // filled by a copy. A branch of constants is folded away.
    let g = Graph::from_json(r#"{
      "tensors": [{"name": "x", "bytes": 64}, {"name": "c", "bytes": 1}, {"name": "r", "bytes": 64}],
      "nodes": [
        {"name": "cond", "op": "Greater", "inputs": ["x"], "outputs": ["c"]},
        {"name": "if", "op": "If", "inputs": ["c"], "outputs": ["r"], "subgraphs": [
          {"name": "then_branch", "graph": {"tensors": [{"name": "k", "bytes": 64}],
            "nodes": [{"op": "Constant", "inputs": [], "outputs": ["k"]}], "outputs": ["k"]}},
          {"name": "else_branch", "graph": {"outputs": ["x"]}}
        ]}
      ],
      "inputs": ["x"], "outputs": ["r"]
    }"#).unwrap();
    let p = plan(
        &g,
        &PlanOptions {
            unknown: Unknown::Error,
            ..opts(Strategy::Best)
        },
    )
    .unwrap();
    assert_eq!(steps(&p), ["cond", "if"]);
    assert_eq!(lifetimes(&p), "x[0,1] c[0,1] r[1,1]");
    brute_check(&p);
}
