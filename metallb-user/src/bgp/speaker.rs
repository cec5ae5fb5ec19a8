//! The speaker's BGP task: takes this node's plan after every configuration change,
//! waits for a burst of changes to settle (debounce), applies it through the
//! [`Backend`] on a blocking thread, retries a failed apply with a growing delay, and
//! reads the sessions' state for the metrics every second. What it does is also
//! reported as a [`BgpReport`] (ServiceBGPStatus objects and Events in Kubernetes).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tracing::{error, info, warn};

use super::{Backend, plan::NodeBgp};
use crate::{allocator::ServiceKey, metrics::Shared};

/// Changes closer together than this are applied once.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// The first retry of a failed apply; doubled each time, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// What this node's BGP speaker does, for those who report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpReport {
    /// The Services this node announces, each with the BGPPeers it is announced to
    /// (MetalLB's `PeersForService`).
    pub announced: BTreeMap<ServiceKey, BTreeSet<String>>,
    /// Applies that failed since the last one that succeeded.
    pub failures: u32,
    /// Why the last apply failed, while `failures` is not 0.
    pub last_error: Option<String>,
}

/// The speaker's side of the task.
pub struct BgpHandle {
    plans: watch::Sender<Option<NodeBgp>>,
    reports: watch::Sender<BgpReport>,
    task: JoinHandle<()>,
}

impl BgpHandle {
    /// Starts the task; nothing runs on the backend before a first plan. What it does
    /// is sent on `reports`.
    pub fn spawn(
        backend: Box<dyn Backend>,
        shared: Arc<Shared>,
        reports: watch::Sender<BgpReport>,
    ) -> Self {
        let (plans, receiver) = watch::channel(None);
        let task = tokio::spawn(run(
            Arc::new(Mutex::new(backend)),
            receiver,
            shared,
            reports.clone(),
        ));
        Self {
            plans,
            reports,
            task,
        }
    }

    /// This node's plan now (applied after [`DEBOUNCE`] unless another comes).
    pub fn update(&self, node: NodeBgp) {
        self.reports.send_if_modified(|report| {
            let changed = report.announced != node.services;
            report.announced.clone_from(&node.services);
            changed
        });
        self.plans.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&node);
            *current = Some(node);
            changed
        });
    }

    /// Stops the task and the backend (FRR stops with it).
    pub async fn stop(self) {
        drop(self.plans);
        let _ = self.task.await;
    }
}

type SharedBackend = Arc<Mutex<Box<dyn Backend>>>;

async fn run(
    backend: SharedBackend,
    mut plans: watch::Receiver<Option<NodeBgp>>,
    shared: Arc<Shared>,
    reports: watch::Sender<BgpReport>,
) {
    let far = || Instant::now() + Duration::from_secs(3600 * 24 * 365);
    let mut apply_at = far();
    let mut retry = FIRST_RETRY;
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            changed = plans.changed() => {
                if changed.is_err() {
                    break;
                }
                apply_at = Instant::now() + DEBOUNCE;
            }
            _ = tokio::time::sleep_until(apply_at) => {
                let Some(node) = plans.borrow_and_update().clone() else {
                    apply_at = far();
                    continue;
                };
                let backend = backend.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    backend.lock().unwrap_or_else(|p| p.into_inner()).apply(&node)
                })
                .await;
                let mut state = shared.bgp.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(Ok(changed)) => {
                        if changed {
                            state.reloads += 1;
                            info!("BGP configuration applied");
                        }
                        apply_at = far();
                        retry = FIRST_RETRY;
                        reports.send_if_modified(|report| {
                            let changed = report.failures != 0;
                            report.failures = 0;
                            report.last_error = None;
                            changed
                        });
                    }
                    Ok(Err(e)) => {
                        state.reload_failures += 1;
                        error!(error = %e, retry_in = ?retry, "BGP configuration not applied");
                        reports.send_modify(|report| {
                            report.failures += 1;
                            report.last_error = Some(e.to_string());
                        });
                        apply_at = Instant::now() + retry;
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                    Err(e) => {
                        error!(error = %e, "the BGP apply task failed");
                        apply_at = Instant::now() + retry;
                    }
                }
            }
            _ = status_tick.tick() => {
                let backend = backend.clone();
                let status = tokio::task::spawn_blocking(move || {
                    backend.lock().unwrap_or_else(|p| p.into_inner()).status()
                })
                .await;
                match status {
                    Ok(Ok(status)) => {
                        shared.bgp.lock().unwrap_or_else(|p| p.into_inner()).status = status;
                    }
                    Ok(Err(e)) => warn!(error = %e, "cannot read the BGP sessions' state"),
                    Err(e) => warn!(error = %e, "the BGP status task failed"),
                }
            }
        }
    }
    // The last reference: the backend (and FRR) stop here, off the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || drop(backend)).await;
}
