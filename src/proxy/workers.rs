//! Worker threads: thread per core for the proxy listeners.
//!
//! Each worker is an OS thread running a single-threaded tokio runtime. Every proxy listener
//! runs one accept loop per worker, each on a socket of its own bound with `SO_REUSEPORT`, so
//! the kernel spreads new connections over the workers and a connection lives on one thread
//! from accept to close: its node connections, buffers and wake-ups never cross threads. What
//! the workers share is the hot-swapped snapshot, the registry and the atomic counters.
//!
//! The control plane (admin listener, health checks, sweeper, reload, store clients) runs on
//! the runtime that started the balancer. With [`Workers::inline`] there is no worker thread
//! and the listeners run on that runtime too: what `--threads 1` and the in-process tests use.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::proxy::upstream::UpstreamPools;

/// One worker: where its tasks run, and what its connections reuse.
struct Worker {
    /// `None` for the inline worker: spawn on the current runtime.
    handle: Option<Handle>,
    /// Keep-alive connections to the nodes, shared by this worker's listeners (both request
    /// paths) across reloads.
    conns: Arc<UpstreamPools>,
}

/// The workers that serve the proxy listeners.
pub struct Workers {
    workers: Vec<Worker>,
    stop: Mutex<Vec<oneshot::Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Workers {
    /// No worker thread: listeners run on the runtime that spawns them.
    pub fn inline() -> Workers {
        Workers {
            workers: vec![Worker {
                handle: None,
                conns: Arc::default(),
            }],
            stop: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// `count` worker threads (at least one), each with its own single-threaded runtime.
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let mut workers = Vec::new();
        let mut stop = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (tx, rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    // The runtime runs its spawned tasks while it blocks here; the sender is
                    // dropped (or used) when the balancer is done with the workers.
                    let _ = rt.block_on(rx);
                })?;
            workers.push(Worker {
                handle: Some(handle),
                conns: Arc::default(),
            });
            stop.push(tx);
            threads.push(thread);
        }
        Ok(Workers {
            workers,
            stop: Mutex::new(stop),
            threads: Mutex::new(threads),
        })
    }

    /// How many workers (and so sockets per listener) there are.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Runs `task` on worker `i`; the handle can be awaited from any runtime.
    pub fn spawn<F>(&self, i: usize, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.workers[i].handle {
            Some(h) => h.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// Worker `i`'s keep-alive connections to the nodes.
    pub fn pools(&self, i: usize) -> Arc<UpstreamPools> {
        self.workers[i].conns.clone()
    }

    /// Stops the worker threads (their remaining tasks are dropped) and waits for them.
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Dropping the senders ends every worker's `block_on`; the threads are not joined
        // here, as a drop may run on a worker itself.
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The worker count `--threads N` means: `0` is one per CPU.
pub fn count_for(threads: usize) -> usize {
    if threads > 0 {
        return threads;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_for_threads() {
        assert_eq!(count_for(3), 3);
        assert!(count_for(0) >= 1);
    }

    #[tokio::test]
    async fn tasks_run_on_their_own_worker_thread() {
        let workers = Workers::start(2).expect("workers");
        assert_eq!(workers.count(), 2);
        let mut names = Vec::new();
        for i in 0..2 {
            let name = workers
                .spawn(i, async {
                    std::thread::current().name().map(str::to_owned)
                })
                .await
                .expect("task ran");
            names.push(name);
        }
        assert_eq!(
            names,
            vec![Some("worker-0".to_string()), Some("worker-1".to_string())]
        );
        workers.stop();
    }

    #[tokio::test]
    async fn inline_runs_on_the_calling_runtime() {
        let workers = Workers::inline();
        let here = std::thread::current().id();
        let there = workers
            .spawn(0, async { std::thread::current().id() })
            .await
            .expect("task ran");
        assert_eq!(here, there);
    }
}
