//! Lifecycle states as enums: a function's or version's `State` and `LastUpdateStatus`, and a
//! capacity provider's `State`, with the values of the Lambda API model (botocore
//! `lambda/2015-03-31`: shapes `State`, `LastUpdateStatus`, `CapacityProviderState`). They are
//! serialized as those strings, on the wire and in the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A string that is none of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    /// The enum, e.g. `State`.
    pub kind: &'static str,
    pub value: String,
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the order of the API model.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownValue { kind: $kind, value: s.to_owned() })
            }
        }
    };
}

string_enum!(
    /// `State` of a function or version (default `Pending`: where a new version starts).
    #[derive(Default)]
    State, "State" {
        #[default]
        Pending,
        Active,
        Inactive,
        Failed,
        Deactivating,
        Deactivated,
        /// `$LATEST` of a capacity-provider function: configured, never invoked directly.
        ActiveNonInvocable,
        Deleting,
    }
);

string_enum!(
    /// `LastUpdateStatus` of a function or version (default `Successful`).
    #[derive(Default)]
    LastUpdateStatus, "LastUpdateStatus" {
        #[default]
        Successful,
        Failed,
        InProgress,
    }
);

string_enum!(
    /// `State` of a capacity provider (`CapacityProviderState`).
    CapacityProviderState, "CapacityProviderState" {
        Pending,
        Active,
        Failed,
        Deleting,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip_through_serde_and_from_str() {
        for s in State::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<State>(&json).unwrap(), *s);
            assert_eq!(s.as_str().parse::<State>(), Ok(*s));
        }
        for s in LastUpdateStatus::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(serde_json::from_str::<LastUpdateStatus>(&json).unwrap(), *s);
            assert_eq!(s.to_string().parse::<LastUpdateStatus>(), Ok(*s));
        }
        for s in CapacityProviderState::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(
                serde_json::from_str::<CapacityProviderState>(&json).unwrap(),
                *s
            );
        }
    }

    #[test]
    fn the_values_are_the_api_models() {
        let names = |all: &[&str]| all.join(",");
        assert_eq!(
            names(&State::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            "Pending,Active,Inactive,Failed,Deactivating,Deactivated,ActiveNonInvocable,Deleting"
        );
        assert_eq!(
            names(
                &LastUpdateStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "Successful,Failed,InProgress"
        );
        assert_eq!(
            names(
                &CapacityProviderState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "Pending,Active,Failed,Deleting"
        );
    }

    #[test]
    fn unknown_values_are_refused_with_their_kind() {
        assert_eq!(
            "Creating".parse::<State>(),
            Err(UnknownValue {
                kind: "State",
                value: "Creating".into()
            })
        );
        assert!(serde_json::from_str::<LastUpdateStatus>("\"Done\"").is_err());
        assert!(serde_json::from_str::<CapacityProviderState>("\"Inactive\"").is_err());
    }
}
