//! The messages service's own tokio runtime inside the benchmark process.
//!
//! The service, its store's pool, its bus and the committer of the direct windows run
//! there, on threads named [`SERVICE_THREAD_NAME`], while the load generator and the groups
//! service stay on the benchmark's runtime. [`crate::cpu`] reads those threads' CPU time
//! apart, so a window can say what the messages service itself spent per send, as a pod
//! of its own would, without counting the load generator's gRPC client.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::{EnterGuard, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::cpu::SERVICE_THREAD_NAME;

/// Worker threads: as many as a messages pod gets on this 2-core machine.
pub(super) const WORKER_THREADS: usize = 2;

/// A multi-threaded runtime whose threads are named [`SERVICE_THREAD_NAME`].
pub(super) struct ServiceRuntime {
    handle: Handle,
    // `Some` until dropped.
    runtime: Option<Runtime>,
}

impl ServiceRuntime {
    /// Starts the runtime's threads.
    pub(super) fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name(SERVICE_THREAD_NAME)
            // Idle blocking threads would exit and take their CPU time with them.
            .thread_keep_alive(Duration::from_secs(24 * 3_600))
            .enable_all()
            .build()
            .context("starting the messages service's runtime")?;
        Ok(Self { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }

    /// Runs `future` on the service's threads.
    pub(super) fn spawn<Fut>(&self, future: Fut) -> JoinHandle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// While the guard lives, `tokio::spawn` puts tasks on the service's threads (for
    /// constructors that spawn their workers).
    pub(super) fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }
}

impl Drop for ServiceRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context does not allow.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::cpu::CpuSnapshot;

    #[test]
    fn the_service_threads_cpu_is_counted_apart() {
        let runtime = ServiceRuntime::start().unwrap();
        let Some(before) = CpuSnapshot::take() else { return };
        let busy = runtime.spawn(async {
            let started = Instant::now();
            let mut spins = 0u64;
            while started.elapsed() < Duration::from_millis(300) {
                spins = std::hint::black_box(spins + 1);
            }
            spins
        });
        futures::executor::block_on(busy).unwrap();
        let after = CpuSnapshot::take().unwrap();
        let usage = before.until(&after, 1);
        assert!(usage.service > 0.0, "{usage:?}");
        assert!(usage.service <= usage.process, "{usage:?}");
    }
}
