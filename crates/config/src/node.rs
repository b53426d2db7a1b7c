//! A YAML document as a generic tree (the equivalent of upstream's YAML→JSON step),
//! with mapping keys kept in file order so warnings come out in a stable, readable order.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One YAML node after scalar resolution (YAML 1.1 booleans and numbers, as Go's yaml.v2
/// resolves them for sigs.k8s.io/yaml).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order. Duplicate keys have already been collapsed (last one wins).
    Map(Vec<(String, Node)>),
}

impl Node {
    /// What the node is, in the words used by type errors ("expected a string, got a number").
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl fmt::Display for Node {
    /// Short rendering for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Null => f.write_str("null"),
            Node::Bool(b) => write!(f, "{b}"),
            Node::Int(i) => write!(f, "{i}"),
            Node::Float(x) => write!(f, "{x}"),
            Node::Str(s) => write!(f, "{s:?}"),
            Node::Seq(_) => f.write_str("[...]"),
            Node::Map(_) => f.write_str("{...}"),
        }
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        i128::try_from(v).map(Node::Int).map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        String::from_utf8(v.to_vec()).map(Node::Str).map_err(|_| E::custom("binary value is not UTF-8"))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let key = match key {
                Node::Str(s) => s,
                Node::Bool(b) => b.to_string(),
                Node::Int(i) => i.to_string(),
                Node::Float(x) => x.to_string(),
                Node::Null => "null".to_owned(),
                Node::Seq(_) | Node::Map(_) => {
                    return Err(de::Error::custom("mapping keys must be scalars"));
                }
            };
            let value = map.next_value::<Node>()?;
            // Last one wins, as with Go's yaml.v2 decoding into a map.
            if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value;
            } else {
                entries.push((key, value));
            }
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// Parses YAML (or JSON) text. Only the first document is used, as Go's yaml.v2 does; the
/// returned flag says whether further documents were present (and ignored). An empty
/// document is `Node::Null`.
pub(crate) fn parse(text: &str) -> Result<(Node, bool), String> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    let docs: Vec<Node> = serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.trim();
        msg.strip_prefix("error: ").unwrap_or(msg).replace('\n', " ")
    })?;
    let extra = docs.len() > 1;
    Ok((docs.into_iter().next().unwrap_or(Node::Null), extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Node)]) -> Node {
        Node::Map(entries.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
    }

    /// Scalars resolve as Go's yaml.v2 resolves them (YAML 1.1), which is what upstream's
    /// YAML→JSON step sees.
    #[test]
    fn scalar_resolution() {
        let (n, extra) = parse(
            "a: yes\nb: 'yes'\nc: 0x10\nd: 010\ne: ~\nf:\ng: 1_000\nh: 1e10\ni: on\n\
             k: 10000000000\nl: \"10\"\nm: !!str 5\np: -1\no: 1.5\n",
        )
        .unwrap();
        assert!(!extra);
        assert_eq!(
            n,
            map(&[
                ("a", Node::Bool(true)),
                ("b", Node::Str("yes".into())),
                ("c", Node::Int(16)),
                ("d", Node::Int(8)),
                ("e", Node::Null),
                ("f", Node::Null),
                ("g", Node::Int(1000)),
                ("h", Node::Float(1e10)),
                ("i", Node::Bool(true)),
                ("k", Node::Int(10_000_000_000)),
                ("l", Node::Str("10".into())),
                ("m", Node::Str("5".into())),
                ("p", Node::Int(-1)),
                ("o", Node::Float(1.5)),
            ])
        );
    }

    #[test]
    fn documents_keys_and_merges() {
        assert_eq!(parse("").unwrap(), (Node::Null, false));
        assert_eq!(parse("---\n").unwrap(), (Node::Null, false));
        assert_eq!(parse("a: 1\n---\nb: 2\n").unwrap(), (map(&[("a", Node::Int(1))]), true));
        // Duplicate keys: last one wins, first position kept.
        assert_eq!(parse("a: 1\nb: 0\na: 2\n").unwrap().0, map(&[("a", Node::Int(2)), ("b", Node::Int(0))]));
        assert_eq!(
            parse("base: &b {x: 1}\nc:\n  <<: *b\n  z: 3\n").unwrap().0,
            map(&[
                ("base", map(&[("x", Node::Int(1))])),
                // Merged entries come after the mapping's own (order is irrelevant here).
                ("c", map(&[("z", Node::Int(3)), ("x", Node::Int(1))])),
            ])
        );
        // JSON is YAML.
        assert_eq!(
            parse(r#"{"a": [1, "x"], "b": null}"#).unwrap().0,
            map(&[("a", Node::Seq(vec![Node::Int(1), Node::Str("x".into())])), ("b", Node::Null)])
        );
        // Non-string keys become their text.
        assert_eq!(
            parse("1: x\ntrue: z\n").unwrap().0,
            map(&[("1", Node::Str("x".into())), ("true", Node::Str("z".into()))])
        );
        assert!(parse("a: [1\n").is_err());
    }
}
