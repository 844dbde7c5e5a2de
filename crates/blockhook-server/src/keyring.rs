//! Which keys a process uses, proof that they are the database's keys, and re-sealing.
//!
//! Every process sharing a database must seal and open endpoint secrets with the same master
//! key: a worker with another key cannot open any secret, and every delivery it claims fails.
//! So the database holds a key check value (a known text sealed with the master key, written by
//! the first process or by `blockhook migrate`), and [`verify_store`] refuses to start a
//! process whose keys do not open it. On PostgreSQL nothing is generated: several processes each
//! generating their own key is exactly the failure above, so the key and the operator token must
//! be configured. The embedded store (one process) keeps generating both into its data directory.
//!
//! Rotation: `keys.master_key` takes the new key, `keys.old_master_keys` the previous ones, which
//! still open (never seal) secrets; [`reseal`] then re-seals every secret and the check value
//! with the new key, one compare-and-set per row, so it can run while servers serve.

use std::path::{Path, PathBuf};

use blockhook_core::{EndpointId, Store};

use crate::Error;
use crate::config::Settings;
use crate::keys::{AdminToken, MasterKey, Opener, read_setting_file};

/// How to make a key, for the errors that ask for one.
const GENERATE_KEY: &str = "generate one with `blockhook keys generate > /etc/blockhook/master.key` \
     (keep it private, and back it up apart from the database)";

/// The keys of this process.
#[derive(Debug)]
pub struct Keys {
    /// Seals and opens endpoint secrets.
    pub master: MasterKey,
    /// Where the master key came from (for errors and logs; never the key itself).
    pub master_source: String,
    /// The operator token.
    pub admin: AdminToken,
    /// The file holding the operator token, when it was read from or generated into one.
    pub admin_path: Option<PathBuf>,
}

