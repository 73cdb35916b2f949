//! In-place aliasing: which outputs may overwrite which inputs.

use memwarden_lifetime::{PlanOptions, Strategy, plan};

use crate::util::{brute_check, build, lifetimes, opts};

fn check(spec: &str, expected: &str) {
    let o = PlanOptions {
        inplace: true,
        ..opts(Strategy::Best)
    };
    let p = plan(&build(spec), &o).unwrap();
    assert_eq!(lifetimes(&p), expected, "{spec}");
    brute_check(&p);
    for t in &p.tensors {
        if let Some(a) = &t.alias_of {
            assert_eq!(
                p.tensor(a).map(|s| s.offset),
                Some(t.offset),
                "{} shares {a}'s bytes",
                t.name
            );
        }
    }
}

#[test]
fn aliasing_rules() {
    // A chain of activations after a conv: one buffer.
    check(
        "in x\nout z\nn0 Conv x -> a\nn1 Relu a -> b\nn2 Sigmoid b -> c\nn3 Conv c -> z",
        "x[0,0] a[0,1] b[1,2]=a c[2,3]=b z[3,3]",
    );
    // Graph inputs are the caller's: never overwritten.
    check("in x\nout y\nn0 Relu x -> y", "x[0,0] y[0,0]");
    // The input must die at the step: a is read again by the Add.
    check(
        "in x\nout z\nn0 Conv x -> a\nn1 Relu a -> b\nn2 Add a b -> z",
        "x[0,0] a[0,2] b[1,2] z[2,2]=a",
    );
    // A graph output must stay intact: b may not overwrite it.
    check(
        "in x\nout a b\nn0 Conv x -> a\nn1 Relu a -> b",
        "x[0,0] a[0,1] b[1,1]",
    );
    // Broadcasting Add: only the input with the output's shape can be overwritten.
    check(
        "in x\nout z\nshape x 4 8 8\nshape s 4 8 1\nshape a 4 8 8\nshape z 4 8 8\n\
         n0 ReduceMean x -> s\nn1 Conv x -> a\nn2 Add s a -> z",
        "x[0,1] s[0,2] a[1,2] z[2,2]=a",
    );
    // Cast to another element size, and non-elementwise ops: no alias.
    check(
        "in x\nout z\nshape a 4 10\nshape b 2 10\nn0 Conv x -> a\nn1 Cast a -> b\nn2 Conv b -> z",
        "x[0,0] a[0,1] b[1,2] z[2,2]",
    );
    check(
        "in x\nout z\nn0 Conv x -> a\nn1 Softmax a -> z",
        "x[0,0] a[0,1] z[1,1]",
    );
}

#[test]
fn inplace_lowers_the_bound() {
    let spec = "in x\nout z\nn0 Conv x -> a\nn1 Relu a -> b\nn2 Conv b -> z";
    let off = plan(&build(spec), &opts(Strategy::Best)).unwrap();
    let on = plan(
        &build(spec),
        &PlanOptions {
            inplace: true,
            ..opts(Strategy::Best)
        },
    )
    .unwrap();
    assert_eq!((off.lower_bound_bytes, on.lower_bound_bytes), (200, 200));
    assert_eq!((off.naive_bytes, on.naive_bytes), (400, 300));
    let v = on.to_json();
    assert_eq!(v["tensors"][2]["alias_of"], "a");
}
