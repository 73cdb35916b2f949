//! [`ResourceId`] and [`ResourceKind`]: what a resource is called and what sort it is.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ParseError;

/// The name a resource is tracked, ranked, released and locked under.
///
/// Cheap to clone (a reference-counted string). A map keyed by `ResourceId` can be
/// searched with a plain `&str`, because `ResourceId: Borrow<str>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(Arc<str>);

impl ResourceId {
    /// Makes an id, rejecting the empty string.
    pub fn new(name: &str) -> Result<Self, ParseError> {
        if name.is_empty() {
            Err(ParseError::EmptyId)
        } else {
            Ok(ResourceId(name.into()))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ResourceId {
    /// Converts without the emptiness check of [`ResourceId::new`]; for literals in code.
    fn from(name: &str) -> Self {
        ResourceId(name.into())
    }
}

impl From<String> for ResourceId {
    fn from(name: String) -> Self {
        ResourceId(name.into())
    }
}

impl Borrow<str> for ResourceId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ResourceId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ResourceId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// What sort of resource something is; each kind has its own policy and release handler.
///
/// The six built-in kinds are the ones an editing-and-inference application holds;
/// [`ResourceKind::Custom`] names any other. Kinds print and parse as snake_case names
/// (`"render_cache"`), and serialise as those names.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A shard of a model's weights resident for inference (large, costly to reload).
    ModelShards,
    /// A cache of model weights kept around for a quick switch back.
    ModelWeightsCache,
    /// Rendered video frames kept for scrubbing and preview.
    RenderCache,
    /// Scratch buffers with no value once the step that made them ends.
    TempBuffers,
    /// Decoded audio samples.
    AudioCache,
    /// A searchable subtitle index; can be released in part.
    SubtitleIndex,
    /// Any other kind, by name.
    Custom(Arc<str>),
}

impl ResourceKind {
    /// The six built-in kinds, in declaration order.
    pub const BUILTIN: [ResourceKind; 6] = [
        ResourceKind::ModelShards,
        ResourceKind::ModelWeightsCache,
        ResourceKind::RenderCache,
        ResourceKind::TempBuffers,
        ResourceKind::AudioCache,
        ResourceKind::SubtitleIndex,
    ];

    /// A custom kind, validating its name (`[A-Za-z0-9_.-]+`).
    ///
    /// A name equal to a built-in kind's gives that built-in kind.
    pub fn custom(name: &str) -> Result<Self, ParseError> {
        name.parse()
    }

    /// The kind's snake_case name.
    pub fn as_str(&self) -> &str {
        match self {
            ResourceKind::ModelShards => "model_shards",
            ResourceKind::ModelWeightsCache => "model_weights_cache",
            ResourceKind::RenderCache => "render_cache",
            ResourceKind::TempBuffers => "temp_buffers",
            ResourceKind::AudioCache => "audio_cache",
            ResourceKind::SubtitleIndex => "subtitle_index",
            ResourceKind::Custom(name) => name,
        }
    }

    /// Whether this is one of the six built-in kinds.
    pub fn is_builtin(&self) -> bool {
        !matches!(self, ResourceKind::Custom(_))
    }
}

impl FromStr for ResourceKind {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if let Some(kind) = Self::BUILTIN.iter().find(|k| k.as_str() == s) {
            return Ok(kind.clone());
        }
        let valid = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if valid {
            Ok(ResourceKind::Custom(s.into()))
        } else {
            Err(ParseError::Kind {
                input: s.to_owned(),
            })
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ResourceKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ResourceKind::BUILTIN {
            assert_eq!(kind.as_str().parse::<ResourceKind>().unwrap(), kind);
            assert!(kind.is_builtin());
        }
        let custom = ResourceKind::custom("gpu.textures").unwrap();
        assert_eq!(custom, ResourceKind::Custom("gpu.textures".into()));
        assert_eq!(custom.to_string(), "gpu.textures");
        assert!(!custom.is_builtin());
        assert_eq!(
            ResourceKind::custom("audio_cache").unwrap(),
            ResourceKind::AudioCache
        );
        let err = ResourceKind::custom("bad kind!").unwrap_err().to_string();
        assert!(err.contains("\"bad kind!\""), "{err}");
        assert!(ResourceKind::custom("").is_err());
    }

    #[test]
    fn ids_look_up_by_str() {
        let mut map = HashMap::new();
        map.insert(ResourceId::from("frame-7"), 7);
        assert_eq!(map.get("frame-7"), Some(&7));
        assert_eq!(ResourceId::new(""), Err(ParseError::EmptyId));
        assert_eq!(format!("{:?}", ResourceId::from("a")), "\"a\"");
    }
}
