//! Loading and calling channel components.
//!
//! One [`Runtime`] (one wasmtime `Engine`, async, pooling allocator where the OS allows the
//! reservation) per process; one [`Plugin`] (an `InstancePre`, imports resolved once) per
//! loaded component; a fresh `Store` per call. WASI is linked because Rust's std on
//! `wasm32-wasip2` imports it, but grants nothing: no environment, no files, no sockets; guest
//! stdout/stderr go to the log.
//!
//! ## Budgets
//! Each call has three, counted separately ([`Limits`]):
//! - **memory**: linear memory the guest may grow to (a failed growth traps);
//! - **guest CPU**: fuel, i.e. instructions executed inside the guest; time the guest spends
//!   waiting in host imports (HTTP) costs no fuel, so a slow provider never looks like a
//!   runaway plugin;
//! - **wall clock**: a deadline over the whole call, instantiation and host imports included.
//!
//! A call that fails (trap, budget, deadline) is a [`CallError`] that says whether `http-send`
//! had already handed a request to the network ([`CallError::request_sent`]): if it had, the
//! message may have left, and the caller must treat the attempt as `unknown`, never as
//! "not sent". The store is dropped either way, and the next call starts from a clean instance.

use crate::bindings::flow::channel::{host, types};
use crate::bindings::{ChannelPlugin, ChannelPluginPre};
use crate::contract::since_v1_0::{self, Convert, bindings::flow::channel::types as old_types};
use crate::contract::{CHANNEL_EXPORT, ContractVersion};
use crate::services::HostServices;
use crate::services::log::CallLogBudget;
use anyhow::{Context, Result};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much a guest may write to stdout/stderr in one call.
const GUEST_OUTPUT_CAP: usize = 64 * 1024;
/// Instances that may be alive at once in the pooling allocator (one per call in flight).
pub const POOL_INSTANCES: u32 = 2_048;
/// Guest instructions between cooperative yields to the async executor.
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;

/// Resource limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory a guest may grow to.
    pub memory_bytes: usize,
    /// Instructions a call may execute inside the guest (host imports cost none).
    pub cpu_fuel: u64,
    /// Wall-clock deadline for the whole call, host imports included.
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            // About a second of guest CPU; `describe`, the heaviest export, needs ~1/1000 of it.
            cpu_fuel: 2_000_000_000,
            // Longer than the HTTP client's own 20 s total timeout, so a slow provider ends as
            // a transport timeout the plugin classifies, not as a deadline.
            call_timeout: Duration::from_secs(30),
        }
    }
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
        config.consume_fuel(true);
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(POOL_INSTANCES)
                .total_core_instances(POOL_INSTANCES * 8)
                .total_memories(POOL_INSTANCES)
                .total_tables(POOL_INSTANCES * 2)
                .total_stacks(POOL_INSTANCES)
                .max_memory_size(Limits::default().memory_bytes.max(256 << 20));
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
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
        let contract = self.contract_of(&component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("the component's imports do not match what this host provides ({} host + WASI p2)", contract.name()))?;
        let not_exported = || {
            format!(
                "the component does not export {CHANNEL_EXPORT} as {}",
                contract.name()
            )
        };
        let exports = match contract {
            ContractVersion::V1_1 => Exports::V1_1(
                ChannelPluginPre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(not_exported)?,
            ),
            ContractVersion::V1_0 => Exports::V1_0(
                since_v1_0::bindings::ChannelPluginPre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(not_exported)?,
            ),
        };
        Ok(Plugin {
            runtime: self.clone(),
            component,
            exports,
            info: Arc::new(tokio::sync::OnceCell::new()),
            services,
            limits,
        })
    }

    /// The contract version a component was built against, read from the version of the
    /// channel interface it exports.
    fn contract_of(&self, component: &Component) -> Result<ContractVersion> {
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
        ContractVersion::of_export(version).map_err(anyhow::Error::msg)
    }
}

/// A component's exports, pre-linked, by the contract version it was built against.
#[derive(Clone)]
enum Exports {
    V1_0(since_v1_0::bindings::ChannelPluginPre<PluginState>),
    V1_1(ChannelPluginPre<PluginState>),
}

/// Per-call state inside a store.
pub struct PluginState {
    /// Built on the first WASI call only: our components import none, and building a context
    /// (clocks, random seeds, pipes) would cost every call microseconds for nothing.
    wasi: Option<WasiCtx>,
    /// The guest's stdout and stderr, once WASI is used.
    outputs: GuestOutputs,
    table: ResourceTable,
    limits: StoreLimits,
    services: Arc<HostServices>,
    log_budget: CallLogBudget,
    /// Set once `http-send` hands a request to the network; read after the call, whatever
    /// became of it.
    dispatched: Arc<AtomicBool>,
}

