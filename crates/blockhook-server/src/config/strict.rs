//! Strict configuration: every key of the config file and every `BLOCKHOOK_<SECTION>__<KEY>`
//! variable must name a setting, so a typo (`leese = "3s"`, `BLOCKHOOK_RETENTION__MAX_AGEX`) is
//! an error naming the key, where it came from and the closest valid key, never a silently kept
//! default. Also: the effective configuration as TOML with every secret redacted
//! (`blockhook config check`).
//!
//! The valid keys are not listed here: they are read from the compiled-in defaults and from the
//! serialised `Settings` struct, so a setting added to the struct is accepted at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::Settings;
use crate::Error;

/// `BLOCKHOOK_*` variables that are not settings: the CLI's own, and the test and benchmark
/// harness's. `serve` ignores them; any other name without `__` is refused. Names starting
/// with one of [`NOT_SETTINGS_PREFIXES`] are ignored as well.
pub const NOT_SETTINGS: &[&str] = &[
    "URL",
    "TOKEN",
    "CONFIG",
    "SECRET",
    "TEST_DATABASE_URL",
    "BENCH_DATABASE_URL",
];

/// Prefixes (after `BLOCKHOOK_`) reserved for test, benchmark and fault-injection variables
/// (`BLOCKHOOK_REQUIRE_MOUNT`, `BLOCKHOOK_REQUIRE_DOCS`: CI's "do not skip" switches).
pub const NOT_SETTINGS_PREFIXES: &[&str] = &["TEST_", "BENCH_", "CHAOS_", "SCALE_", "REQUIRE_"];

/// Every valid key, by section; and for keys holding arrays of tables
/// (`[[sources.postgres_outbox]]`), the valid keys of an entry, by `section.key`.
#[derive(Debug, Clone)]
pub struct KnownKeys(
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
);

impl KnownKeys {
    /// The keys of `defaults_toml` together with the fields of `defaults` (which also holds
    /// settings whose default is absent from the file, such as optional ones).
    pub fn new(defaults_toml: &str, defaults: &Settings) -> Result<Self, Error> {
        let bad = |e: &dyn std::fmt::Display| Error::Config(format!("compiled-in defaults: {e}"));
        let file: toml::Table = toml::from_str(defaults_toml).map_err(|e| bad(&e))?;
        let serialised = toml::Table::try_from(defaults).map_err(|e| bad(&e))?;
        // Entries of arrays of tables: their keys come from one example entry, serialised.
        let mut with_entries = defaults.clone();
        with_entries.sources.postgres_outbox = vec![super::PostgresOutboxSource::example()];
        with_entries.sources.nats = vec![super::NatsSource::example()];
        let mut entries: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (section, value) in toml::Table::try_from(&with_entries).map_err(|e| bad(&e))? {
            let toml::Value::Table(t) = value else {
                continue;
            };
            for (key, v) in t {
                if let toml::Value::Array(items) = v {
                    for item in items {
                        if let toml::Value::Table(entry) = item {
                            entries
                                .entry(format!("{section}.{key}"))
                                .or_default()
                                .extend(entry.keys().cloned());
                        }
                    }
                }
            }
        }
        let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for table in [file, serialised] {
            for (section, value) in table {
                let keys = known.entry(section).or_default();
                if let toml::Value::Table(t) = value {
                    keys.extend(t.keys().cloned());
                }
            }
        }
        Ok(Self(known, entries))
    }

