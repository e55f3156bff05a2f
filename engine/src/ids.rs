//! Identifiers shared by the layers below the router.

/// Index of an instance in the cluster (declaration order across pools).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct InstanceId(pub u32);

impl InstanceId {
    /// As a vector index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
