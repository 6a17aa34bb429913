//! Loading and calling channel components.
//!
//! One [`Runtime`] (one wasmtime `Engine`) per process, pooling allocator where the OS allows
//! the reservation; one [`Plugin`] (an `InstancePre`, imports resolved once) per loaded
//! component; a fresh `Store` per call, with a memory cap and an epoch deadline. WASI is
//! linked because Rust's std on `wasm32-wasip2` imports it, but grants nothing: no
//! environment, no files, no sockets; guest stdout/stderr go to the log.
//!
//! A trap or panic in the guest becomes a [`CallError`]; the store is dropped and the next call
//! starts from a clean instance.

use crate::bindings::flow::channel::{host, types};
use crate::bindings::{ChannelPlugin, ChannelPluginPre};
use crate::services::HostServices;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How much a guest may write to stdout/stderr in one call.
const GUEST_OUTPUT_CAP: usize = 64 * 1024;

/// Resource limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory a guest may grow to.
    pub memory_bytes: usize,
    /// CPU time a call may use inside the guest (host calls such as HTTP are bounded by
    /// their own timeouts).
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(5),
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
}

impl Runtime {
    /// An engine with the pooling allocator if the OS allows it (else on-demand allocation)
    /// and wasmtime's on-disk compilation cache, so a CLI call does not recompile an
    /// unchanged component.
    pub fn new() -> Result<Runtime> {
        match Self::with_options(true, true) {
            Ok(rt) => Ok(rt),
            Err(_) => Self::with_options(false, true),
        }
    }

    /// An engine with or without the pooling allocator and the compilation cache (the bench
    /// compares allocators and measures compilation without the cache).
    pub fn with_options(pooling: bool, cache: bool) -> Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if cache {
            // A cache that cannot be set up (no home directory, read-only disk) only costs time.
            if let Ok(cache) = wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
                config.cache(Some(cache));
            }
        }
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(64)
                .total_core_instances(512)
                .total_memories(64)
                .total_tables(128)
                .total_stacks(64)
                .max_memory_size(Limits::default().memory_bytes.max(256 << 20));
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking WASI")?;
        ChannelPlugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("linking the channel host interface")?;
        // The ticker holds a weak reference, so it ends when the engine is dropped.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            pooling,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
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
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component's imports do not match what this host provides (flow:channel@1 host + WASI p2)")?;
        let pre = ChannelPluginPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export flow:channel/channel@1")?;
        Ok(Plugin {
            runtime: self.clone(),
            component,
            pre,
            services,
            limits,
        })
    }
}

/// Per-call state inside a store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    services: Arc<HostServices>,
    stderr: MemoryOutputPipe,
    stdout: MemoryOutputPipe,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn http_send(
        &mut self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::TransportError> {
        self.services.http.send(&request, &self.services.secrets)
    }

    fn hmac_sha256_verify(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
        mac: Vec<u8>,
    ) -> Result<bool, types::SecretError> {
        self.services
            .secrets
            .hmac_sha256_verify(&secret_name, &data, &mac)
    }

    fn secret_equals(
        &mut self,
        secret_name: String,
        candidate: String,
    ) -> Result<bool, types::SecretError> {
        self.services.secrets.equals(&secret_name, &candidate)
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        self.services.log.write(level, &message);
    }

    fn now_ms(&mut self) -> u64 {
        crate::services::now_ms()
    }
}

/// Why a call into a plugin failed. The host stays up either way.
#[derive(Debug)]
pub enum CallError {
    /// The guest trapped: a panic, a memory cap, the time limit, a bug.
    Trap {
        message: String,
        guest_stderr: String,
    },
    /// The host could not set the call up.
    Host(anyhow::Error),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Trap {
                message,
                guest_stderr,
            } if guest_stderr.trim().is_empty() => write!(f, "the plugin trapped: {message}"),
            CallError::Trap {
                message,
                guest_stderr,
            } => write!(
                f,
                "the plugin trapped: {message} (guest stderr: {})",
                guest_stderr.trim()
            ),
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
    pre: ChannelPluginPre<PluginState>,
    services: Arc<HostServices>,
    limits: Limits,
}

impl Plugin {
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

    fn new_store(&self) -> Store<PluginState> {
        let stdout = MemoryOutputPipe::new(GUEST_OUTPUT_CAP);
        let stderr = MemoryOutputPipe::new(GUEST_OUTPUT_CAP);
        // Nothing granted: no args, env, preopened dirs or network.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(64)
            .tables(64)
            .memories(8)
            .trap_on_grow_failure(true)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limits,
            services: self.services.clone(),
            stderr,
            stdout,
        };
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        let ticks = self
            .limits
            .call_timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// Instantiates the component in a fresh store and runs `f` against it.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&ChannelPlugin, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut store = self.new_store();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&instance, &mut store));
        let state = store.data();
        let stdout = String::from_utf8_lossy(&state.stdout.contents()).into_owned();
        let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            self.services
                .log
                .write(types::LogLevel::Info, &format!("guest stdout: {line}"));
        }
        match result {
            Ok(r) => {
                for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
                    self.services
                        .log
                        .write(types::LogLevel::Warn, &format!("guest stderr: {line}"));
                }
                Ok(r)
            }
            Err(e) => {
                let message = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => format!(
                        "the call exceeded its time limit of {:?}",
                        self.limits.call_timeout
                    ),
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}"),
                };
                let err = CallError::Trap {
                    message,
                    guest_stderr: stderr,
                };
                self.services
                    .log
                    .write(types::LogLevel::Error, &err.to_string());
                Err(err)
            }
        }
    }

    /// `describe`.
    pub fn describe(&self) -> Result<types::ChannelInfo, CallError> {
        self.call(|p, s| p.flow_channel_channel().call_describe(s))
    }

    /// `validate-template`.
    pub fn validate_template(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        self.call(|p, s| p.flow_channel_channel().call_validate_template(s, template))
    }

    /// `build-payload`.
    pub fn build_payload(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        self.call(|p, s| {
            p.flow_channel_channel()
                .call_build_payload(s, request, config)
        })
    }

    /// `classify`.
    pub fn classify(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        self.call(|p, s| p.flow_channel_channel().call_classify(s, outcome, attempt))
    }

    /// `parse-webhook`.
    pub fn parse_webhook(
        &self,
        request: &types::WebhookRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::WebhookOutcome, types::WebhookError>, CallError> {
        self.call(|p, s| {
            p.flow_channel_channel()
                .call_parse_webhook(s, request, config)
        })
    }

    /// `send`.
    pub fn send(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
        attempt: u32,
    ) -> Result<Result<types::Classification, Vec<types::FieldError>>, CallError> {
        self.call(|p, s| {
            p.flow_channel_channel()
                .call_send(s, request, config, attempt)
        })
    }
}
