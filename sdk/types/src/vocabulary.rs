//! The closed sets of names the host and the SDK both spell.
//!
//! Each enum serializes to the Collection Profile's JSON spelling (snake
//! case), and [`as_str`](RecoveryAction::as_str) returns the same text, so a
//! status can be stored, compared or printed without a serde round trip.
//! Both spellings come from one literal per variant, so they cannot differ.
//! [`FromStr`] reads the same text back and names the vocabulary when it
//! does not know a value.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A value that is not in one of this module's vocabularies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// The vocabulary asked (`"recovery action"`, `"DONE status"`, …).
    pub vocabulary: &'static str,
    /// The text that is not in it.
    pub value: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a {}", self.value, self.vocabulary)
    }
}

impl std::error::Error for UnknownName {}

/// Declares a vocabulary enum whose serde spelling, `as_str`, `Display`,
/// `FromStr` and `ALL` all come from the one literal given per variant.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The profile's spelling (the JSON string).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { vocabulary: $what, value: text.to_owned() }),
                }
            }
        }
    };
}

vocabulary! {
    /// What should happen after a SKIP_RESULT or a failed DONE: the closed
    /// vocabulary of `recovery_hint.action`.
    RecoveryAction, "recovery action" {
        /// The runtime may retry the same run later, unchanged.
        RetryByRuntime = "retry_by_runtime",
        /// A newer connector version is needed first.
        RetryOnConnectorUpgrade = "retry_on_connector_upgrade",
        /// The owner must enter a new credential.
        RefreshCredentials = "refresh_credentials",
        /// The owner must do something at the provider first.
        ManualActionRequired = "manual_action_required",
        /// A page selector no longer matches (browser-bound connectors).
        UpdateSelector = "update_selector",
        /// The provider must lift a block first.
        UpstreamUnblock = "upstream_unblock",
        /// Retrying will not help.
        NotRetriable = "not_retriable",
        /// The connector cannot tell.
        Unknown = "unknown",
    }
}

vocabulary! {
    /// How a run ended, as DONE reports it.
    DoneStatus, "DONE status" {
        /// Everything in scope was collected.
        Succeeded = "succeeded",
        /// The run failed; DONE's `error` says why.
        Failed = "failed",
        /// The run stopped on purpose (the connector's or the owner's).
        Cancelled = "cancelled",
    }
}

vocabulary! {
    /// START's `collection_mode`.
    CollectionMode, "collection mode" {
        /// Collect everything in scope; prior cursors are not offered.
        FullRefresh = "full_refresh",
        /// Continue from each stream's prior cursor.
        Incremental = "incremental",
    }
}

vocabulary! {
    /// What an INTERACTION asks the owner for.
    InteractionKind, "interaction kind" {
        /// Sign-in fields (the answer is a secret: never kept or shown).
        Credentials = "credentials",
        /// A one-time code.
        Otp = "otp",
        /// Something the owner does elsewhere, then confirms.
        ManualAction = "manual_action",
    }
}

vocabulary! {
    /// INTERACTION_RESPONSE's `status`.
    InteractionStatus, "interaction status" {
        /// The owner answered; the answer's data goes to the connector only.
        Success = "success",
        /// The owner declined.
        Cancelled = "cancelled",
        /// Nobody answered within `timeout_seconds`.
        Timeout = "timeout",
    }
}

vocabulary! {
    /// What a RECORD does to the stored record with its key.
    ///
    /// In the profile's JSON an upsert is written with no `op` at all and a
    /// deletion as `"op": "delete"`; the runtime refuses `"op": "upsert"`.
    /// `as_str` still names both, for logs and storage.
    RecordOp, "record op" {
        /// Insert or replace the record.
        Upsert = "upsert",
        /// Remove the record (the RECORD carries no data).
        Delete = "delete",
    }
}

/// The key of a SKIP_RESULT's `diagnostics` object that says how many
/// seconds after the skip the provider allows the stream to be tried again
/// (a rate limit's `Retry-After` or reset time). The SDK writes it
/// (`Skip::retry_after`); the host reads it into the run's record of the
/// streams left behind, from which setup status says when each is retried.
pub const RETRY_AFTER_SECONDS: &str = "retry_after_seconds";

/// A SKIP_RESULT's or DONE error's `recovery_hint`: the action, and whether
/// the connector believes the same run could succeed if retried.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecoveryHint {
    /// What should happen next.
    pub action: RecoveryAction,
    /// `None` when the connector does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The JSON, `as_str`, `Display` and `FromStr` spellings of every value agree.
    fn spellings_agree<T>(all: &[T], expected: &[&str])
    where
        T: Copy + fmt::Debug + PartialEq + Serialize + DeserializeOwned + fmt::Display + FromStr<Err = UnknownName>,
    {
        let shown: Vec<String> = all.iter().map(T::to_string).collect();
        assert_eq!(shown, expected);
        for v in all {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, serde_json::Value::String(v.to_string()));
            assert_eq!(serde_json::from_value::<T>(json).unwrap(), *v);
            assert_eq!(v.to_string().parse::<T>().unwrap(), *v);
        }
    }

    #[test]
    fn every_vocabulary_has_the_profile_spelling() {
        spellings_agree(
            RecoveryAction::ALL,
            &[
                "retry_by_runtime",
                "retry_on_connector_upgrade",
                "refresh_credentials",
                "manual_action_required",
                "update_selector",
                "upstream_unblock",
                "not_retriable",
                "unknown",
            ],
        );
        spellings_agree(DoneStatus::ALL, &["succeeded", "failed", "cancelled"]);
        spellings_agree(CollectionMode::ALL, &["full_refresh", "incremental"]);
        spellings_agree(InteractionKind::ALL, &["credentials", "otp", "manual_action"]);
        spellings_agree(InteractionStatus::ALL, &["success", "cancelled", "timeout"]);
        spellings_agree(RecordOp::ALL, &["upsert", "delete"]);
    }

    #[test]
    fn an_unknown_name_is_refused_with_its_vocabulary() {
        let e = "RetryByRuntime".parse::<RecoveryAction>().unwrap_err();
        assert_eq!(e.to_string(), r#""RetryByRuntime" is not a recovery action"#);
        assert!(serde_json::from_str::<DoneStatus>(r#""done""#).is_err());
    }

    #[test]
    fn a_recovery_hint_omits_an_unknown_retryability() {
        let hint = RecoveryHint {
            action: RecoveryAction::RefreshCredentials,
            retryable: None,
        };
        assert_eq!(
            serde_json::to_string(&hint).unwrap(),
            r#"{"action":"refresh_credentials"}"#
        );
    }
}
