//! The embedded store as files: the lock a serving process holds, online backups, restores, and
//! the checkpoint that makes the database file complete on its own.
//!
//! Decisions:
//! - **Lock file** `<db>.lock`, locked exclusively (`flock`)
//!   by `serve` for as long as it runs. The kernel drops the lock with the process, however it
//!   ends, so a stale file never blocks anyone. SQLite's own locks cannot say "a server runs
//!   here": they are held only during transactions.
//! - **Backups with `VACUUM INTO`**: one read transaction gives a consistent snapshot while the
//!   server keeps writing (WAL), the copy is compact, and it is written under a temporary name
//!   and renamed, so a backup file is either complete or absent.

use std::fs::File;
use std::path::{Path, PathBuf};

use blockhook_core::Error;
use rusqlite::{Connection, OpenFlags};

/// How long a connection waits on a lock held by another process (e.g. a CLI opening the same
/// file) before answering `SQLITE_BUSY`.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database lives.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Location {
    Memory,
    File(PathBuf),
}

/// Accepts `sqlite://path`, `sqlite:path`, a plain path, or `:memory:` in any of those forms.
/// Query strings (`?mode=rwc`) are ignored: the options come from [`StoreOptions`].
pub(super) fn location(raw: &str) -> Result<Location, Error> {
    let rest = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
        .unwrap_or(raw);
    let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
    if rest.is_empty() {
        return Err(Error::invalid("database_url", "no SQLite file path given"));
    }
    if rest == ":memory:" {
        return Ok(Location::Memory);
    }
    Ok(Location::File(PathBuf::from(rest)))
}

use std::time::Duration;

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Unavailable(format!("{what}: {e}"))
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::Unavailable(format!("{what}: {e}"))
}

/// The database file a `sqlite://…` URL (or path) names; `None` for `:memory:`.
pub fn database_path(url: &str) -> Result<Option<PathBuf>, Error> {
    Ok(match location(url)? {
        Location::Memory => None,
        Location::File(path) => Some(path),
    })
}

/// The lock file beside a database.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The exclusive lock a serving process holds on its database; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Takes the lock of the database at `db`, or fails naming it when another process holds it.
pub fn lock(db: &Path) -> Result<StoreLock, Error> {
    let path = lock_path(db);
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(StoreLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Conflict(format!(
            "{} is in use by a running blockhook process (it holds {})",
            db.display(),
            path.display()
        ))),
        Err(e) => Err(io(format!("locking {}", path.display()))(e.into())),
    }
}

fn open_existing(db: &Path) -> Result<Connection, Error> {
    if !db.is_file() {
        return Err(Error::invalid(
            "database",
            format!("{} does not exist", db.display()),
        ));
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("opening the database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql("setting the busy timeout"))?;
    Ok(conn)
}

fn sync_file(path: &Path) -> Result<(), Error> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", path.display())))
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Writes a consistent copy of the database at `db` to `to` (which must not exist), while
/// other connections keep reading and writing.
pub fn backup(db: &Path, to: &Path) -> Result<(), Error> {
    if to.exists() {
        return Err(Error::Conflict(format!(
            "{} already exists; choose a new file",
            to.display()
        )));
    }
    let conn = open_existing(db)?;
    let tmp = partial(to);
    let _ = std::fs::remove_file(&tmp);
    let target = tmp
        .to_str()
        .ok_or_else(|| Error::invalid("to", "the backup path must be UTF-8"))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(sql("VACUUM INTO"))?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, to).map_err(io(format!("renaming to {}", to.display())))?;
    Ok(())
}

/// Copies the backup `from` to `db`, which must not exist yet and must not be held by a running
/// process. Checks first that `from` is an intact blockhook database.
pub fn restore(from: &Path, db: &Path) -> Result<(), Error> {
    let _lock = lock(db)?;
    if db.exists() && std::fs::metadata(db).map(|m| m.len() > 0).unwrap_or(true) {
        return Err(Error::Conflict(format!(
            "{} already holds a database: restore into a new or empty directory",
            db.display()
        )));
    }
    {
        let check = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql("opening the backup"))?;
        let verdict: String = check
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sql("checking the backup"))?;
        let migrated: i64 = check
            .query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |r| r.get(0))
            .map_err(|_| {
                Error::invalid(
                    "from",
                    format!("{} is not a blockhook database", from.display()),
                )
            })?;
        if verdict != "ok" || migrated == 0 {
            return Err(Error::invalid(
                "from",
                format!("{} is damaged ({verdict})", from.display()),
            ));
        }
    }
    let tmp = partial(db);
    std::fs::copy(from, &tmp).map_err(io(format!("copying to {}", tmp.display())))?;
    sync_file(&tmp)?;
    for stale in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(stale);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    std::fs::rename(&tmp, db).map_err(io(format!("renaming to {}", db.display())))?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_file(dir)?;
    }
    Ok(())
}

/// Moves every committed page from the WAL into the database file and empties the WAL, so the
/// file alone is complete (on clean shutdown; a copy of the file is then a whole database).
pub(super) async fn checkpoint(writer: &sqlx::SqlitePool) -> Result<(), Error> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(writer)
        .await
        .map_err(crate::classify)?;
    if busy != 0 {
        return Err(Error::Unavailable(
            "WAL checkpoint blocked by a reader".into(),
        ));
    }
    Ok(())
}
