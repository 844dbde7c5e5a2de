//! Periodic jobs: retention runs in one process at a time (two apps on one PostgreSQL schema
//! show one runner, and the other takes over when it stops), and only in roles that deliver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blockhook_server::config::Role;

use crate::helpers::{Backend, TestApp, backends, store_url, test_settings};
use crate::receiver::TestCa;

fn passes(app: &TestApp) -> u64 {
    app.state.metrics.retention_passes.get()
}

/// Waits until `cond` holds (false after 15 s).
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn retention_runs_in_one_process_at_a_time_and_only_where_deliveries_are_made() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(TestCa::new());
        let mut s = test_settings(dir.path(), store_url(backend, dir.path()).await, &ca);
        s.retention.max_age = Duration::from_secs(86_400);
        s.retention.interval = Duration::from_millis(30);
        let start =
            |settings| TestApp::start(backend, settings, ca.clone(), tempfile::tempdir().unwrap());

        // An API process runs no periodic job.
        let mut api_only = s.clone();
        api_only.server.role = Role::Api;
        let api = start(api_only).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            passes(&api),
            0,
            "{backend:?}: the API process ran retention"
        );
        // Stopped first: the embedded store admits one serving process at a time.
        api.stop().await;

        let a = start(s.clone()).await;
        if backend == Backend::Sqlite {
            assert!(
                eventually(|| passes(&a) >= 3).await,
                "SQLite runs retention"
            );
        } else {
            let b = start(s.clone()).await;
            assert!(
                eventually(|| passes(&a) + passes(&b) >= 10).await,
                "retention runs somewhere"
            );
            let (pa, pb) = (passes(&a), passes(&b));
            assert!(
                pa == 0 || pb == 0,
                "both processes ran retention: {pa} and {pb}"
            );
            // The runner stops: the other one takes over.
            let (runner, other) = if pa > 0 { (a, b) } else { (b, a) };
            runner.stop().await;
            assert!(
                eventually(|| passes(&other) >= 3).await,
                "the other process took over"
            );
            other.stop().await;
        }
    }
}
