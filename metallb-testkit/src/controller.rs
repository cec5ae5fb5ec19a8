//! `metallb controller` run in a task of a test's runtime, as the Kubernetes-mode tests
//! and the demo need it: allocating Services' addresses in `namespace`'s pools.
use kube::Client;
use metallb_user::{
    allocator::AllocatorOptions,
    kubernetes::controller::{ControllerOptions, run},
};
use tokio::{runtime::Handle, task::JoinHandle};

/// Starts the controller with default allocation options and no metrics; it runs until
/// the task is aborted or the runtime ends.
pub fn spawn(runtime: &Handle, client: Client, namespace: &str, instance: &str) -> JoinHandle<()> {
    runtime.spawn(run(
        client,
        ControllerOptions {
            namespace: namespace.into(),
            allocator: AllocatorOptions::default(),
            instance: instance.into(),
            metrics: None,
        },
        None,
        std::future::pending(),
    ))
}