    /// Problems with the keys of the entries of the array of tables `section.key`.
    fn check_entries(&self, dotted: &str, items: &[toml::Value], from: &str) -> Vec<String> {
        let Some(valid) = self.1.get(dotted) else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let toml::Value::Table(entry) = item else {
                problems.push(format!(
                    "{dotted} in {from} must hold tables ([[{dotted}]])"
                ));
                continue;
            };
            for key in entry.keys().filter(|k| !valid.contains(*k)) {
                let best = closest(key, valid.iter().cloned());
                problems.push(format!(
                    "unknown setting `{key}` in [[{dotted}]] (entry {i}) of {from}; did you mean \
                     `{dotted}.{best}`?"
                ));
            }
        }
        problems
    }

    fn dotted(&self) -> impl Iterator<Item = String> + '_ {
        self.0
            .iter()
            .flat_map(|(s, keys)| keys.iter().map(move |k| format!("{s}.{k}")))
    }

    /// Problems with the config file at `path` (one line each; empty when it is fine). A file
    /// that does not parse is left to the loader, which reports the syntax error.
    pub fn check_file(&self, path: &Path) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let Ok(table) = toml::from_str::<toml::Table>(&text) else {
            return Vec::new();
        };
        let from = path.display();
        let mut problems = Vec::new();
        for (section, value) in &table {
            match (self.0.get(section), value) {
                (Some(keys), toml::Value::Table(t)) => {
                    for (key, v) in t {
                        if let (true, toml::Value::Array(items)) = (keys.contains(key), v) {
                            let dotted = format!("{section}.{key}");
                            problems.extend(self.check_entries(&dotted, items, &from.to_string()));
                        }
                    }
                    for key in t.keys().filter(|k| !keys.contains(*k)) {
                        let given = format!("{section}.{key}");
                        problems.push(format!(
                            "unknown setting `{key}` in [{section}] of {from}; did you mean `{}`?",
                            closest(&given, self.dotted())
                        ));
                    }
                }
                (Some(_), _) => problems.push(format!(
                    "`{section}` in {from} must be a section ([{section}]), not a value"
                )),
                (None, toml::Value::Table(_)) => problems.push(format!(
                    "unknown section [{section}] in {from}; did you mean [{}]?",
                    closest(section, self.0.keys().cloned())
                )),
                (None, _) => {
                    // A key outside any section: suggest the setting it most likely is.
                    let best = closest_by(section, self.dotted(), |d| {
                        d.split_once('.').map_or(d.as_str(), |(_, k)| k).to_owned()
                    });
                    problems.push(format!(
                        "unknown setting `{section}` at the top of {from} (settings live in \
                         sections); did you mean `{best}`?"
                    ));
                }
            }
        }
        problems
    }

    /// Problems with the `BLOCKHOOK_*` variables among `vars` (one line each).
    pub fn check_env(&self, vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        let env_name = |dotted: &str| {
            let (s, k) = dotted.split_once('.').unwrap_or((dotted, ""));
            format!("BLOCKHOOK_{}__{}", s.to_uppercase(), k.to_uppercase())
        };
        let mut problems = Vec::new();
        for (name, _) in vars {
            let Some(rest) = name.strip_prefix("BLOCKHOOK_") else {
                continue;
            };
            let upper = rest.to_uppercase();
            let valid = match upper.split_once("__") {
                Some((section, key)) => self
                    .0
                    .get(&section.to_lowercase())
                    .is_some_and(|keys| keys.contains(&key.to_lowercase())),
                None => {
                    NOT_SETTINGS.contains(&upper.as_str())
                        || NOT_SETTINGS_PREFIXES.iter().any(|p| upper.starts_with(p))
                }
            };
            if valid {
                continue;
            }
            let best = closest(&name.to_uppercase(), self.dotted().map(|d| env_name(&d)));
            let what = if upper.contains("__") {
                "is not a setting"
            } else {
                "is neither a setting (BLOCKHOOK_<SECTION>__<KEY>) nor one of the CLI's \
                 variables (BLOCKHOOK_URL, BLOCKHOOK_TOKEN, BLOCKHOOK_CONFIG, BLOCKHOOK_SECRET)"
            };
            problems.push(format!(
                "environment variable {name} {what}; did you mean {best}?"
            ));
        }
        problems
    }
}

/// The candidate nearest to `given` (Levenshtein, case-insensitive).
fn closest(given: &str, candidates: impl Iterator<Item = String>) -> String {
    closest_by(given, candidates, Clone::clone)
}

/// The candidate whose `key(candidate)` is nearest to `given`.
fn closest_by(
    given: &str,
    candidates: impl Iterator<Item = String>,
    key: impl Fn(&String) -> String,
) -> String {
    let given = given.to_lowercase();
    candidates
        .min_by_key(|c| strsim::levenshtein(&given, &key(c).to_lowercase()))
        .unwrap_or_default()
}

/// Shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether the setting `key` holds a secret itself (a `*_file` setting holds a path: shown).
fn is_secret(key: &str) -> bool {
    !key.ends_with("_file")
        && ["token", "master_key", "secret", "password"]
            .iter()
            .any(|s| key.contains(s))
}

