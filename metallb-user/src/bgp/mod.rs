//! BGP mode, as MetalLB's FRR mode does it: the pure plan (which node announces which
//! prefix to which peer, with which attributes: [`plan`]), one FRR configuration
//! rendered from it ([`frr`]), FRR's answers read back ([`status`]); at the edges, the
//! FRR instance ([`frr_daemon`]) behind the [`Backend`] trait, and the speaker's task
//! that feeds it ([`speaker`]: debounce, retry, metrics).

pub mod frr;
pub mod frr_daemon;
pub mod plan;
pub mod speaker;
pub mod status;

use self::{plan::NodeBgp, status::BgpStatus};

/// Why a backend could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Frr(#[from] frr_daemon::FrrError),
    #[error(transparent)]
    Status(#[from] status::StatusError),
}

/// What announces this node's BGP plan: FRR here; an frr-k8s `FRRConfiguration`
/// writer or a native speaker could be others.
pub trait Backend: Send {
    /// Makes the sessions and announcements those of `node`; `Ok(true)` when anything
    /// changed. Applying the same plan again changes nothing.
    fn apply(&mut self, node: &NodeBgp) -> Result<bool, BackendError>;
    /// The sessions as the BGP implementation reports them.
    fn status(&mut self) -> Result<BgpStatus, BackendError>;
}
