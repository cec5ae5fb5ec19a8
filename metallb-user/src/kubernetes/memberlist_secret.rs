//! The speakers' membership key in Kubernetes mode, as MetalLB keeps it: a Secret
//! (`memberlist` in the namespace, `--ml-secret-name`) holding 16 random bytes in
//! unpadded base64 under `secretkey`, made by the controller when it is missing and
//! never changed afterwards. The speaker DaemonSet mounts it (METALLB_ML_SECRET_KEY_PATH,
//! /etc/ml_secret_key): the speaker reads a file, needs no permission on Secrets for
//! it, and its Pods wait for the Secret before they start.
//!
//! As MetalLB's, the Secret is owned by the controller's Deployment (`--deployment`), so
//! that deleting MetalLB deletes the key with it.

use base64::Engine as _;
use k8s_openapi::{
    ByteString,
    api::{apps::v1::Deployment, core::v1::Secret},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tracing::{info, warn};

use crate::membership::key::SECRET_KEY_NAME;

/// MetalLB's name for it (`METALLB_ML_SECRET_NAME` in its manifests).
pub const DEFAULT_SECRET: &str = "memberlist";
/// The controller's Deployment in `deploy/` (MetalLB's `METALLB_DEPLOYMENT`).
pub const DEFAULT_DEPLOYMENT: &str = "controller";
/// 128 bits, as MetalLB's controller makes them.
const KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{action} the memberlist Secret {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("no random bytes for the memberlist key")]
    Random,
    #[error(
        "reading the controller Deployment {name} (--deployment), the memberlist Secret's owner: {source}"
    )]
    Owner { name: String, source: kube::Error },
    #[error("the controller Deployment {name} (--deployment) has no uid")]
    OwnerUid { name: String },
}

/// A new key: 16 random bytes, in unpadded base64 (22 characters).
pub fn new_key() -> Result<String, SecretError> {
    let mut bytes = [0u8; KEY_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| SecretError::Random)?;
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

/// Makes the Secret `name` in `namespace` with a new key unless it exists (made
/// earlier, by another replica, or by hand: then it is left as it is), owned by the
/// Deployment `owner` of the namespace when one is named. Whether it was made now.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    name: &str,
    owner: Option<&str>,
) -> Result<bool, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let failed = |action, source| SecretError::Api {
        action,
        name: format!("{namespace}/{name}"),
        source,
    };
    if api
        .get_opt(name)
        .await
        .map_err(|e| failed("reading", e))?
        .is_some()
    {
        return Ok(false);
    }
    let owner_references = match owner {
        Some(deployment) => Some(vec![owner_reference(client, namespace, deployment).await?]),
        None => {
            warn!(
                secret = %name,
                "no --deployment: the memberlist Secret has no owner and outlives MetalLB's removal"
            );
            None
        }
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([("app".to_owned(), "metallb".to_owned())].into()),
            owner_references,
            ..ObjectMeta::default()
        },
        data: Some(
            [(
                SECRET_KEY_NAME.to_owned(),
                ByteString(new_key()?.into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    let params = PostParams {
        field_manager: Some("metallb-controller".into()),
        ..PostParams::default()
    };
    match api.create(&params, &secret).await {
        Ok(_) => {
            info!(secret = %name, "made the memberlist Secret: the speakers' membership key");
            Ok(true)
        }
        // Another replica made it first.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(failed("creating", error)),
    }
}

/// The Deployment `name` as an owner, as MetalLB sets it (not the controller of the
/// Secret, and no deletion blocked).
async fn owner_reference(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<OwnerReference, SecretError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments
        .get(name)
        .await
        .map_err(|source| SecretError::Owner {
            name: format!("{namespace}/{name}"),
            source,
        })?;
    let uid = deployment
        .metadata
        .uid
        .ok_or_else(|| SecretError::OwnerUid {
            name: format!("{namespace}/{name}"),
        })?;
    Ok(OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: name.into(),
        uid,
        ..OwnerReference::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sixteen_random_bytes_in_unpadded_base64() {
        let a = new_key().unwrap();
        let b = new_key().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&a)
            .unwrap();
        assert_eq!(decoded.len(), KEY_BYTES);
        // Long enough for the speakers (at least 16 bytes).
        assert!(a.len() >= crate::membership::key::MIN_KEY_BYTES);
    }
}
