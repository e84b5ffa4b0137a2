//! The sandbox: one wasmtime engine for the process (pooling allocator, epoch
//! interruption), the linker with WASI (no files, no environment, no sockets) and the
//! Confab capabilities, compiled components cached on disk, and a fresh store with
//! memory limits and a deadline for every invocation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Plugin, PluginPre};
use super::capabilities::{Capabilities, Grants};
use super::deps::PluginDeps;

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const TICK: Duration = Duration::from_millis(5);
/// The largest memory any plugin may ask for (the pool's slot size).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;
/// Instances that may exist at once across all plugins.
const POOL_INSTANCES: u32 = 256;

/// What a plugin's code can reach while it runs.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The plugin's name, grants and settings.
    pub(crate) grants: Arc<Grants>,
    /// The server's public URL (the `config` capability, always allowed).
    pub(crate) public_url: Arc<str>,
    /// What the plugin was granted, each with what it reaches of the server.
    pub(crate) capabilities: Capabilities,
    /// Where the lobby request being decided came from (only in `lobby-decision`).
    pub(crate) screened: Option<super::CallerOrigin>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The process's engine and linker.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<HostState>,
}

impl Runtime {
    /// The shared runtime, created on first use (a server without plugins never
    /// reserves the pool).
    pub fn get() -> Result<&'static Runtime, String> {
        static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| Runtime::new().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn new() -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .max_core_instances_per_component(32)
            .total_memories(POOL_INSTANCES * 2)
            .max_memories_per_component(4)
            .total_tables(POOL_INSTANCES * 4)
            .max_tables_per_component(8)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;
        Ok(Self { engine, linker })
    }

    /// Compiles `bytes`, or loads the machine code compiled earlier from `cache`.
    #[allow(unsafe_code)] // loading machine code: see the SAFETY comments
    pub fn compile(&self, bytes: &[u8], cache: Option<&Path>) -> Result<Component, String> {
        let Some(dir) = cache else {
            return Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}"));
        };
        let path = self.cache_path(dir, bytes);
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine with
            // the same compatibility hash (part of the file name), into a directory
            // only this server writes to; it is replaced atomically.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable compiled plugin in the cache");
                }
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| format!("{e:#}"))?;
        if let Err(e) = write_atomically(dir, &path, &compiled) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write to the plugin cache");
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| format!("{e:#}"))
    }

    fn cache_path(&self, dir: &Path, bytes: &[u8]) -> PathBuf {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let digest = Sha256::new()
            .chain_update(bytes)
            .chain_update(engine_hash.finish().to_le_bytes())
            .finalize();
        dir.join(format!("{}.cwasm", hex::encode(&digest[..16])))
    }

    /// Resolves every import now, so that each invocation only instantiates.
    pub fn prepare(&self, component: &Component) -> Result<PluginPre<HostState>, String> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| format!("{e:#}"))?;
        PluginPre::new(pre).map_err(|e| format!("{e:#}"))
    }
}

fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        crate::secret::random_base62(8)
    ));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Builds the store for one invocation: WASI with nothing to reach but the plugin's
/// own stdout and stderr (into the log), the memory limit, the deadline.
pub fn new_store(
    runtime: &Runtime,
    grants: Arc<Grants>,
    deps: &PluginDeps,
    acting_user: Option<i64>,
    memory_bytes: usize,
    deadline: Duration,
) -> Store<HostState> {
    let mut wasi = WasiCtx::builder();
    wasi.stdout(LogStream {
        plugin: grants.name.clone(),
        stream: "stdout",
    })
    .stderr(LogStream {
        plugin: grants.name.clone(),
        stream: "stderr",
    })
    .allow_blocking_current_thread(false);
    let state = HostState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: wasmtime::StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .instances(64)
            .tables(64)
            .memories(8)
            .build(),
        capabilities: Capabilities::granted(&grants, deps, acting_user),
        public_url: deps.public_url.clone(),
        grants,
        screened: None,
    };
    let mut store = Store::new(&runtime.engine, state);
    store.limiter(|s| &mut s.limits);
    let ticks = deadline.as_millis().div_ceil(TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store
}

/// A plugin's stdout or stderr: each line goes to the server's log.
#[derive(Clone)]
struct LogStream {
    plugin: Arc<str>,
    stream: &'static str,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            out: self.clone(),
            line: Vec::new(),
        })
    }
}

/// Longest line kept from a plugin's output; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

struct LineLogger {
    out: LogStream,
    line: Vec<u8>,
}

impl LineLogger {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(target: "plugin", plugin = %self.out.plugin, stream = self.out.stream, "{text}");
        }
        self.line.clear();
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.emit();
    }
}
