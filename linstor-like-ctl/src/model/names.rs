//! Object names: what LINSTOR accepts, so scripts written for it keep working.
//!
//! A name starts with a letter, then letters, digits, `_` and `-`, 2 to 48 characters. Names are
//! compared exactly (LINSTOR compares case-insensitively and keeps the spelling; replbd keeps the
//! simpler rule and refuses a second name that differs only in case, see [`same_ignoring_case`]).

/// Checks a name of `what` (node, resource definition, ...).
pub fn check(what: &str, name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if !(2..=48).contains(&len) {
        return Err(format!("{what} name {name:?} must be 2 to 48 characters long"));
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(format!("{what} name {name:?} must start with a letter"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{what} name {name:?} contains {bad:?}: use letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

/// Whether two names differ only in letter case.
pub fn same_ignoring_case(a: &str, b: &str) -> bool {
    a != b && a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check("node", "n1").is_ok());
        assert!(check("node", "node-0_a").is_ok());
        assert!(check("node", "1n").unwrap_err().contains("start with a letter"));
        assert!(check("node", "a").unwrap_err().contains("2 to 48"));
        assert!(check("node", "a b").unwrap_err().contains("' '"));
        assert!(same_ignoring_case("N1", "n1"));
        assert!(!same_ignoring_case("n1", "n1"));
    }
}
