//! Loading and calling channel components.
//!
//! One [`Runtime`] (one wasmtime `Engine`, async, pooling allocator where the OS allows the
//! reservation) per process; one [`Plugin`] (an `InstancePre`, imports resolved and the channel
//! functions looked up once) per loaded component; a fresh `Store` and instance per call. The host
//! links the contract and nothing else: a component that imports anything more (WASI, say)
//! is refused at load, naming the import.
//!
//! ## Budgets
//! Each call has three, counted separately ([`Limits`]):
//! - **memory**: linear memory the guest may grow to (a failed growth traps);
//! - **guest CPU**: time spent running guest code, checked at every tick of the engine's
//!   epoch ([`EPOCH_TICK`]; every [`YIELD_INTERVAL`] of it the guest yields to the async
//!   executor); time the guest spends waiting in host imports (HTTP) or for its turn after a
//!   yield is not counted, so a slow provider or a busy host never looks like a runaway
//!   plugin. (Epochs, not fuel: fuel instruments every block of guest code, which made calls
//!   up to twice as slow; an epoch check is one load and compare at function entries and loop
//!   heads.)
//! - **wall clock**: a deadline over the whole call, instantiation and host imports included.
//!
//! A call that fails (trap, budget, deadline) is a [`CallError`] that says whether `http-send`
//! had already handed a request to the network ([`CallError::request_sent`]): if it had, the
//! message may have left, and the caller must treat the attempt as `unknown`, never as
//! "not sent". The store is dropped either way, and the next call starts from a clean instance.

use crate::contract::{CHANNEL_EXPORT, ContractVersion, Export, types};
use crate::services::HostServices;
use crate::services::log::CallLogBudget;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, InstancePre, Lift, Linker, Lower,
    TypedFunc,
};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
/// Instances that may be alive at once in the pooling allocator (one per call in flight).
pub const POOL_INSTANCES: u32 = 2_048;
/// How often the engine's epoch advances: the granularity of the CPU budget.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Guest time after which a running call yields to the async executor, so other calls run.
/// (Yielding at every tick put short calls — a few ms in a debug build — at the back of the
/// executor's queue several times each, and the jitter bunched paced sends together.)
pub const YIELD_INTERVAL: Duration = Duration::from_millis(10);
/// Bytes of a pooled linear memory (and of a table) put back by copying the original contents
/// over the pages a call dirtied, found with Linux's `PAGEMAP_SCAN`, instead of unmapping
/// them: the next call in that slot finds its pages resident, without a page fault each.
/// Beyond this (or without `PAGEMAP_SCAN`, before Linux 6.7) pages are unmapped as before.
const KEEP_RESIDENT_MEMORY: usize = 4 << 20;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Resource limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory a guest may grow to.
    pub memory_bytes: usize,
    /// Time a call may spend running guest code (time waiting in `http-send`, or for the
    /// executor after a yield, is not counted), checked every [`EPOCH_TICK`];
    /// `Duration::ZERO` stops the guest at its first function call or loop.
    pub cpu_time: Duration,
    /// Wall-clock deadline for the whole call, host imports included.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            // `describe`, the heaviest export, needs well under a millisecond.
            cpu_time: Duration::from_secs(1),
            // Longer than the HTTP client's own 20 s total timeout, so a slow provider ends as
            // a transport timeout the plugin classifies, not as a deadline.
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// A gap between two epoch ticks past which the process was not running (SIGSTOP, a VM
/// paused, a host starved of CPU): nothing ran, the guest no more than the ticker.
const STALL_GAP: Duration = Duration::from_millis(50);

/// Nanoseconds this process stood still, summed over every tick gap past [`STALL_GAP`]. A
/// call's guest time leaves them out: a node frozen mid-call did not spend its plugin's CPU
/// budget (it used to fail every call in flight with "CPU budget" on waking).
static STALLED_NS: AtomicU64 = AtomicU64::new(0);

