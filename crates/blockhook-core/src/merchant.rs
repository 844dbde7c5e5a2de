//! Merchants (tenants) and their API keys.

use serde::{Deserialize, Serialize};

use crate::{ApiKeyId, Error, MerchantId, Timestamp};

/// Whether a merchant may use the API and receive new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantStatus {
    /// Normal operation.
    Active,
    /// API keys are refused and new events are rejected; existing data stays readable by the
    /// operator.
    Suspended,
}

impl MerchantStatus {
    /// The stored/wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// Parses the stored/wire name.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(Error::invalid(
                "status",
                "must be \"active\" or \"suspended\"",
            )),
        }
    }
}

/// A merchant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merchant {
    /// Its id.
    pub id: MerchantId,
    /// Display name.
    pub name: String,
    /// Active or suspended.
    pub status: MerchantStatus,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A merchant about to be created.
#[derive(Debug, Clone)]
pub struct NewMerchant {
    /// Its id (fresh, or chosen by the operator).
    pub id: MerchantId,
    /// Display name, validated.
    pub name: String,
    /// Creation time.
    pub created_at: Timestamp,
}

impl NewMerchant {
    /// Validates a merchant name: 1 to 200 characters, no control characters.
    pub fn parse(id: MerchantId, name: &str, created_at: Timestamp) -> Result<Self, Error> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid("name", "must be 1 to 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "name",
                "must not contain control characters",
            ));
        }
        Ok(Self {
            id,
            name: name.to_owned(),
            created_at,
        })
    }
}

/// A merchant API key, as stored: only a hash of the key is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The merchant it authenticates.
    pub merchant_id: MerchantId,
    /// The first characters of the key, to recognise it in a list (not enough to use it).
    pub prefix: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// A key about to be stored. `hash` is the lowercase hex SHA-256 of the full key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// The merchant it authenticates.
    pub merchant_id: MerchantId,
    /// Displayable prefix.
    pub prefix: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// Creation time.
    pub created_at: Timestamp,
}
