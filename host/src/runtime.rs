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

use crate::bindings::ChannelPlugin;
use crate::bindings::flow::channel::{host, types};
use crate::contract::since_v1_0::{self, Convert, bindings::flow::channel::types as old_types};
use crate::contract::{CHANNEL_EXPORT, ContractVersion};
use crate::services::HostServices;
use crate::services::log::CallLogBudget;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, HasSelf, InstancePre, Lift, Linker, Lower,
    TypedFunc,
};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, UpdateDeadline,
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
    /// Where compiled components are kept (`None`: compile every time).
    precompiled: Option<PrecompiledCache>,
}

/// Compiled components on disk, keyed by the component's sha256 and the engine's
/// compatibility hash (wasmtime version and every setting that changes code), so a changed
/// component or engine never loads stale code.
#[derive(Clone, Debug)]
pub struct PrecompiledCache {
    dir: std::path::PathBuf,
}

impl PrecompiledCache {
    /// `$HOST_HARNESS_CACHE`, else `$XDG_CACHE_HOME/host-harness`, else `~/.cache/host-harness`.
    fn default_dir() -> Option<PrecompiledCache> {
        let dir = std::env::var_os("HOST_HARNESS_CACHE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(|d| std::path::PathBuf::from(d).join("host-harness"))
            })
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".cache/host-harness"))
            })?;
        Some(PrecompiledCache { dir })
    }

    fn path(&self, engine: &Engine, bytes: &[u8]) -> std::path::PathBuf {
        use sha2::Digest;
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let digest = hex::encode(sha2::Sha256::digest(bytes));
        self.dir.join(format!("{digest}-{:016x}.cwasm", h.finish()))
    }

    /// The component, from its compiled artifact if there is one, else compiled (and the
    /// artifact written for next time; a cache that cannot be written only costs time).
    fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<Component> {
        let path = self.path(engine, bytes);
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine with this
            // very compatibility hash, under a name that is the sha256 of the component it
            // came from, in a directory only this user writes.
            if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
                return Ok(c);
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the component")?;
        if std::fs::create_dir_all(&self.dir).is_ok() {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &compiled).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }
            .map_err(anyhow::Error::from)
            .context("loading the compiled component")
    }
}

impl Runtime {
    /// An engine with the pooling allocator if the OS allows it (else on-demand allocation)
    /// and the precompiled-artifact cache, so a CLI call does not recompile an unchanged
    /// component.
    pub fn new() -> Result<Runtime> {
        match Self::with_options(true, true) {
            Ok(rt) => Ok(rt),
            Err(_) => Self::with_options(false, true),
        }
    }

    /// An engine with or without the pooling allocator and the precompiled-artifact cache
    /// (the bench compares allocators and measures compilation without the cache).
    pub fn with_options(pooling: bool, cache: bool) -> Result<Runtime> {
        let mut config = Config::new();
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
        ChannelPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the channel host interface")?;
        since_v1_0::bindings::ChannelPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )
        .map_err(anyhow::Error::from)
        .context("linking the 1.0.0 channel host interface")?;
        let precompiled = cache.then(PrecompiledCache::default_dir).flatten();
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            pooling,
            precompiled,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// This runtime with its compiled components kept in `dir`.
    pub fn with_precompiled_cache(mut self, dir: std::path::PathBuf) -> Runtime {
        self.precompiled = Some(PrecompiledCache { dir });
        self
    }

    /// How long compiling a component takes, and loading its precompiled artifact instead
    /// (what the cache saves), for the bench.
    pub fn compile_and_load_times(&self, bytes: &[u8]) -> Result<(Duration, Duration)> {
        let t = std::time::Instant::now();
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)?;
        let compile = t.elapsed();
        let t = std::time::Instant::now();
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(anyhow::Error::from)?;
        Ok((compile, t.elapsed()))
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
        let component = match &self.precompiled {
            Some(cache) => cache.load(&self.engine, bytes)?,
            None => Component::new(&self.engine, bytes)
                .map_err(anyhow::Error::from)
                .context("compiling the component")?,
        };
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

/// The functions of the channel interface, the same in every served contract version.
#[derive(Debug, Clone, Copy)]
enum Export {
    Describe,
    ValidateTemplate,
    BuildPayload,
    Classify,
    ParseWebhook,
    Send,
}

impl Export {
    const COUNT: usize = 6;
    const ALL: [Export; Export::COUNT] = [
        Export::Describe,
        Export::ValidateTemplate,
        Export::BuildPayload,
        Export::Classify,
        Export::ParseWebhook,
        Export::Send,
    ];

    fn name(self) -> &'static str {
        match self {
            Export::Describe => "describe",
            Export::ValidateTemplate => "validate-template",
            Export::BuildPayload => "build-payload",
            Export::Classify => "classify",
            Export::ParseWebhook => "parse-webhook",
            Export::Send => "send",
        }
    }

