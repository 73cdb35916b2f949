//! A small protobuf writer for hand-built ONNX models: the test-side counterpart
//! of the importer's schema, written from the field numbers of `onnx.proto`.

/// ONNX element types used in the tests.
pub(crate) const FLOAT: i64 = 1;
pub(crate) const INT64: i64 = 7;
pub(crate) const STRING: i64 = 8;
pub(crate) const BOOL: i64 = 9;

/// A protobuf message being written.
#[derive(Clone, Debug, Default)]
pub(crate) struct Msg(pub Vec<u8>);

impl Msg {
    fn key(&mut self, field: u32, wire: u8) {
        self.raw_varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A varint field (int32, int64, enums).
    pub(crate) fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        self.raw_varint(v as u64);
        self
    }

    /// A 32-bit float field.
    pub(crate) fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A length-delimited field.
    pub(crate) fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// A string field.
    pub(crate) fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    /// An embedded message field.
    pub(crate) fn msg(self, field: u32, m: &Msg) -> Self {
        self.bytes(field, &m.0)
    }
}

/// A model of IR version `ir` and default-domain opset `opset` around `graph`.
pub(crate) fn model_with(ir: i64, opset: i64, graph: &Msg) -> Vec<u8> {
    let opset = Msg::default().str(1, "").int(2, opset);
    Msg::default()
        .int(1, ir)
        .str(2, "memwarden-tests")
        .msg(7, graph)
        .msg(8, &opset)
        .0
}

/// A model of IR version 8, opset 17.
pub(crate) fn model(graph: &Msg) -> Vec<u8> {
    model_with(8, 17, graph)
}

/// The parts of a graph.
#[derive(Clone, Debug, Default)]
pub(crate) struct GraphSpec {
    pub(crate) nodes: Vec<Msg>,
    pub(crate) initializers: Vec<Msg>,
    pub(crate) inputs: Vec<Msg>,
    pub(crate) outputs: Vec<Msg>,
    pub(crate) value_info: Vec<Msg>,
}

impl GraphSpec {
    /// The encoded graph called `name`.
    pub(crate) fn build(&self, name: &str) -> Msg {
        let mut g = Msg::default();
        for n in &self.nodes {
            g = g.msg(1, n);
        }
        g = g.str(2, name);
        for t in &self.initializers {
            g = g.msg(5, t);
        }
        for v in &self.inputs {
            g = g.msg(11, v);
        }
        for v in &self.outputs {
            g = g.msg(12, v);
        }
        for v in &self.value_info {
            g = g.msg(13, v);
        }
        g
    }
}

/// A node.
pub(crate) fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: &[Msg]) -> Msg {
    let mut n = Msg::default();
    for i in inputs {
        n = n.str(1, i);
    }
    for o in outputs {
        n = n.str(2, o);
    }
    n = n.str(4, op);
    for a in attrs {
        n = n.msg(5, a);
    }
    n
}

/// A named node.
pub(crate) fn named_node(
    name: &str,
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[Msg],
) -> Msg {
    node(op, inputs, outputs, attrs).str(3, name)
}

/// An int attribute.
pub(crate) fn attr_int(name: &str, v: i64) -> Msg {
    Msg::default().str(1, name).int(20, 2).int(3, v)
}

/// An ints attribute.
pub(crate) fn attr_ints(name: &str, v: &[i64]) -> Msg {
    let mut a = Msg::default().str(1, name).int(20, 7);
    for &x in v {
        a = a.int(8, x);
    }
    a
}

/// A float attribute.
pub(crate) fn attr_float(name: &str, v: f32) -> Msg {
    Msg::default().str(1, name).int(20, 1).float(2, v)
}

/// A floats attribute.
pub(crate) fn attr_floats(name: &str, v: &[f32]) -> Msg {
    let mut a = Msg::default().str(1, name).int(20, 6);
    for &x in v {
        a = a.float(7, x);
    }
    a
}

/// A string attribute.
pub(crate) fn attr_str(name: &str, v: &str) -> Msg {
    Msg::default().str(1, name).int(20, 3).str(4, v)
}

/// A tensor attribute.
pub(crate) fn attr_tensor(name: &str, t: &Msg) -> Msg {
    Msg::default().str(1, name).int(20, 4).msg(5, t)
}

/// A graph attribute.
pub(crate) fn attr_graph(name: &str, g: &Msg) -> Msg {
    Msg::default().str(1, name).int(20, 5).msg(6, g)
}

/// An int64 tensor (values in the packed `int64_data` field).
pub(crate) fn tensor_i64(name: &str, dims: &[i64], vals: &[i64]) -> Msg {
    let mut t = Msg::default();
    for &d in dims {
        t = t.int(1, d);
    }
    t = t.int(2, INT64);
    let mut packed = Msg::default();
    for &v in vals {
        packed.raw_varint(v as u64);
    }
    t.bytes(7, &packed.0).str(8, name)
}

/// A float tensor (values in `raw_data`).
pub(crate) fn tensor_f32(name: &str, dims: &[i64], vals: &[f32]) -> Msg {
    let mut t = Msg::default();
    for &d in dims {
        t = t.int(1, d);
    }
    let raw: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.int(2, FLOAT).str(8, name).bytes(9, &raw)
}

/// A typed value: `dims` entries that parse as numbers are `dim_value`s, `?` is
/// an unknown dimension, anything else a `dim_param`; `None` leaves the shape out.
pub(crate) fn value(name: &str, elem_type: i64, dims: Option<&[&str]>) -> Msg {
    let mut tt = Msg::default().int(1, elem_type);
    if let Some(dims) = dims {
        let mut shape = Msg::default();
        for d in dims {
            let dim = match d.parse::<i64>() {
                Ok(v) => Msg::default().int(1, v),
                Err(_) if *d == "?" => Msg::default(),
                Err(_) => Msg::default().str(2, d),
            };
            shape = shape.msg(1, &dim);
        }
        tt = tt.msg(2, &shape);
    }
    let ty = Msg::default().msg(1, &tt);
    Msg::default().str(1, name).msg(2, &ty)
}

/// A float tensor value with the given dims.
pub(crate) fn fvalue(name: &str, dims: &[&str]) -> Msg {
    value(name, FLOAT, Some(dims))
}
