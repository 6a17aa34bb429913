//! `flow:channel@1.2.0`, the latest version (`wit/channel.wit`): its bindings, whose types are
//! the host's ([`super::types`]), and its imports served by the engine.

use crate::runtime::PluginState;
use bindings::flow::channel::{host, types};

/// Types and traits generated from `wit/channel.wit` (async on both sides: the host awaits
/// HTTP inside `http-send`, and calls exports from async tasks).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "channel-plugin",
        imports: { default: async },
        exports: { default: async },
        additional_derives: [PartialEq, Eq],
    });
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    async fn http_send(
        &mut self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::TransportError> {
        PluginState::http_send(self, request).await
    }

    async fn hmac_sha256_verify(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
        mac: Vec<u8>,
    ) -> Result<bool, types::SecretError> {
        PluginState::signature_verify(
            self,
            types::SignatureAlgorithm::HmacSha256,
            &secret_name,
            &data,
            &mac,
        )
    }

    async fn signature_verify(
        &mut self,
        algorithm: types::SignatureAlgorithm,
        secret_name: String,
        data: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, types::SecretError> {
        PluginState::signature_verify(self, algorithm, &secret_name, &data, &signature)
    }

    async fn secret_equals(
        &mut self,
        secret_name: String,
        candidate: String,
    ) -> Result<bool, types::SecretError> {
        PluginState::secret_equals(self, &secret_name, &candidate)
    }

    async fn log(&mut self, level: types::LogLevel, message: String) {
        PluginState::log(self, level, &message);
    }

    async fn now_ms(&mut self) -> u64 {
        crate::services::now_ms()
    }
}