fn stalled() -> Duration {
    Duration::from_nanos(STALLED_NS.load(Ordering::Relaxed))
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] on a thread of its own, which ends once
/// the engine is dropped; counts the time the process stood still.
fn start_epoch_ticker(engine: &Engine) -> Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("host-harness-epoch".into())
        .spawn(move || {
            let mut last = Instant::now();
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
                let gap = last.elapsed();
                last = Instant::now();
                if gap > STALL_GAP {
                    let ns = u64::try_from((gap - EPOCH_TICK).as_nanos()).unwrap_or(u64::MAX);
                    STALLED_NS.fetch_add(ns, Ordering::Relaxed);
                }
            }
        })
        .context("starting the epoch thread")?;
    Ok(())
}

/// The process-wide engine.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<PluginState>>,
    /// Whether the pooling allocator was available.
    pub pooling: bool,
    /// wasmtime's compilation cache (`None`: compile every time).
    cache: Option<Cache>,
}

/// Where compiled components are kept between processes: `$HOST_HARNESS_CACHE`, else
/// `$XDG_CACHE_HOME/host-harness`, else `~/.cache/host-harness`. (wasmtime's own cache keys
/// each artifact by a hash of the component and of every engine setting that changes code, so
/// a changed component or engine never loads stale code; see `docs/decisions/0006`.)
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("HOST_HARNESS_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("host-harness"))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/host-harness")))
}

/// wasmtime's compilation cache in `dir`, or none if it cannot be set up there (a cache that
/// cannot be used only costs compile time, so it is logged, never fatal).
fn compilation_cache(dir: PathBuf) -> Option<Cache> {
    let mut config = CacheConfig::new();
    config.with_directory(&dir);
    match Cache::new(config) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "compiling without a cache: {e:#}");
            None
        }
    }
}

impl Runtime {
    /// An engine with the pooling allocator if the OS allows it (else on-demand allocation)
    /// and the compilation cache, so a CLI call does not recompile an unchanged
    /// component.
    pub fn new() -> Result<Runtime> {
        match Self::with_options(true, true) {
            Ok(rt) => Ok(rt),
            Err(_) => Self::with_options(false, true),
        }
    }

    /// An engine with or without the pooling allocator and the compilation cache in its
    /// default place (the bench compares allocators and measures compilation without it).
    pub fn with_options(pooling: bool, cache: bool) -> Result<Runtime> {
        let dir = if cache { default_cache_dir() } else { None };
        Self::with_cache_in(pooling, dir)
    }

    /// An engine with or without the pooling allocator, its compiled components kept in
    /// `cache_dir` if one is given.
    pub fn with_cache_in(pooling: bool, cache_dir: Option<PathBuf>) -> Result<Runtime> {
        let mut config = Config::new();
        let cache = cache_dir.and_then(compilation_cache);
        config.cache(cache.clone());
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(POOL_INSTANCES)
                .total_core_instances(POOL_INSTANCES * 8)
                .total_memories(POOL_INSTANCES)
                .total_tables(POOL_INSTANCES * 2)
                .total_stacks(POOL_INSTANCES)
                .max_memory_size(Limits::default().memory_bytes.max(256 << 20))
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
                .table_keep_resident(KEEP_RESIDENT_TABLE);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        start_epoch_ticker(&engine)?;
        let mut linker = Linker::new(&engine);
        crate::contract::add_to_linker(&mut linker)?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            pooling,
            cache,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compilation cache's hits and misses in this process, if the engine has a cache.
    pub fn cache_hits_and_misses(&self) -> Option<(usize, usize)> {
        self.cache
            .as_ref()
            .map(|c| (c.cache_hits(), c.cache_misses()))
    }

    /// How long compiling a component takes, and loading it from the compilation cache
    /// instead (what the cache saves), for the bench: an engine like this one's, with a cache
    /// in a directory of its own, compiles it twice.
    pub fn compile_and_load_times(&self, bytes: &[u8]) -> Result<(Duration, Duration)> {
        let dir = std::env::temp_dir().join(format!("host-harness-bench-{}", std::process::id()));
        let runtime = Runtime::with_cache_in(self.pooling, Some(dir.clone()))?;
        let compile_once = || -> Result<Duration> {
            let t = Instant::now();
            Component::new(&runtime.engine, bytes).map_err(anyhow::Error::from)?;
            Ok(t.elapsed())
        };
        let compile = compile_once();
        let load = compile_once();
        let _ = std::fs::remove_dir_all(&dir);
        Ok((compile?, load?))
    }

    /// Loads a component from a file.
    pub fn load_file(
        &self,
        path: &Path,
        services: Arc<HostServices>,
        limits: Limits,
    ) -> Result<Plugin> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the plugin {}", path.display()))?;
        self.load(&bytes, services, limits)
            .with_context(|| format!("loading the plugin {}", path.display()))
    }

