//! `blockhook bench`: how fast this machine delivers, end to end, against what it could do.
//!
//! One run, one process: a loopback receiver ([`sink`]) is started; the **bare limit** is
//! measured by POSTing the same bodies to it with a plain `reqwest` client at the same
//! concurrency (no storage, no signing), and with `--rate` once more at that rate (the loopback
//! floor of a run at that rate); then a real blockhook (`Application::build`, temporary
//! data directory, SQLite or a fresh PostgreSQL schema) is started in process, merchants and
//! endpoints pointing at the receiver are created, and N events are published through the real
//! ingest API ([`load`]). The run ends when every expected delivery arrived (or at the timeout)
//! and prints rates, latency percentiles, duplicates, losses, CPU and peak memory.
//!
//! With `--source outbox` the events are not published over HTTP: a "gateway" inserts them
//! into a PostgreSQL transactional outbox that the blockhook under test relays ([`outbox`]), and
//! the report adds the gateway's insert rate and the relay rate. `--source nats` does the same
//! with a JetStream stream the blockhook under test reads ([`nats`]).
//!
//! Latency is the receiver's arrival time minus the publish time stamped into each payload, so
//! it covers ingest, commit, claim, signing and the HTTP exchange. Everything shares one tokio
//! runtime and one process: CPU and memory figures include the load generator and the receiver.

mod load;
mod nats;
mod outbox;
mod procfs;
mod sink;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use blockhook_server::{Application, Settings, telemetry};

use super::progress::Progress;
use load::{Load, Plan};
use sink::Sink;

/// Flags of `bench`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "Examples:\n  blockhook bench --quick\n  \
blockhook bench --events 50000 --concurrency 64 --endpoints 100\n  \
blockhook bench --batch 100\n  \
blockhook bench --store postgres --database-url postgres://postgres@127.0.0.1:5432/test\n  \
blockhook bench --rate 2000   (fixed offered rate, for latency at a given load)\n  \
blockhook bench --merchants 100 --endpoints 1000 --failing-pct 5 --flapping-pct 5 --batch 100\n  \
blockhook bench --events 100000 --delivery-concurrency 1 --timeout 60   (a backlog; exits 1)\n  \
blockhook bench --ordering-keys 50   (ordering off, then per key over 50 keys)\n  \
blockhook bench --rate 400 --idempotency-keys   (every event with an idempotency key of its own)\n  \
blockhook bench --drain --events 100000 --batch 100   (a backlog after an outage, drained)\n\n\
blockhook bench --source outbox --database-url postgres://postgres@127.0.0.1:5432/test --batch 100\n\n\
Exits 1 when any delivery was lost (did not arrive before --timeout).")]
pub struct Args {
    /// Store: sqlite (a file in a temporary directory) or postgres (a fresh schema, dropped after).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub store: String,
    /// Where events come from: http (`POST /v1/events`, or `/v1/events/batch` with --batch),
    /// outbox (rows a "gateway" inserts into a PostgreSQL transactional outbox in a fresh schema
    /// of --database-url, --batch rows per transaction, relayed by blockhook) or nats (messages
    /// a "gateway" publishes to a fresh JetStream stream on --nats-url, read by blockhook).
    #[arg(long, default_value = "http", value_parser = ["http", "outbox", "nats"])]
    pub source: String,
    /// The NATS server (with JetStream) for `--source nats`.
    #[arg(
        long,
        env = "BLOCKHOOK_BENCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// PostgreSQL URL for `--store postgres` and `--source outbox` (the gateway's database).
    #[arg(long, env = "BLOCKHOOK_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Events to publish (default 50000, or 2000 with --quick).
    #[arg(long)]
    pub events: Option<u64>,
    /// Short run: 2000 events unless --events is given.
    #[arg(long)]
    pub quick: bool,
    /// Ingest requests in flight at once (and bare-limit requests in flight).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Events per ingest request through `POST /v1/events/batch`; 0 uses `POST /v1/events`.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Offered ingest rate in events/s (default: as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Endpoint groups the events are spread over (one merchant each); with --merchants, the
    /// total number of endpoints, spread evenly over the merchants (overrides --fanout).
    #[arg(long, default_value_t = 100)]
    pub endpoints: u64,
    /// Merchants: each gets endpoints/merchants endpoints, and each event goes to every
    /// endpoint of its merchant.
    #[arg(long)]
    pub merchants: Option<u64>,
    /// Percentage of endpoints that answer 500 to everything (spread over the merchants).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub failing_pct: u64,
    /// Percentage of endpoints that alternate 500 and 200. Latency, delivery and loss figures
    /// then cover healthy endpoints only.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub flapping_pct: u64,
    /// `delivery.concurrency` of the blockhook under test (default: the setting's default);
    /// a low value builds a backlog.
    #[arg(long)]
    pub delivery_concurrency: Option<usize>,
    /// Endpoints per group: each event is delivered to this many endpoints.
    #[arg(long, default_value_t = 1)]
    pub fanout: u64,
    /// SQLite durability: full (fsync per commit, the default of `serve`) or normal.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    pub sqlite_sync: String,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Runs twice, ordering off (mode none) then on (mode per_key, event `seq` carrying the
    /// ordering key `k<seq % K>`), and reports both delivery rates side by side.
    #[arg(long, value_name = "K")]
    pub ordering_keys: Option<u64>,
    /// `[search] fields`, comma-separated (default: the server's, `orderNo`); `none` turns the
    /// search index off, to measure what indexing costs at ingest.
    #[arg(long, value_name = "FIELDS")]
    pub search_fields: Option<String>,
    /// Every event carries an idempotency key of its own (`e<seq>`), as a gateway that retries
    /// its publishes safely sends them.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// A backlog drained after an outage: the receiver answers 503 while the events are
    /// published (blockhook runs with no retries, so each delivery fails once, for good), then
    /// comes back, and every endpoint is recovered (`POST .../recover`, as a merchant would);
    /// reports deliveries/s from the recovery until the backlog is empty.
    #[arg(long)]
    pub drain: bool,
}