/// `settings` as TOML, with every secret replaced by [`REDACTED`] (an empty one stays empty, so
/// "not set" is visible) and the password of the store URL hidden.
pub fn redacted_toml(settings: &Settings) -> Result<String, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::Config(format!("printing the settings: {e}"));
    let mut table = toml::Table::try_from(settings).map_err(|e| bad(&e))?;
    for (_, section) in table.iter_mut() {
        let toml::Value::Table(keys) = section else {
            continue;
        };
        for (key, value) in keys.iter_mut() {
            if is_secret(key) {
                redact(value);
            }
        }
    }
    if let Some(toml::Value::String(url)) = table
        .get_mut("store")
        .and_then(|s| s.as_table_mut())
        .and_then(|s| s.get_mut("url"))
    {
        *url = redact_url_password(url);
    }
    // Gateways' databases of the outbox sources and the NATS servers: their passwords too.
    for kind in ["postgres_outbox", "nats"] {
        if let Some(toml::Value::Array(entries)) = table
            .get_mut("sources")
            .and_then(|s| s.as_table_mut())
            .and_then(|s| s.get_mut(kind))
        {
            for entry in entries.iter_mut() {
                if let Some(toml::Value::String(url)) =
                    entry.as_table_mut().and_then(|e| e.get_mut("url"))
                {
                    *url = if kind == "nats" {
                        super::NatsSource::redact(url)
                    } else {
                        redact_url_password(url)
                    };
                }
            }
        }
    }
    toml::to_string_pretty(&table).map_err(|e| bad(&e))
}

fn redact(value: &mut toml::Value) {
    match value {
        toml::Value::String(s) if !s.is_empty() => *s = REDACTED.to_owned(),
        toml::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:<redacted>@host/db`; also a `password=`
/// query parameter.
pub(crate) fn redact_url_password(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return raw.to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    }
    let has_pw = url.query_pairs().any(|(k, _)| k == "password");
    if has_pw {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn known() -> KnownKeys {
        KnownKeys::new(super::super::DEFAULTS, &Settings::defaults().unwrap()).unwrap()
    }

    fn vars(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), "1".to_owned()))
            .collect()
    }

    #[test]
    fn the_cli_and_test_variables_are_not_settings_and_are_ignored() {
        let k = known();
        let ok = vars(&[
            "BLOCKHOOK_URL",
            "BLOCKHOOK_TOKEN",
            "BLOCKHOOK_CONFIG",
            "BLOCKHOOK_SECRET",
            "BLOCKHOOK_TEST_DATABASE_URL",
            "BLOCKHOOK_REQUIRE_MOUNT",
            "BLOCKHOOK_REQUIRE_DOCS",
            "BLOCKHOOK_CHAOS_SEED",
            "BLOCKHOOK_DELIVERY__CONCURRENCY",
            "blockhook_log__filter",
            "HOME",
        ]);
        assert_eq!(k.check_env(ok), Vec::<String>::new());
    }

    #[test]
    fn a_mistyped_variable_names_itself_and_the_closest_setting() {
        let k = known();
        let got = k.check_env(vars(&[
            "BLOCKHOOK_RETENTION__MAX_AGEX",
            "BLOCKHOOK_DELIVRY__LEASE",
            "BLOCKHOOK_DELIVERY_LEASE",
        ]));
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].contains("BLOCKHOOK_RETENTION__MAX_AGEX"), "{got:?}");
        assert!(
            got[0].ends_with("did you mean BLOCKHOOK_RETENTION__MAX_AGE?"),
            "{got:?}"
        );
        assert!(
            got[1].ends_with("did you mean BLOCKHOOK_DELIVERY__LEASE?"),
            "{got:?}"
        );
        assert!(
            got[2].contains("neither a setting") && got[2].ends_with("BLOCKHOOK_DELIVERY__LEASE?"),
            "{got:?}"
        );
    }

    #[test]
    fn secrets_are_redacted_and_paths_are_not() {
        let mut s = Settings::defaults().unwrap();
        s.server.admin_token = "op-token-123".into();
        s.keys.master_key = "bWFzdGVy".into();
        s.store.url = "postgres://app:hunter2@127.0.0.1:5432/blockhook?password=x2".into();
        let text = redacted_toml(&s).unwrap();
        for secret in ["op-token-123", "bWFzdGVy", "hunter2", "x2"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("admin_token = \"<redacted>\""), "{text}");
        assert!(
            text.contains("app:%3Credacted%3E@127.0.0.1") || text.contains("app:<redacted>@"),
            "{text}"
        );
        assert!(text.contains("data_dir = \"./blockhook-data\""), "{text}");
        // What is printed is a valid configuration file again.
        let _: toml::Table = toml::from_str(&text).unwrap();
    }
}