/// A call's stdout and stderr pipes, created with the WASI context.
type GuestOutputs = Arc<OnceLock<(MemoryOutputPipe, MemoryOutputPipe)>>;

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let outputs = &self.outputs;
        let wasi = self.wasi.get_or_insert_with(|| {
            let (stdout, stderr) = outputs
                .get_or_init(|| {
                    (
                        MemoryOutputPipe::new(GUEST_OUTPUT_CAP),
                        MemoryOutputPipe::new(GUEST_OUTPUT_CAP),
                    )
                })
                .clone();
            // Nothing granted: no args, env, preopened dirs or network.
            WasiCtx::builder().stdout(stdout).stderr(stderr).build()
        });
        WasiCtxView {
            ctx: wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl since_v1_0::bindings::flow::channel::types::Host for PluginState {}

impl host::Host for PluginState {
    async fn http_send(
        &mut self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::TransportError> {
        let services = self.services.clone();
        services
            .http
            .send(&request, &services.secrets, &self.dispatched)
            .await
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
        guest_stderr: String,
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
            CallError::Trap {
                message,
                guest_stderr,
                ..
            } if guest_stderr.trim().is_empty() => write!(f, "the plugin trapped: {message}"),
            CallError::Trap {
                message,
                guest_stderr,
                ..
            } => write!(
                f,
                "the plugin trapped: {message} (guest stderr: {})",
                guest_stderr.trim()
            ),
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
    exports: Exports,
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

/// What a call leaves behind besides its result.
struct CallTrace {
    outputs: GuestOutputs,
    dispatched: Arc<AtomicBool>,
}

/// Runs one export in a fresh store under the plugin's limits:
/// `guest_call!(plugin, pre, |instance, store| instance.flow_channel_channel().call_x(store, …))`.
macro_rules! guest_call {
    ($plugin:expr, $pre:expr, |$instance:ident, $store:ident| $call:expr) => {{
        let plugin: &Plugin = $plugin;
        let (mut store, trace) = plugin.new_store()?;
        let call = async {
            let $instance = $pre
                .instantiate_async(&mut store)
                .await
                .map_err(Stage::Instantiate)?;
            let $store = &mut store;
            $call.await.map_err(Stage::Call)
        };
        let outcome = tokio::time::timeout(plugin.limits.call_timeout, call).await;
        drop(store);
        plugin.finish(outcome, trace)
    }};
}

/// [`guest_call!`] for an export whose signature is the same in every served version.
macro_rules! any_version_call {
    ($plugin:expr, |$instance:ident, $store:ident| $call:expr) => {{
        let plugin: &Plugin = $plugin;
        match &plugin.exports {
            Exports::V1_1(pre) => guest_call!(plugin, pre, |$instance, $store| $call),
            Exports::V1_0(pre) => {
                guest_call!(plugin, pre, |$instance, $store| $call).map(Convert::convert)
            }
        }
    }};
}

impl Plugin {
    /// The contract version the component was built against.
    pub fn contract(&self) -> ContractVersion {
        match self.exports {
            Exports::V1_0(_) => ContractVersion::V1_0,
            Exports::V1_1(_) => ContractVersion::V1_1,
        }
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

    fn new_store(&self) -> Result<(Store<PluginState>, CallTrace), CallError> {
        let outputs = GuestOutputs::default();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let dispatched = Arc::new(AtomicBool::new(false));
        let state = PluginState {
            wasi: None,
            outputs: outputs.clone(),
            table: ResourceTable::new(),
            limits,
            services: self.services.clone(),
            log_budget: CallLogBudget::default(),
            dispatched: dispatched.clone(),
        };
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        let setup = |e: wasmtime::Error| CallError::Host(anyhow::Error::from(e));
        store.set_fuel(self.limits.cpu_fuel).map_err(setup)?;
        store
            .fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL))
            .map_err(setup)?;
        Ok((
            store,
            CallTrace {
                outputs,
                dispatched,
            },
        ))
    }

    /// Turns a call's outcome into the result, logging what the guest printed.
    fn finish<R>(
        &self,
        outcome: Result<Result<R, Stage>, tokio::time::error::Elapsed>,
        trace: CallTrace,
    ) -> Result<R, CallError> {
        let request_sent = trace.dispatched.load(Ordering::SeqCst);
        let (stdout, stderr) = match trace.outputs.get() {
            Some((out, err)) => (
                String::from_utf8_lossy(&out.contents()).into_owned(),
                String::from_utf8_lossy(&err.contents()).into_owned(),
            ),
            None => (String::new(), String::new()),
        };
        let mut budget = CallLogBudget::default();
        let log = &self.services.log;
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            budget.write(log, types::LogLevel::Info, &format!("guest stdout: {line}"));
        }
        let err = match outcome {
            Ok(Ok(r)) => {
                for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
                    budget.write(log, types::LogLevel::Warn, &format!("guest stderr: {line}"));
                }
                return Ok(r);
            }
            Ok(Err(Stage::Instantiate(e))) => {
                CallError::Host(anyhow::Error::from(e).context("instantiating the plugin"))
            }
            Ok(Err(Stage::Call(e))) => {
                let message = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::OutOfFuel) => format!(
                        "the call used up its CPU budget of {} guest instructions",
                        self.limits.cpu_fuel
                    ),
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                };
                CallError::Trap {
                    message,
                    guest_stderr: stderr,
                    request_sent,
                }
            }
            Err(_) => CallError::Deadline {
                limit: self.limits.call_timeout,
                request_sent,
            },
        };
        budget.write(log, types::LogLevel::Error, &err.to_string());
        Err(err)
    }

    /// Instantiates the component in a fresh store and calls nothing (the bench's baseline).
    pub async fn instantiate_async(&self) -> Result<(), CallError> {
        match &self.exports {
            Exports::V1_1(pre) => guest_call!(self, pre, |_instance, _store| async {
                wasmtime::Result::Ok(())
            }),
            Exports::V1_0(pre) => guest_call!(self, pre, |_instance, _store| async {
                wasmtime::Result::Ok(())
            }),
        }
    }

    /// `describe`, called once per loaded component (it is pure) and then cached.
    pub async fn describe_async(&self) -> Result<types::ChannelInfo, CallError> {
        self.info
            .get_or_try_init(|| self.describe_uncached())
            .await
            .cloned()
    }

    /// `describe`, always calling the component (the bench measures the call).
    pub async fn describe_uncached(&self) -> Result<types::ChannelInfo, CallError> {
        any_version_call!(self, |p, s| p.flow_channel_channel().call_describe(s))
    }

    /// `validate-template`.
    pub async fn validate_template_async(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        any_version_call!(self, |p, s| p
            .flow_channel_channel()
            .call_validate_template(s, template))
    }

    /// `build-payload`.
    pub async fn build_payload_async(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        match &self.exports {
            Exports::V1_1(pre) => guest_call!(self, pre, |p, s| p
                .flow_channel_channel()
                .call_build_payload(s, request, config)),
            Exports::V1_0(pre) => {
                let (request, config) = (request.convert(), config.clone().convert());
                guest_call!(self, pre, |p, s| p
                    .flow_channel_channel()
                    .call_build_payload(s, &request, &config))
                .map(Convert::convert)
            }
        }
    }

    /// `classify`.
    pub async fn classify_async(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        match &self.exports {
            Exports::V1_1(pre) => guest_call!(self, pre, |p, s| p
                .flow_channel_channel()
                .call_classify(s, outcome, attempt)),
            Exports::V1_0(pre) => {
                let outcome = outcome.clone().convert();
                guest_call!(self, pre, |p, s| p
                    .flow_channel_channel()
                    .call_classify(s, &outcome, attempt))
                .map(Convert::convert)
            }
        }
    }

    /// `parse-webhook`.
    pub async fn parse_webhook_async(
        &self,
        request: &types::WebhookRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::WebhookOutcome, types::WebhookError>, CallError> {
        match &self.exports {
            Exports::V1_1(pre) => guest_call!(self, pre, |p, s| p
                .flow_channel_channel()
                .call_parse_webhook(s, request, config)),
            Exports::V1_0(pre) => {
                let (request, config) = (request.clone().convert(), config.clone().convert());
                guest_call!(self, pre, |p, s| p
                    .flow_channel_channel()
                    .call_parse_webhook(s, &request, &config))
                .map(Convert::convert)
            }
        }
    }

    /// `send`.
    pub async fn send_async(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
        attempt: u32,
    ) -> Result<Result<types::Classification, Vec<types::FieldError>>, CallError> {
        match &self.exports {
            Exports::V1_1(pre) => guest_call!(self, pre, |p, s| p
                .flow_channel_channel()
                .call_send(s, request, config, attempt)),
            Exports::V1_0(pre) => {
                let (request, config) = (request.convert(), config.clone().convert());
                guest_call!(self, pre, |p, s| p
                    .flow_channel_channel()
                    .call_send(s, &request, &config, attempt))
                .map(Convert::convert)
            }
        }
    }

    // Blocking forms, for the CLI and tests (not for use inside a current-thread runtime).

    pub fn instantiate(&self) -> Result<(), CallError> {
        block_on(self.instantiate_async())
    }

    pub fn describe(&self) -> Result<types::ChannelInfo, CallError> {
        block_on(self.describe_async())
    }

    pub fn validate_template(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        block_on(self.validate_template_async(template))
    }

    pub fn build_payload(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        block_on(self.build_payload_async(request, config))
    }

    pub fn classify(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        block_on(self.classify_async(outcome, attempt))
    }

    pub fn parse_webhook(
        &self,
        request: &types::WebhookRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::WebhookOutcome, types::WebhookError>, CallError> {
        block_on(self.parse_webhook_async(request, config))
    }

    pub fn send(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
        attempt: u32,
    ) -> Result<Result<types::Classification, Vec<types::FieldError>>, CallError> {
        block_on(self.send_async(request, config, attempt))
    }
}

/// Runs a future to completion from synchronous code: on the caller's multi-thread runtime if
/// there is one, else on a small shared runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static SHARED: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(future)),
        Err(_) => SHARED
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("host-harness-blocking")
                    .enable_all()
                    .build()
                    .expect("a tokio runtime starts")
            })
            .block_on(future),
    }
}
