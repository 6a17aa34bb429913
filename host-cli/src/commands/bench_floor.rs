//! The least an instance costs on the host's engine, measured next to the plugin by `bench`:
//! what of a plugin's instantiation is its own and what is wasmtime's floor.
//!
//! Two components written in the text format, instantiated with the plugin's engine (pooling,
//! copy-on-write images, epochs), an `InstancePre`, a fresh `Store` each time:
//! - [`ONE_MODULE`]: one core module with 1 MiB of memory, one data segment and one function,
//!   no import: the least any component with a linear memory costs;
//! - [`WITH_IMPORT_SHIM`]: the same plus one async host function taking a string, wired the way
//!   `wit-component` wires every import whose lowering needs the guest's memory (a shim module
//!   whose table the guest calls through, and a fixup module filling that table once the
//!   memory exists). The contract's host functions all take strings or lists, so every channel
//!   component has this shape.

use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::{Component, Instance, InstancePre, Linker};
use wasmtime::{Engine, Store};

/// One core module, one memory with data, one exported function, no imports.
pub const ONE_MODULE: &str = r#"(component
  (core module $main
    (memory (export "memory") 16)
    (data (i32.const 262144) "floor")
    (func (export "run") (result i32) i32.const 7))
  (core instance $main (instantiate $main))
  (func (export "run") (result u32) (canon lift (core func $main "run"))))"#;

/// [`ONE_MODULE`] importing `log: func(message: string)` through `wit-component`'s shim and
/// fixup modules; `run` logs the five bytes of its data segment.
pub const WITH_IMPORT_SHIM: &str = r#"(component
  (import "log" (func $log (param "message" string)))
  (core module $shim
    (type $log (func (param i32 i32)))
    (table (export "$imports") 1 1 funcref)
    (func (export "0") (param i32 i32)
      local.get 0 local.get 1 i32.const 0 call_indirect (type $log)))
  (core module $main
    (import "host" "log" (func $log (param i32 i32)))
    (memory (export "memory") 16)
    (data (i32.const 262144) "floor")
    (func (export "run") (result i32)
      i32.const 262144 i32.const 5 call $log i32.const 7))
  (core module $fixup
    (import "" "0" (func $lowered (param i32 i32)))
    (import "" "$imports" (table 1 1 funcref))
    (elem (i32.const 0) func $lowered))
  (core instance $shim (instantiate $shim))
  (core instance $main (instantiate $main
    (with "host" (instance (export "log" (func $shim "0"))))))
  (core func $lowered (canon lower (func $log) (memory (core memory $main "memory"))))
  (core instance (instantiate $fixup
    (with "" (instance (export "0" (func $lowered)) (export "$imports" (table $shim "$imports"))))))
  (func (export "run") (result u32) (canon lift (core func $main "run"))))"#;

/// How many bytes the floor components' `log` import was handed, in total.
pub type LoggedBytes = Arc<AtomicUsize>;

/// One of the floor components, ready to instantiate on `engine`.
pub struct Floor {
    engine: Engine,
    pre: InstancePre<LoggedBytes>,
    logged: LoggedBytes,
}

impl Floor {
    /// Compiles `text` (one of this module's components) and links its `log` import, if any.
    pub fn new(engine: &Engine, text: &str) -> Result<Floor> {
        let component = Component::new(engine, text).map_err(anyhow::Error::from)?;
        let mut linker: Linker<LoggedBytes> = Linker::new(engine);
        if component.component_type().imports(engine).next().is_some() {
            linker
                .root()
                .func_wrap_async("log", |store, (message,): (String,)| {
                    store.data().fetch_add(message.len(), Ordering::Relaxed);
                    Box::new(async { Ok(()) })
                })
                .map_err(anyhow::Error::from)?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)?;
        Ok(Floor {
            engine: engine.clone(),
            pre,
            logged: LoggedBytes::default(),
        })
    }

    /// A fresh store and an instance in it.
    async fn fresh(&self) -> Result<(Store<LoggedBytes>, Instance)> {
        let mut store = Store::new(&self.engine, self.logged.clone());
        // The engine counts epochs; these few instructions need no budget of their own.
        store.set_epoch_deadline(1 << 20);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)?;
        Ok((store, instance))
    }

    /// A fresh store and instance, dropped.
    pub async fn instantiate(&self) -> Result<()> {
        self.fresh().await.map(drop)
    }

    /// A fresh instance's `run`, and what its `log` import was handed.
    #[cfg(test)] // the bench times instantiation; the test checks the floor components run
    pub async fn run(&self) -> Result<(u32, usize)> {
        let (mut store, instance) = self.fresh().await?;
        let run = instance
            .get_typed_func::<(), (u32,)>(&mut store, "run")
            .map_err(anyhow::Error::from)?;
        let before = self.logged.load(Ordering::Relaxed);
        let (answer,) = run
            .call_async(&mut store, ())
            .await
            .map_err(anyhow::Error::from)?;
        Ok((answer, self.logged.load(Ordering::Relaxed) - before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host::runtime::Runtime;

    #[test]
    fn the_floor_components_instantiate_and_run_on_the_plugin_engine() {
        let runtime = Runtime::with_options(true, false)
            .or_else(|_| Runtime::with_options(false, false))
            .unwrap();
        let one = Floor::new(runtime.engine(), ONE_MODULE).unwrap();
        assert_eq!(host_testkit::block_on(one.run()).unwrap(), (7, 0));
        let shim = Floor::new(runtime.engine(), WITH_IMPORT_SHIM).unwrap();
        // The lowered import reads the guest's memory: the shim is wired as a real one is.
        assert_eq!(host_testkit::block_on(shim.run()).unwrap(), (7, 5));
    }
}
