//! Typed access to a node's attributes: a value of the wrong kind is an
//! [`OnnxError::AttributeType`], an absent one is `None`.

use super::OnnxError;
use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, attr_type};

/// A node's attributes, with what an error needs to name the node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
    node_name: &'a str,
    file: &'a str,
}

impl<'a> Attrs<'a> {
    /// Wraps `node`, called `node_name` in the imported graph, from `file`.
    pub(crate) fn new(node: &'a NodeProto, node_name: &'a str, file: &'a str) -> Self {
        Attrs {
            node,
            node_name,
            file,
        }
    }

    /// The attribute called `name`, if the node has one that carries a value
    /// (references to a calling function's attributes do not).
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name == name && a.ref_attr_name.is_empty())
    }

    /// Whether the node has an attribute called `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Checks that `a` holds the `expected` kind. Files from before the `type`
    /// field (IR version 1) leave it 0; then the value field's presence decides.
    fn check(&self, a: &AttributeProto, expected: i32, present: bool) -> Result<(), OnnxError> {
        if a.r#type == expected || (a.r#type == attr_type::UNDEFINED && present) {
            Ok(())
        } else {
            Err(OnnxError::AttributeType {
                file: self.file.to_owned(),
                node: self.node_name.to_owned(),
                attribute: a.name.clone(),
                expected: attr_type::name(expected),
                found: attr_type::name(a.r#type),
            })
        }
    }

    /// An integer attribute.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check(a, attr_type::INT, a.i.is_some())?;
                Ok(Some(a.i.unwrap_or(0)))
            }
        }
    }

    /// An integer attribute with a default.
    pub(crate) fn int_or(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A list-of-integers attribute.
    pub(crate) fn ints(&self, name: &str) -> Result<Option<&'a [i64]>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check(a, attr_type::INTS, !a.ints.is_empty())?;
                Ok(Some(&a.ints))
            }
        }
    }

    /// A float attribute.
    pub(crate) fn float(&self, name: &str) -> Result<Option<f32>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check(a, attr_type::FLOAT, a.f.is_some())?;
                Ok(Some(a.f.unwrap_or(0.0)))
            }
        }
    }

    /// A list-of-floats attribute.
    pub(crate) fn floats(&self, name: &str) -> Result<Option<&'a [f32]>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check(a, attr_type::FLOATS, !a.floats.is_empty())?;
                Ok(Some(&a.floats))
            }
        }
    }

    /// A string attribute (decoded lossily: ONNX strings are UTF-8 by convention).
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check(a, attr_type::STRING, a.s.is_some())?;
                Ok(Some(
                    String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned(),
                ))
            }
        }
    }

    /// A tensor attribute.
    pub(crate) fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                self.check(a, attr_type::TENSOR, a.t.is_some())?;
                Ok(a.t.as_ref())
            }
        }
    }

    /// Every graph-valued attribute (`g` and each of `graphs`), named by the
    /// attribute (`name[i]` for a list), in the node's order. A graph attribute
    /// whose `type` says something else is an error.
    pub(crate) fn graphs(&self) -> Result<Vec<(String, &'a GraphProto)>, OnnxError> {
        let mut out = Vec::new();
        for a in &self.node.attribute {
            if !a.ref_attr_name.is_empty() {
                continue;
            }
            if let Some(g) = &a.g {
                self.check(a, attr_type::GRAPH, true)?;
                out.push((a.name.clone(), g));
            }
            if !a.graphs.is_empty() {
                self.check(a, attr_type::GRAPHS, true)?;
                out.extend(
                    a.graphs
                        .iter()
                        .enumerate()
                        .map(|(i, g)| (format!("{}[{i}]", a.name), g)),
                );
            }
        }
        Ok(out)
    }
}
