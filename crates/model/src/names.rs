//! Name validation shared by every entry point (gRPC, HTTP, CLI).

use crate::ModelError;

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
}