    /// Each function's index in `component`, looked up once so a call finds its function
    /// without a string lookup (and checks the type of that one function, not of all six).
    fn indices(
        component: &Component,
        interface: &str,
        contract: ContractVersion,
    ) -> Result<[ComponentExportIndex; Export::COUNT]> {
        let not_exported = |what: &str| {
            anyhow::anyhow!(
                "the component does not export {what} as {}",
                contract.name()
            )
        };
        let instance = component
            .get_export_index(None, interface)
            .ok_or_else(|| not_exported(interface))?;
        let mut indices = [instance; Export::COUNT];
        for (slot, export) in indices.iter_mut().zip(Export::ALL) {
            *slot = component
                .get_export_index(Some(&instance), export.name())
                .ok_or_else(|| not_exported(&format!("{interface}#{}", export.name())))?;
        }
        Ok(indices)
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
#[derive(Debug)]
struct CpuBudgetExceeded;

impl std::fmt::Display for CpuBudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the guest used up its CPU budget")
    }
}

impl std::error::Error for CpuBudgetExceeded {}

impl types::Host for PluginState {}

impl since_v1_0::bindings::flow::channel::types::Host for PluginState {}

impl host::Host for PluginState {
    async fn http_send(
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

    async fn hmac_sha256_verify(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
        mac: Vec<u8>,
    ) -> Result<bool, types::SecretError> {
        self.services
            .secrets
            .hmac_sha256_verify(&secret_name, &data, &mac)
    }

    async fn secret_equals(
        &mut self,
        secret_name: String,
        candidate: String,
    ) -> Result<bool, types::SecretError> {
        self.services.secrets.equals(&secret_name, &candidate)
    }

    async fn log(&mut self, level: types::LogLevel, message: String) {
        self.log_budget.write(&self.services.log, level, &message);
    }

    async fn now_ms(&mut self) -> u64 {
        crate::services::now_ms()
    }
}

/// 1.0.0 imports are the same functions over twin types: served by the latest ones.
impl since_v1_0::bindings::flow::channel::host::Host for PluginState {
    async fn http_send(
        &mut self,
        request: old_types::HttpRequest,
    ) -> Result<old_types::HttpResponse, old_types::TransportError> {
        host::Host::http_send(self, request.convert())
            .await
            .convert()
    }

    async fn hmac_sha256_verify(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
        mac: Vec<u8>,
    ) -> Result<bool, old_types::SecretError> {
        host::Host::hmac_sha256_verify(self, secret_name, data, mac)
            .await
            .convert()
    }

    async fn secret_equals(
        &mut self,
        secret_name: String,
        candidate: String,
    ) -> Result<bool, old_types::SecretError> {
        host::Host::secret_equals(self, secret_name, candidate)
            .await
            .convert()
    }

    async fn log(&mut self, level: old_types::LogLevel, message: String) {
        host::Host::log(self, level.convert(), message).await
    }

    async fn now_ms(&mut self) -> u64 {
        host::Host::now_ms(self).await
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
    contract: ContractVersion,
    /// The channel functions, by [`Export`].
    exports: [ComponentExportIndex; Export::COUNT],
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
    async fn call<P, R>(&self, export: Export, params: P) -> Result<R, CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let index = self.exports[export as usize];
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

    /// `describe`, always calling the component (the bench measures the call).
    pub async fn describe_uncached(&self) -> Result<types::ChannelInfo, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self.call(Export::Describe, ()).await.map(|(r,)| r),
            ContractVersion::V1_0 => self
                .call::<_, (old_types::ChannelInfo,)>(Export::Describe, ())
                .await
                .map(|(r,)| r.convert()),
        }
    }

    /// `validate-template`.
    pub async fn validate_template(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::ValidateTemplate, (template,))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => self
                .call::<_, (Result<(), Vec<old_types::FieldError>>,)>(
                    Export::ValidateTemplate,
                    (template,),
                )
                .await
                .map(|(r,)| r.convert()),
        }
    }

    /// `build-payload`.
    pub async fn build_payload(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::BuildPayload, (request, config))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let (request, config) = (request.convert(), config.clone().convert());
                self.call::<_, (Result<old_types::HttpRequest, Vec<old_types::FieldError>>,)>(
                    Export::BuildPayload,
                    (&request, &config),
                )
                .await
                .map(|(r,)| r.convert())
            }
        }
    }

    /// `classify`.
    pub async fn classify(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::Classify, (outcome, attempt))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let outcome = outcome.clone().convert();
                self.call::<_, (old_types::Classification,)>(Export::Classify, (&outcome, attempt))
                    .await
                    .map(|(r,)| r.convert())
            }
        }
    }

    /// `parse-webhook`.
    pub async fn parse_webhook(
        &self,
        request: &types::WebhookRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::WebhookOutcome, types::WebhookError>, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::ParseWebhook, (request, config))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let (request, config) = (request.clone().convert(), config.clone().convert());
                self.call::<_, (Result<old_types::WebhookOutcome, old_types::WebhookError>,)>(
                    Export::ParseWebhook,
                    (&request, &config),
                )
                .await
                .map(|(r,)| r.convert())
            }
        }
    }

    /// `send`.
    pub async fn send(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
        attempt: u32,
    ) -> Result<Result<types::Classification, Vec<types::FieldError>>, CallError> {
        match self.contract {
            ContractVersion::V1_1 => self
                .call(Export::Send, (request, config, attempt))
                .await
                .map(|(r,)| r),
            ContractVersion::V1_0 => {
                let (request, config) = (request.convert(), config.clone().convert());
                self.call::<_, (Result<old_types::Classification, Vec<old_types::FieldError>>,)>(
                    Export::Send,
                    (&request, &config, attempt),
                )
                .await
                .map(|(r,)| r.convert())
            }
        }
    }
}
