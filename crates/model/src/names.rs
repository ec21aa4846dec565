//! Name validation shared by every entry point (gRPC, HTTP, CLI), and node names in text
//! for people.

use crate::{ModelError, NodeId};

/// The longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a name: 1..=128 bytes of ASCII letters, digits, `_`, `-` and `.`, starting with a
/// letter, a digit or `_`.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), ModelError> {
    let refuse = |reason| ModelError::InvalidName {
        kind,
        name: name.chars().take(64).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(refuse("longer than 128 bytes"));
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(refuse("must start with a letter, a digit or '_'"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(refuse(
            "may hold only ASCII letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// `text` with each node id as the scheduler prints it (`node-4`, a whole word) replaced by
/// the node's name, for operators' reasons: the pure scheduler knows ids only, people know
/// names. Ids `name_of` does not know stay.
pub fn with_node_names(text: &str, name_of: impl Fn(NodeId) -> Option<String>) -> String {
    const TAG: &str = "node-";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TAG) {
        let after = &rest[at + TAG.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let starts_word = !rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
        let name = after[..digits]
            .parse()
            .ok()
            .and_then(|id| name_of(NodeId(id)))
            .filter(|_| starts_word && digits > 0);
        out.push_str(&rest[..at]);
        match name {
            Some(name) => out.push_str(&name),
            None => out.push_str(&rest[at..at + TAG.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["t", "orders", "orders_2024", "a-b.c", "_x", "9lives"] {
            validate_name("table", n).unwrap();
        }
    }

    #[test]
    fn refuses_empty_long_and_odd_names() {
        let long = "x".repeat(129);
        for n in [
            "",
            long.as_str(),
            "a b",
            "a/b",
            "-x",
            ".x",
            "t\u{e9}",
            "a\0b",
        ] {
            assert!(validate_name("table", n).is_err(), "{n:?} was accepted");
        }
    }

    #[test]
    fn node_ids_in_text_become_names() {
        let name_of = |id: NodeId| (id == NodeId(4)).then(|| "sim-4".to_string());
        assert_eq!(
            with_node_names(
                "move shard-6 from node-4 (5 replicas) to node-6 (3)",
                name_of
            ),
            "move shard-6 from sim-4 (5 replicas) to node-6 (3)"
        );
        assert_eq!(
            with_node_names("my-node-4 node- node-44", name_of),
            "my-node-4 node- node-44"
        );
    }
}