    /// Compiles a component and resolves its imports once.
    pub fn load(
        &self,
        bytes: &[u8],
        services: Arc<HostServices>,
        limits: Limits,
    ) -> Result<Plugin> {
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        let (contract, interface) = self.contract_of(&component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("the component's imports do not match what this host provides (the {} host interface and nothing else)", contract.name()))?;
        let exports = Export::indices(&component, &interface, contract)?;
        Ok(Plugin {
            runtime: self.clone(),
            component,
            pre,
            contract,
            exports,
            info: Arc::new(tokio::sync::OnceCell::new()),
            services,
            limits,
        })
    }

    /// The contract version a component was built against, read from the version of the
    /// channel interface it exports, and that interface's full name.
    fn contract_of(&self, component: &Component) -> Result<(ContractVersion, String)> {
        let exported: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let prefix = format!("{CHANNEL_EXPORT}@");
        let Some(version) = exported.iter().find_map(|n| n.strip_prefix(&prefix)) else {
            anyhow::bail!(
                "the component exports no {CHANNEL_EXPORT} interface (it exports: {})",
                if exported.is_empty() {
                    "nothing".to_string()
                } else {
                    exported.join(", ")
                }
            );
        };
        let contract = ContractVersion::of_export(version).map_err(anyhow::Error::msg)?;
        Ok((contract, format!("{prefix}{version}")))
    }
}

/// Per-call state inside a store.
pub struct PluginState {
    limits: StoreLimits,
    services: Arc<HostServices>,
    log_budget: CallLogBudget,
    /// Set once `http-send` hands a request to the network; read after the call, whatever
    /// became of it.
    dispatched: Arc<AtomicBool>,
    /// The guest time this call has used, for its CPU budget.
    guest_time: GuestTime,
}

/// Guest time of one call: wall time since the call started, less the time spent waiting in
/// host imports and the time spent yielded to the executor at epoch ticks (on a busy host the
/// call may wait long for its turn again: that is not the guest's CPU).
struct GuestTime {
    started: Instant,
    /// [`STALLED_NS`] when the call started.
    stalled_at_start: Duration,
    in_imports: Duration,
    /// Nanoseconds spent yielded, added by the yield futures (which cannot reach the store).
    yielded_ns: Arc<AtomicU64>,
    /// Guest time used at the last yield.
    used_at_yield: Duration,
}

impl GuestTime {
    fn new() -> GuestTime {
        GuestTime {
            started: Instant::now(),
            stalled_at_start: stalled(),
            in_imports: Duration::ZERO,
            yielded_ns: Arc::new(AtomicU64::new(0)),
            used_at_yield: Duration::ZERO,
        }
    }

    fn used(&self) -> Duration {
        let yielded = Duration::from_nanos(self.yielded_ns.load(Ordering::Relaxed));
        let stood_still = stalled().saturating_sub(self.stalled_at_start);
        self.started
            .elapsed()
            .saturating_sub(self.in_imports)
            .saturating_sub(yielded)
            .saturating_sub(stood_still)
    }

    /// What an epoch tick does within the budget: go on, or, every [`YIELD_INTERVAL`] of
    /// guest time, yield to the executor, timing how long the call waits to be polled again.
    fn at_tick(&mut self, used: Duration) -> UpdateDeadline {
        if used.saturating_sub(self.used_at_yield) < YIELD_INTERVAL {
            return UpdateDeadline::Continue(1);
        }
        self.used_at_yield = used;
        let yielded_ns = self.yielded_ns.clone();
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                let waiting = Instant::now();
                tokio::task::yield_now().await;
                let ns = u64::try_from(waiting.elapsed().as_nanos()).unwrap_or(u64::MAX);
                yielded_ns.fetch_add(ns, Ordering::Relaxed);
            }),
        )
    }
}

