//! Synchronous forms for tests that are plain `#[test]` functions: one shared tokio runtime for
//! the whole test process (the library itself never builds one), and a [`BlockingPlugin`] whose
//! methods wait for the plugin's async calls on it.

use host::contract::types;
use host::runtime::{CallError, Plugin};
use std::future::Future;
use std::sync::OnceLock;

/// The test process's tokio runtime. Four workers: the tests of one process run side by side,
/// each with its stack's server and mock on this runtime.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("testkit")
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Runs `future` to completion on [`runtime`]. For synchronous tests only: called from inside a
/// runtime it panics, as tokio's `block_on` does.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// A plugin whose calls block until they answer (each runs on [`runtime`]).
pub struct BlockingPlugin(pub Plugin);

impl From<Plugin> for BlockingPlugin {
    fn from(plugin: Plugin) -> Self {
        BlockingPlugin(plugin)
    }
}

impl std::ops::Deref for BlockingPlugin {
    type Target = Plugin;
    fn deref(&self) -> &Plugin {
        &self.0
    }
}

impl BlockingPlugin {
    pub fn with_limits(&self, limits: host::Limits) -> BlockingPlugin {
        BlockingPlugin(self.0.with_limits(limits))
    }

    pub fn with_services(&self, services: std::sync::Arc<host::HostServices>) -> BlockingPlugin {
        BlockingPlugin(self.0.with_services(services))
    }

    pub fn instantiate(&self) -> Result<(), CallError> {
        block_on(self.0.instantiate())
    }

    pub fn describe(&self) -> Result<types::ChannelInfo, CallError> {
        block_on(self.0.describe())
    }

    pub fn validate_template(
        &self,
        template: &str,
    ) -> Result<Result<(), Vec<types::FieldError>>, CallError> {
        block_on(self.0.validate_template(template))
    }

    pub fn build_payload(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::HttpRequest, Vec<types::FieldError>>, CallError> {
        block_on(self.0.build_payload(request, config))
    }

    pub fn classify(
        &self,
        outcome: &types::SendOutcome,
        attempt: u32,
    ) -> Result<types::Classification, CallError> {
        block_on(self.0.classify(outcome, attempt))
    }

    pub fn parse_webhook(
        &self,
        request: &types::WebhookRequest,
        config: &types::ChannelConfig,
    ) -> Result<Result<types::WebhookOutcome, types::WebhookError>, CallError> {
        block_on(self.0.parse_webhook(request, config))
    }

    pub fn send(
        &self,
        request: &types::MessageRequest,
        config: &types::ChannelConfig,
        attempt: u32,
    ) -> Result<Result<types::Classification, Vec<types::FieldError>>, CallError> {
        block_on(self.0.send(request, config, attempt))
    }
}

/// `.block()` on any future: its output, waited for on [`runtime`] (synchronous tests only).
pub trait Block: Future + Sized {
    fn block(self) -> Self::Output {
        block_on(self)
    }
}

impl<F: Future> Block for F {}
