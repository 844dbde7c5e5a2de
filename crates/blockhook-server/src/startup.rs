//! `Application`: builds everything `blockhook serve` runs (store, keys, egress, API, dashboard,
//! dispatcher, retention) from `Settings`, binds its own listener (port 0 works, `local_addr`
//! tells the real one) and runs until a `CancellationToken` is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use blockhook_core::{Clock, SystemClock};
use blockhook_store::StoreOptions;

use crate::config::Settings;
use crate::dispatch::{self, DispatchCx};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::state::{AppState, Shared};
use crate::{Error, api, keyring, retention, ui};

/// A built, bound, not yet running blockhook.
pub struct Application {
    listener: TcpListener,
    unix: Option<UnixListener>,
    state: AppState,
    tls: Option<Arc<crate::edge::tls::CertStore>>,
    /// The embedded store's lock file, held while this process serves it (`restore` checks it).
    _lock: Option<blockhook_store::sqlite::StoreLock>,
}

impl Application {
    /// Opens the store (creating and migrating it), loads or generates keys, binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, Error> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Same, with a given clock (tests).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        // Keys first: a missing key on PostgreSQL is a configuration error, reported before
        // anything connects. Only the embedded store keeps files in the data directory.
        let mut lock = None;
        if keyring::embedded(&settings) {
            let data_dir = &settings.store.data_dir;
            std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
                what: format!("creating {}", data_dir.display()),
                source,
            })?;
            if let Some(db) = blockhook_store::sqlite::database_path(&settings.store_url())? {
                lock = Some(blockhook_store::sqlite::lock(&db)?);
            }
        }
        let keyring::Keys {
            master: keys,
            master_source,
            admin,
            admin_path,
        } = keyring::load(&settings)?;
        if let Some(path) = admin_path {
            tracing::info!(path = %path.display(), "operator token is in this file");
        }
        let url = settings.store_url();
        let store = blockhook_store::open(
            &url,
            &StoreOptions {
                max_connections: settings.store.max_connections,
                acquire_timeout: settings.store.acquire_timeout,
                sqlite_sync: settings.store.sqlite_sync,
                // The embedded store upgrades itself (after a copy of the file); a shared
                // PostgreSQL database is upgraded by `blockhook migrate`, deliberately.
                upgrade: if keyring::embedded(&settings) {
                    blockhook_store::Upgrade::Apply
                } else {
                    blockhook_store::Upgrade::FreshOnly
                },
            },
        )
        .await?;
        keyring::verify_store(&*store, &keys, &master_source).await?;
        let extra_ca_pem = if settings.delivery.extra_ca_file.is_empty() {
            None
        } else {
            let path = &settings.delivery.extra_ca_file;
            Some(std::fs::read(path).map_err(|source| Error::Io {
                what: format!("reading {path}"),
                source,
            })?)
        };
        let egress = blockhook_egress::Client::new(blockhook_egress::EgressConfig {
            connect_timeout: settings.delivery.connect_timeout,
            total_timeout: settings.delivery.total_timeout,
            allow_http: settings.delivery.allow_http,
            allow_nets: settings.delivery.allow_nets.clone(),
            extra_ca_pem,
            max_response_bytes: settings.delivery.max_response_bytes,
            // Every request in flight may be to one host: keep that many connections alive, or
            // each one past the default is a new TCP (and TLS) handshake per request.
            pool_max_idle_per_host: settings
                .delivery
                .concurrency
                .max(blockhook_egress::EgressConfig::default().pool_max_idle_per_host),
            ..blockhook_egress::EgressConfig::default()
        })?;
        // Before binding: a missing, mismatched or expired certificate stops the start here.
        let server = &settings.server;
        let tls = if server.tls_cert.as_os_str().is_empty() {
            None
        } else {
            Some(crate::edge::tls::CertStore::open(
                &server.tls_cert,
                &server.tls_key,
            )?)
        };
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .map_err(|source| Error::Io {
                what: format!("binding {}", settings.server.listen),
                source,
            })?;
        let unix = bind_unix(&settings.server.unix_socket)?;
        let wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::new());
        let search = settings.search.fields()?;
        let handoff = Arc::new(crate::dispatch::Handoff::default());
        let ingest = Ingestor::start(
            store.clone(),
            (wake.clone(), handoff.clone()),
            metrics.clone(),
            search,
        );
        let state = AppState::new(Shared {
            store,
            settings: Arc::new(settings),
            keys,
            admin,
            egress,
            wake,
            handoff,
            clock,
            metrics,
            ingest,
            api_limiter: Arc::default(),
        });
        Ok(Self {
            listener,
            unix,
            state,
            tls,
            _lock: lock,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.listener.local_addr().map_err(|source| Error::Io {
            what: "reading the bound address".into(),
            source,
        })
    }

    /// What the listener serves (before the edge's connection handling): tests drive it
    /// in-process with `tower::ServiceExt::oneshot` where no socket is needed.
    pub fn router(&self) -> axum::Router {
        Self::router_of(&self.state)
    }

    /// The API and, where this role serves it, the dashboard: two routers side by side over the
    /// same service layer, under one set of cross-cutting layers.
    fn router_of(state: &AppState) -> axum::Router {
        let mut app = api::router(state.clone());
        if state.settings.server.role.serves_api() {
            app = app.merge(ui::router(state.clone()));
        }
        api::layers(app, &state.settings.server)
    }

    /// The shared state (tests use it to reach the store directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves the API and runs the dispatcher and retention until `stop` is cancelled, then
    /// shuts down gracefully: the API stops accepting, the dispatcher drains in-flight attempts
    /// up to `delivery.drain_deadline`.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<(), Error> {
        let addr = self.local_addr()?;
        let state = self.state;
        let settings = state.settings.clone();
        tracing::info!(
            listen = %addr,
            role = ?settings.server.role,
            store = state.store.backend(),
            data_dir = %settings.store.data_dir.display(),
            "blockhook is running"
        );
        let worker = settings.server.role.delivers().then(|| {
            let cx = DispatchCx {
                store: state.store.clone(),
                keys: state.keys.clone(),
                egress: state.egress.clone(),
                clock: state.clock.clone(),
                policy: settings.retry_policy(),
                settings: settings.delivery.clone(),
                metrics: state.metrics.clone(),
                wake: state.wake.clone(),
                handoff: state.handoff.clone(),
            };
            tokio::spawn(dispatch::run(cx, stop.child_token()))
        });
        // Retention runs where deliveries are made (one process at a time, see `retention`):
        // an API process stays a pure request server.
        let retention = (settings.retention.max_age > Duration::ZERO
            && settings.server.role.delivers())
        .then(|| {
            tokio::spawn(retention::run(
                state.store.clone(),
                state.clock.clone(),
                settings.retention.clone(),
                state.metrics.clone(),
                stop.child_token(),
            ))
        });
        // The endpoint watch, like retention, runs where deliveries are made, one process at a
        // time (see `alerts`).
        let watch = (settings.alerts.interval > Duration::ZERO && settings.server.role.delivers())
            .then(|| {
                let cx = crate::alerts::WatchCx {
                    store: state.store.clone(),
                    clock: state.clock.clone(),
                    ingest: state.ingest.clone(),
                    cfg: settings.alerts.clone(),
                    settle: settings.delivery.total_timeout + settings.delivery.lease,
                };
                tokio::spawn(crate::alerts::run(cx, stop.child_token()))
            });
        // Sources (outbox relays, NATS consumers) run wherever they are configured, in any role:
        // every role ingests through the same path, and several processes may share one outbox
        // (SKIP LOCKED) or one durable consumer (each message goes to one of them).
        let relays: Vec<_> = settings
            .sources
            .postgres_outbox
            .iter()
            .map(|source| {
                let cx = crate::outbox::RelayCx {
                    ingest: state.ingest.clone(),
                    clock: state.clock.clone(),
                    metrics: state.metrics.clone(),
                    acquire_timeout: settings.store.acquire_timeout,
                };
                tokio::spawn(crate::outbox::run(source.clone(), cx, stop.child_token()))
            })
            .chain(settings.sources.nats.iter().map(|source| {
                let cx = crate::outbox::RelayCx {
                    ingest: state.ingest.clone(),
                    clock: state.clock.clone(),
                    metrics: state.metrics.clone(),
                    acquire_timeout: settings.store.acquire_timeout,
                };
                tokio::spawn(crate::jetstream::run(
                    source.clone(),
                    cx,
                    state.store.clone(),
                    stop.child_token(),
                ))
            }))
            .collect();
        let store = state.store.clone();
        let edge = crate::edge::Edge {
            settings: settings.server.clone(),
            metrics: state.metrics.clone(),
            tls: self.tls,
        };
        let app = Self::router_of(&state);
        let health = api::overflow_router(state);
        let listeners = crate::edge::Listeners {
            tcp: self.listener,
            unix: self.unix,
        };
        crate::edge::serve(edge, listeners, app, health, stop.clone()).await;
        if let Some(w) = worker {
            let _ = w.await;
        }
        if let Some(r) = retention {
            let _ = r.await;
        }
        if let Some(w) = watch {
            let _ = w.await;
        }
        for relay in relays {
            let _ = relay.await;
        }
        // Nothing writes any more: leave a database file that is complete on its own.
        if let Err(e) = store.checkpoint().await {
            tracing::warn!(error = %e, "checkpoint on shutdown failed");
        }
        Ok(())
    }
}

/// Binds `server.unix_socket` when set: a socket file left by a previous run is removed first
/// (a live server on it would hold the data directory's lock or its own port anyway), and the
/// socket is made owner and group only.
fn bind_unix(path: &std::path::Path) -> Result<Option<UnixListener>, Error> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| Error::Io { what, source }
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(io("removing the stale socket"))?;
        }
        Ok(_) => {
            return Err(Error::Config(format!(
                "server.unix_socket {} exists and is not a socket",
                path.display()
            )));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(io("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("restricting"))?;
    Ok(Some(listener))
}

/// Cancels `stop` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(stop: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
    stop.cancel();
}