/// The error an epoch check raises once a call's guest time passes its budget.
#[derive(Debug, thiserror::Error)]
#[error("the guest used up its CPU budget")]
struct CpuBudgetExceeded;

/// The host functions every contract version imports, in the latest version's types (the
/// `since_v*` modules of [`crate::contract`] serve each version's imports from these).
impl PluginState {
    pub(crate) async fn http_send(
        &mut self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::TransportError> {
        let services = self.services.clone();
        let waiting = Instant::now();
        let response = services
            .http
            .send(&request, &services.secrets, &self.dispatched)
            .await;
        // Waiting on the network is not guest CPU.
        self.guest_time.in_imports += waiting.elapsed();
        response
    }

    pub(crate) fn signature_verify(
        &mut self,
        algorithm: types::SignatureAlgorithm,
        secret_name: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, types::SecretError> {
        self.services
            .secrets
            .signature_verify(algorithm, secret_name, data, signature)
    }

    pub(crate) fn secret_equals(
        &mut self,
        secret_name: &str,
        candidate: &str,
    ) -> Result<bool, types::SecretError> {
        self.services.secrets.equals(secret_name, candidate)
    }

    pub(crate) fn log(&mut self, level: types::LogLevel, message: &str) {
        self.log_budget.write(&self.services.log, level, message);
    }
}

/// Why a call into a plugin failed. The host stays up either way.
#[derive(Debug)]
pub enum CallError {
    /// The guest trapped: a panic, the memory cap, its CPU budget, a bug.
    Trap {
        message: String,
        /// Whether `http-send` had handed a request to the network before the trap.
        request_sent: bool,
    },
    /// The call passed its wall-clock deadline and was abandoned.
    Deadline {
        limit: Duration,
        /// Whether `http-send` had handed a request to the network before the deadline.
        request_sent: bool,
    },
    /// The host could not set the call up (e.g. every pooled instance busy): nothing ran.
    Host(anyhow::Error),
}

impl CallError {
    /// Whether a request may have reached the provider: the outcome is then unknown, and
    /// the message must not be resent or replaced blindly.
    pub fn request_sent(&self) -> bool {
        match self {
            CallError::Trap { request_sent, .. } | CallError::Deadline { request_sent, .. } => {
                *request_sent
            }
            CallError::Host(_) => false,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Trap { message, .. } => write!(f, "the plugin trapped: {message}"),
            CallError::Deadline { limit, .. } => {
                write!(f, "the call exceeded its time limit of {limit:?}")
            }
            CallError::Host(e) => write!(f, "host error: {e:#}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A loaded component, ready to be instantiated per call.
#[derive(Clone)]
pub struct Plugin {
    runtime: Runtime,
    component: Component,
    /// Imports resolved once; instantiated afresh for every call.
    pre: InstancePre<PluginState>,
    pub(crate) contract: ContractVersion,
    /// The channel functions, by [`Export`].
    exports: [Option<ComponentExportIndex>; Export::COUNT],
    /// `describe` is pure: asked once per loaded component, then answered from here.
    info: Arc<tokio::sync::OnceCell<types::ChannelInfo>>,
    services: Arc<HostServices>,
    limits: Limits,
}

/// Where a call failed: setting the instance up (pool exhausted, a start trap: nothing of the
/// export ran) or in the export.
enum Stage {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

/// Runs `body` on a fresh instance of the plugin in a fresh store, under the plugin's limits:
/// `in_fresh_instance!(plugin, |store, instance| async move { … })`. (A macro, not a function
/// taking a closure: the body's future borrows the store and the caller's arguments.)
macro_rules! in_fresh_instance {
    ($plugin:expr, |$store:ident, $instance:ident| $body:expr) => {{
        let plugin: &Plugin = $plugin;
        let (mut store, dispatched) = plugin.new_store()?;
        let call = async {
            let $instance = plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(Stage::Instantiate)?;
            let $store = &mut store;
            $body.await
        };
        let outcome = tokio::time::timeout(plugin.limits.call_timeout, call).await;
        drop(store);
        plugin.finish(outcome, &dispatched)
    }};
}

impl Plugin {
    /// The contract version the component was built against.
    pub fn contract(&self) -> ContractVersion {
        self.contract
    }

    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn engine(&self) -> &Engine {
        self.runtime.engine()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A copy with other limits (same compiled code).
    pub fn with_limits(&self, limits: Limits) -> Plugin {
        Plugin {
            limits,
            ..self.clone()
        }
    }

    /// A copy with other host services (same compiled code).
    pub fn with_services(&self, services: Arc<HostServices>) -> Plugin {
        Plugin {
            services,
            ..self.clone()
        }
    }

    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }

    /// A store for one call, and the flag `http-send` sets once a request has left.
    fn new_store(&self) -> Result<(Store<PluginState>, Arc<AtomicBool>), CallError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let dispatched = Arc::new(AtomicBool::new(false));
        let state = PluginState {
            limits,
            services: self.services.clone(),
            log_budget: CallLogBudget::default(),
            dispatched: dispatched.clone(),
            guest_time: GuestTime::new(),
        };
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        let budget = self.limits.cpu_time;
        // A budget under one tick is checked at once (the guest's first function or loop).
        store.set_epoch_deadline(u64::from(budget >= EPOCH_TICK));
        store.epoch_deadline_callback(move |mut store| {
            let guest_time = &mut store.data_mut().guest_time;
            let used = guest_time.used();
            if used >= budget {
                Err(CpuBudgetExceeded.into())
            } else {
                Ok(guest_time.at_tick(used))
            }
        });
        Ok((store, dispatched))
    }

    /// Turns a call's outcome into the result, logging a failure.
    fn finish<R>(
        &self,
        outcome: Result<Result<R, Stage>, tokio::time::error::Elapsed>,
        dispatched: &AtomicBool,
    ) -> Result<R, CallError> {
        let request_sent = dispatched.load(Ordering::SeqCst);
        let err = match outcome {
            Ok(Ok(r)) => return Ok(r),
            // The guest's own start code counts against its budget like the call does.
            Ok(Err(Stage::Instantiate(e) | Stage::Call(e)))
                if e.downcast_ref::<CpuBudgetExceeded>().is_some() =>
            {
                CallError::Trap {
                    message: format!(
                        "the call used up its CPU budget of {:?} of guest time",
                        self.limits.cpu_time
                    ),
                    request_sent,
                }
            }
            Ok(Err(Stage::Instantiate(e))) => {
                CallError::Host(anyhow::Error::from(e).context("instantiating the plugin"))
            }
            Ok(Err(Stage::Call(e))) => CallError::Trap {
                message: match e.downcast_ref::<wasmtime::Trap>() {
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                },
                request_sent,
            },
            Err(_) => CallError::Deadline {
                limit: self.limits.call_timeout,
                request_sent,
            },
        };
        CallLogBudget::default().write(
            &self.services.log,
            types::LogLevel::Error,
            &err.to_string(),
        );
        Err(err)
    }

    /// Calls one channel function with `params` in a fresh instance. `P` and `R` are the
    /// function's parameter and result types in the plugin's contract version (checked
    /// against the component by wasmtime at each call).
    pub(crate) async fn call<P, R>(&self, export: Export, params: P) -> Result<R, CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let index = self.exports[export as usize].ok_or_else(|| {
            CallError::Host(anyhow::anyhow!(
                "{CHANNEL_EXPORT} has no {} in {}, the component's version",
                export.name(),
                self.contract.name()
            ))
        })?;
        in_fresh_instance!(self, |store, instance| async move {
            let func = instance.get_func(&mut *store, index).ok_or_else(|| {
                Stage::Instantiate(wasmtime::format_err!(
                    "the instance lacks {}",
                    export.name()
                ))
            })?;
            let func: TypedFunc<P, R> = func.typed(&*store).map_err(Stage::Instantiate)?;
            func.call_async(store, params).await.map_err(Stage::Call)
        })
    }

    /// Instantiates the component in a fresh store and calls nothing (the bench's baseline).
    pub async fn instantiate(&self) -> Result<(), CallError> {
        in_fresh_instance!(self, |_store, _instance| async { Ok(()) })
    }

    /// `describe`, called once per loaded component (it is pure) and then cached.
    pub async fn describe(&self) -> Result<types::ChannelInfo, CallError> {
        self.info
            .get_or_try_init(|| self.describe_uncached())
            .await
            .cloned()
    }
}