/// Unix time in microseconds.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Runs the benchmark and prints the report.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let events = args
        .events
        .unwrap_or(if args.quick { 2_000 } else { 50_000 });
    if events == 0 || args.concurrency == 0 || args.endpoints == 0 || args.fanout == 0 {
        bail!("--events, --concurrency, --endpoints and --fanout must be > 0");
    }
    if args.failing_pct + args.flapping_pct > 100 {
        bail!("--failing-pct + --flapping-pct must be at most 100");
    }
    if let Some(m) = args.merchants
        && (m == 0 || args.endpoints % m != 0)
    {
        bail!("--merchants must be > 0 and divide --endpoints");
    }
    if args.batch > 10_000 {
        bail!("--batch must be at most 10000");
    }
    if args.ordering_keys == Some(0) {
        bail!("--ordering-keys must be > 0");
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be > 0");
    }
    let database_url = match (args.store.as_str(), &args.database_url) {
        ("postgres", Some(url)) => Some(url.clone()),
        ("postgres", None) => bail!("--store postgres needs --database-url"),
        _ => None,
    };
    if args.source != "http" && (args.ordering_keys.is_some() || args.idempotency_keys) {
        bail!(
            "--ordering-keys and --idempotency-keys measure HTTP publishing; leave them out with --source outbox|nats"
        );
    }
    if args.drain
        && (args.source != "http"
            || args.ordering_keys.is_some()
            || args.failing_pct + args.flapping_pct > 0)
    {
        bail!(
            "--drain measures HTTP publishing to healthy endpoints: leave out --source, --ordering-keys and the unhealthy percentages"
        );
    }
    if args.source == "outbox" && args.database_url.is_none() {
        bail!("--source outbox needs --database-url (the gateway's PostgreSQL database)");
    }
    // Two runtimes, so that the server's CPU time can be told from the load's: the load
    // generator and the receiver run on `bench-load` threads (and this one), blockhook on its
    // own runtime, sized as `serve` sizes it (`server.workers` left automatic).
    let load = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(LOAD_THREADS)
        .build()?;
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(blockhook_server::config::automatic_workers(
            args.store == "sqlite",
        ))
        .enable_all()
        .thread_name("blockhook-server")
        .build()?;
    let lost = load.block_on(bench(&args, events, database_url, server.handle()))?;
    Ok(if lost > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The name of the load side's threads (see [`run`]).
const LOAD_THREADS: &str = "bench-load";

/// CPU seconds of the server alone so far: the process's, less the load side's threads.
fn server_cpu_seconds() -> Option<f64> {
    Some(procfs::cpu_seconds()? - procfs::threads_cpu_seconds(LOAD_THREADS, true)?)
}

/// How long the bare requests at a fixed rate run (at most the run's own count of deliveries).
const BARE_AT_RATE: Duration = Duration::from_secs(5);

/// The bare requests again, at the run's offered rate: what one loopback request costs its two
/// sides (reqwest client, hyper receiver) at that rate. blockhook receives one request and sends
/// one per event, so this is the floor under its own CPU per event at that rate, before any
/// storage: at a low rate most of it is waking idle threads, not HTTP. Returns it in ms.
async fn bare_at(rate: f64, expected: u64, concurrency: usize) -> anyhow::Result<Option<f64>> {
    let n = at_rate_count(rate, expected);
    let (_, cpu) = bare_run(n, concurrency, Some(rate)).await?;
    let per_request = cpu.map(|cpu| cpu / n as f64 * 1000.0);
    if let Some(ms) = per_request {
        println!(
            "bare cpu per request at {rate} requests/s: {ms:.3} ms (client and receiver, {n} requests)"
        );
    }
    Ok(per_request)
}

/// How many requests or commits a floor run at `rate` makes: [`BARE_AT_RATE`]'s worth, at most
/// the run's own count.
fn at_rate_count(rate: f64, expected: u64) -> u64 {
    expected
        .min((rate * BARE_AT_RATE.as_secs_f64()).ceil() as u64)
        .max(1)
}

/// The durable floor at the run's offered rate (`blockhook_store::floor`): CPU per commit of
/// one event-sized row committed alone, in the run's store, with its durability. With the loopback
/// floor it is the least any server keeping this promise spends per event at this rate; both are
/// printed, and their sum, so that a run's CPU per event can be read against it.
async fn durable_floor_at(
    args: &Args,
    rate: f64,
    expected: u64,
    bare: Option<f64>,
) -> anyhow::Result<()> {
    use blockhook_store::floor::{self, Pace};
    let pace = Pace {
        commits: at_rate_count(rate, expected),
        gap: Duration::from_secs_f64(1.0 / rate),
    };
    let body = |i: u64| load::payload(i, now_us());
    let postgres = args
        .database_url
        .as_deref()
        .filter(|_| args.store == "postgres");
    let start = CpuSample::now(postgres.is_some());
    let what = match postgres {
        Some(base) => {
            let schema = PgSchema::create(base).await?;
            let run = floor::postgres_commits(&schema.url, pace, body).await;
            schema.drop_it().await;
            run.context("the durable floor's commits in PostgreSQL")?;
            "PostgreSQL".to_owned()
        }
        None => {
            let dir = std::env::temp_dir()
                .join(format!("blockhook-floor-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).context("a directory for the durable floor")?;
            let path = dir.join("floor.db");
            let sync = sqlite_sync(args);
            let run =
                tokio::task::spawn_blocking(move || floor::sqlite_commits(&path, sync, pace, body))
                    .await;
            let _ = std::fs::remove_dir_all(&dir);
            run?.context("the durable floor's commits in SQLite")?;
            format!("SQLite synchronous={}", args.sqlite_sync)
        }
    };
    let spent = CpuSample::now(postgres.is_some()).since(&start);
    let ms = |s: Option<f64>| s.map(|s| s / pace.commits as f64 * 1000.0);
    let (Some(client), pg) = (ms(spent.process), ms(spent.postgres)) else {
        return Ok(());
    };
    let durable = client + pg.unwrap_or(0.0);
    match pg {
        Some(pg) => println!(
            "durable floor per event at {rate} events/s: {client:.3} + {pg:.3} = {durable:.3} ms (client + postgres; one event-sized row committed alone, {what}, {} commits)",
            pace.commits
        ),
        None => println!(
            "durable floor per event at {rate} events/s: {durable:.3} ms (one event-sized row committed alone, {what}, {} commits)",
            pace.commits
        ),
    }
    if let Some(bare) = bare {
        println!(
            "floor per event at {rate} events/s: {bare:.3} + {durable:.3} = {:.3} ms (bare request + durable commit)",
            bare + durable
        );
    }
    Ok(())
}

/// POSTs `n` bodies straight to a fresh loopback receiver, `concurrency` at a time or at `rate`
/// per second; returns the seconds it took and the process's CPU seconds meanwhile.
async fn bare_run(
    n: u64,
    concurrency: usize,
    rate: Option<f64>,
) -> anyhow::Result<(f64, Option<f64>)> {
    let sink = Sink::start(n, 1).await?;
    let cpu0 = procfs::cpu_seconds();
    let started = Instant::now();
    match rate {
        None => load::bare(&sink, n, concurrency).await?,
        Some(rate) => load::bare_at(&sink, n, rate).await?,
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let got = sink.tally.unique.load(Ordering::Relaxed);
    if got < n {
        bail!("the bare receiver got {got} of {n} requests");
    }
    Ok((secs, cpu))
}

/// CPU counters read at the start and at the end of a measured span.
#[derive(Clone, Copy)]
struct CpuSample {
    process: Option<f64>,
    server: Option<f64>,
    postgres: Option<f64>,
}

impl CpuSample {
    fn now(postgres: bool) -> Self {
        Self {
            process: procfs::cpu_seconds(),
            server: server_cpu_seconds(),
            postgres: postgres.then(procfs::postgres_cpu_seconds).flatten(),
        }
    }

    /// The CPU seconds used since `start`, of each counter read both times.
    fn since(&self, start: &Self) -> Self {
        let delta = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| (b - a).max(0.0));
        Self {
            process: delta(self.process, start.process),
            server: delta(self.server, start.server),
            postgres: delta(self.postgres, start.postgres),
        }
    }

    /// Prints the CPU used since `start`, per event and per 1000 deliveries.
    fn report_since(&self, start: &Self, events: u64, deliveries: u64) {
        let Self {
            process,
            server,
            postgres,
        } = self.since(start);
        if events == 0 || deliveries == 0 {
            println!("cpu per 1000 deliveries: n/a");
            return;
        }
        let ms_per_event = |s: f64| s / events as f64 * 1000.0;
        if let Some(server) = server {
            println!(
                "server cpu per event: {:.3} ms ({server:.2} s in all, blockhook's threads only)",
                ms_per_event(server)
            );
        }
        if let Some(pg) = postgres {
            println!(
                "postgres cpu per event: {:.3} ms ({pg:.2} s in all, every postgres process)",
                ms_per_event(pg)
            );
            if let Some(server) = server {
                println!(
                    "server + postgres cpu per event: {:.3} ms",
                    ms_per_event(server + pg)
                );
            }
        }
        match process {
            Some(cpu) => println!(
                "cpu per 1000 deliveries: {:.3} s ({cpu:.2} s in all, load generator and receiver included)",
                cpu / deliveries as f64 * 1000.0
            ),
            None => println!("cpu per 1000 deliveries: n/a"),
        }
    }
}

/// The run's `--sqlite-sync`.
fn sqlite_sync(args: &Args) -> blockhook_store::SqliteSync {
    if args.sqlite_sync == "normal" {
        blockhook_store::SqliteSync::Normal
    } else {
        blockhook_store::SqliteSync::Full
    }
}

/// Merchants and endpoints per merchant.
fn groups(args: &Args) -> (u64, u64) {
    match args.merchants {
        Some(m) => (m, args.endpoints / m),
        None => (args.endpoints, args.fanout),
    }
}

async fn bench(
    args: &Args,
    events: u64,
    database_url: Option<String>,
    server_rt: &tokio::runtime::Handle,
) -> anyhow::Result<u64> {
    let (groups, fanout) = groups(args);
    let expected = events * fanout;
    let rate = args
        .rate
        .map_or("max".to_owned(), |r| format!("{r} events/s"));
    println!(
        "bench: store={} source={} events={events} batch={} concurrency={} merchants={groups} fanout={fanout} rate={rate} idempotency_keys={} sqlite_sync={} failing_pct={} flapping_pct={} delivery_concurrency={}",
        args.store,
        args.source,
        args.batch,
        args.concurrency,
        args.idempotency_keys,
        args.sqlite_sync,
        args.failing_pct,
        args.flapping_pct,
        args.delivery_concurrency
            .map_or("default".to_owned(), |c| c.to_string()),
    );

    // (b) The bare limit: the same bodies, the same concurrency, nothing in between.
    let bare = {
        let (secs, cpu) = bare_run(expected, args.concurrency, None).await?;
        let rate = expected as f64 / secs;
        println!(
            "bare limit: {rate:.0} deliveries/s ({expected} requests, {} concurrent)",
            args.concurrency
        );
        if let Some(cpu) = cpu {
            println!(
                "bare cpu per 1000 deliveries: {:.3} s",
                cpu / expected as f64 * 1000.0
            );
        }
        rate
    };
    if let Some(rate) = args.rate {
        let bare = bare_at(rate, expected, args.concurrency).await?;
        durable_floor_at(args, rate, expected, bare).await?;
    }

    // (c) blockhook in process: once, or ordering off then on.
    let modes: Vec<Option<u64>> = match args.ordering_keys {
        None => vec![None],
        Some(k) => vec![None, Some(k)],
    };
    let mut lost = 0;
    let mut rates = Vec::new();
    for ordering_keys in modes {
        if let Some(k) = ordering_keys {
            println!("-- ordering: per_key, {k} keys --");
        } else if args.ordering_keys.is_some() {
            println!("-- ordering: none --");
        }
        let (l, rate) =
            one_run(args, events, &database_url, bare, ordering_keys, server_rt).await?;
        lost += l;
        rates.push((ordering_keys, rate));
    }
    if let [(None, off), (Some(k), on)] = rates[..] {
        println!(
            "ordering: none {off:.0} deliveries/s, per_key over {k} keys {on:.0} deliveries/s (ratio {:.3})",
            on / off
        );
    }
    Ok(lost)
}

/// One blockhook in process, with endpoints ordered per key when `ordering_keys` is given;
/// returns the lost deliveries and the delivery rate.
async fn one_run(
    args: &Args,
    events: u64,
    database_url: &Option<String>,
    bare: f64,
    ordering_keys: Option<u64>,
    server_rt: &tokio::runtime::Handle,
) -> anyhow::Result<(u64, f64)> {
    let (_, fanout) = groups(args);
    let expected = events * fanout;
    let sink = Sink::start(expected, fanout).await?;
    let dir =
        std::env::temp_dir().join(format!("blockhook-bench-{}", uuid::Uuid::new_v4().simple()));
    let schema = match database_url {
        Some(base) => Some(PgSchema::create(base).await?),
        None => None,
    };
    let gateway = match (args.source.as_str(), &args.database_url) {
        ("outbox", Some(base)) => Some(outbox::GatewayOutbox::create(base).await?),
        _ => None,
    };
    let stream = match args.source.as_str() {
        "nats" => Some(nats::GatewayStream::create(&args.nats_url).await?),
        _ => None,
    };
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut settings = Settings::defaults()?;
    if let Some(gw) = &gateway {
        let mut source = blockhook_server::config::PostgresOutboxSource::example();
        source.url = gw.base.clone();
        source.table = gw.table.clone();
        settings.sources.postgres_outbox = vec![source];
    }
    if let Some(s) = &stream {
        let mut source = blockhook_server::config::NatsSource::example();
        source.url = s.url.clone();
        source.stream = s.stream.clone();
        source.consumer = nats::CONSUMER.to_owned();
        source.batch = u32::try_from(args.batch.clamp(100, 1000)).unwrap_or(100);
        settings.sources.nats = vec![source];
    }
    if let Some(fields) = &args.search_fields {
        settings.search.fields = match fields.as_str() {
            "none" => Vec::new(),
            list => list.split(',').map(|f| f.trim().to_owned()).collect(),
        };
        settings.search.fields()?;
    }
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.server.admin_token = token.clone();
    settings.server.max_batch_events = settings.server.max_batch_events.max(args.batch);
    settings.server.max_body_bytes = settings.server.max_body_bytes.max(args.batch * 1024 + 4096);
    settings.store.data_dir = dir.clone();
    settings.store.url = schema.as_ref().map(|s| s.url.clone()).unwrap_or_default();
    settings.delivery.allow_http = true;
    settings.delivery.allow_nets = vec!["127.0.0.0/8".parse()?];
    settings.api.requests_per_second = 0;
    settings.retention.max_age = Duration::ZERO;
    settings.store.sqlite_sync = sqlite_sync(args);
    if let Some(c) = args.delivery_concurrency {
        settings.delivery.concurrency = c.max(1);
        settings.delivery.per_endpoint_concurrency =
            settings.delivery.per_endpoint_concurrency.min(c.max(1));
    }
    if args.drain {
        // The outage's deliveries fail once, for good, and wait for the recovery.
        settings.delivery.retry_schedule = Vec::new();
    }
    settings.log.filter = "warn".into();
    let key: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    settings.keys.master_key =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    let _telemetry = telemetry::init(&settings.log);

    let source = match (&gateway, &stream) {
        (Some(gw), _) => Source::Outbox(gw),
        (None, Some(s)) => Source::Nats(s),
        (None, None) => Source::Http,
    };
    let result = run_app(
        args,
        (settings, server_rt),
        &sink,
        &token,
        (events, ordering_keys),
        bare,
        source,
    )
    .await;
    if let Some(schema) = schema {
        schema.drop_it().await;
    }
    if let Some(gw) = gateway {
        gw.drop_it().await;
    }
    if let Some(s) = stream {
        s.drop_it().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Starts blockhook, publishes `events` (with ordering keys over `ordering_keys` keys, to ordered
/// endpoints, when given), waits, reports; returns the number of lost deliveries and the
/// delivery rate.
async fn run_app(
    args: &Args,
    (settings, server_rt): (Settings, &tokio::runtime::Handle),
    sink: &Sink,
    token: &str,
    (events, ordering_keys): (u64, Option<u64>),
    bare: f64,
    source: Source<'_>,
) -> anyhow::Result<(u64, f64)> {
    let stop = CancellationToken::new();
    let (bound, addr) = tokio::sync::oneshot::channel();
    let server = server_rt.spawn({
        let stop = stop.clone();
        async move {
            let app = Application::build(settings).await?;
            let _ = bound.send(app.local_addr()?);
            app.run_until_stopped(stop).await
        }
    });
    let Ok(addr) = addr.await else {
        return match server.await {
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("starting blockhook")),
            _ => bail!("blockhook stopped while starting"),
        };
    };
    let base = format!("http://{addr}");

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let (groups, fanout) = groups(args);
    let setup = load::setup(
        &client,
        &base,
        token,
        sink,
        (groups, fanout),
        (args.failing_pct, args.flapping_pct),
        ordering_keys.is_some(),
    )
    .await?;
    let (merchants, healthy) = (setup.merchants, setup.healthy);
    // Healthy deliveries: event `seq` goes to merchant `seq % groups`.
    let healthy_expected: u64 = healthy
        .iter()
        .zip(0u64..)
        .map(|(&ok, g)| ok * (events / groups + u64::from(g < events % groups)))
        .sum();
    if args.failing_pct + args.flapping_pct > 0 {
        if healthy_expected == 0 {
            bail!("no healthy endpoint receives any event");
        }
        sink.tally
            .healthy_expected
            .store(healthy_expected, Ordering::Relaxed);
        let unhealthy = healthy.len() as u64 * fanout - healthy.iter().sum::<u64>();
        println!(
            "endpoints: {} ({unhealthy} unhealthy); healthy deliveries expected: {healthy_expected}",
            groups * fanout
        );
    }
    let expected = sink.tally.target();
    let plan = Plan {
        base: base.clone(),
        token: token.to_owned(),
        merchants: Arc::new(merchants),
        events,
        batch: args.batch,
        concurrency: args.concurrency,
        rate: args.rate,
        ordering_keys,
        idempotency_keys: args.idempotency_keys,
    };

    let postgres = args.store == "postgres" || args.source == "outbox";
    let cpu0 = CpuSample::now(postgres);
    let t0_us = now_us();
    let started = Instant::now();
    let load = Load::default();
    let progress_stop = CancellationToken::new();
    let progress = tokio::spawn(progress(
        sink.tally.clone(),
        load.acked.clone(),
        events,
        progress_stop.clone(),
    ));
    let deadline = started + Duration::from_secs(args.timeout);
    // With --drain: when the receiver came back, and the CPU counters then.
    let mut drained: Option<(u64, CpuSample)> = None;
    let (ingest_secs, relay_secs) = match source {
        Source::Nats(s) => {
            let secs =
                nats::fill(s, plan.merchants.clone(), events, args.concurrency, &load).await?;
            // Read once every message is settled (or the timeout passed).
            while s.left().await? > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (secs, Some(started.elapsed().as_secs_f64()))
        }
        Source::Outbox(gw) => {
            let per_tx = args.batch.max(1) as u64;
            let secs = outbox::fill(
                gw,
                plan.merchants.clone(),
                events,
                per_tx,
                args.concurrency,
                &load,
            )
            .await?;
            // The relay is done once the outbox is empty (or the timeout passed).
            while gw.left().await? > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (secs, Some(started.elapsed().as_secs_f64()))
        }
        Source::Http => {
            sink.tally.down.store(args.drain, Ordering::Relaxed);
            let since_ms = now_us() / 1000 - 1000;
            let publish = load::publish(client.clone(), plan, load.clone());
            tokio::pin!(publish);
            let secs = publish.as_mut().await?;
            if args.drain {
                let outage = Outage {
                    client: &client,
                    base: &base,
                    token,
                    endpoints: &setup.endpoints,
                    since_ms,
                    postgres,
                };
                drained = Some(outage.recover(sink, expected, deadline).await?);
            }
            (secs, None)
        }
    };
    while sink.tally.unique.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A moment for late duplicates to show.
    tokio::time::sleep(Duration::from_millis(200)).await;
    progress_stop.cancel();
    let _ = progress.await;
    let cpu = CpuSample::now(postgres);
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(30), server).await {
        Ok(Ok(Err(e))) => eprintln!("blockhook stopped with an error: {e}"),
        Err(_) => eprintln!("blockhook did not stop within 30s"),
        _ => {}
    }

    // (d) The report.
    let t = &sink.tally;
    let delivered = t.unique.load(Ordering::Relaxed);
    let acked = load.acked.load(Ordering::Relaxed);
    let span_s = t.last_us.load(Ordering::Relaxed).saturating_sub(t0_us) as f64 / 1e6;
    let delivery_rate = if span_s > 0.0 {
        delivered as f64 / span_s
    } else {
        0.0
    };
    let lat = t.sorted_latencies();
    let lost = expected.saturating_sub(delivered);
    println!("ingest errors: {}", load.errors.load(Ordering::Relaxed));
    match relay_secs {
        Some(relay_secs) if args.source == "nats" => {
            println!(
                "gateway publish rate: {:.0} messages/s ({acked} acknowledged by JetStream in {ingest_secs:.2} s)",
                acked as f64 / ingest_secs
            );
            println!(
                "source rate: {:.0} events/s ({acked} messages read and acknowledged in {relay_secs:.2} s from the first publish)",
                acked as f64 / relay_secs
            );
        }
        Some(relay_secs) => {
            println!(
                "gateway insert rate: {:.0} rows/s ({acked} rows committed in {ingest_secs:.2} s, {} per transaction)",
                acked as f64 / ingest_secs,
                args.batch.max(1)
            );
            println!(
                "relay rate: {:.0} events/s ({acked} rows relayed in {relay_secs:.2} s from the first insert until the outbox was empty)",
                acked as f64 / relay_secs
            );
        }
        None => println!(
            "ingest rate: {:.0} events/s ({acked} acknowledged in {ingest_secs:.2} s)",
            acked as f64 / ingest_secs
        ),
    }
    println!(
        "delivery rate: {delivery_rate:.0} deliveries/s ({delivered} in {span_s:.2} s from first ingest)"
    );
    println!("ratio to bare limit: {:.3}", delivery_rate / bare);
    for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)] {
        println!(
            "latency {name}: {:.2} ms",
            percentile(&lat, p) as f64 / 1000.0
        );
    }
    println!("duplicates: {}", t.duplicates.load(Ordering::Relaxed));
    println!(
        "unexpected requests: {}",
        t.unexpected.load(Ordering::Relaxed)
    );
    println!("lost: {lost}");
    if let Some((back_us, cpu_back)) = drained {
        let secs = t.last_us.load(Ordering::Relaxed).saturating_sub(back_us) as f64 / 1e6;
        let rate = if secs > 0.0 {
            delivered as f64 / secs
        } else {
            0.0
        };
        println!(
            "drain rate: {rate:.0} deliveries/s ({delivered} delivered in {secs:.2} s from the recovery)"
        );
        println!("drain ratio to bare limit: {:.3}", rate / bare);
        print!("during the drain: ");
        cpu.report_since(&cpu_back, delivered, delivered);
    }
    if args.failing_pct + args.flapping_pct > 0 {
        println!(
            "unhealthy endpoints: {} requests to failing (500), {} answered 500 and {} answered 200 by flapping",
            t.failing_hits.load(Ordering::Relaxed),
            t.flapping_500.load(Ordering::Relaxed),
            t.flapping_200.load(Ordering::Relaxed),
        );
    }
    cpu.report_since(&cpu0, acked, delivered);
    match procfs::peak_rss_bytes() {
        Some(b) => println!("peak rss: {:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        None => println!("peak rss: n/a"),
    }
    Ok((lost, delivery_rate))
}

/// The outage of a `--drain` run, seen from the merchant's side.
struct Outage<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
    endpoints: &'a [(String, String)],
    since_ms: u64,
    /// Whether to read PostgreSQL's CPU too.
    postgres: bool,
}

impl Outage<'_> {
    /// Once every delivery failed (each was refused once and recorded as failed), brings the
    /// receiver back and recovers every endpoint. Returns when the receiver came back (Unix µs)
    /// and the CPU counters then.
    async fn recover(
        &self,
        sink: &Sink,
        expected: u64,
        deadline: Instant,
    ) -> anyhow::Result<(u64, CpuSample)> {
        let t = &sink.tally;
        let recover = |dry_run| {
            load::recover(
                self.client,
                self.base,
                self.token,
                self.endpoints,
                (self.since_ms, dry_run),
            )
        };
        while t.refused.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Attempts are recorded after they end: wait until every one is, as failed.
        let mut failed = 0;
        while failed < expected && Instant::now() < deadline {
            failed = recover(true).await?;
            if failed < expected {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        println!(
            "outage: {} requests refused with 503, {failed} deliveries failed; recovering",
            t.refused.load(Ordering::Relaxed)
        );
        let cpu = CpuSample::now(self.postgres);
        t.down.store(false, Ordering::Relaxed);
        let back_us = now_us();
        let requeued = recover(false).await?;
        println!(
            "recovered: {requeued} deliveries re-queued in {:.2} s",
            (now_us() - back_us) as f64 / 1e6
        );
        Ok((back_us, cpu))
    }
}

/// Where the events of a run come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// `POST /v1/events` (or the batch route).
    Http,
    /// A PostgreSQL outbox the relay reads.
    Outbox(&'a outbox::GatewayOutbox),
    /// A JetStream stream the NATS source reads.
    Nats(&'a nats::GatewayStream),
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Shows delivery progress until stopped: a bar on a terminal, else a line a second on stderr.
async fn progress(
    tally: Arc<sink::Tally>,
    acked: Arc<std::sync::atomic::AtomicU64>,
    events: u64,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let target = tally.target();
    let shown = Progress::new(target, "delivered");
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut lines = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        lines += 1;
        let (ingested, delivered) = (
            acked.load(Ordering::Relaxed),
            tally.unique.load(Ordering::Relaxed),
        );
        if shown.is_bar() || lines % 4 == 0 {
            shown.tick(delivered, &format!("ingested {ingested}/{events}"), || {
                format!(
                    "  {:>4.0}s  ingested {ingested}/{events}  delivered {delivered}/{target}",
                    started.elapsed().as_secs_f64()
                )
            });
        }
    }
    shown.finish();
}

/// A fresh PostgreSQL schema for one run.
struct PgSchema {
    base: String,
    name: String,
    url: String,
}

impl PgSchema {
    async fn create(base: &str) -> anyhow::Result<Self> {
        let name = format!("bh_bench_{}", uuid::Uuid::new_v4().simple());
        blockhook_store::postgres::schema::create(base, &name)
            .await
            .context("creating a schema in PostgreSQL")?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Ok(Self {
            base: base.to_owned(),
            name,
            url,
        })
    }

    async fn drop_it(self) {
        if let Err(e) = blockhook_store::postgres::schema::drop(&self.base, &self.name).await {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
