//! Hierarchical properties: key/value pairs on every object; the value set closest to the resource
//! wins (controller → resource group → resource definition → resource), as in LINSTOR.
//!
//! `Aux/` keys are the user's labels (placement constraints read them); other namespaces are
//! replbd's settings (e.g. `AutoEvictAfter` on the controller).

use std::collections::BTreeMap;

use super::Props;

/// The namespace of user labels.
pub const AUX: &str = "Aux/";

/// Checks a property key.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 256 {
        return Err(format!("property key {key:?} must be 1 to 256 characters"));
    }
    if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err(format!(
            "property key {key:?} must not start or end with '/' or contain an empty segment"
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.')))
    {
        return Err(format!(
            "property key {key:?} contains {c:?}: use letters, digits, '/', '_', '-' and '.'"
        ));
    }
    Ok(())
}

/// `zone` → `Aux/zone`; keys that already name a namespace are kept.
pub fn aux_key(key: &str) -> String {
    if key.contains('/') {
        key.to_owned()
    } else {
        format!("{AUX}{key}")
    }
}

/// The effective properties of an object from its layers, outermost first; each value comes with
/// the name of the layer that set it.
pub fn effective<'a>(layers: &[(&'a str, &'a Props)]) -> BTreeMap<String, (String, &'a str)> {
    let mut out = BTreeMap::new();
    for (source, props) in layers {
        for (k, v) in *props {
            out.insert(k.clone(), (v.clone(), *source));
        }
    }
    out
}

/// The effective value of `key` from `layers` (outermost first).
pub fn lookup<'a>(layers: &[&'a Props], key: &str) -> Option<&'a str> {
    layers.iter().rev().find_map(|p| p.get(key).map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn closest_layer_wins() {
        let ctrl = props(&[("A", "c"), ("B", "c")]);
        let group = props(&[("B", "g"), ("C", "g")]);
        let rd = props(&[("C", "d")]);
        let eff = effective(&[
            ("controller", &ctrl),
            ("resource-group", &group),
            ("resource-definition", &rd),
        ]);
        assert_eq!(eff["A"], ("c".to_owned(), "controller"));
        assert_eq!(eff["B"], ("g".to_owned(), "resource-group"));
        assert_eq!(eff["C"], ("d".to_owned(), "resource-definition"));
        assert_eq!(lookup(&[&ctrl, &group, &rd], "B"), Some("g"));
        assert_eq!(lookup(&[&ctrl, &group, &rd], "Z"), None);
    }

    #[test]
    fn keys() {
        assert!(check_key("Aux/zone").is_ok());
        assert!(check_key("/x").is_err());
        assert!(check_key("a b").is_err());
        assert_eq!(aux_key("zone"), "Aux/zone");
        assert_eq!(aux_key("Aux/zone"), "Aux/zone");
    }
}
