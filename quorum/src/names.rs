//! User-visible names of enums: one spelling for logs, status output, config files and the CLI.
//!
//! DRBD users read states and policies by name (`UpToDate`, `SyncTarget`, `discard-zero-changes`), so
//! replbd prints exactly those names and parses them back. The [`named_enum!`] macro generates, from
//! one table per enum, the `Display`, the case-insensitive `FromStr`, and serde impls that use the same
//! text, so the three can never drift apart. Enums that carry data (`discard-node-NAME`, `quorum 3`)
//! write the impls by hand and reuse [`serde_via_str!`] for serde.

use thiserror::Error;

/// A name that is not one of the spellings an enum accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} {input:?}; expected one of: {expected}")]
pub struct UnknownName {
    /// What was being parsed, e.g. `"disk state"`.
    pub what: &'static str,
    /// The text that did not match.
    pub input: String,
    /// The accepted spellings, comma separated.
    pub expected: String,
}

impl UnknownName {
    /// Builds the error for `input`, listing every accepted spelling in `names`.
    pub fn new(what: &'static str, input: &str, names: &[&str]) -> Self {
        Self {
            what,
            input: input.to_owned(),
            expected: names.join(", "),
        }
    }
}

/// Implements serde `Serialize`/`Deserialize` through `Display`/`FromStr`, so the serialised form is the
/// user-visible name.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

/// Declares a field-less enum whose variants each have one user-visible name.
///
/// Generates `ALL` (every variant in declaration order), `name()`, `Display` (the name), a
/// case-insensitive `FromStr` returning [`UnknownName`], and serde impls using the name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The user-visible name, exactly as DRBD spells it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name().eq_ignore_ascii_case(s))
                    .ok_or_else(|| {
                        $crate::names::UnknownName::new($what, s, &[$($text),+])
                    })
            }
        }

        $crate::names::serde_via_str!($name);
    };
}
pub(crate) use named_enum;