/// Whether these settings use the embedded store (one process, files in the data directory).
pub fn embedded(settings: &Settings) -> bool {
    let url = settings.store_url();
    !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

/// The keys `settings` select: configured ones (value or file), or, for the embedded store only,
/// the files in the data directory, generated on first start.
pub fn load(settings: &Settings) -> Result<Keys, Error> {
    let (master, master_source) = load_master(settings)?;
    let (admin, admin_path) = load_admin(settings)?;
    Ok(Keys {
        master,
        master_source,
        admin,
        admin_path,
    })
}

/// Whether a master key is configured (a value or a file), as opposed to the embedded store's
/// generated default.
pub fn master_configured(settings: &Settings) -> bool {
    !settings.keys.master_key.is_empty() || !settings.keys.master_key_file.is_empty()
}

/// The master key (with the previous ones) and where it came from; see [`load`].
pub fn load_master(settings: &Settings) -> Result<(MasterKey, String), Error> {
    let embedded = embedded(settings);
    let data_dir = &settings.store.data_dir;
    let k = &settings.keys;
    let (master, master_source) = match (k.master_key.is_empty(), k.master_key_file.is_empty()) {
        (false, false) => {
            return Err(Error::Config(
                "set keys.master_key or keys.master_key_file, not both".into(),
            ));
        }
        (false, true) => (
            parse_key(
                &k.master_key,
                "keys.master_key (or BLOCKHOOK_KEYS__MASTER_KEY)",
            )?,
            "keys.master_key (or BLOCKHOOK_KEYS__MASTER_KEY)".to_owned(),
        ),
        (true, false) => {
            let source = format!("keys.master_key_file ({})", k.master_key_file);
            let text = read_setting_file(Path::new(&k.master_key_file))?;
            (parse_key(&text, &source)?, source)
        }
        (true, true) if embedded => {
            let (key, generated) = MasterKey::load_or_generate("", data_dir)?;
            let path = data_dir.join("master.key");
            if generated {
                tracing::warn!(
                    path = %path.display(),
                    "no keys.master_key configured: generated one; back it up, secrets cannot be read without it"
                );
            }
            (key, format!("{} (generated default)", path.display()))
        }
        (true, true) => {
            return Err(Error::Config(format!(
                "no master key configured: with PostgreSQL every process must seal and open \
                 endpoint secrets with the same key, so none is generated. Set \
                 keys.master_key_file to a file holding it (or BLOCKHOOK_KEYS__MASTER_KEY / \
                 keys.master_key to the key itself) in every process; {GENERATE_KEY}"
            )));
        }
    };
    let old = k
        .old_master_keys
        .iter()
        .enumerate()
        .map(|(i, b64)| parse_key(b64, &format!("keys.old_master_keys[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((master.with_old_keys(&old), master_source))
}

fn load_admin(settings: &Settings) -> Result<(AdminToken, Option<PathBuf>), Error> {
    let embedded = embedded(settings);
    let data_dir = &settings.store.data_dir;
    let s = &settings.server;
    let found = match (s.admin_token.is_empty(), s.admin_token_file.is_empty()) {
        (false, false) => {
            return Err(Error::Config(
                "set server.admin_token or server.admin_token_file, not both".into(),
            ));
        }
        (false, true) => (
            AdminToken::configured(&s.admin_token, "server.admin_token")?,
            None,
        ),
        (true, false) => {
            let path = PathBuf::from(&s.admin_token_file);
            let token = read_setting_file(&path)?;
            (
                AdminToken::configured(&token, "server.admin_token_file")?,
                Some(path),
            )
        }
        (true, true) if embedded => AdminToken::load_or_generate("", data_dir)?,
        // A worker answers no authenticated route: a random token nobody knows stands in.
        (true, true) if !s.role.serves_api() => {
            (AdminToken::configured(&AdminToken::generate(), "")?, None)
        }
        (true, true) => {
            return Err(Error::Config(
                "no operator token configured: with PostgreSQL every API process must accept the \
                 same token, so none is generated. Set server.admin_token_file to a file holding \
                 it (or BLOCKHOOK_SERVER__ADMIN_TOKEN / server.admin_token to the token itself); \
                 generate one with `blockhook keys generate --admin-token > \
                 /etc/blockhook/admin-token`"
                    .into(),
            ));
        }
    };
    Ok(found)
}

fn parse_key(b64: &str, source: &str) -> Result<MasterKey, Error> {
    MasterKey::from_base64(b64).map_err(|e| {
        Error::Config(format!(
            "{source}: {e}; expected base64 of 32 bytes, as `blockhook keys generate` prints"
        ))
    })
}

/// Proves `keys` are this database's: the key check value opens with the current key or a
/// previous one. Writes the check value when there is none yet, after checking that the key
/// opens an existing secret (a database from before the check value existed), so a wrong key
/// never becomes the reference. `source` says where the master key came from.
pub async fn verify_store(store: &dyn Store, keys: &MasterKey, source: &str) -> Result<(), Error> {
    let stored = match store.key_check().await? {
        Some(stored) => stored,
        None => {
            if let Some((id, _, sealed)) = store.sealed_secrets(None, 1).await?.into_iter().next() {
                if keys.open(&id, &sealed).is_err() {
                    return Err(wrong_key(source, &format!("the secret of endpoint {id}")));
                }
            }
            store.init_key_check(&keys.seal_check()?).await?
        }
    };
    match keys.open_check(&stored) {
        Some(Opener::Current) => Ok(()),
        Some(Opener::Old) => {
            tracing::warn!(
                "the database's secrets are sealed with a previous master key \
                 (keys.old_master_keys): run `blockhook keys reseal`"
            );
            Ok(())
        }
        None => Err(wrong_key(source, "the database's key check value")),
    }
}

fn wrong_key(source: &str, what: &str) -> Error {
    Error::Keys(format!(
        "the master key from {source} does not open {what}: this database's endpoint secrets \
         were sealed with another key. Configure the key the other processes use \
         (keys.master_key, BLOCKHOOK_KEYS__MASTER_KEY or keys.master_key_file); while rotating, \
         list the previous key in keys.old_master_keys"
    ))
}

/// What [`reseal`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// Secrets re-sealed with the current key.
    pub resealed: u64,
    /// Secrets the current key already sealed.
    pub current: u64,
    /// Secrets changed by someone else between reading and writing (looked at again).
    pub raced: u64,
    /// Whether the key check value was re-sealed.
    pub check_value: bool,
}

/// Passes over the endpoints before giving up on rows that keep changing under us.
const PASSES: usize = 3;

/// Re-seals, `batch` endpoints per read, every secret that only a previous key opens (a
/// rotation's previous secret included), then the key check value. Each write is a compare-and-set on the sealed bytes read, so a secret rotated
/// meanwhile is left as the rotation wrote it (and looked at again in the next pass).
pub async fn reseal(store: &dyn Store, keys: &MasterKey, batch: u32) -> Result<Resealed, Error> {
    let mut done = Resealed::default();
    for _ in 0..PASSES {
        let mut raced = 0;
        let mut after: Option<EndpointId> = None;
        loop {
            let rows = store.sealed_secrets(after.as_ref(), batch.max(1)).await?;
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            let next = last.clone();
            for (id, slot, sealed) in rows {
                let (secret, opener) = keys.open_with(&id, &sealed).map_err(|_| {
                    Error::Keys(format!(
                        "the secret of endpoint {id} opens with none of the configured keys \
                         (keys.master_key, keys.old_master_keys)"
                    ))
                })?;
                if opener == Opener::Current {
                    done.current += 1;
                    continue;
                }
                let fresh = keys.seal(&id, &secret)?;
                if store.reseal_secret(&id, slot, &sealed, &fresh).await? {
                    done.resealed += 1;
                } else {
                    raced += 1;
                }
            }
            after = Some(next);
        }
        done.raced += raced;
        if raced == 0 {
            break;
        }
        done.current = 0;
    }
    if let Some(stored) = store.key_check().await? {
        if keys.open_check(&stored) != Some(Opener::Current) {
            done.check_value = store
                .replace_key_check(&stored, &keys.seal_check()?)
                .await?;
        }
    } else {
        store.init_key_check(&keys.seal_check()?).await?;
        done.check_value = true;
    }
    Ok(done)
}
