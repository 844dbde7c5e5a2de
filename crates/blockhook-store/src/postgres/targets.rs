//! The fan-out targets of the merchants this process ingested for lately: each one's enabled
//! endpoints, as the ingest reads them (`LOAD`), beside the merchant's `targets_revision`.
//!
//! Why: reading them was a statement of its own before every ingest, and on PostgreSQL the cost
//! is per statement (BENCHMARKS.md, "Fan-out targets cached"). Why it is safe: the ingest
//! statement (`STORE`) is given the revisions the targets were read at and stores nothing if one
//! of them is no longer the merchant's; the caller then reads the targets again. Triggers move a
//! merchant's revision on every change to its status or endpoints, whichever process or person
//! makes it (migration 11), so another process's change is seen by this one's very next ingest.
//!
//! Bounded by merchants; past the bound the whole cache starts over (a miss costs one `LOAD`,
//! what every ingest used to cost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use blockhook_core::{Endpoint, Error, Ordering};
use sqlx::postgres::PgRow;
use sqlx::{FromRow as _, Row as _};

use super::rows::{EndpointRow, filter_types};
use crate::classify;

/// Every merchant of a batch (`$1`) with its revision and its enabled endpoints, whole: the
/// fan-out needs their filters and ordering, a hand-off the endpoint itself for its claims.
pub(super) const LOAD: &str = concat!(
    "SELECT m.id AS m_id, m.status AS m_status, m.targets_revision AS m_revision, ",
    super::rows::endpoint_columns!(),
    " FROM merchants m LEFT JOIN endpoints e ON e.merchant_id = m.id AND e.enabled \
     WHERE m.id = ANY($1) ORDER BY m.id, e.id"
);

/// At most this many merchants are kept.
const MAX_MERCHANTS: usize = 4096;

/// An enabled endpoint an event may fan out to.
pub(super) struct Target {
    pub(super) endpoint_id: String,
    /// Its filter's event types (empty = every type).
    pub(super) types: Vec<String>,
    /// Its ordering setting.
    pub(super) ordering: Ordering,
    /// The endpoint whole, for the claims of deliveries leased at insert; `None` if its row does
    /// not parse, in which case its deliveries are left to a claim, which reports the row.
    pub(super) endpoint: Option<Arc<Endpoint>>,
}

/// One active merchant's targets, as of `revision`.
pub(super) struct MerchantTargets {
    pub(super) revision: i64,
    pub(super) endpoints: Vec<Target>,
}

/// The targets of recently seen merchants, by merchant id.
#[derive(Default)]
pub(super) struct TargetCache {
    merchants: Mutex<HashMap<String, Arc<MerchantTargets>>>,
}

impl TargetCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<MerchantTargets>>> {
        // A poisoned lock only means another thread panicked mid-update: start over.
        self.merchants.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            guard.clear();
            guard
        })
    }

    /// The cached targets of `merchant`, if any.
    pub(super) fn get(&self, merchant: &str) -> Option<Arc<MerchantTargets>> {
        self.lock().get(merchant).cloned()
    }

    /// Keeps `read` (fresh from `LOAD`).
    pub(super) fn put(&self, read: &HashMap<String, Arc<MerchantTargets>>) {
        let mut merchants = self.lock();
        if merchants.len() + read.len() > MAX_MERCHANTS {
            merchants.clear();
        }
        for (id, targets) in read {
            merchants.insert(id.clone(), targets.clone());
        }
    }

    /// Drops what is kept of `stale` merchants.
    pub(super) fn forget<'a>(&self, stale: impl IntoIterator<Item = &'a str>) {
        let mut merchants = self.lock();
        for id in stale {
            merchants.remove(id);
        }
    }
}

/// Groups `LOAD`'s rows by merchant; refuses the batch if a merchant is suspended (an unknown one
/// is simply absent, and the caller answers `NotFound`).
pub(super) fn from_rows(rows: &[PgRow]) -> Result<HashMap<String, Arc<MerchantTargets>>, Error> {
    let mut read: HashMap<String, MerchantTargets> = HashMap::new();
    for row in rows {
        let merchant_id: String = row.try_get("m_id").map_err(classify)?;
        let status: String = row.try_get("m_status").map_err(classify)?;
        if status != "active" {
            return Err(Error::Conflict(format!(
                "merchant {merchant_id} is suspended"
            )));
        }
        let revision: i64 = row.try_get("m_revision").map_err(classify)?;
        let merchant = read.entry(merchant_id).or_insert_with(|| MerchantTargets {
            revision,
            endpoints: Vec::new(),
        });
        // A merchant without enabled endpoints comes as one row without an endpoint.
        let Some(endpoint_id) = row.try_get::<Option<String>, _>("id").map_err(classify)? else {
            continue;
        };
        let types: String = row.try_get("event_types").map_err(classify)?;
        let ordering: Option<String> = row.try_get("ordering").map_err(classify)?;
        let endpoint = EndpointRow::from_row(row)
            .map_err(classify)
            .and_then(Endpoint::try_from);
        let endpoint = match endpoint {
            Ok(endpoint) => Some(Arc::new(endpoint)),
            Err(e) => {
                tracing::warn!(endpoint = %endpoint_id, error = %e, "endpoint row does not parse");
                None
            }
        };
        merchant.endpoints.push(Target {
            endpoint_id,
            types: filter_types(&types)?,
            ordering: Ordering::from_stored(ordering.as_deref())?,
            endpoint,
        });
    }
    Ok(read
        .into_iter()
        .map(|(id, targets)| (id, Arc::new(targets)))
        .collect())
}
